import { randomUUID } from 'node:crypto';
import type { KeyState, KeyStore, Outcome } from '../redis/store.js';
import { LockReleasedError } from '../shared/errors.js';
import { judge, type Rules } from './attempt.js';
import type { HeldLock, LockTaken } from './lock.js';
import type { NameState } from './names.js';

/** The released lock that is passed on. */
export interface Passing {
  readonly name: string;
  readonly keys: readonly string[];
  readonly value: string;
}

/** What passing a lock needs from the locker. */
export interface PassDeps {
  readonly store: KeyStore;
  readonly rules: Rules;
  /** Hold the passed keys for the next waiter (on its terms). */
  hold(init: LockTaken): HeldLock;
  /** Let go of `keys` held under `value` (through the queue, if there is one). */
  giveBack(keys: readonly string[], value: string): void;
  /** Keys whose server answered after the majority was decided join the lock later. */
  adoptLate(lock: HeldLock, outcomes: readonly Outcome<KeyState>[], sentAt: number): void;
}

/**
 * Whether a lock that ended for `reason` passes to the next waiter of the same locker: it was
 * released (not lost or closed), taken by waiting (`gated`: it holds the name's gate), another
 * waiter is at the gate, and fewer than `localHandoffs` passes came in a row.
 */
export function passes(
  state: NameState,
  reason: unknown,
  gated: boolean,
  localHandoffs: number,
): boolean {
  return (
    gated &&
    reason instanceof LockReleasedError &&
    state.passes < localHandoffs &&
    state.gate.waiting
  );
}

/**
 * Pass a released lock to the next waiter of this locker: one script moves the keys that are
 * still ours to a new value with a fresh expiry and draws a new token, and nobody else is
 * woken. The gate stays taken meanwhile (`state.passing`). Resolves with the old holder's
 * outcome per key (handed on or not). If the keys did not pass (lost meanwhile, Redis
 * failing), both values are let go and the next waiter tries as usual; if nobody waits any
 * more, the new value is let go.
 */
export async function passOn(
  state: NameState,
  from: Passing,
  deps: PassDeps,
): Promise<Outcome<boolean>[]> {
  const { name, keys } = from;
  state.passing = true;
  const value = randomUUID();
  const sentAt = performance.now();
  const outcomes = await deps.store.acquire(keys, value, { from: from.value });
  const now = performance.now();
  state.passing = false;
  const verdict = judge({ outcomes, value, sentAt, now, queued: false, inLine: false }, deps.rules);
  if (verdict.kind === 'held') {
    const { owned, token } = verdict;
    const init = { name, keys, value, owned, sentAt, now, token };
    const lock = state.gate.pass((terms) => deps.hold({ ...init, terms }));
    if (lock) {
      state.passes++;
      deps.adoptLate(lock, outcomes, sentAt);
    } else deps.giveBack(keys, value);
  } else {
    deps.giveBack(keys, value);
    deps.giveBack(keys, from.value);
    state.gate.leave();
  }
  return outcomes.map((outcome) =>
    outcome.status === 'rejected'
      ? outcome
      : {
          status: 'fulfilled',
          value: outcome.status === 'fulfilled' && outcome.value.value === value,
        },
  );
}
