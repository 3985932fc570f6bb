import { Gate } from './gate.js';
import type { HeldLock } from './lock.js';

/** The locks and waiters of one name in this process. */
export interface NameState {
  readonly gate: Gate<HeldLock>;
  readonly locks: Set<HeldLock>;
  /**
   * The active waiter listens to the lock's keys (it is the queue's head, or there is no
   * queue): a change of a key wakes it. A waiter further back is woken by its own keys only.
   */
  listening: boolean;
  /** Locks passed between this process's waiters in a row (see `localHandoffs`). */
  passes: number;
  /** A lock of this name is being passed to the next local waiter: it keeps the gate. */
  passing: boolean;
}

/** The names a locker has locks or waiters for: a name is forgotten once nothing uses it. */
export class Names {
  readonly #byName = new Map<string, NameState>();

  /** The name's state, created on first use. */
  state(name: string): NameState {
    let state = this.#byName.get(name);
    if (!state) {
      state = { gate: new Gate(), locks: new Set(), listening: true, passes: 0, passing: false };
      this.#byName.set(name, state);
    }
    return state;
  }

  get(name: string): NameState | undefined {
    return this.#byName.get(name);
  }

  /** A connection dropped: tell the locks of the names it served (`on`) which keys it served. */
  dropped(on: (name: string) => boolean, served: (key: string) => boolean): void {
    for (const [name, state] of this.#byName) {
      if (!on(name)) continue;
      for (const lock of state.locks) lock.dropped(served);
    }
  }

  /** Every lock held in this process. */
  *locks(): Generator<HeldLock> {
    for (const state of this.#byName.values()) yield* state.locks;
  }

  forgetIfIdle(name: string, state: NameState): void {
    const idle = state.gate.idle && state.locks.size === 0 && !state.passing;
    if (idle && this.#byName.get(name) === state) {
      this.#byName.delete(name);
    }
  }

  /**
   * The lock ended. The next local waiter goes at once (the lock kept the gate if it was
   * `gated`, taken by waiting, unless it is being passed on); our own delete is not echoed back
   * to us (NOLOOP).
   */
  ended(name: string, state: NameState, lock: HeldLock, gated: boolean): void {
    state.locks.delete(lock);
    if (gated) {
      if (!state.passing) state.gate.leave();
    } else state.gate.wake();
    this.forgetIfIdle(name, state);
  }

  /**
   * Key `index` of the name changed (`null`: any may have, and a waiter that does not listen
   * wakes too): wake the waiter, recheck the locks.
   */
  #notify(state: NameState, index: number | null): void {
    if (state.listening || index === null) state.gate.wake();
    for (const lock of state.locks) lock.recheck(index);
  }

  /** A lock key changed (`parsed` from its name): notify its name, if this process uses it. */
  keyChanged(parsed: { readonly name: string; readonly index: number } | undefined): void {
    const state = parsed && this.#byName.get(parsed.name);
    if (parsed && state) this.#notify(state, parsed.index);
  }

  /** Any key may have changed (the connection was lost): wake every waiter, recheck every lock. */
  notifyAll(): void {
    for (const state of this.#byName.values()) this.#notify(state, null);
  }
}
