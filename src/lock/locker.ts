import { randomUUID } from 'node:crypto';
import { abortable } from 'abort-controller-x';
import type { KeyState, KeyStore, Outcome, Placement } from '../redis/store.js';
import { connectPlacement } from '../redis/topology.js';
import {
  LockerClosedError,
  LockLostError,
  LockReleasedError,
  NotLockedError,
  UnavailableError,
} from '../shared/errors.js';
import { checkName, handoffKey, keyNames, parseKey, queueKey, ticketKey } from '../shared/keys.js';
import {
  checkDuration,
  type LockerOptions,
  type ResolvedOptions,
  resolveOptions,
} from '../shared/options.js';
import { linkSignals } from '../shared/signals.js';
import { settleWithin } from '../shared/timing.js';
import { Gate } from './gate.js';
import { Leftovers } from './leftovers.js';
import { createHandle, HeldLock, type Lock } from './lock.js';
import { type Ticket, Tickets } from './tickets.js';

/** Options of one acquisition. */
export interface AcquireOptions {
  /**
   * Aborting it while waiting rejects the call with its reason (nothing of the attempt stays
   * in Redis); aborting it while the lock is held aborts the lock's signal and releases it.
   */
  signal?: AbortSignal;
}

/** Options of an acquisition that may wait (`withContext`, `withLock`). */
export interface WaitOptions extends AcquireOptions {
  /**
   * Give up waiting after this many ms and reject with `NotLockedError`; the first attempt
   * always completes, so 0 means "try once" (unless another waiter of this locker is ahead). Unlike an `AbortSignal.timeout` passed as
   * `signal`, it does not limit how long the lock is held.
   */
  waitTimeoutMs?: number;
}

/** A distributed lock client on one Redis connection. Create it with {@link createLocker}. */
export interface Locker {
  /** Wait until the lock is ours. */
  withContext(name: string, options?: WaitOptions): Promise<Lock>;
  /** Take the lock if it is free now, else reject with `NotLockedError`. Never waits. */
  tryWithContext(name: string, options?: AcquireOptions): Promise<Lock>;
  /** Take the lock whoever holds it: the holder's signal aborts with `LockLostError`. */
  forceWithContext(name: string, options?: AcquireOptions): Promise<Lock>;
  /**
   * Wait for the lock, run `fn` with its signal, release it, and return what `fn` returned.
   * Rethrows what `fn` throws; if the lock ended before `fn` returned (even when `fn` ignored
   * its signal), rejects with the end's reason: `LockLostError`, `LockerClosedError`, or the
   * caller's signal's reason.
   */
  withLock<T>(
    name: string,
    fn: (signal: AbortSignal, lock: Lock) => T | PromiseLike<T>,
    options?: WaitOptions,
  ): Promise<T>;
  /**
   * Abort every held signal (`LockerClosedError`), reject every waiter, delete the keys best
   * effort and close the connection; bounded by `commandTimeoutMs`. Idempotent.
   */
  close(): Promise<void>;
}

/** Connect to Redis and return a {@link Locker}. Rejects within `connectTimeoutMs`. */
export async function createLocker(options?: LockerOptions): Promise<Locker> {
  const resolved = resolveOptions(options);
  const locker = new RedisLocker(resolved);
  await locker.connect();
  return locker;
}

type Mode = 'wait' | 'try' | 'force';

/** The locks and waiters of one name in this process. */
interface NameState {
  readonly gate: Gate;
  readonly locks: Set<HeldLock>;
}

/** What one acquire attempt came to. */
type Attempt =
  | { readonly lock: HeldLock }
  | { readonly busy: true; readonly retryInMs: number }
  | { readonly error: unknown; readonly renewed?: Ticket };

class RedisLocker implements Locker {
  readonly #options: ResolvedOptions;
  #placement: Placement | undefined;
  readonly #names = new Map<string, NameState>();
  /** Deletions (of ended locks, of attempts) a dropped connection failed: sent again on reconnect. */
  readonly #leftovers: Leftovers;
  /** The queued waiters of this locker, for direct handoff. */
  readonly #tickets = new Tickets();
  /** Aborts (with LockerClosedError) when close() starts: every waiter listens to it. */
  readonly #closing = new AbortController();
  #closed: Promise<void> | undefined;

  constructor(options: ResolvedOptions) {
    this.#options = options;
    this.#leftovers = new Leftovers(options.keyValidityMs);
  }

