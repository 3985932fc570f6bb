import type { KeyState, KeyStore, Outcome, QueueKeys, Settled } from '../redis/store.js';
import {
  LockLostError,
  LockReleasedError,
  MaxHoldError,
  ReleaseUnconfirmedError,
} from '../shared/errors.js';
import type { ResolvedOptions } from '../shared/options.js';
import { onAbort } from '../shared/signals.js';
import { observingEnds, publishLost, traceRelease, tracingReleases } from './diagnostics.js';
import { KeepAlive } from './keepalive.js';
import type { Deletion } from './leftovers.js';
import type { Counters } from './stats.js';

/**
 * What the caller of an acquisition asked of the lock: its signal, which ends the lock when it
 * aborts, and how long the lock may be held (`Infinity`: no cap).
 */
export interface HoldTerms {
  readonly parent: AbortSignal | undefined;
  readonly maxHoldMs: number;
}

/**
 * How a lock ends: `released` by its holder, by its caller's signal (`parent`: whatever that
 * signal's reason, even another lock's release), or on its `own` (lost, capped, closed).
 */
export type EndKind = 'released' | 'parent' | 'own';

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
  /** The name's queue, when waiters queue: releasing hands the keys on to its head. */
  readonly queue: QueueKeys | undefined;
  /** The fencing token the acquisition drew (none for a lock handed over). */
  readonly token: bigint | undefined;
  /** The caller's terms: its signal ends the lock, and so does `maxHoldMs`. */
  readonly terms: HoldTerms;
  /** Called once, when the lock ends for any reason. */
  readonly onEnd: (lock: HeldLock) => void;
  /** Called with each deletion of the lock's keys as it is sent (see Leftovers). */
  readonly onDeleting: (deletion: Deletion, sent: Promise<readonly Outcome<boolean>[]>) => void;
  /**
   * Let go of the keys when the lock ends for `reason`: per key, deleted or handed on. The
   * locker may pass them to a waiter of its own instead; by default, the store's release.
   */
  readonly letGo?: (reason: unknown) => Promise<Outcome<boolean>[]> | undefined;
  /**
   * Where no invalidation tells of a changed key (polling), read the keys this often, in ms,
   * to notice a loss between extensions.
   */
  readonly pollMs?: number | undefined;
  /** The locker's counters (see `stats()`). */
  readonly counters: Counters;
}

/** What taking a lock found, before the locker adds how it follows the lock. */
export type LockTaken = Omit<
  HeldLockInit,
  'onEnd' | 'onDeleting' | 'letGo' | 'queue' | 'pollMs' | 'counters'
>;

/**
 * One held lock, its ownership half (etcd's `Mutex`, where `KeepAlive` is the `Session`): which
 * keys are ours and until when, the ownership checks that invalidations trigger, the local
 * expiry timer, and the signal that tells the user when it is no longer theirs. The keep-alive
 * extends the keys and reports each answer (see `Owner` in keepalive.ts); this side tells it
 * of a shortened expiry, a reconnect, and the end.
 */
export class HeldLock {
  readonly name: string;
  readonly token: bigint | undefined;
  readonly #keys: readonly string[];
  readonly #value: string;
  readonly #queue: QueueKeys | undefined;
  readonly #letGo: HeldLockInit['letGo'];
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
  readonly #keepAlive: KeepAlive;
  /** Per key, the last check that found its expiry shortened: when it was sent, and the expiry. */
  readonly #shortened: ({ readonly sentAt: number; readonly expiresBy: number } | undefined)[] = [];
  #expiryTimer: NodeJS.Timeout | undefined;
  /** Ends the lock once it has been held for `maxHoldMs`. */
  #capTimer: NodeJS.Timeout | undefined;
  /** Polling: reads the keys every `pollMs`. */
  #poller: NodeJS.Timeout | undefined;
  /** Keys being read, keys due for a read, and the pending read of them. */
  readonly #checking = new Set<number>();
  readonly #recheck = new Set<number>();
  #flushChecks: NodeJS.Immediate | undefined;
  #held = true;
  /** `performance.now()` when the lock was taken here, and when it ended (for diagnostics). */
  readonly #takenAt: number;
  #endedAt: number | undefined;
  /** The deletion of our keys, once the lock has ended. */
  #cleanup: Promise<Outcome<boolean>[]> | undefined;
  #release: Promise<boolean> | undefined;

