import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Leftovers } from '../src/lock/leftovers.js';
import type { KeyStore, Outcome } from '../src/redis/store.js';

// Deletions a dropped connection failed, sent again on reconnect: with a store whose answers
// the test chooses, no Redis needed.
const test = suite('leftovers');

const ok: Outcome<boolean> = { status: 'fulfilled', value: true };
const failed: Outcome<boolean> = { status: 'rejected', reason: new Error('connection dropped') };

/** A store whose deletions answer with what `answer` says, and that counts them. */
function fakeStore(answer: () => Outcome<boolean>[] | Promise<Outcome<boolean>[]>) {
  const store = {
    deletions: 0,
    tokens: [] as (bigint | undefined)[],
    delete: async (_keys: readonly string[], _value: string, token?: bigint) => {
      store.deletions++;
      store.tokens.push(token);
      return answer();
    },
  };
  return store as typeof store & KeyStore;
}

test('a deletion confirmed late by a slow server leaves nothing behind', async () => {
  const leftovers = new Leftovers(5000);
  const store = fakeStore(() => [ok]);
  for (let i = 0; i < 100; i++) {
    await leftovers.track(
      store,
      { keys: ['k:0', 'k:1'], value: 'v' },
      Promise.resolve([ok, { status: 'pending', later: Promise.resolve(ok) }]),
    );
  }
  assert.is(leftovers.size, 0);
});

test('an unconfirmed deletion is sent again on reconnect, and forgotten once confirmed', async () => {
  const leftovers = new Leftovers(5000);
  let answers: Outcome<boolean>[] = [failed];
  const store = fakeStore(() => answers);
  await leftovers.track(store, { keys: ['k:0'], value: 'v' }, Promise.resolve([failed]));
  assert.is(leftovers.size, 1);
  leftovers.retry(); // still down
  await until(() => store.deletions === 1);
  await until(() => leftovers.size === 1);
  answers = [ok];
  leftovers.retry();
  await until(() => store.deletions === 2);
  await until(() => leftovers.size === 0);
});

test('a deletion that fails across a reconnect is sent again at once', async () => {
  const leftovers = new Leftovers(5000);
  let fail!: (outcomes: Outcome<boolean>[]) => void;
  const deletion = new Promise<Outcome<boolean>[]>((resolve) => {
    fail = resolve;
  });
  const store = fakeStore(() => [ok]);
  const tracked = leftovers.track(store, { keys: ['k:0'], value: 'v' }, deletion);
  leftovers.retry(); // a connection comes back while the deletion is out
  fail([failed]);
  await tracked;
  await until(() => store.deletions === 1);
  await until(() => leftovers.size === 0);
});

test('a deletion sent again raises the fence with the holder\u2019s token, as the first did', async () => {
  const leftovers = new Leftovers(5000);
  const store = fakeStore(() => [ok]);
  await leftovers.track(
    store,
    { keys: ['k:0'], value: 'v', token: 42n },
    Promise.resolve([failed]),
  );
  leftovers.retry();
  await until(() => store.deletions === 1);
  assert.equal(store.tokens, [42n]);
});

test('keys past their expiry are not deleted again', async () => {
  const leftovers = new Leftovers(1);
  const store = fakeStore(() => [ok]);
  await leftovers.track(store, { keys: ['k:0'], value: 'v' }, Promise.resolve([failed]));
  await new Promise((resolve) => setTimeout(resolve, 5));
  leftovers.retry();
  assert.is(store.deletions, 0);
  assert.is(leftovers.size, 0);
});

/** Wait for `predicate`, bounded. */
async function until(predicate: () => boolean): Promise<void> {
  const signal = AbortSignal.timeout(5000);
  while (!predicate()) {
    signal.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

test.run();
