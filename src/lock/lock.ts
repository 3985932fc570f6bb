import type { KeyState, KeyStore, Outcome, Settled } from '../redis/store.js';
import { LockLostError, LockReleasedError, ReleaseUnconfirmedError } from '../shared/errors.js';
import type { ResolvedOptions } from '../shared/options.js';
import { onAbort } from '../shared/signals.js';
import type { Deletion } from './leftovers.js';

/** How a lock was taken, and what the locker learns about it. */
export interface HeldLockInit {
  readonly name: string;
  readonly keys: readonly string[];
  readonly value: string;
  /** Per key: did the acquire attempt take it. */
  readonly owned: readonly boolean[];
  /** `performance.now()` when the acquire request was sent. */
  readonly sentAt: number;
  /** `performance.now()` when the replies were judged in time: the first evaluation uses it. */
  readonly now: number;
  /** With direct handoff: the name's queue, so that releasing hands the keys on. */
  readonly queueKey: string | undefined;
  /** The fencing token the acquisition drew (none for a lock handed over). */
  readonly token: bigint | undefined;
  /** The caller's signal: aborting it ends the lock. */
  readonly parent: AbortSignal | undefined;
  /** Called once, when the lock ends for any reason. */
  readonly onEnd: (lock: HeldLock) => void;
  /** Called with each deletion of the lock's keys as it is sent (see Leftovers). */
  readonly onDeleting: (deletion: Deletion, sent: Promise<readonly Outcome<boolean>[]>) => void;
}

/**
 * One held lock: its keys, the extension loop, the local expiry timer, the ownership checks
 * that invalidations trigger, and the signal that tells the user when it is no longer theirs.
 */
export class HeldLock {
  readonly name: string;
  readonly token: bigint | undefined;
  readonly #keys: readonly string[];
  readonly #value: string;
  readonly #queueKey: string | undefined;
  readonly #owned: boolean[];
  /** Per key, `performance.now()` after which Redis may already have let it expire. */
  readonly #validUntil: number[];
  readonly #store: KeyStore;
  readonly #options: ResolvedOptions;
  readonly #controller = new AbortController();
  /** Stops listening to the caller's signal. */
  #unhookParent: () => void = () => {};
  readonly #onEnd: (lock: HeldLock) => void;
  readonly #onDeleting: HeldLockInit['onDeleting'];
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
  /** Per key, the last check that found its expiry shortened: when it was sent, and the expiry. */
  readonly #shortened: ({ readonly sentAt: number; readonly expiresBy: number } | undefined)[] = [];
  /** When the next extension is due (`performance.now()` time). */
  #nextExtendAt = 0;
  #expiryTimer: NodeJS.Timeout | undefined;
  readonly #checking = new Set<number>();
  readonly #recheck = new Set<number>();
  #held = true;
  /** The deletion of our keys, once the lock has ended. */
  #cleanup: Promise<Outcome<boolean>[]> | undefined;
  #release: Promise<boolean> | undefined;

  constructor(store: KeyStore, options: ResolvedOptions, init: HeldLockInit) {
    this.name = init.name;
    this.token = init.token;
    this.#keys = init.keys;
    this.#value = init.value;
    this.#queueKey = init.queueKey;
    this.#owned = [...init.owned];
    this.#store = store;
    this.#options = options;
    const validUntil = this.#validFrom(init.sentAt);
    this.#validUntil = init.owned.map((owned) => (owned ? validUntil : 0));
    this.#onEnd = init.onEnd;
    this.#onDeleting = init.onDeleting;
    const parent = init.parent;
    if (parent?.aborted) {
      this.#finish(parent.reason);
      return;
    }
    if (parent) this.#unhookParent = onAbort(parent, () => this.#finish(parent.reason));
    this.#scheduleExtend(init.sentAt + options.extendIntervalMs);
    this.#evaluate(init.now);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  release(): Promise<boolean> {
    this.#release ??= this.#releaseOnce();
    return this.#release;
  }

  /** End the lock from outside (close, parent abort): abort with `reason` and delete the keys. */
  end(reason: unknown): Promise<unknown> {
    this.#finish(reason);
    return this.#cleanup ?? Promise.resolve();
  }

