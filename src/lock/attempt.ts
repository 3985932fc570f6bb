import type { KeyState, Outcome } from '../redis/store.js';
import type { ResolvedOptions } from '../shared/options.js';

/**
 * How an attempt takes the keys: `wait` and `try` only free ones (a lock taken by waiting keeps
 * its name's gate until it ends), `force` whoever holds them.
 */
export type Mode = 'wait' | 'try' | 'force';

/** The replies to one acquire attempt, and what the judge needs to know about it. */
export interface Replies {
  /** One per key, in key order. */
  readonly outcomes: readonly Outcome<KeyState>[];
  /** The value the attempt wrote. */
  readonly value: string;
  /** `performance.now()` when the attempt was sent, and when its replies were in. */
  readonly sentAt: number;
  readonly now: number;
  /** Sent with a ticket (the queue): the script gave back itself what it took. */
  readonly queued: boolean;
  /** Behind the queue's head: the script did not touch the keys, the lock is someone's turn. */
  readonly inLine: boolean;
}

/** The options that decide a verdict. */
export type Rules = Pick<ResolvedOptions, 'keyMajority' | 'keyValidityMs' | 'marginMs'>;

/** Why an attempt that was neither ours nor busy failed. */
export type Failure =
  /** A server failed a key, or did not answer it in time: `error` stands for it. */
  | { readonly cause: 'error'; readonly error: unknown }
  /** With several servers, the majority was decided before one of them answered. */
  | { readonly cause: 'pending' }
  /** The replies came back after the keys could have expired. */
  | { readonly cause: 'late' }
  /** The keys were neither ours nor anyone's right after our SET: the client clock is behind. */
  | { readonly cause: 'clock' };

/**
 * What to delete, by value, of what an attempt took or may have taken unseen. `keys` are
 * indices; `leaveQueue` also takes the ticket off the queue (every key goes then), after which
 * a handoff to its value can no longer be trusted: the waiter goes on under a new one.
 */
export interface GiveBack {
  readonly keys: readonly number[];
  readonly leaveQueue: boolean;
}

export type Verdict =
  | {
      readonly kind: 'held';
      readonly owned: readonly boolean[];
      readonly token: bigint | undefined;
    }
  | { readonly kind: 'busy'; readonly retryInMs: number; readonly giveBack: GiveBack }
  | { readonly kind: 'failed'; readonly failure: Failure; readonly giveBack: GiveBack };

/** Judge an acquire attempt's replies: ours, held by others, or failed; and what to give back. */
export function judge(replies: Replies, rules: Rules): Verdict {
  const { outcomes, value, sentAt, now, queued, inLine } = replies;
  const owned = outcomes.map((o) => o.status === 'fulfilled' && o.value.value === value);
  const count = owned.filter(Boolean).length;
  // Replies that come back after the keys may have expired are worth nothing.
  const late = now >= sentAt + rules.keyValidityMs - rules.marginMs;
  if (count >= rules.keyMajority && !late) {
    return { kind: 'held', owned, token: largestToken(outcomes, owned) };
  }
  const unanswered = outcomes.some((o) => o.status !== 'fulfilled');
  // Give back what the attempt took, and what it may have taken unseen (keys whose reply
  // never came), by value: the delete runs after the attempt on the same connection. (A
  // queued attempt gave back what it took itself, in its script.)
  if (queued && unanswered) {
    const giveBack = { keys: outcomes.map((_, i) => i), leaveQueue: true };
    return { kind: 'failed', failure: failureOf(outcomes), giveBack };
  }
  const giveBack = {
    keys: queued ? [] : indices(outcomes, (o, i) => owned[i] === true || o.status !== 'fulfilled'),
    leaveQueue: false,
  };
  const taken = outcomes.filter(
    (o) => o.status === 'fulfilled' && o.value.value !== null && o.value.value !== value,
  );
  if (inLine && !unanswered) {
    return { kind: 'busy', retryInMs: rules.keyValidityMs, giveBack };
  }
  if (taken.length >= rules.keyMajority) {
    return { kind: 'busy', retryInMs: retryInMs(outcomes, owned, rules), giveBack };
  }
  if (unanswered) return { kind: 'failed', failure: failureOf(outcomes), giveBack };
  if (late) return { kind: 'failed', failure: { cause: 'late' }, giveBack };
  return { kind: 'failed', failure: { cause: 'clock' }, giveBack };
}

/** The error that tells the caller why the attempt failed (as `cause` of its own error). */
export function failureError(failure: Failure): unknown {
  switch (failure.cause) {
    case 'error':
      return failure.error;
    case 'pending':
      return new Error('no reply yet from this key\u2019s server when the majority was decided');
    case 'late':
      return new Error('the replies came after the keys could have expired');
    case 'clock':
      return new Error(
        'the keys expired as soon as they were set: is the client clock behind the server by more than keyValidityMs? (fallbackSetPx: true uses relative expiries)',
      );
  }
}

/** The largest token drawn where the keys became ours (several servers may draw). */
function largestToken(outcomes: readonly Outcome<KeyState>[], owned: readonly boolean[]) {
  let token: bigint | undefined;
  for (const [i, outcome] of outcomes.entries()) {
    const drawn = outcome.status === 'fulfilled' && owned[i] ? outcome.value.token : undefined;
    if (drawn !== undefined && (token === undefined || drawn > token)) token = drawn;
  }
  return token;
}

/** When, at the latest, a majority of the keys will have expired if nobody extends them. */
function retryInMs(
  outcomes: readonly Outcome<{ pttlMs: number }>[],
  owned: readonly boolean[],
  rules: Rules,
): number {
  const validity = rules.keyValidityMs;
  const expiries = outcomes
    .map((o, i) => {
      if (owned[i] || o.status !== 'fulfilled') return 0;
      const pttl = o.value.pttlMs;
      return pttl === -2 ? 0 : pttl < 0 ? validity : pttl;
    })
    .sort((a, b) => a - b);
  const free = expiries[rules.keyMajority - 1] ?? validity;
  return Math.min(validity, free + 1);
}

/** Why an attempt with keys of unknown outcome failed: the first such key's, in key order. */
function failureOf(outcomes: readonly Outcome<unknown>[]): Failure {
  const first = outcomes.find((outcome) => outcome.status !== 'fulfilled');
  return first?.status === 'rejected'
    ? { cause: 'error', error: first.reason }
    : { cause: 'pending' };
}

function indices<T>(items: readonly T[], keep: (item: T, index: number) => boolean): number[] {
  return items.flatMap((item, i) => (keep(item, i) ? [i] : []));
}
