import { Gate } from './gate.js';
import type { HeldLock } from './lock.js';

/** The locks and waiters of one name in this process. */
export interface NameState {
  readonly gate: Gate;
  readonly locks: Set<HeldLock>;
}

/** The names a locker has locks or waiters for: a name is forgotten once nothing uses it. */
export class Names {
  readonly #byName = new Map<string, NameState>();

  /** The name's state, created on first use. */
  state(name: string): NameState {
    let state = this.#byName.get(name);
    if (!state) {
      state = { gate: new Gate(), locks: new Set() };
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
    if (state.gate.idle && state.locks.size === 0 && this.#byName.get(name) === state) {
      this.#byName.delete(name);
    }
  }

  /**
   * The lock ended. The next local waiter goes at once (the lock kept the gate if it was
   * `gated`, taken by waiting); our own delete is not echoed back to us (NOLOOP).
   */
  ended(name: string, state: NameState, lock: HeldLock, gated: boolean): void {
    state.locks.delete(lock);
    if (gated) state.gate.leave();
    else state.gate.wake();
    this.forgetIfIdle(name, state);
  }

  /** Key `index` of the name changed (`null`: any may have): wake the waiter, recheck the locks. */
  #notify(state: NameState, index: number | null): void {
    state.gate.wake();
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