  /**
   * The outcome of taking key `i` with a request sent at `sentAt`, which came after the lock
   * was decided (a slow server, or a retake). A key that is ours joins the lock, its expiry
   * counted from `sentAt` (the acquire script sets it even when the key already held our
   * value). While the lock is held a key of unknown outcome is left alone: a later retake may
   * take it, and the lock's end deletes every key by value. After the end, it is deleted.
   */
  takeLate(i: number, outcome: Settled<KeyState>, sentAt: number): void {
    const ours = outcome.status === 'fulfilled' && outcome.value.value === this.#value;
    if (this.#held) {
      if (!ours) return;
      this.#owned[i] = true;
      this.#validUntil[i] = this.#validFrom(sentAt);
    } else if (ours || outcome.status === 'rejected') {
      const keys = [this.#keys[i] as string];
      this.#deleting(keys, this.#store.delete(keys, this.#value, this.token));
    }
  }

  /**
   * The connection to the server of the keys `served` accepts dropped: they no longer count,
   * since the server may come back without them (a restart without persistence) and a waiter
   * that reconnects first would take them. With several servers the lock may still hold a
   * majority elsewhere, and takes them back beside its next extension if they are still ours.
   */
  dropped(served: (key: string) => boolean): void {
    if (!this.#held) return;
    for (const i of this.#ownedIndexes())
      if (served(this.#keys[i] as string)) this.#owned[i] = false;
    if (this.#ownedIndexes().length < this.#options.keyMajority) {
      this.#finish(new LockLostError(this.name, 'disconnected'));
    } else this.#evaluate(performance.now()); // the majority left may expire sooner
  }

  /**
   * A key may have changed (`null`: any of them). Read it again, never write: an echo of our
   * own extension must not cause another one.
   */
  recheck(index: number | null): void {
    if (!this.#held) return;
    // After a reconnect, extensions that failed meanwhile are retried at once.
    if (index === null && this.#extendFailures > 0 && !this.#extending) this.#extendNow();
    const indexes = index === null ? this.#keys.map((_, i) => i) : [index];
    for (const i of indexes) {
      if (!this.#owned[i]) continue;
      if (this.#checking.has(i)) this.#recheck.add(i);
      else void this.#check(i);
    }
  }

  async #check(i: number): Promise<void> {
    this.#checking.add(i);
    try {
      do {
        this.#recheck.delete(i);
        const sentAt = performance.now();
        const [outcome] = await this.#store.check([this.#keys[i] as string], this.#value);
        if (!this.#held) return;
        if (outcome?.status !== 'fulfilled') continue;
        if (!outcome.value.ours) this.#owned[i] = false;
        else this.#checkExpiry(i, outcome.value.pttlMs, sentAt);
        // Act on it now: a further check of this key may wait for a frozen server.
        this.#evaluate(performance.now());
      } while (this.#held && this.#recheck.has(i));
    } finally {
      this.#checking.delete(i);
    }
  }

  /**
   * Key `i` is ours, with `pttlMs` left when a check sent at `sentAt` read it: it expires no
   * earlier than `sentAt + pttlMs`. If someone shortened it (PEXPIRE), that is before our
   * deadline: the deadline moves up, and if the key would lapse before the next extension,
   * the extension goes early (as rueidislock does). Our own extension, echoed back without
   * NOLOOP, reads as a key that expires a round trip short of a validity: after the next
   * extension, so it starts no other one (unless the client's clock is far behind the
   * server's: then the early extensions' growing pause bounds the loop).
   */
  #checkExpiry(i: number, pttlMs: number, sentAt: number): void {
    if (pttlMs < 0 || !this.#owned[i]) return; // -1: no expiry at all
    // The drift margin, for the time the key has left.
    const { driftFactor } = this.#options;
    const expiresBy = sentAt + pttlMs - Math.ceil(pttlMs * driftFactor) - 2;
    if (expiresBy >= (this.#validUntil[i] as number)) return;
    this.#validUntil[i] = expiresBy;
    this.#shortened[i] = { sentAt, expiresBy };
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

  async #releaseOnce(): Promise<boolean> {
    const wasHeld = this.#held;
    this.#finish(new LockReleasedError(this.name));
    const outcomes = await (this.#cleanup as Promise<Outcome<boolean>[]>); // set by #finish
    if (!wasHeld) return false;
    // Held as far as we knew; the deletions say whether Redis agreed (an invalidation telling
    // otherwise may still have been on its way). A majority confirmed is enough: the keys of a
    // server that did not answer expire by themselves.
    const deleted = outcomes.filter((outcome) => outcome.status === 'fulfilled' && outcome.value);
    if (deleted.length >= this.#options.keyMajority) return true;
    const failure = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failure) throw new ReleaseUnconfirmedError(this.name, failure.reason);
    return false;
  }

  #validFrom(sentAt: number): number {
    return sentAt + this.#options.keyValidityMs - this.#options.marginMs;
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
    // A key past its local deadline may be gone on its server (a node that is down): stop
    // extending it, so that it does not count as a failed extension; the retake takes it back
    // once it is free again, or still ours.
    for (const i of this.#ownedIndexes()) {
      if ((this.#validUntil[i] as number) <= sentAt) this.#owned[i] = false;
    }
    const indexes = this.#ownedIndexes();
    void this.#retake(sentAt);
    this.#extending = true;
    const outcomes = await this.#store.extend(
      indexes.map((i) => this.#keys[i] as string),
      this.#value,
      this.token,
    );
    this.#extending = false;
    if (!this.#held) return;
    let unanswered = false;
    outcomes.forEach((outcome, n) => {
      const i = indexes[n] as number;
      if (outcome.status === 'fulfilled') this.#extended(i, outcome.value, sentAt);
      else if (outcome.status === 'pending') {
        // A slow server, after a majority was extended: its answer counts when it comes.
        void outcome.later.then((late) => {
          if (late.status !== 'fulfilled' || !this.#held) return;
          this.#extended(i, late.value, sentAt);
          this.#evaluate(performance.now());
        });
      } else unanswered = true; // unknown: the expiry timer decides
    });
    this.#evaluate(performance.now());
    if (!this.#held) return;
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

  /** Key `i`'s extension sent at `sentAt` says whether it is still ours. */
  #extended(i: number, extended: boolean, sentAt: number): void {
    if (!this.#owned[i]) return;
    if (!extended) {
      this.#owned[i] = false;
      return;
    }
    // A check sent after this extension read the key after it (a key's requests share one
    // connection): an expiry it found shortened stands.
    const shortened = this.#shortened[i];
    const until = this.#validFrom(sentAt);
    this.#validUntil[i] =
      shortened && shortened.sentAt > sentAt ? Math.min(until, shortened.expiresBy) : until;
  }

  /**
   * Take the keys that are not ours, if they are free (NX): a handoff decided on a majority
   * leaves the last keys to the previous holder's deletion, and a server that restarted empty
   * lost ours. A lock that holds every key outlives the most server failures. Runs beside the
   * extension, so a slow server does not hold that up.
   */
  async #retake(sentAt: number): Promise<void> {
    const missing = this.#keys.flatMap((_, i) => (this.#owned[i] ? [] : [i]));
    if (missing.length === 0) return;
    const outcomes = await this.#store.acquire(
      missing.map((i) => this.#keys[i] as string),
      this.#value,
      false,
    );
    outcomes.forEach((outcome, n) => {
      const i = missing[n] as number;
      if (outcome.status !== 'pending') this.takeLate(i, outcome, sentAt);
      else void outcome.later.then((late) => this.takeLate(i, late, sentAt));
    });
  }

  /** Still a majority of keys ours and unexpired? If not, the lock is lost now. */
  #evaluate(now: number): void {
    if (!this.#held) return;
    const owned = this.#ownedIndexes();
    const majority = this.#options.keyMajority;
    if (owned.length < majority) {
      this.#finish(new LockLostError(this.name, 'changed'));
      return;
    }
    const live = owned
      .map((i) => this.#validUntil[i] as number)
      .filter((until) => until > now)
      .sort((a, b) => b - a);
    const lastMajority = live[majority - 1];
    if (lastMajority === undefined) {
      this.#finish(new LockLostError(this.name, 'expired'));
      return;
    }
    clearTimeout(this.#expiryTimer);
    this.#expiryTimer = setTimeout(
      () => this.#evaluate(performance.now()),
      Math.ceil(lastMajority - now),
    );
  }

  #ownedIndexes(): number[] {
    return this.#keys.flatMap((_, i) => (this.#owned[i] ? [i] : []));
  }

  /** The one place a lock ends: abort first, so the work stops before anyone else can start. */
  #finish(reason: unknown): void {
    if (!this.#held) return;
    this.#held = false;
    clearTimeout(this.#extendTimer);
    clearTimeout(this.#expiryTimer);
    this.#unhookParent();
    this.#controller.abort(reason);
    // Every key, by value: those we believe ours, and those whose outcome we never learnt (a
    // handoff needs them all to be ours anyway).
    this.#cleanup = this.#store.release(this.#keys, this.#value, this.#queueKey, this.token);
    this.#deleting(this.#keys, this.#cleanup);
    this.#onEnd(this);
  }

  /** Tell the locker of a deletion of `keys` just sent (to send it again if it fails). */
  #deleting(keys: readonly string[], sent: Promise<Outcome<boolean>[]>): void {
    this.#onDeleting({ keys, value: this.#value, token: this.token }, sent);
  }
}
