import { randomUUID } from 'node:crypto';
import { abortable } from 'abort-controller-x';
import { refusedByAcl } from '../redis/connect.js';
import {
  SEMAPHORE_SCRIPTS,
  type Spec,
  sharedArgs,
  type Woken,
} from '../redis/semaphore-scripts.js';
import type { KeyStore } from '../redis/store.js';
import { LimitMismatchError, NotLockedError, UnavailableError } from '../shared/errors.js';
import { type SemaphoreKind, type SemaphoreNames, semaphoreNames } from '../shared/keys.js';
import type { ResolvedOptions } from '../shared/options.js';
import { checkMaxHold } from '../shared/resolve-options.js';
import { listen } from './acquisition.js';
import type { AcquireOptions, WaitOptions } from './api.js';
import { type AcquireTrace, traceAcquire, tracingAcquires } from './diagnostics.js';
import { Gate } from './gate.js';
import { createHandle, type Lock } from './handle.js';
import type { Leftovers } from './leftovers.js';
import { failedAttemptPause, pollFor, sleepFor } from './listening.js';
import { HeldLock, type HoldTerms } from './lock.js';
import { type Permit, permitStore } from './permit-store.js';
import type { Counters } from './stats.js';

/** What the semaphores need of their locker. */
export interface SemaphoreDeps {
  readonly options: ResolvedOptions;
  /** The store of a name's keys. */
  storeFor(name: string): KeyStore;
  /** Aborts when the locker closes. */
  readonly closing: AbortSignal;
  readonly counters: Counters;
  readonly leftovers: Leftovers;
  /** No invalidation comes from some server: waiters poll, holders check. */
  polling(): boolean;
}

/** One call for permits: of which lock, what it takes, and how it may wait. */
export interface PermitRequest {
  readonly kind: SemaphoreKind;
  readonly name: string;
  readonly spec: Spec;
  readonly limit: number | undefined;
  readonly mode: 'wait' | 'try';
  readonly options: (WaitOptions & AcquireOptions) | undefined;
}

/**
 * The semaphores and read-write locks of one locker (docs/semaphores.md): their waiting
 * loop, and which of their keys concern whom, so that the locker's invalidations reach them.
 * A holder is a `HeldLock` over its own key (see `permitStore`); a waiter is queued on the
 * server, listens to its wake key (written when it is the head and fits) and, as the queue's
 * deputy, to the head's ticket, and renews its ticket as the mutex's waiters do.
 */
export class Semaphores {
  readonly #deps: SemaphoreDeps;
  /** The options a holder's `HeldLock` follows: one key, its own. */
  readonly #holding: ResolvedOptions;
  /** Holders by own key. */
  readonly #held = new Map<string, HeldLock>();
  /**
   * Waiters by the keys that concern them: their wake key and the head's ticket they watch
   * (which wake them), and their handoff key (a grant).
   */
  readonly #waking = new Map<string, Listener>();

  constructor(deps: SemaphoreDeps) {
    this.#deps = deps;
    this.#holding = { ...deps.options, keyMajority: 1, keyCount: 1 };
  }

