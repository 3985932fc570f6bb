import type { KeyState, KeyStore, Settled } from '../redis/store.js';
import type { ResolvedOptions } from '../shared/options.js';
import { publishExtend } from './diagnostics.js';
import type { Counters } from './stats.js';

/**
 * The ownership side (`HeldLock`) as the keep-alive sees it. The keep-alive never reads a
 * key's deadline or whether it is ours: it asks which keys to send, and reports what came back.
 */
export interface Owner {
  /**
   * Split the keys (indexes) for an extension sent at `sentAt`: those to extend, and the
   * others, to retake. Keys past their deadline go to the retake.
   */
  keysAt(sentAt: number): {
    readonly extend: readonly number[];
    readonly retake: readonly number[];
  };
  /**
   * Extensions sent at `sentAt` answered: per key index, whether it was extended. The owner
   * counts them, then judges the lock (which may end it, and so stop the keep-alive).
   */
  extended(results: readonly (readonly [i: number, extended: boolean])[], sentAt: number): void;
  /** A retake sent at `sentAt` settled for key `i` (see `HeldLock.takeLate`). */
  takeLate(i: number, outcome: Settled<KeyState>, sentAt: number): void;
}

/**
 * The keys a keep-alive extends: the lock's, by value, raising the fence with its token; and
 * the lock's name and the locker's counters, for what it reports of its extensions.
 */
export interface Lease {
  readonly name: string;
  readonly counters: Counters;
  readonly keys: readonly string[];
  readonly value: string;
  readonly token: bigint | undefined;
}

/**
 * The liveness half of a held lock (etcd's `Session`, where `HeldLock` is the `Mutex`): the
 * extension loop, its backoff after failures, early extensions when a check finds a key
 * shortened, and the retake of the keys that are not ours. From the owner it learns only a
 * shortened expiry (`shortened`), a reconnect (`reconnected`) and the end (`stop`).
 */
export class KeepAlive {
  readonly #store: KeyStore;
  readonly #options: ResolvedOptions;
  readonly #lease: Lease;
  readonly #owner: Owner;
  #extendTimer: NodeJS.Timeout | undefined;
  /** Consecutive extensions that Redis failed or did not answer. */
  #extendFailures = 0;
  #extending = false;
  /** An early extension asked for while one was in flight: when to send it after that one. */
  #extendAgainAt: number | undefined;
  /** When the last extension was sent (`performance.now()` time). */
  #lastExtendAt = 0;
  /** Early extensions sent in a row (see #extendEarly), and whether the next one is early. */
  #earlyInARow = 0;
  #early = false;
  /** When the next extension is due (`performance.now()` time). */
  #nextExtendAt = 0;
  /** Set once by `stop`: the lock has ended, answers still on their way are ignored. */
  #stopped = false;

  constructor(store: KeyStore, options: ResolvedOptions, lease: Lease, owner: Owner) {
    this.#store = store;
    this.#options = options;
    this.#lease = lease;
    this.#owner = owner;
  }

  /** The keys were taken by a request sent at `sentAt`: extend them an interval later. */
  start(sentAt: number): void {
    this.#scheduleExtend(sentAt + this.#options.extendIntervalMs);
  }

