import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { failureError, judge, type Replies, type Verdict } from '../src/lock/attempt.js';
import type { KeyState, Outcome } from '../src/redis/store.js';

// How an acquire attempt's replies are judged: the replies are values, so no Redis is needed.
const test = suite('attempt');

const rules = { keyMajority: 2, keyValidityMs: 1000, marginMs: 12 };
const value = 'our-value';

function reply(state: string | null, pttlMs: number, token?: bigint): Outcome<KeyState> {
  return { status: 'fulfilled', value: { value: state, pttlMs, token } };
}
const ours = (token?: bigint) => reply(value, 1000, token);
const theirs = (pttlMs = 1000, token?: bigint) => reply('their-value', pttlMs, token);
const absent = () => reply(null, -2);
const failed = (reason: unknown): Outcome<KeyState> => ({ status: 'rejected', reason });
const pending = (): Outcome<KeyState> => ({ status: 'pending', later: new Promise(() => {}) });

/** Judge `outcomes` as replies that came 5 ms after the send, unless told otherwise. */
function verdictOf(outcomes: Outcome<KeyState>[], more: Partial<Replies> = {}): Verdict {
  return judge(
    { outcomes, value, sentAt: 100, now: 105, queued: false, inLine: false, ...more },
    rules,
  );
}

test('a majority of keys taken in time holds the lock, with the keys it took', () => {
  const verdict = verdictOf([ours(), theirs(), ours()]);
  assert.equal(verdict, { kind: 'held', owned: [true, false, true], token: undefined });
});

test('the held lock carries the largest fencing token drawn where a key became ours', () => {
  const verdict = verdictOf([ours(7n), theirs(1000, 99n), ours(12n)]);
  assert.is(verdict.kind === 'held' && verdict.token, 12n);
});

test('a majority held by others is busy until that majority will have expired', () => {
  // The absent key is free now; one more must expire: the one due in 300 ms.
  const verdict = verdictOf([theirs(300), theirs(700), absent()]);
  assert.equal(verdict, {
    kind: 'busy',
    retryInMs: 301,
    giveBack: { keys: [], leaveQueue: false },
  });
});

test('a busy key with no expiry counts as held for keyValidityMs, and no retry waits longer', () => {
  const verdict = verdictOf([theirs(-1), theirs(-1), ours()]);
  assert.is(verdict.kind === 'busy' && verdict.retryInMs, 1000);
});

test("a server's error fails the attempt with that error as its cause", () => {
  const error = new Error('READONLY');
  const verdict = verdictOf([ours(), failed(error), theirs()]);
  assert.is(verdict.kind, 'failed');
  assert.equal(verdict.kind === 'failed' && verdict.failure, { cause: 'error', error });
  assert.is(verdict.kind === 'failed' && failureError(verdict.failure), error);
});

test('a key with no answer yet fails the attempt as pending', () => {
  const verdict = verdictOf([ours(), pending(), theirs()]);
  assert.equal(verdict.kind === 'failed' && verdict.failure, { cause: 'pending' });
  assert.match(String(failureError({ cause: 'pending' })), /no reply yet/);
});

test('the first key without a reply, in key order, gives the cause: an error, or no answer yet', () => {
  const error = new Error('timeout');
  const first = verdictOf([theirs(), failed(error), pending()]);
  assert.equal(first.kind === 'failed' && first.failure, { cause: 'error', error });
  const second = verdictOf([pending(), failed(error), theirs()]);
  assert.equal(second.kind === 'failed' && second.failure, { cause: 'pending' });
  assert.match(String(failureError({ cause: 'pending' })), /no reply yet/);
});

test('a majority taken too late fails the attempt: the keys may already have expired', () => {
  // 1000 ms validity less the 12 ms margin: replies at 988 ms or later are too late.
  const verdict = verdictOf([ours(), ours(), ours()], { sentAt: 100, now: 1088 });
  assert.equal(verdict.kind === 'failed' && verdict.failure, { cause: 'late' });
  assert.match(String(failureError({ cause: 'late' })), /after the keys could have expired/);
});

test('replies just inside the margin still hold the lock', () => {
  const verdict = verdictOf([ours(), ours(), ours()], { sentAt: 100, now: 1087 });
  assert.is(verdict.kind, 'held');
});

test("keys neither ours nor anyone's right after the attempt fail it as a client clock behind", () => {
  const verdict = verdictOf([absent(), absent(), theirs()]);
  assert.equal(verdict.kind === 'failed' && verdict.failure, { cause: 'clock' });
  assert.match(String(failureError({ cause: 'clock' })), /clock/);
});

test('a held lock gives nothing back', () => {
  const verdict = verdictOf([ours(), ours(), pending()]);
  assert.is(verdict.kind, 'held');
  assert.not.ok('giveBack' in verdict);
});

test('an attempt that falls short gives back the keys it took and those with no answer, not the others', () => {
  const verdict = verdictOf([ours(), failed(new Error('down')), theirs()]);
  assert.equal(verdict.kind === 'failed' && verdict.giveBack, { keys: [0, 1], leaveQueue: false });
});

test('a busy attempt gives back the key it took', () => {
  const verdict = verdictOf([theirs(), ours(), theirs()]);
  assert.is(verdict.kind, 'busy');
  assert.equal(verdict.kind === 'busy' && verdict.giveBack, { keys: [1], leaveQueue: false });
});

test('an attempt whose majority came too late gives back every key it took', () => {
  const verdict = verdictOf([ours(), theirs(), ours()], { now: 2000 });
  assert.equal(verdict.kind === 'failed' && verdict.giveBack, { keys: [0, 2], leaveQueue: false });
});

test('a queued attempt whose every key answered gives nothing back: its script did', () => {
  const verdict = verdictOf([theirs(), theirs(), absent()], { queued: true });
  assert.is(verdict.kind, 'busy');
  assert.equal(verdict.kind === 'busy' && verdict.giveBack, { keys: [], leaveQueue: false });
});

test('a queued attempt with a key unanswered leaves the queue with every key, even when others hold a majority', () => {
  const verdict = verdictOf([theirs(), theirs(), pending()], { queued: true });
  assert.is(verdict.kind, 'failed');
  assert.equal(verdict.kind === 'failed' && verdict.failure, { cause: 'pending' });
  assert.equal(verdict.kind === 'failed' && verdict.giveBack, {
    keys: [0, 1, 2],
    leaveQueue: true,
  });
});

test.run();