  acquire(request: PermitRequest): Promise<Lock> {
    const { name, mode, options } = request;
    if (!tracingAcquires()) return this.#take(request, undefined);
    const stops = { caller: options?.signal, closing: this.#deps.closing };
    return traceAcquire(name, mode, stops, (trace) => this.#take(request, trace));
  }

  /** Every holder in this locker. */
  locks(): IterableIterator<HeldLock> {
    return this.#held.values();
  }

  /** Whether `key` was one of ours; `null` (anything may have changed) reaches everyone. */
  invalidated(key: string | null): boolean {
    if (key === null) {
      for (const { gate } of this.#waking.values()) gate.wake();
      for (const lock of this.#held.values()) lock.recheck(null);
      return false;
    }
    const lock = this.#held.get(key);
    if (lock) lock.recheck(0);
    const listener = this.#waking.get(key);
    if (listener?.granted) listener.granted();
    else listener?.gate.wake();
    return lock !== undefined || listener !== undefined;
  }

  /** A connection of `store` dropped: its holders' permits may be gone. */
  dropped(store: KeyStore, served: (key: string) => boolean): void {
    for (const [key, lock] of this.#held) {
      if (this.#deps.storeFor(lock.name) === store && served(key)) lock.dropped(served);
    }
  }

  async #take(request: PermitRequest, trace: AcquireTrace | undefined): Promise<Lock> {
    // The name was checked when its Semaphore or ReadWriteLock was made.
    const { kind, name, spec, limit, mode, options } = request;
    const deps = this.#deps;
    const rules = deps.options;
    const terms: HoldTerms = {
      parent: options?.signal,
      maxHoldMs: checkMaxHold(options?.maxHoldMs ?? rules.maxHoldMs),
    };
    const waitTimeoutMs = mode === 'wait' ? options?.waitTimeoutMs : undefined;
    const { signal, waiting, dispose } = listen(deps.closing, name, terms.parent, waitTimeoutMs);
    const names = semaphoreNames(rules.keyPrefix, kind, name);
    const store = deps.storeFor(name);
    const gate = new Gate<never>();
    /** Keys this waiter listens to. */
    const heard = new Set<string>();
    const hear = (key: string, listener: Listener = { gate }) => {
      heard.add(key);
      this.#waking.set(key, listener);
    };
    /**
     * A grant (see `wake_head` in semaphore-scripts.ts): heard while an attempt is in flight, it
     * came before that attempt ran if the attempt found us holding, else after it (one
     * connection: a push and a reply come in the order they were made).
     */
    let inFlight = false;
    let heardGrant = false;
    let granted = false;
    /** The send time of the attempt that last renewed our ticket, whose deadline a grant uses. */
    let registeredAt: number | undefined;
    /** The token our last attempt reserved as the head: a grant's. */
    let reserved: bigint | undefined;
    /** Attempts sent under the current value. */
    let tries = 0;
    const grantListener: Listener = {
      gate,
      granted: () => {
        if (lock) return;
        if (inFlight) heardGrant = true;
        else {
          granted = true;
          gate.wake();
        }
      },
    };
    const listenAs = (value: string) => {
      hear(names.queue.wakes + value);
      hear(names.queue.handoffs + value, grantListener);
    };
    /** Hold what a grant gave, unless it came too late to be safe (the next attempt then takes it). */
    const takeGrant = (): HeldLock | undefined => {
      granted = false;
      if (registeredAt === undefined || reserved === undefined) return undefined;
      if (performance.now() >= registeredAt + rules.keyValidityMs - rules.marginMs)
        return undefined;
      if (trace) trace.contended = true;
      const handed = this.#hold(name, store, permit, terms, reserved, registeredAt);
      // The grant's writes dropped our own key from the tracking table: read it again, so that
      // its loss is pushed to us.
      handed.recheck(null);
      return handed;
    };
    let permit: Permit = {
      names,
      value: randomUUID(),
      spec,
      limit,
      validityMs: rules.keyValidityMs,
    };
    /** An attempt under this value may have queued it (or admitted it): give it back. */
    let queued = false;
    let lock: HeldLock | undefined;
    let failure: { cause: unknown } | undefined;
    if (mode === 'wait') deps.counters.waiting++;
    try {
      signal.throwIfAborted();
      listenAs(permit.value);
      for (let failures = 0, polls = 0, role: string | undefined; ; ) {
        const epoch = gate.epoch;
        if (trace) trace.attempts++;
        const keys = ownKeys(permit);
        const sentAt = performance.now();
        const args = {
          ...sharedArgs(names, permit.value, spec, rules.keyValidityMs, limit),
          lifeMs: String(2 * rules.backstopMs),
          mode,
        };
        const sent = store.script(SEMAPHORE_SCRIPTS.acquire, keys, args, 'acquire');
        queued = true;
        tries++;
        inFlight = true;
        heardGrant = false;
        const reply = await abortable(signal, sent).then(
          (found) => ({ found }),
          (error: unknown) => ({ error }),
        );
        inFlight = false;
        signal.throwIfAborted();
        if ('error' in reply) {
          // Unknown whether it admitted or queued us: give that back, and go on under a new
          // value, so that the give-back cannot take what a later attempt gets.
          failure = { cause: reply.error };
          this.#giveBack(store, permit);
          queued = false;
          for (const key of [names.queue.wakes, names.queue.handoffs]) {
            this.#unhear(heard, key + permit.value, gate);
          }
          permit = { ...permit, value: randomUUID() };
          registeredAt = reserved = undefined;
          tries = 0;
          granted = heardGrant = false;
          listenAs(permit.value);
          if (mode === 'try') {
            throw new UnavailableError(
              `Redis did not complete the attempt to take "${name}"`,
              reply.error,
            );
          }
          if (refusedByAcl(reply.error)) {
            throw new UnavailableError(
              `Redis refused a command of the attempt to take "${name}" for the user's ACL, which retrying cannot change: see the smallest ACL in docs/compatibility.md`,
              reply.error,
            );
          }
          failures++;
          await gate.sleep(epoch, failedAttemptPause(failures, rules), waiting);
          continue;
        }
        failures = 0;
        failure = undefined;
        const found = reply.found;
        // Refused for its limit, or a try refused: the script took nothing, queued nothing.
        if (found.status === 'limit' || (found.status === 'busy' && mode === 'try')) queued = false;
        if (found.status === 'limit') {
          throw new LimitMismatchError(name, limit as number, found.stored);
        }
        // It may have promoted or woken a waiter of ours, whose wake key was not pushed to us.
        this.#woke(names, found.woken);
        if (found.status === 'held') {
          queued = false; // an admission leaves the queue
          lock = this.#hold(name, store, permit, terms, found.token, sentAt);
          return createHandle(lock);
        }
        if (trace) trace.contended = true;
        if (mode === 'try') throw new NotLockedError(name);
        // A waitTimeoutMs that ran out during the attempt ends the wait here.
        waiting.throwIfAborted();
        const { place } = found;
        if (place?.renewed) registeredAt = sentAt;
        reserved = place?.token;
        // A grant heard in flight came after this attempt if the attempt found us queued (a
        // grant drops us) or was the first under this value (nothing could be granted before):
        // judged on this reply's registration. Else it came before, and the attempt, which did
        // not find us holding, re-queued us: that grant is gone (expired, or removed), and this
        // reply's registration is not its; the next attempt, at once, says whether another came.
        if (heardGrant && place?.joined && tries > 1) continue;
        if (heardGrant) granted = true;
        if (granted) {
          lock = takeGrant();
          if (lock) return createHandle(lock);
          // Refused (too late to be safe): the server may hold the permits for us until the
          // ticket's deadline; the next attempt, at once, takes them with a fresh expiry.
          continue;
        }
        polls = place?.role === role ? polls + 1 : 0;
        role = place?.role;
        // The head looks again when the earliest holder would expire (its attempt then
        // removes it), and at least twice a validity to renew its ticket.
        let sleepMs = sleepFor(place, found.earliestMs + rules.tryNextAfterMs, rules);
        if (deps.polling()) sleepMs = Math.min(sleepMs, pollFor(place, polls, rules));
        else if (place?.watching !== undefined) {
          const key = names.queue.tickets + place.watching;
          if (!heard.has(key)) {
            for (const old of heard)
              if (old.startsWith(names.queue.tickets)) this.#unhear(heard, old, gate);
            hear(key);
          }
          store.watch(key).catch(() => {});
        }
        await gate.sleep(epoch, sleepMs, waiting);
        if (granted) lock = takeGrant();
        if (lock) return createHandle(lock);
      }
    } catch (error) {
      if (failure && error instanceof NotLockedError && error === waiting.reason) {
        throw new UnavailableError(
          `waitTimeoutMs (${waitTimeoutMs} ms) ran out with Redis failing or not answering the last attempt to take "${name}"`,
          failure.cause,
        );
      }
      throw error;
    } finally {
      if (mode === 'wait') deps.counters.waiting--;
      for (const key of heard) this.#unhear(heard, key, gate);
      // Given up (or refused): leave the queue, and let go of what an attempt in flight may
      // have taken; it goes out behind that attempt on the same connection.
      if (!lock && queued) this.#giveBack(store, permit);
      dispose();
    }
  }

  /**
   * Our own scripts' writes are not pushed back to us (NOLOOP): wake the waiters of this
   * locker whose wake keys a script of ours wrote (it says which: `Woken`).
   */
  #woke(names: SemaphoreNames, woken: Woken): void {
    for (const one of woken) {
      if (one.startsWith('+')) this.#waking.get(names.queue.handoffs + one.slice(1))?.granted?.();
      else this.#waking.get(names.queue.wakes + one)?.gate.wake();
    }
  }

  #unhear(heard: Set<string>, key: string, gate: Gate<never>): void {
    heard.delete(key);
    if (this.#waking.get(key)?.gate === gate) this.#waking.delete(key);
  }

  /** Hold the permits an acquisition sent at `sentAt` was admitted to. */
  #hold(
    name: string,
    store: KeyStore,
    permit: Permit,
    terms: HoldTerms,
    token: bigint,
    sentAt: number,
  ): HeldLock {
    const deps = this.#deps;
    const own = permit.names.owns + permit.value;
    const held = permitStore(store, permit, (woken) => this.#woke(permit.names, woken));
    const lock = new HeldLock(held, this.#holding, {
      name,
      keys: [own],
      value: permit.value,
      owned: [true],
      sentAt,
      now: performance.now(),
      queue: undefined,
      token,
      terms,
      counters: deps.counters,
      pollMs: deps.polling() ? deps.options.checkIntervalMs : undefined,
      onEnd: (ended) => {
        if (this.#held.get(own) === ended) this.#held.delete(own);
      },
      onDeleting: (deletion, sent) => void deps.leftovers.track(held, deletion, sent),
    });
    // A lock whose parent had already aborted ended in its constructor.
    if (!lock.signal.aborted) this.#held.set(own, lock);
    return lock;
  }

  /** Leave the queue and let go of whatever an attempt under `permit` may hold. */
  #giveBack(store: KeyStore, permit: Permit): void {
    const held = permitStore(store, permit, (woken) => this.#woke(permit.names, woken));
    const deletion = { keys: [permit.names.owns + permit.value], value: permit.value };
    const sent = held.release(deletion.keys, deletion.value);
    void this.#deps.leftovers.track(held, deletion, sent);
  }
}

/** A waiter as the keys that concern it see it: woken, or (its handoff key) granted. */
interface Listener {
  readonly gate: Gate<never>;
  readonly granted?: () => void;
}

/** A permit's own key and its waiter's ticket and wake keys. */
function ownKeys(permit: Permit) {
  const { names, value } = permit;
  return {
    own: names.owns + value,
    ticket: names.queue.tickets + value,
    wake: names.queue.wakes + value,
    handoff: names.queue.handoffs + value,
  };
}
