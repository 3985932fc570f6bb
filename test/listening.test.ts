import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { listensToKeys, pollFor, sleepFor } from '../src/lock/listening.js';
import type { QueueState } from '../src/redis/store.js';

// How long a busy waiter sleeps, by its place in the queue: no Redis needed.
const test = suite('listening');
const rules = { keyValidityMs: 1000, tryNextAfterMs: 20, backstopMs: 60_000 };
const place = (more: Partial<QueueState>): QueueState => ({
  role: 'queued',
  renewed: false,
  watching: undefined,
  watchMs: -2,
  token: undefined,
  joined: false,
  rank: 2,
  ...more,
});

test('without a queue a waiter listens to the keys until they would expire', () => {
  assert.ok(listensToKeys(undefined));
  assert.is(sleepFor(undefined, 900, rules), 900);
});

test('the head listens to the keys, and attempts at least twice a validity to renew its ticket', () => {
  assert.ok(listensToKeys(place({ role: 'head', rank: 0 })));
  assert.is(sleepFor(place({ role: 'head', rank: 0 }), 900, rules), 500);
  assert.is(sleepFor(place({ role: 'head', rank: 0 }), 300, rules), 300);
});

test('the deputy wakes when the head ticket runs out, and at least twice a validity', () => {
  const deputy = (watchMs: number) => place({ role: 'deputy', rank: 1, watching: 'h', watchMs });
  assert.not.ok(listensToKeys(deputy(100)));
  assert.is(sleepFor(deputy(100), 900, rules), 120);
  assert.is(sleepFor(deputy(900), 900, rules), 500);
  // The head's ticket already gone: look again soon.
  assert.is(sleepFor(deputy(-2), 900, rules), 20);
});

test('a waiter further back sleeps for the backstop, longer the further back', () => {
  assert.not.ok(listensToKeys(place({ rank: 2 })));
  assert.is(sleepFor(place({ rank: 2 }), 900, rules), 60_000);
  assert.is(sleepFor(place({ rank: 11 }), 900, rules), 600_000);
  // Never past setTimeout's largest delay (a longer one would fire at once).
  assert.is(sleepFor(place({ rank: 1_000_000 }), 900, rules), 2 ** 31 - 1);
});

test('behind listeners that have not answered, a waiter looks when their tickets run out', () => {
  assert.is(sleepFor(place({ rank: 5, watchMs: 700 }), 900, rules), 720);
});

// Polling (no invalidation pushes): how soon a waiter looks again, at both ends of the jitter.
const polling = { keyValidityMs: 1000, pollIntervalMs: 100 };
const [low, high] = [() => 0, () => 0.999_999];

test('when polling, the head looks after 2 ms, doubling up to pollIntervalMs, jittered to half', () => {
  const head = place({ role: 'head', rank: 0 });
  assert.equal(
    [0, 1, 2, 3, 4, 5, 6, 40].map((polls) => pollFor(head, polls, polling, high)),
    [2, 4, 8, 16, 32, 64, 100, 100],
  );
  assert.equal(
    [0, 1, 5, 6].map((polls) => pollFor(head, polls, polling, low)),
    [1, 2, 32, 50],
  );
  // Without a queue, every waiter polls like the head.
  assert.is(pollFor(undefined, 6, polling, high), 100);
});

test('when polling, the deputy looks as the head does: it is the head once the head has the lock', () => {
  const deputy = place({ role: 'deputy', rank: 1, watching: 'h', watchMs: 900 });
  assert.equal(
    [0, 1, 2, 6, 40].map((polls) => pollFor(deputy, polls, polling, high)),
    [2, 4, 8, 100, 100],
  );
});

test('when polling, a waiter further back looks as soon at first, then less often the further back, yet within a quarter validity', () => {
  assert.is(pollFor(place({ rank: 2 }), 0, polling, high), 2);
  assert.is(pollFor(place({ rank: 2 }), 40, polling, high), 100);
  assert.is(pollFor(place({ rank: 3 }), 40, polling, high), 200);
  // A promoted listener that does not answer within its ticket's validity loses its place.
  assert.is(pollFor(place({ rank: 50 }), 40, polling, high), 250);
  assert.is(pollFor(place({ rank: 50 }), 40, polling, low), 125);
});

test.run();