  /** The lock has ended: no further extension, and none in flight counts. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#extendTimer);
  }

  /**
   * After a reconnect (`recheck(null)`), extensions that failed meanwhile are retried at once,
   * not after their backoff.
   */
  reconnected(): void {
    if (this.#extendFailures > 0 && !this.#extending) this.#extendNow();
  }

  /**
   * A check sent at `sentAt` found a key of ours shortened: it expires by `expiresBy`, before
   * its deadline. If it would lapse before the next extension, the extension goes early (as
   * rueidislock does).
   */
  shortened(expiresBy: number, sentAt: number): void {
    // An extension sent after this check read the key runs after it (a key's requests share
    // one connection), and extends it anyway.
    if (sentAt < this.#lastExtendAt) return;
    // While an extension is out the next one is not planned yet; else only a next extension
    // due after this deadline must come sooner.
    if (this.#extending || expiresBy < this.#nextExtendAt) this.#extendEarly(expiresBy);
  }

  /**
   * Extend before the next planned extension, and before `expiresBy`: at once the first time;
   * after another early one, no sooner than a pause that doubles from `tryNextAfterMs` with
   * each early extension in a row, up to a quarter interval (against a loop of echoes), yet
   * never later than halfway to `expiresBy`.
   */
  #extendEarly(expiresBy: number): void {
    const pause = this.#backoff(this.#earlyInARow);
    const now = performance.now();
    if (this.#extendNow(Math.min(this.#lastExtendAt + pause, now + (expiresBy - now) / 2))) {
      this.#early = true;
    }
  }

  /**
   * Extend at `at` (at once if it has passed), unless one is planned sooner; while one is
   * out, right after it if `at` has passed by then. Says whether it moved the next extension.
   */
  #extendNow(at = performance.now()): boolean {
    if (this.#extending) {
      this.#extendAgainAt = Math.min(this.#extendAgainAt ?? at, at);
      return true;
    }
    if (at >= this.#nextExtendAt) return false;
    clearTimeout(this.#extendTimer);
    this.#scheduleExtend(at);
    return true;
  }

  /** Extend at `at` (a `performance.now()` time), or at once if that has passed. */
  #scheduleExtend(at: number): void {
    this.#nextExtendAt = at;
    const wait = Math.max(0, at - performance.now());
    this.#extendTimer = setTimeout(() => void this.#extend(), wait);
  }

  async #extend(): Promise<void> {
    const sentAt = performance.now();
    this.#lastExtendAt = sentAt;
    this.#earlyInARow = this.#early ? this.#earlyInARow + 1 : 0;
    this.#early = false;
    const { extend: indexes, retake } = this.#owner.keysAt(sentAt);
    void this.#retake(retake, sentAt);
    this.#extending = true;
    const { keys, value, token } = this.#lease;
    const outcomes = await this.#store.extend(
      indexes.map((i) => keys[i] as string),
      value,
      token,
    );
    this.#extending = false;
    if (this.#stopped) return;
    let unanswered = false;
    let extended = 0;
    const results: [number, boolean][] = [];
    outcomes.forEach((outcome, n) => {
      const i = indexes[n] as number;
      if (outcome.status === 'fulfilled') {
        results.push([i, outcome.value]);
        if (outcome.value) extended++;
      } else if (outcome.status === 'pending') {
        // A slow server, after a majority was extended: its answer counts when it comes.
        void outcome.later.then((late) => {
          if (late.status !== 'fulfilled' || this.#stopped) return;
          this.#owner.extended([[i, late.value]], sentAt);
        });
      } else unanswered = true; // unknown: the expiry timer decides
    });
    // Failed: a key not answered, or no longer ours (a slow server's pending keys are neither).
    if (unanswered || extended < results.length) this.#lease.counters.extensionsFailed++;
    publishExtend(this.#lease.name, outcomes.length, extended, sentAt);
    this.#owner.extended(results, sentAt);
    if (this.#stopped) return;
    // A failed extension is retried soon, with backoff, rather than an interval later: by then
    // the keys may be gone although Redis came back long before.
    this.#extendFailures = unanswered ? this.#extendFailures + 1 : 0;
    const next = unanswered
      ? performance.now() + this.#backoff(this.#extendFailures)
      : sentAt + this.#options.extendIntervalMs;
    // Or sooner, when an early extension was asked for meanwhile.
    this.#scheduleExtend(Math.min(next, this.#extendAgainAt ?? next));
    this.#extendAgainAt = undefined;
  }

  /**
   * The pause before an extension that follows `count` (failed, or early) ones in a row: none
   * after none, then from `tryNextAfterMs` doubling, capped well below the interval, so that
   * extensions keep coming before the keys expire.
   */
  #backoff(count: number): number {
    if (count === 0) return 0;
    const { extendIntervalMs, tryNextAfterMs } = this.#options;
    const cap = Math.max(tryNextAfterMs, Math.floor(extendIntervalMs / 4));
    return Math.min(cap, tryNextAfterMs * 2 ** Math.min(count - 1, 20));
  }

  /**
   * Take the keys that are not ours, if they are free (NX): a handoff decided on a majority
   * leaves the last keys to the previous holder's deletion, and a server that restarted empty
   * lost ours. A lock that holds every key outlives the most server failures. Runs beside the
   * extension, so a slow server does not hold that up.
   */
  async #retake(missing: readonly number[], sentAt: number): Promise<void> {
    if (missing.length === 0) return;
    const { keys, value } = this.#lease;
    const outcomes = await this.#store.acquire(
      missing.map((i) => keys[i] as string),
      value,
      'free',
    );
    outcomes.forEach((outcome, n) => {
      const i = missing[n] as number;
      if (outcome.status !== 'pending') this.#owner.takeLate(i, outcome, sentAt);
      else void outcome.later.then((late) => this.#owner.takeLate(i, late, sentAt));
    });
  }
}
