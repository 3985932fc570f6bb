import { randomUUID } from 'node:crypto';
import { abortable } from 'abort-controller-x';
import { refusedByAcl } from '../redis/connect.js';
import type {
  KeyState,
  KeyStore,
  Outcome,
  Placement,
  QueueKeys,
  QueueState,
  Settled,
  Turn,
} from '../redis/store.js';
import { connectPlacement } from '../redis/topology.js';
import { LockerClosedError, NotLockedError, UnavailableError } from '../shared/errors.js';
import {
  besideQueueNames,
  checkName,
  keyNames,
  lockKey,
  parseKey,
  queueNames,
} from '../shared/keys.js';
import type { ResolvedOptions } from '../shared/options.js';
import { checkMaxHold } from '../shared/resolve-options.js';
import { settleWithin } from '../shared/timing.js';
import { listen } from './acquisition.js';
import type { AcquireOptions, Locker, WaitOptions } from './api.js';
import { failureError, judge, type Mode } from './attempt.js';
import {
  type AcquireTrace,
  publishInvalidation,
  publishServer,
  traceAcquire,
  tracingAcquires,
} from './diagnostics.js';
import { createHandle, type Lock } from './handle.js';
import { Leftovers } from './leftovers.js';
import { failedAttemptPause, listensToKeys, placeIn, pollFor, sleepFor } from './listening.js';
import { passes, passOn } from './local-handoff.js';
import { HeldLock, type HoldTerms, type LockTaken } from './lock.js';
import { type NameState, Names } from './names.js';
import {
  createReadWriteLock,
  createSemaphore,
  type ReadWriteLock,
  type Semaphore,
} from './semaphore.js';
import { type PermitRequest, Semaphores } from './semaphores.js';
import { Counters, type LockerStats } from './stats.js';
import { type Ticket, Tickets } from './tickets.js';
import { withLock } from './with-lock.js';

/** What one acquire attempt came to. */
type Attempt =
  | { readonly lock: HeldLock }
  | { readonly busy: true; readonly retryInMs: number; readonly place?: QueueState | undefined }
  | {
      readonly error: unknown;
      readonly renewed?: Ticket;
      /**
       * The servers' ACLs refused enough keys' scripts that no retry can reach a majority: one
       * of those refusals.
       */
      readonly refused?: unknown;
    };

export class RedisLocker implements Locker {
  readonly #options: ResolvedOptions;
  #placement: Placement | undefined;
  readonly #names = new Names();
  /** Deletions (of ended locks, of attempts) a dropped connection failed: sent again on reconnect. */
  readonly #leftovers: Leftovers;
  /** The queued waiters of this locker. */
  readonly #tickets = new Tickets();
  /**
   * The lock's keys are on several servers (nodes, cluster, groups): the queue, on key 0's
   * server, orders who listens and tries, and hands nothing over (see `Turn`).
   */
  readonly #spread: boolean;
  /** No invalidation comes from some server (see `tracking`): waiters poll, holders check. */
  #polling: boolean;
  /** Aborts (with LockerClosedError) when close() starts: every waiter listens to it. */
  readonly #closing = new AbortController();
  #closed: Promise<void> | undefined;
  /** What `stats()` reports. */
  readonly #counters = new Counters();
  /** The semaphores' and read-write locks' holders and waiters. */
  readonly #semaphores: Semaphores;

