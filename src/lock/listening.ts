import type { KeyState, Outcome, QueueState } from '../redis/store.js';
import type { ResolvedOptions } from '../shared/options.js';
import { MAX_TIMER_MS } from '../shared/timing.js';

/** The options that decide how long a waiter sleeps. */
export type SleepRules = Pick<ResolvedOptions, 'backstopMs' | 'tryNextAfterMs' | 'keyValidityMs'>;

/** The options that decide how often a waiter polls. */
export type PollRules = Pick<ResolvedOptions, 'pollIntervalMs' | 'keyValidityMs'>;

/** The waiter's place in the queue, from the reply of the server that holds the queue. */
export function placeIn(outcomes: readonly Outcome<KeyState>[]): QueueState | undefined {
  for (const outcome of outcomes) {
    if (outcome.status === 'fulfilled' && outcome.value.queue) return outcome.value.queue;
  }
  return undefined;
}

/** A waiter at `place` listens to the lock's keys: it is the head, or there is no queue. */
export function listensToKeys(place: QueueState | undefined): boolean {
  return place === undefined || place.role === 'head';
}

/**
 * How long a waiter whose attempt found the lock busy sleeps at most, by its place: without a
 * queue, until the keys would expire (`retryInMs`, from their PTTLs). A listener renews its
 * ticket at its attempts, once a quarter of it has passed, so it attempts at least twice a
 * validity and its ticket never runs out while it lives; the deputy also when the head's
 * ticket runs out (at once if it is gone already: its expiry may not have been pushed yet).
 * A waiter further back wakes by its wake key; by itself only when listeners promoted before
 * it have not answered (their tickets then run out, and it mends the queue), or after the
 * backstop, the longer the further back: one is needed there only if both listeners vanished
 * at once, and the first one behind them to look mends the queue for all, so n waiters cost the
 * server about log(n) looks per backstop, not n.
 */
export function sleepFor(
  place: QueueState | undefined,
  retryInMs: number,
  rules: SleepRules,
): number {
  if (place === undefined) return retryInMs;
  const renewal = Math.floor(rules.keyValidityMs / 2);
  if (place.role === 'head') return Math.min(retryInMs, renewal);
  const soon = Math.max(place.watchMs, 0) + rules.tryNextAfterMs;
  if (place.role === 'deputy') return Math.min(renewal, soon);
  const late = Math.min(MAX_TIMER_MS, rules.backstopMs * Math.max(1, place.rank - 1));
  return place.watchMs >= 0 ? Math.min(late, soon) : late;
}

/**
 * Where no invalidation wakes a waiter (polling), how long it sleeps at most before it looks
 * again, by its place: first 2 ms, doubling with each busy attempt in the same role (`polls`),
 * up to a cap. A lock released soon is noticed within a few ms, and a long hold costs about one
 * attempt per cap. Under contention a waiter's role changes at nearly every look, so it keeps
 * looking every few ms: a waiter does not know it was promoted (the head took the lock, the
 * deputy is the head) until it looks, and one that slept a whole `pollIntervalMs` there left
 * the lock idle that long at every turn. The cap is `pollIntervalMs` for the head (or, without
 * a queue, every waiter) and the deputy; for a waiter further back, the further back the
 * longer, so n waiters cost about log n times one, but at least every quarter validity: once
 * promoted, its ticket is good for one validity, and a listener that does not answer in time is
 * dropped from the queue. Each pause is jittered to between half and all of it, so that the
 * waiters of many processes do not poll in step.
 */
export function pollFor(
  place: QueueState | undefined,
  polls: number,
  rules: PollRules,
  random: () => number = Math.random,
): number {
  const every = rules.pollIntervalMs;
  const cap =
    listensToKeys(place) || place?.role === 'deputy'
      ? every
      : Math.min(every * Math.max(1, (place?.rank ?? 1) - 1), Math.floor(rules.keyValidityMs / 4));
  const ms = Math.min(cap, 2 * 2 ** Math.min(polls, 30));
  return Math.max(1, Math.round(ms * (0.5 + random() / 2)));
}

/**
 * How long a waiter pauses after `failures` attempts in a row that Redis failed or did not
 * answer: `tryNextAfterMs`, doubling with each, never past a validity.
 */
export function failedAttemptPause(
  failures: number,
  rules: Pick<ResolvedOptions, 'tryNextAfterMs' | 'keyValidityMs'>,
): number {
  const backoff = rules.tryNextAfterMs * 2 ** Math.min(failures - 1, 20);
  return Math.min(backoff, rules.keyValidityMs);
}
