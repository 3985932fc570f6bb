import { execute } from 'abort-controller-x';
import type { HoldTerms } from './lock.js';

/** A waiter queued at the gate: what a lock passed to it is made for, and its turn. */
interface Turn<T> {
  readonly terms: HoldTerms;
  readonly resolve: (gift: T | undefined) => void;
}

/**
 * The waiters of one lock name in this process. Only one of them (the active one) talks to
 * Redis at a time; it keeps the gate while it holds the lock, and hands it to the next waiter
 * in arrival order when it is done, with the lock itself when it could pass it on. So one
 * invalidation wakes one local waiter, not a herd.
 */
export class Gate<T> {
  #active = false;
  readonly #queue = new Set<Turn<T>>();
  /** Counts wake-ups, so a waiter can tell whether one came while its attempt was in flight. */
  #epoch = 0;
  readonly #sleepers = new Set<() => void>();

  get epoch(): number {
    return this.#epoch;
  }

  /** No active waiter and nobody queued: the gate can be forgotten. */
  get idle(): boolean {
    return !this.#active && this.#queue.size === 0;
  }

  /** Waiters queued behind the active one. */
  get waiting(): boolean {
    return this.#queue.size > 0;
  }

  /**
   * Resolves when the caller becomes the active waiter, with the lock when one was passed to
   * it (see `pass`); rejects with the signal's reason. `terms` is what a passed lock is made
   * for.
   */
  enter(signal: AbortSignal, terms: HoldTerms): Promise<T | undefined> {
    if (!this.#active) {
      signal.throwIfAborted();
      this.#active = true;
      return Promise.resolve(undefined);
    }
    return execute(signal, (resolve) => {
      const turn: Turn<T> = {
        terms,
        resolve: (gift) => {
          this.#queue.delete(turn);
          resolve(gift);
        },
      };
      this.#queue.add(turn);
      return () => {
        this.#queue.delete(turn);
      };
    });
  }

  /** The active waiter is done (it gave up, or released the lock it got): pass the turn on. */
  leave(): void {
    const next = this.#queue.values().next();
    if (next.done) this.#active = false;
    else next.value.resolve(undefined);
  }

  /**
   * Pass the turn to the next waiter with a lock made for it by `make` (on its terms);
   * `undefined` when nobody waits any more (the gate is then left).
   */
  pass(make: (terms: HoldTerms) => T): T | undefined {
    const next = this.#queue.values().next();
    if (next.done) {
      this.#active = false;
      return undefined;
    }
    const gift = make(next.value.terms);
    next.value.resolve(gift);
    return gift;
  }

  /** A key of this name changed: the active waiter should try again now. */
  wake(): void {
    this.#epoch++;
    for (const sleeper of this.#sleepers) sleeper();
  }

  /**
   * Sleep until a wake-up later than `sinceEpoch` (at once if one already came), or `ms`
   * pass; rejects with the signal's reason.
   */
  sleep(sinceEpoch: number, ms: number, signal: AbortSignal): Promise<void> {
    if (this.#epoch !== sinceEpoch) return Promise.resolve();
    return execute(signal, (resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#sleepers.add(done);
      return () => {
        clearTimeout(timer);
        this.#sleepers.delete(done);
      };
    });
  }
}