  constructor(options: ResolvedOptions) {
    this.#options = options;
    this.#leftovers = new Leftovers(options.keyValidityMs);
    this.#spread = options.topology.kind !== 'server';
    this.#polling = options.tracking === 'off';
    this.#semaphores = new Semaphores({
      options,
      storeFor: (name) => this.#storeFor(name),
      closing: this.#closing.signal,
      counters: this.#counters,
      leftovers: this.#leftovers,
      polling: () => this.#polling,
    });
  }

  get mode(): 'push' | 'poll' {
    return this.#polling ? 'poll' : 'push';
  }

  async connect(): Promise<void> {
    this.#placement = await connectPlacement(this.#options, {
      invalidated: (key) => this.#invalidated(key),
      dropped: (store, served) => {
        this.#names.dropped((name) => this.#storeFor(name) === store, served);
        this.#semaphores.dropped(store, served);
        this.#queueDropped(store, served);
      },
      polling: (reason) => {
        // Once per locker, however many of its servers refuse pushes.
        if (!this.#polling) process.emitWarning(reason, { code: 'TRACKLOCK_POLLING' });
        this.#polling = true;
      },
      serving: (address, mode, reconnect) => {
        this.#counters.servers.set(address, mode);
        publishServer(address, mode, reconnect);
      },
      retired: (address) => this.#counters.servers.delete(address),
      calls: this.#counters.calls,
    });
  }

  stats(): LockerStats {
    let held = 0;
    for (const _ of this.#names.locks()) held++;
    for (const _ of this.#semaphores.locks()) held++;
    return this.#counters.snapshot(held);
  }

  withContext(name: string, options?: WaitOptions): Promise<Lock> {
    return this.#acquire(name, 'wait', options, options?.waitTimeoutMs);
  }

  tryWithContext(name: string, options?: AcquireOptions): Promise<Lock> {
    return this.#acquire(name, 'try', options);
  }

  forceWithContext(name: string, options?: AcquireOptions): Promise<Lock> {
    return this.#acquire(name, 'force', options);
  }

  withLock<T>(
    name: string,
    fn: (signal: AbortSignal, lock: Lock) => T | PromiseLike<T>,
    options?: WaitOptions,
  ): Promise<T> {
    return withLock(this, name, fn, options);
  }

  semaphore(name: string, options: { readonly limit: number }): Semaphore {
    this.#permitsServed();
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('locker.semaphore(name, { limit }): options with a limit are required');
    }
    return createSemaphore((request) => this.#permits(request), name, options.limit);
  }

  readWriteLock(name: string): ReadWriteLock {
    this.#permitsServed();
    return createReadWriteLock((request) => this.#permits(request), name);
  }

  /** Semaphores need every holder counted in one place: one server, or a cluster's one slot. */
  #permitsServed(): void {
    const { kind } = this.#options.topology;
    if (kind === 'nodes' || kind === 'groups') {
      throw new TypeError(
        `semaphores and read-write locks need one server, sentinel or cluster, not ${kind}: a majority of independent nodes cannot count N holders (docs/semaphores.md)`,
      );
    }
  }

  #permits(request: PermitRequest): Promise<Lock> {
    return this.#semaphores.acquire(request);
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
    const locks = [...this.#names.locks(), ...this.#semaphores.locks()];
    const cleanups = locks.map((lock) => lock.end(reason, 'own'));
    // One deadline for the deletions and the connection's close together.
    const deadline = performance.now() + this.#options.commandTimeoutMs;
    await settleWithin(Promise.allSettled(cleanups), this.#options.commandTimeoutMs);
    await this.#placement?.close(Math.max(0, deadline - performance.now()));
  }

  #acquire(
    name: string,
    mode: Mode,
    options: AcquireOptions | undefined,
    waitTimeoutMs?: number,
  ): Promise<Lock> {
    // Unsubscribed, nothing is built for the channel: not even the closure.
    if (!tracingAcquires()) return this.#take(name, mode, options, waitTimeoutMs, undefined);
    const stops = { caller: options?.signal, closing: this.#closing.signal };
    return traceAcquire(name, mode, stops, (trace) =>
      this.#take(name, mode, options, waitTimeoutMs, trace),
    );
  }

  async #take(
    name: string,
    mode: Mode,
    options: AcquireOptions | undefined,
    waitTimeoutMs: number | undefined,
    trace: AcquireTrace | undefined,
  ): Promise<Lock> {
    checkName(name);
    this.#placement?.checkName(name);
    const parent = options?.signal;
    const terms: HoldTerms = {
      parent,
      maxHoldMs: checkMaxHold(options?.maxHoldMs ?? this.#options.maxHoldMs),
    };
    const { signal, waiting, dispose } = listen(this.#closing.signal, name, parent, waitTimeoutMs);
    const state = this.#names.state(name);
    if (mode === 'wait') this.#counters.waiting++;
    try {
      signal.throwIfAborted();
      return createHandle(
        mode === 'wait'
          ? await this.#wait(name, state, signal, waiting, terms, waitTimeoutMs, trace)
          : await this.#once(name, mode, signal, terms, trace),
      );
    } finally {
      if (mode === 'wait') this.#counters.waiting--;
      dispose();
      this.#names.forgetIfIdle(name, state);
    }
  }

  /** try / force: one attempt, outside the gate. */
  async #once(
    name: string,
    mode: 'try' | 'force',
    signal: AbortSignal,
    terms: HoldTerms,
    trace: AcquireTrace | undefined,
  ) {
    const attempt = await this.#attempt({ name, mode, signal, terms, trace });
    if ('lock' in attempt) {
      if (mode === 'force')
        for (const other of this.#names.get(name)?.locks ?? []) {
          // Our own connection's writes are not echoed back (NOLOOP): tell local holders directly.
          if (other !== attempt.lock) other.recheck(null);
        }
      return attempt.lock;
    }
    if ('busy' in attempt) {
      if (trace) trace.contended = true;
      throw new NotLockedError(name);
    }
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
    terms: HoldTerms,
    waitTimeoutMs: number | undefined,
    trace: AcquireTrace | undefined,
  ) {
    // A lock passed on by a local holder comes with the turn.
    const passed = await state.gate.enter(waiting, terms);
    if (passed) {
      if (trace) trace.contended = true; // it waited for a holder of this locker
      return passed;
    }
    state.passes = 0;
    /** Why the last attempt failed, when Redis failed it or did not answer. */
    let failure: { cause: unknown } | undefined;
    let ticket = this.#options.queue
      ? this.#tickets.issue(name, this.#queueOf(name), terms)
      : undefined;
    let held: HeldLock | undefined;
    /** Attempts in a row that found the lock busy with the waiter in one place (polling). */
    let polls = 0;
    let role: string | undefined;
    try {
      for (let failures = 0; ; ) {
        const epoch = state.gate.epoch;
        // Whatever its place was, the attempt may make it the head, reading the keys: a change
        // of theirs while it is in flight must wake it.
        state.listening = true;
        const attempt = await this.#attempt({ name, mode: 'wait', signal, terms, ticket, trace });
        if ('renewed' in attempt) ticket = attempt.renewed;
        if ('lock' in attempt) {
          held = attempt.lock;
          // Handed over (heard during the attempt): a holder had it.
          if (trace && held === ticket?.handed) trace.contended = true;
          return held;
        }
        failure = 'error' in attempt ? { cause: attempt.error } : undefined;
        if ('refused' in attempt && attempt.refused !== undefined) {
          throw new UnavailableError(
            `Redis refused a command of the attempt to take lock "${name}" for the user's ACL, which retrying cannot change: see the smallest ACL in docs/compatibility.md`,
            attempt.refused,
          );
        }
        // A waitTimeoutMs that ran out during the attempt ends the wait here, even if
        // invalidations keep waking the loop.
        waiting.throwIfAborted();
        if ('busy' in attempt) {
          if (trace) trace.contended = true;
          failures = 0;
          const now = attempt.place?.role ?? 'racing';
          polls = now === role ? polls + 1 : 0;
          role = now;
          const sleepMs = this.#listen(state, ticket, attempt, polls);
          await state.gate.sleep(epoch, sleepMs, waiting);
        } else {
          failures++;
          await state.gate.sleep(epoch, failedAttemptPause(failures, this.#options), waiting);
        }
        if (ticket?.handed) {
          if (trace) trace.contended = true;
          held = ticket.handed;
          return held;
        }
      }
    } catch (error) {
      // A lock handed over meanwhile ends with the wait; ending it leaves the gate.
      if (ticket?.handed) {
        const byCaller = terms.parent?.aborted && error === terms.parent.reason;
        void ticket.handed.end(error, byCaller ? 'parent' : 'own');
      } else state.gate.leave();
      // Not "held by another owner": nobody may hold it, Redis failed the attempts.
      if (failure && error instanceof NotLockedError && error === waiting.reason) {
        throw new UnavailableError(
          `waitTimeoutMs (${waitTimeoutMs} ms) ran out with Redis failing or not answering the last attempt to take lock "${name}"`,
          failure.cause,
        );
      }
      throw error;
    } finally {
      state.listening = true;
      if (ticket) this.#retireTicket(ticket, held);
    }
  }

  /**
   * What the active waiter listens to until its next attempt, by its place in the queue (see
   * `sleepFor`): the head (or, without a queue, every waiter) to the keys; the deputy to the
   * head's ticket; the others only to their wake key. Returns how long it sleeps at most: when
   * polling, no longer than its next poll (see `pollFor`; `polls`: its busy attempts so far).
   */
  #listen(
    state: NameState,
    ticket: Ticket | undefined,
    busy: { readonly retryInMs: number; readonly place?: QueueState | undefined },
    polls: number,
  ): number {
    const { place } = busy;
    state.listening = listensToKeys(place);
    if (ticket) this.#tickets.watch(ticket, place?.watching);
    const sleepMs = sleepFor(place, busy.retryInMs, this.#options);
    if (this.#polling) return Math.min(sleepMs, pollFor(place, polls, this.#options));
    if (ticket && place?.watching) {
      // Redis pushes only what was read outside a script, or declared in one: read it here.
      const store = this.#storeFor(ticket.name);
      const key0 = lockKey(this.#options.keyPrefix, 0, ticket.name);
      store.watch(ticket.queue.tickets + place.watching, key0).catch(() => {});
    }
    return sleepMs;
  }

  /**
   * The wait is over: unless it got the lock, leave the queue (passing on a late handoff).
   * Where the keys are on several servers, a waiter the queue holds leaves it once it holds the
   * lock too, off the critical path: the script that tried key 0 could not see the majority.
   * (One that raced may have been queued by a reply it did not wait for.)
   */
  #retireTicket(ticket: Ticket, held: HeldLock | undefined): void {
    this.#tickets.retire(ticket);
    const keys = keyNames(this.#options.keyPrefix, ticket.name, this.#options.keyCount);
    const store = this.#storeFor(ticket.name);
    if (held && this.#spread && (ticket.queued || ticket.turn === 'race')) {
      store.leave(keys, ticket.value, ticket.queue).catch(() => {});
    }
    if (held || ticket.handed) return;
    this.#giveBack(store, keys, ticket.value, ticket.queue);
  }

  /**
   * A connection dropped: waiters whose queue was on it (key 0's server) race until it is back,
   * at once (their place there is unknown: a waiter asleep would not hear of its turn).
   */
  #queueDropped(store: KeyStore, served: (key: string) => boolean): void {
    if (!this.#spread) return;
    for (const ticket of this.#tickets.all()) {
      const key0 = lockKey(this.#options.keyPrefix, 0, ticket.name);
      if (this.#storeFor(ticket.name) !== store || !served(key0)) continue;
      ticket.turn = 'race';
      this.#wake(ticket);
    }
  }

  /**
   * Where the keys are on several servers, what the waiter's next attempt asks (see `Turn`),
   * from the queue's reply (`first`, key 0's outcome, and the place it gives): race while that
   * server fails; else the head, or a waiter not queued, tries every key, and the others only
   * keep their place. A late reply of a waiter that raced puts it back in line.
   */
  #follow(ticket: Ticket, first: Outcome<KeyState>, place: QueueState | undefined): void {
    if (first.status === 'rejected') {
      ticket.turn = 'race';
      return;
    }
    if (first.status === 'pending') {
      void first.later.then((late: Settled<KeyState>) => {
        if (ticket.turn === 'race' && late.status === 'fulfilled' && late.value.queue)
          this.#follow(ticket, late, late.value.queue);
      });
      return;
    }
    if (place) ticket.queued = true;
    ticket.turn = place === undefined || place.role === 'head' ? 'all' : 'queue';
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
    if (ticket.inFlight) {
      ticket.heard = true; // see #attempt
      return;
    }
    if (ticket.handed || ticket.deaf || ticket.registeredAt === undefined) return;
    if (ticket.terms.parent?.aborted) return;
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
      {
        name,
        keys,
        value: ticket.value,
        owned: keys.map(() => true),
        sentAt: ticket.registeredAt,
        now,
        terms: ticket.terms,
        token: ticket.reserved,
      },
      'wait',
    );
    state.gate.wake();
    // The handoff's writes dropped the keys from our tracking table: read them again (in one
    // request, once the waiter has been given its lock).
    ticket.handed.recheck(null);
  }

  /**
   * Send the acquire scripts for every key in one pipeline. When the caller gives up while they
   * are in flight, delete whatever they may have taken before rejecting: the delete follows them
   * on the same connection, so it runs after them.
   */
  async #attempt(how: {
    name: string;
    mode: Mode;
    signal: AbortSignal;
    terms: HoldTerms;
    ticket?: Ticket | undefined;
    trace?: AcquireTrace | undefined;
  }): Promise<Attempt> {
    const { name, mode, signal, terms, ticket } = how;
    signal.throwIfAborted();
    if (how.trace) how.trace.attempts++;
    const store = this.#storeFor(name);
    const options = this.#options;
    const keys = keyNames(options.keyPrefix, name, options.keyCount);
    const value = ticket?.value ?? randomUUID(); // 122 random bits, from an entropy cache
    const sentAt = performance.now();
    const turn: Turn | undefined = ticket && this.#spread ? ticket.turn : undefined;
    // store.acquire settles every key, so only the signal can make this reject.
    const take = mode === 'force' ? 'force' : 'free';
    const sent = store.acquire(keys, value, take, ticket?.queue, turn);
    if (ticket) {
      ticket.inFlight = true;
      ticket.tries++;
    }
    const outcomes = await abortable(signal, sent).catch(() => undefined);
    const heard = ticket?.heard === true;
    if (ticket) ticket.inFlight = ticket.heard = false;
    if (outcomes === undefined || signal.aborted) {
      // The caller gets its rejection now; the deletion goes out behind the attempt on the
      // same connection (so it runs after it), and settles on its own.
      this.#giveBack(store, keys, value, ticket?.queue);
      throw signal.reason;
    }
    const place = placeIn(outcomes);
    if (ticket && turn) {
      this.#follow(ticket, outcomes[0] as Outcome<KeyState>, place);
      // In line, the attempt touched no key: nothing to judge or give back. Go at once when it
      // found the waiter the head, or the queue's server failing.
      if (turn === 'queue') {
        const now = ticket.turn !== 'queue';
        const retryInMs = now ? 0 : options.keyValidityMs;
        return { busy: true, retryInMs, place: ticket.turn === 'race' ? undefined : place };
      }
    }
    // A handoff heard while this attempt was in flight came after it on the server if the
    // attempt found the waiter still queued (a handoff drops it), or if it was the first
    // attempt under this value (nothing could be handed to it before): judged on what this
    // reply says; else (or when the attempt took the keys) on what was known before it.
    const later = heard && place !== undefined && (!place.joined || ticket?.tries === 1);
    if (ticket && heard && !later) this.#handedOver(ticket.value);
    // The server renewed the ticket's deadline after this send time: a handoff is safe until
    // this send time plus a validity.
    if (ticket && !ticket.handed && place?.renewed) ticket.registeredAt = sentAt;
    if (ticket && !ticket.handed && place) ticket.reserved = place.token;
    if (ticket && later) this.#handedOver(ticket.value);
    if (ticket?.handed) return { lock: ticket.handed };
    const now = performance.now();
    const inLine = place !== undefined && place.role !== 'head';
    // Where the keys are on several servers, the script gave back nothing: the judge does.
    const queued = ticket !== undefined && !this.#spread;
    const verdict = judge({ outcomes, value, sentAt, now, queued, inLine }, options);
    if (verdict.kind === 'held') {
      const taken = { name, keys, value, sentAt, now, terms, queue: ticket?.queue };
      const lock = this.#hold({ ...taken, owned: verdict.owned, token: verdict.token }, mode);
      this.#adoptLate(lock, outcomes, sentAt);
      return { lock };
    }
    const { giveBack } = verdict;
    const back = giveBack.keys.map((i) => keys[i] as string);
    const leave = giveBack.leaveQueue ? ticket?.queue : undefined;
    if (back.length > 0) this.#giveBack(store, back, value, leave);
    if (verdict.kind === 'busy') {
      const known = ticket?.turn === 'race' ? undefined : place;
      return { busy: true, retryInMs: verdict.retryInMs, place: known };
    }
    const error = failureError(verdict.failure);
    const refusals = outcomes.flatMap((outcome) =>
      outcome.status === 'rejected' && refusedByAcl(outcome.reason) ? [outcome.reason] : [],
    );
    const refused =
      options.keyCount - refusals.length < options.keyMajority ? refusals[0] : undefined;
    // A handoff to the old value may be undone by the give-back: go on under a new one.
    if (ticket && giveBack.leaveQueue) {
      return { renewed: this.#tickets.renew(ticket), error, refused };
    }
    return { error, refused };
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

  /**
   * Start holding a lock whose keys `owned` are ours since `sentAt`; one taken by waiting
   * (`mode` 'wait') keeps its name's gate until it ends.
   */
  #hold(init: LockTaken, mode: Mode): HeldLock {
    const { name } = init;
    const state = this.#names.state(name);
    const gated = mode === 'wait';
    const queue = this.#options.queue ? this.#queueOf(name) : undefined;
    const lock = new HeldLock(this.#storeFor(name), this.#options, {
      ...init,
      counters: this.#counters,
      queue,
      // Fixed when taken: a server that starts refusing pushes later does so at a reconnect,
      // whose drop has already ended every lock that needed its keys.
      pollMs: this.#polling ? this.#options.checkIntervalMs : undefined,
      onEnd: (ended) => this.#names.ended(name, state, ended, gated),
      onDeleting: (deletion, sent) =>
        void this.#leftovers.track(this.#storeFor(name), deletion, sent),
      letGo: (reason) => {
        if (!passes(state, reason, gated, this.#options.localHandoffs)) return undefined;
        const sent = passOn(state, init, {
          store: this.#storeFor(name),
          rules: this.#options,
          hold: (passed) => this.#hold(passed, 'wait'),
          giveBack: (keys, value) => this.#giveBack(this.#storeFor(name), keys, value, queue),
          adoptLate: (passed, outcomes, sentAt) => this.#adoptLate(passed, outcomes, sentAt),
        });
        void sent.then(() => this.#names.forgetIfIdle(name, state));
        return sent;
      },
    });
    state.locks.add(lock);
    return lock;
  }

  /** The queue of `name`'s waiters: beside key 0 where the keys are on several servers. */
  #queueOf(name: string): QueueKeys {
    const prefix = this.#options.keyPrefix;
    return this.#spread ? besideQueueNames(lockKey(prefix, 0, name)) : queueNames(prefix, name);
  }

  /**
   * Delete by value what an attempt or a wait may have taken (leaving the queue, with
   * `queue`), and again after a reconnect if a dropped connection failed it.
   */
  #giveBack(store: KeyStore, keys: readonly string[], value: string, queue?: QueueKeys): void {
    const sent = queue ? store.release(keys, value, queue) : store.delete(keys, value);
    void this.#leftovers.track(store, { keys, value }, sent);
  }

  /** The store that holds `name`'s keys. */
  #storeFor(name: string): KeyStore {
    return (this.#placement as Placement).storeFor(name);
  }

  #invalidated(key: string | null): void {
    publishInvalidation(key);
    if (this.#semaphores.invalidated(key)) {
      this.#counters.invalidations++;
      return;
    }
    if (key === null) {
      this.#leftovers.retry();
      // A server came back (or was flushed): waiters that raced queue again.
      for (const ticket of this.#tickets.all()) if (ticket.turn === 'race') ticket.turn = 'all';
      this.#names.notifyAll();
      return;
    }
    this.#counters.invalidations++;
    const heard = this.#tickets.heard(key);
    if (heard?.kind === 'handoff') this.#handedOver(heard.ticket.value);
    else if (heard) this.#wake(heard.ticket);
    else this.#names.keyChanged(parseKey(this.#options.keyPrefix, key));
  }

  /** A queued waiter's turn came (its wake key), or the head it watches changed its ticket. */
  #wake(ticket: Ticket | undefined): void {
    if (ticket) this.#names.get(ticket.name)?.gate.wake();
  }
}