  constructor(store: KeyStore, options: ResolvedOptions, init: HeldLockInit) {
    this.name = init.name;
    this.token = init.token;
    this.#keys = init.keys;
    this.#value = init.value;
    this.#queue = init.queue;
    this.#letGo = init.letGo;
    this.#owned = [...init.owned];
    this.#takenAt = init.now;
    this.#store = store;
    this.#options = options;
    const validUntil = this.#validFrom(init.sentAt);
    this.#validUntil = init.owned.map((owned) => (owned ? validUntil : 0));
    this.#onEnd = init.onEnd;
    this.#onDeleting = init.onDeleting;
    this.#keepAlive = new KeepAlive(store, options, init, {
      keysAt: (sentAt) => this.#keysAt(sentAt),
      extended: (results, sentAt) => {
        for (const [i, extended] of results) this.#extended(i, extended, sentAt);
        this.#evaluate(performance.now());
      },
      takeLate: (i, outcome, sentAt) => this.takeLate(i, outcome, sentAt),
    });
    const { parent, maxHoldMs } = init.terms;
    if (parent?.aborted) {
      this.#finish(parent.reason, 'parent');
      return;
    }
    if (parent) this.#unhookParent = onAbort(parent, () => this.#finish(parent.reason, 'parent'));
    if (maxHoldMs !== Infinity) {
      // Counted from when it was taken here (`now`), not from the send: held no longer.
      const capMs = Math.max(0, init.now + maxHoldMs - performance.now());
      this.#capTimer = setTimeout(
        () => this.#finish(new MaxHoldError(this.name, maxHoldMs), 'own'),
        capMs,
      );
    }
    this.#keepAlive.start(init.sentAt);
    if (init.pollMs !== undefined) this.#poller = setInterval(() => this.#poll(), init.pollMs);
    this.#evaluate(init.now);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  release(): Promise<boolean> {
    // Unsubscribed, nothing is built for the channel (on the handoff's path).
    this.#release ??= tracingReleases()
      ? traceRelease(this.name, this.token, this.#held, this.#heldMs(), () => this.#releaseOnce())
      : this.#releaseOnce();
    return this.#release;
  }

  /** How long the lock has been held, or was held until it ended (if anyone was listening). */
  #heldMs(): number {
    return (this.#endedAt ?? performance.now()) - this.#takenAt;
  }

  /** End the lock from outside (close, a wait given up): abort with `reason`, delete the keys. */
  end(reason: unknown, kind: EndKind): Promise<unknown> {
    this.#finish(reason, kind);
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
      this.#finish(new LockLostError(this.name, 'disconnected'), 'own');
    } else this.#evaluate(performance.now()); // the majority left may expire sooner
  }

  /**
   * A key may have changed (`null`: any of them). Read it again, never write: an echo of our
   * own extension must not cause another one. The keys to read are gathered until the next
   * turn of the event loop and read in one request: a handoff's pushes for every key, and
   * the caller's own work, come first.
   */
  recheck(index: number | null): void {
    if (!this.#held) return;
    // After a reconnect, extensions that failed meanwhile are retried at once.
    if (index === null) this.#keepAlive.reconnected();
    const indexes = index === null ? this.#keys.map((_, i) => i) : [index];
    for (const i of indexes) if (this.#owned[i]) this.#recheck.add(i);
    this.#flushChecks ??= setImmediate(() => {
      this.#flushChecks = undefined;
      this.#checkDue();
    });
  }

  /** Polling: read every key that is ours, as an invalidation of each would have us do. */
  #poll(): void {
    for (const i of this.#ownedIndexes()) this.#recheck.add(i);
    this.#checkDue();
  }

  /** Read the keys due for a check that no check in flight is reading. */
  #checkDue(): void {
    if (!this.#held) return;
    const due = [...this.#recheck].filter((i) => !this.#checking.has(i));
    if (due.length === 0) return;
    for (const i of due) {
      this.#recheck.delete(i);
      this.#checking.add(i);
    }
    void this.#check(due);
  }

  async #check(indexes: readonly number[]): Promise<void> {
    try {
      const sentAt = performance.now();
      const keys = indexes.map((i) => this.#keys[i] as string);
      const outcomes = await this.#store.check(keys, this.#value);
      if (!this.#held) return;
      outcomes.forEach((outcome, n) => {
        const i = indexes[n] as number;
        if (outcome.status !== 'fulfilled') return;
        if (!outcome.value.ours) this.#owned[i] = false;
        else this.#checkExpiry(i, outcome.value.pttlMs, sentAt);
      });
      // Act on it now: a further check of these keys may wait for a frozen server.
      this.#evaluate(performance.now());
    } finally {
      for (const i of indexes) this.#checking.delete(i);
      this.#checkDue();
    }
  }

  /**
   * Key `i` is ours, with `pttlMs` left when a check sent at `sentAt` read it: it expires no
   * earlier than `sentAt + pttlMs`. If someone shortened it (PEXPIRE), that is before our
   * deadline: the deadline moves up, and the keep-alive hears of it, to extend early if the key
   * would lapse before the next extension (as rueidislock does). Our own extension, echoed back
   * without NOLOOP, reads as a key that expires a round trip short of a validity: after the
   * next extension, so it starts no other one (unless the client's clock is far behind the
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
    this.#keepAlive.shortened(expiresBy, sentAt);
  }

  async #releaseOnce(): Promise<boolean> {
    const wasHeld = this.#held;
    this.#finish(new LockReleasedError(this.name), 'released');
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

  /**
   * The keys for an extension sent at `sentAt` (see `Owner.keysAt`). A key past its local
   * deadline may be gone on its server (a node that is down): stop extending it, so that it
   * does not count as a failed extension; the retake takes it back once it is free again, or
   * still ours.
   */
  #keysAt(sentAt: number): { extend: number[]; retake: number[] } {
    for (const i of this.#ownedIndexes()) {
      if ((this.#validUntil[i] as number) <= sentAt) this.#owned[i] = false;
    }
    const retake = this.#keys.flatMap((_, i) => (this.#owned[i] ? [] : [i]));
    return { extend: this.#ownedIndexes(), retake };
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

  /** Still a majority of keys ours and unexpired? If not, the lock is lost now. */
  #evaluate(now: number): void {
    if (!this.#held) return;
    const owned = this.#ownedIndexes();
    const majority = this.#options.keyMajority;
    if (owned.length < majority) {
      this.#finish(new LockLostError(this.name, 'changed'), 'own');
      return;
    }
    const live = owned
      .map((i) => this.#validUntil[i] as number)
      .filter((until) => until > now)
      .sort((a, b) => b - a);
    const lastMajority = live[majority - 1];
    if (lastMajority === undefined) {
      this.#finish(new LockLostError(this.name, 'expired'), 'own');
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
  #finish(reason: unknown, kind: EndKind): void {
    if (!this.#held) return;
    this.#held = false;
    // Read only for a message (a release is on the handoff's path): `#heldMs` falls back to now.
    if (observingEnds()) this.#endedAt = performance.now();
    this.#keepAlive.stop();
    clearTimeout(this.#expiryTimer);
    clearTimeout(this.#capTimer);
    clearInterval(this.#poller);
    clearImmediate(this.#flushChecks);
    this.#unhookParent();
    this.#controller.abort(reason);
    // Every key, by value: those we believe ours, and those whose outcome we never learnt (a
    // handoff needs them all to be ours anyway).
    this.#cleanup =
      this.#letGo?.(reason) ??
      this.#store.release(this.#keys, this.#value, this.#queue, this.token);
    this.#deleting(this.#keys, this.#cleanup);
    this.#onEnd(this);
    if (kind !== 'released')
      publishLost(this.name, this.token, reason, kind === 'parent', this.#takenAt, this.#endedAt);
  }

  /** Tell the locker of a deletion of `keys` just sent (to send it again if it fails). */
  #deleting(keys: readonly string[], sent: Promise<Outcome<boolean>[]>): void {
    this.#onDeleting({ keys, value: this.#value, token: this.token }, sent);
  }
}
