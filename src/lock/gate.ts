import { execute } from 'abort-controller-x';

/**
 * The waiters of one lock name in this process. Only one of them (the active one) talks to
 * Redis at a time; it keeps the gate while it holds the lock, and hands it to the next waiter
 * in arrival order when it is done. So one invalidation wakes one local waiter, not a herd,
 * and a lock passes between local waiters without waiting for Redis to say anything.
 */
export class Gate {
  #active = false;
  readonly #queue = new Set<() => void>();
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

  /** Resolves when the caller becomes the active waiter; rejects with the signal's reason. */
  enter(signal: AbortSignal): Promise<void> {
    if (!this.#active) {
      signal.throwIfAborted();
      this.#active = true;
      return Promise.resolve();
    }
    return execute(signal, (resolve) => {
      const turn = () => {
        this.#queue.delete(turn);
        resolve();
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
    else next.value();
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