  async connect(): Promise<void> {
    this.#placement = await connectPlacement(this.#options, {
      invalidated: (key) => this.#invalidated(key),
      dropped: (store, served) => {
        for (const [name, state] of this.#names) {
          if (this.#storeFor(name) !== store) continue;
          for (const lock of state.locks) lock.dropped(served);
        }
      },
    });
  }

  withContext(name: string, options?: WaitOptions): Promise<Lock> {
    return this.#acquire(name, 'wait', options?.signal, options?.waitTimeoutMs);
  }

  tryWithContext(name: string, options?: AcquireOptions): Promise<Lock> {
    return this.#acquire(name, 'try', options?.signal);
  }

  forceWithContext(name: string, options?: AcquireOptions): Promise<Lock> {
    return this.#acquire(name, 'force', options?.signal);
  }

  async withLock<T>(
    name: string,
    fn: (signal: AbortSignal, lock: Lock) => T | PromiseLike<T>,
    options?: WaitOptions,
  ): Promise<T> {
    if (typeof fn !== 'function') throw new TypeError('withLock: fn must be a function');
    const lock = await this.withContext(name, options);
    let result: T;
    try {
      result = await fn(lock.signal, lock);
    } catch (error) {
      await lock.release().catch(() => {});
      throw error;
    }
    // The work ran under the lock: an unconfirmed deletion must not turn it into a failure
    // (a caller would retry work that is done). The keys expire by themselves.
    const held = await lock.release().catch(() => true);
    if (!held) {
      // The lock ended before fn did: lost, closed or aborted (its reason says which), or
      // released although Redis had already let it go.
      const reason: unknown = lock.signal.reason;
      throw reason instanceof LockReleasedError ? new LockLostError(name, 'changed') : reason;
    }
    return result;
  }

  close(): Promise<void> {
    this.#closed ??= this.#closeOnce();
    return this.#closed;
  }

  async #closeOnce(): Promise<void> {
    const reason = new LockerClosedError();
    this.#closing.abort(reason);
    // Let aborted waiters queue the deletion of what their in-flight attempts may have taken,
    // so that it goes out before the connection closes.
    await new Promise((resolve) => setImmediate(resolve));
    const cleanups = [...this.#names.values()].flatMap((state) =>
      [...state.locks].map((lock) => lock.end(reason)),
    );
    // One deadline for the deletions and the connection's close together.
    const deadline = performance.now() + this.#options.commandTimeoutMs;
    await settleWithin(Promise.allSettled(cleanups), this.#options.commandTimeoutMs);
    await this.#placement?.close(Math.max(0, deadline - performance.now()));
  }

  async #acquire(
    name: string,
    mode: Mode,
    parent: AbortSignal | undefined,
    waitTimeoutMs?: number,
  ): Promise<Lock> {
    checkName(name);
    this.#placement?.checkName(name);
    if (parent !== undefined && !(parent instanceof AbortSignal)) {
      throw new TypeError('options.signal must be an AbortSignal');
    }
    if (waitTimeoutMs !== undefined) checkDuration('waitTimeoutMs', waitTimeoutMs, 0);
    // Only the sleeps between attempts listen to the timeout: an attempt in flight completes,
    // and the held lock listens to the parent alone.
    const waitTimeout = new AbortController();
    const timer =
      waitTimeoutMs === undefined
        ? undefined
        : setTimeout(
            () => waitTimeout.abort(new NotLockedError(name, waitTimeoutMs)),
            waitTimeoutMs,
          );
    const stop = linkSignals([this.#closing.signal, parent]);
    const stopWaiting = linkSignals([stop.signal, waitTimeout.signal]);
    const state = this.#state(name);
    try {
      stop.signal.throwIfAborted();
      return createHandle(
        mode === 'wait'
          ? await this.#wait(name, state, stop.signal, stopWaiting.signal, parent, waitTimeoutMs)
          : await this.#once(name, mode, stop.signal, parent),
      );
    } finally {
      clearTimeout(timer);
      stop.dispose();
      stopWaiting.dispose();
      this.#forgetIfIdle(name, state);
    }
  }

  /** try / force: one attempt, outside the gate. */
  async #once(
    name: string,
    mode: 'try' | 'force',
    signal: AbortSignal,
    parent: AbortSignal | undefined,
  ) {
    const attempt = await this.#attempt(name, mode === 'force', signal, parent, false);
    if ('lock' in attempt) {
      if (mode === 'force')
        for (const other of this.#names.get(name)?.locks ?? []) {
          // Our own connection's writes are not echoed back (NOLOOP): tell local holders directly.
          if (other !== attempt.lock) other.recheck(null);
        }
      return attempt.lock;
    }
    if ('busy' in attempt) throw new NotLockedError(name);
    throw new UnavailableError(
      `Redis did not complete the attempt to take lock "${name}"`,
      attempt.error,
    );
  }

  /** The waiting loop: attempt, and on failure sleep until an invalidation (or the keys' expiry). */
  async #wait(
    name: string,
    state: NameState,
    signal: AbortSignal,
    waiting: AbortSignal,
    parent: AbortSignal | undefined,
    waitTimeoutMs: number | undefined,
  ) {
    await state.gate.enter(waiting);
    /** Why the last attempt failed, when Redis failed it or did not answer. */
    let failure: { cause: unknown } | undefined;
    const queue = queueKey(this.#options.keyPrefix, name);
    let ticket = this.#options.directHandoff ? this.#tickets.issue(name, queue, parent) : undefined;
    let held: HeldLock | undefined;
    try {
      for (let failures = 0; ; ) {
        const epoch = state.gate.epoch;
        const attempt = await this.#attempt(name, false, signal, parent, true, ticket);
        if ('renewed' in attempt) ticket = attempt.renewed;
        if ('lock' in attempt) {
          held = attempt.lock;
          return held;
        }
        failure = 'error' in attempt ? { cause: attempt.error } : undefined;
        // A waitTimeoutMs that ran out during the attempt ends the wait here, even if
        // invalidations keep waking the loop.
        waiting.throwIfAborted();
        if ('busy' in attempt) {
          failures = 0;
          await state.gate.sleep(epoch, attempt.retryInMs, waiting);
        } else {
          failures++;
          const backoff = this.#options.tryNextAfterMs * 2 ** Math.min(failures - 1, 20);
          await state.gate.sleep(epoch, Math.min(backoff, this.#options.keyValidityMs), waiting);
        }
        if (ticket?.handed) {
          held = ticket.handed;
          return held;
        }
      }
    } catch (error) {
      // A lock handed over meanwhile ends with the wait; ending it leaves the gate.
      if (ticket?.handed) void ticket.handed.end(error);
      else state.gate.leave();
      // Not "held by another owner": nobody may hold it, Redis failed the attempts.
      if (failure && error instanceof NotLockedError && error === waiting.reason) {
        throw new UnavailableError(
          `waitTimeoutMs (${waitTimeoutMs} ms) ran out with Redis failing or not answering the last attempt to take lock "${name}"`,
          failure.cause,
        );
      }
      throw error;
    } finally {
      if (ticket) this.#retireTicket(ticket, held);
    }
  }

  /** The wait is over: unless it got the lock, leave the queue (passing on a late handoff). */
  #retireTicket(ticket: Ticket, held: HeldLock | undefined): void {
    this.#tickets.retire(ticket);
    if (held || ticket.handed) return;
    const keys = keyNames(this.#options.keyPrefix, ticket.name, this.#options.keyCount);
    this.#giveBack(this.#storeFor(ticket.name), keys, ticket.value, ticket.queueKey);
  }

  /**
   * A release handed our ticket the keys (its handoff key's invalidation says so): the waiter
   * holds the lock now, from the send time of the registration the server used, with no
   * round trip of its own.
   */
  #handedOver(value: string): void {
    const ticket = this.#tickets.get(value);
    const state = ticket && this.#names.get(ticket.name);
    if (!ticket || !state) return;
    const { name } = ticket;
    if (ticket.handed || ticket.deaf || ticket.registeredAt === undefined) return;
    if (ticket.parent?.aborted) return;
    // Heard too late (a stalled process): the keys may be about to expire. The next attempt,
    // under the same value, takes them with a fresh expiry; the waiter's exit passes them on.
    const now = performance.now();
    const { keyValidityMs, marginMs } = this.#options;
    if (now >= ticket.registeredAt + keyValidityMs - marginMs) {
      ticket.deaf = true;
      return;
    }
    const keys = keyNames(this.#options.keyPrefix, name, this.#options.keyCount);
    ticket.handed = this.#hold(
      name,
      state,
      keys,
      ticket.value,
      keys.map(() => true),
      {
        sentAt: ticket.registeredAt,
        now,
        parent: ticket.parent,
        gated: true,
        queueKey: ticket.queueKey,
        token: undefined,
      },
    );
    state.gate.wake();
    // The handoff's writes dropped the keys from our tracking table: read them again, once
    // the waiter has been given its lock.
    const handed = ticket.handed;
    setImmediate(() => handed.recheck(null));
  }

  /**
   * Send the acquire scripts for every key in one pipeline. When the caller gives up while they
   * are in flight, delete whatever they may have taken before rejecting: the delete follows them
   * on the same connection, so it runs after them.
   */
  async #attempt(
    name: string,
    force: boolean,
    signal: AbortSignal,
    parent: AbortSignal | undefined,
    gated: boolean,
    ticket?: Ticket,
  ): Promise<Attempt> {
    signal.throwIfAborted();
    const store = this.#storeFor(name);
    const options = this.#options;
    const keys = keyNames(options.keyPrefix, name, options.keyCount);
    const value = ticket?.value ?? randomUUID(); // 122 random bits, from an entropy cache
    const sentAt = performance.now();
    const queue = ticket && {
      queueKey: ticket.queueKey,
      ticketKey: ticketKey(options.keyPrefix, value),
      handoffKey: handoffKey(options.keyPrefix, value),
    };
    if (ticket) ticket.registeredAt ??= sentAt;
    // store.acquire settles every key, so only the signal can make this reject.
    const outcomes = await abortable(signal, store.acquire(keys, value, force, queue)).catch(
      () => undefined,
    );
    if (outcomes === undefined || signal.aborted) {
      // The caller gets its rejection now; the deletion goes out behind the attempt on the
      // same connection (so it runs after it), and settles on its own.
      this.#giveBack(store, keys, value, ticket?.queueKey);
      throw signal.reason;
    }
    if (ticket?.handed) return { lock: ticket.handed };
    // Every key answered: the server ran the script, and this registration is in place.
    if (ticket && outcomes.every((o) => o.status === 'fulfilled')) ticket.registeredAt = sentAt;
    const now = performance.now();
    const owned = outcomes.map((o) => o.status === 'fulfilled' && o.value.value === value);
    const count = owned.filter(Boolean).length;
    // Replies that come back after the keys may have expired are worth nothing.
    const late = now >= sentAt + options.keyValidityMs - options.marginMs;
    if (count >= options.keyMajority && !late) {
      const queueKey = ticket?.queueKey;
      // The largest token drawn where the keys became ours (several servers may draw).
      let token: bigint | undefined;
      for (const [i, outcome] of outcomes.entries()) {
        const drawn = outcome.status === 'fulfilled' && owned[i] ? outcome.value.token : undefined;
        if (drawn !== undefined && (token === undefined || drawn > token)) token = drawn;
      }
      const lock = this.#hold(name, this.#state(name), keys, value, owned, {
        sentAt,
        now,
        parent,
        gated,
        queueKey,
        token,
      });
      this.#adoptLate(lock, outcomes, sentAt);
      return { lock };
    }
    // Give back what the attempt took, and what it may have taken unseen (keys whose reply
    // never came), by value: the delete runs after the attempt on the same connection. (A
    // queued attempt gave back what it took itself, in its script.)
    const unanswered = outcomes.some((o) => o.status !== 'fulfilled');
    if (ticket) {
      if (unanswered) {
        this.#giveBack(store, keys, value, ticket.queueKey);
        return { renewed: this.#tickets.renew(ticket), error: failureOf(outcomes) };
      }
    } else {
      const giveBack = keys.filter((_, i) => owned[i] || outcomes[i]?.status !== 'fulfilled');
      if (giveBack.length > 0) this.#giveBack(store, giveBack, value);
    }
    const taken = outcomes.filter(
      (o) => o.status === 'fulfilled' && o.value.value !== null && o.value.value !== value,
    );
    if (taken.length >= options.keyMajority) {
      return { busy: true, retryInMs: this.#retryInMs(outcomes, owned) };
    }
    if (unanswered) return { error: failureOf(outcomes) };
    if (late) return { error: new Error('the replies came after the keys could have expired') };
    // Neither ours nor anyone's right after our SET: its expiry time had already passed.
    return {
      error: new Error(
        'the keys expired as soon as they were set: is the client clock behind the server by more than keyValidityMs? (fallbackSetPx: true uses relative expiries)',
      ),
    };
  }

  /**
   * With several servers, the majority can be decided before a slow one answers: its keys'
   * outcomes go to the lock when they come.
   */
  #adoptLate(lock: HeldLock, outcomes: readonly Outcome<KeyState>[], sentAt: number): void {
    outcomes.forEach((outcome, i) => {
      if (outcome.status === 'pending')
        void outcome.later.then((late) => lock.takeLate(i, late, sentAt));
    });
  }

  /** Start holding a lock whose keys `owned` are ours since `sentAt`. */
  #hold(
    name: string,
    state: NameState,
    keys: readonly string[],
    value: string,
    owned: readonly boolean[],
    how: {
      sentAt: number;
      now: number;
      parent: AbortSignal | undefined;
      gated: boolean;
      queueKey: string | undefined;
      token: bigint | undefined;
    },
  ): HeldLock {
    const { sentAt, now, parent, gated, queueKey, token } = how;
    const lock = new HeldLock(this.#storeFor(name), this.#options, {
      name,
      keys,
      value,
      owned,
      sentAt,
      now,
      parent,
      queueKey,
      token,
      onEnd: (ended) => this.#ended(name, state, ended, gated),
      onDeleting: (deletion, sent) =>
        void this.#leftovers.track(this.#storeFor(name), deletion, sent),
    });
    state.locks.add(lock);
    return lock;
  }

  /**
   * Delete by value what an attempt or a wait may have taken (leaving the queue, with
   * `queueKey`), and again after a reconnect if a dropped connection failed it.
   */
  #giveBack(store: KeyStore, keys: readonly string[], value: string, queueKey?: string): void {
    const sent = queueKey ? store.release(keys, value, queueKey) : store.delete(keys, value);
    void this.#leftovers.track(store, { keys, value }, sent);
  }

  /** When, at the latest, a majority of the keys will have expired if nobody extends them. */
  #retryInMs(outcomes: readonly Outcome<{ pttlMs: number }>[], owned: boolean[]): number {
    const validity = this.#options.keyValidityMs;
    const expiries = outcomes
      .map((o, i) => {
        if (owned[i] || o.status !== 'fulfilled') return 0;
        const pttl = o.value.pttlMs;
        return pttl === -2 ? 0 : pttl < 0 ? validity : pttl;
      })
      .sort((a, b) => a - b);
    const free = expiries[this.#options.keyMajority - 1] ?? validity;
    return Math.min(validity, free + 1);
  }

  /** The store that holds `name`'s keys. */
  #storeFor(name: string): KeyStore {
    return (this.#placement as Placement).storeFor(name);
  }

  #ended(name: string, state: NameState, lock: HeldLock, gated: boolean): void {
    state.locks.delete(lock);
    // The next local waiter goes at once; our own delete is not echoed back to us (NOLOOP).
    if (gated) state.gate.leave();
    else state.gate.wake();
    this.#forgetIfIdle(name, state);
  }

  #invalidated(key: string | null): void {
    if (key === null) {
      this.#leftovers.retry();
      for (const state of this.#names.values()) this.#notify(state, null);
      return;
    }
    const handoffs = handoffKey(this.#options.keyPrefix, '');
    if (key.startsWith(handoffs)) {
      this.#handedOver(key.slice(handoffs.length));
      return;
    }
    const parsed = parseKey(this.#options.keyPrefix, key);
    const state = parsed && this.#names.get(parsed.name);
    if (parsed && state) this.#notify(state, parsed.index);
  }

  #notify(state: NameState, index: number | null): void {
    state.gate.wake();
    for (const lock of state.locks) lock.recheck(index);
  }

  #state(name: string): NameState {
    let state = this.#names.get(name);
    if (!state) {
      state = { gate: new Gate(), locks: new Set() };
      this.#names.set(name, state);
    }
    return state;
  }

  #forgetIfIdle(name: string, state: NameState): void {
    if (state.gate.idle && state.locks.size === 0 && this.#names.get(name) === state) {
      this.#names.delete(name);
    }
  }
}

/** Why an attempt with keys of unknown outcome failed: a server's error, or no answer yet. */
function failureOf(outcomes: readonly Outcome<unknown>[]): unknown {
  for (const outcome of outcomes) if (outcome.status === 'rejected') return outcome.reason;
  return new Error('no reply yet from a server when the majority was decided');
}
