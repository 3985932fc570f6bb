import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createLocker,
  type LockError,
  LockLostError,
  ReleaseUnconfirmedError,
} from '../src/index.js';
import { calls, connect } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { abortedWithin, bound, sleep, until } from './helpers/wait.js';

// Each test pauses, kills or flushes its server, so each gets one of its own.
const test = suite<{ server: RedisServer }>('faults');

test.before.each(async (ctx) => {
  ctx.server = await startRedisServer();
});

test.after.each(async (ctx) => {
  await ctx.server.stop();
});

test('with Redis frozen (SIGSTOP) the signal aborts before the keys can expire on the server', async ({
  server,
}) => {
  // The next extension is due at 850 ms, long after the server is frozen.
  const locker = await createLocker({
    url: server.url,
    keyValidityMs: 1000,
    extendIntervalMs: 850,
    commandTimeoutMs: 200,
    // A 102 ms margin: timers on a loaded 2-core machine can be late by more than 12 ms.
    driftFactor: 0.1,
  });
  try {
    const sentNoEarlierThan = Date.now();
    const lock = await locker.withContext('frozen', bound());
    server.pause();
    const reason = await abortedWithin(lock.signal, 5000);
    const abortedAt = Date.now();
    // PXAT was computed at send time, so the server cannot expire the keys before this instant.
    const earliestServerExpiry = sentNoEarlierThan + 1000;
    assert.instance(reason, LockLostError);
    assert.is((reason as LockLostError).loss, 'expired');
    assert.ok(
      abortedAt < earliestServerExpiry,
      `aborted ${abortedAt - earliestServerExpiry} ms after the earliest server expiry`,
    );
  } finally {
    server.resume();
    await locker.close();
  }
});

test('release and close are bounded while Redis is frozen, and report what they could not confirm', async ({
  server,
}) => {
  const locker = await createLocker({ url: server.url, commandTimeoutMs: 300 });
  const lock = await locker.withContext('frozen', bound());
  server.pause();
  try {
    const error = await lock.release().catch((e: unknown) => e);
    assert.instance(error, ReleaseUnconfirmedError);
    assert.is((error as LockError).code, 'ERR_RELEASE_UNCONFIRMED');
    assert.ok(lock.signal.aborted);
    const held = await locker.withContext('other', bound()).catch((e: unknown) => e);
    assert.instance(held, Error); // times out: the bound signal's reason
    await Promise.race([
      locker.close(),
      sleep(4000).then(() => {
        throw new Error('close() did not return within 4 s');
      }),
    ]);
  } finally {
    server.resume();
  }
});

test('a killed connection aborts the lock (its server may have lost the keys), and the next one is tracked', async ({
  server,
}) => {
  const client = await connect(server.url);
  const locker = await createLocker({ url: server.url, keyValidityMs: 30_000 });
  try {
    const lock = await locker.withContext('reconnect', bound());
    await killLockerConnections(client);
    // Nothing tells the locker whether the server kept its keys: a restart without
    // persistence would have lost them, and a waiter could take them at once.
    const reason = await abortedWithin(lock.signal, 5000);
    assert.instance(reason, LockLostError);
    assert.is((reason as LockLostError).loss, 'disconnected');
    assert.match((reason as Error).message, /connection/);
    // The new connection comes up with tracking on, and a new lock hears a deletion.
    const next = await locker.withContext('reconnect', bound());
    await client.del(['rueidislock:0:reconnect', 'rueidislock:1:reconnect']);
    assert.instance(await abortedWithin(next.signal, 5000), LockLostError);
  } finally {
    await locker.close();
    await client.close();
  }
});

test('one server restarted without persistence: the holder aborts before anyone else can get in', async ({
  server,
}) => {
  // The first holder's client comes back 3 s after the restart; the second's at once.
  const first = await createLocker({
    url: server.url,
    client: { socket: { reconnectStrategy: 3000 } },
  });
  const second = await createLocker({
    url: server.url,
    client: { socket: { reconnectStrategy: 20 } },
  });
  try {
    const held = await first.withContext('restarted', bound());
    await server.restart();
    const taken = await second.withContext('restarted', bound());
    assert.is(held.signal.aborted, true, 'two holders: the first did not know');
    assert.is((held.signal.reason as LockLostError).loss, 'disconnected');
    assert.ok((taken.token as bigint) > (held.token as bigint), 'the token did not grow');
    await taken.release();
  } finally {
    await Promise.all([first.close(), second.close()]);
  }
});

/** CLIENT KILL every connection of the server but the test's own. */
async function killLockerConnections(client: Awaited<ReturnType<typeof connect>>) {
  const list = await client.sendCommand(['CLIENT', 'LIST']);
  const ids = [...String(list).matchAll(/id=(\d+) .*cmd=(\S+)/g)]
    .filter((m) => m[2] !== 'client|list')
    .map((m) => m[1] as string);
  for (const id of ids) await client.sendCommand(['CLIENT', 'KILL', 'ID', id]);
}

test('FLUSHALL (a null invalidation) aborts the holder and wakes the waiter', async ({
  server,
}) => {
  const { client, a, b, close } = await twoLockers(server.url);
  try {
    const lock = await a.withContext('flushed', bound());
    const before = await calls(client, 'evalsha');
    const waiting = b.withContext('flushed', bound());
    await until(async () => (await calls(client, 'evalsha')) > before); // b found it taken
    await client.flushAll();
    assert.instance(await abortedWithin(lock.signal, 5000), LockLostError);
    const next = await waiting;
    assert.not.ok(next.signal.aborted);
    await next.release();
  } finally {
    await close();
  }
});

test('one invalidation wakes one local waiter, not every waiter of the name', async ({
  server,
}) => {
  const { client, a, b, close } = await twoLockers(server.url);
  try {
    const lock = await a.withContext('herd', bound());
    const stop = new AbortController();
    const start = await calls(client, 'evalsha');
    const waiters = Array.from({ length: 10 }, () =>
      b.withContext('herd', { signal: stop.signal }).catch(() => {}),
    );
    // The active waiter's first attempt found the lock taken (the others wait their turn).
    await until(async () => (await calls(client, 'evalsha')) > start);
    const before = await calls(client, 'evalsha');
    // Touch one key: the holder keeps a majority, every waiter of b hears one invalidation.
    await client.sendCommand(['PEXPIRE', 'rueidislock:2:herd', '30000']);
    await sleep(100); // a window: more than one attempt in it would be a herd
    const after = await calls(client, 'evalsha');
    // One attempt (one script for the 3 keys) by the one active waiter; ten waiters would be 10.
    assert.is(after - before, 1);
    assert.not.ok(lock.signal.aborted);
    stop.abort();
    await Promise.all(waiters);
    await lock.release();
  } finally {
    await close();
  }
});

test('an extension that fails while Redis is briefly frozen is retried, and the lock survives', async ({
  server,
}) => {
  // The default interval, validity / 2: the next regular extension would come at 2000 ms,
  // after the keys' local deadline (1978 ms), so only a prompt retry keeps the lock.
  const locker = await createLocker({
    url: server.url,
    keyValidityMs: 2000,
    commandTimeoutMs: 200,
  });
  try {
    const lock = await locker.withContext('hiccup', bound());
    // A schedule of the fault around the extension due at 1000 ms, then a window in which the
    // lock must hold: the times themselves are what is tested.
    await sleep(900);
    server.pause(); // across the extension due at 1000 ms
    await sleep(400);
    server.resume();
    await sleep(1500);
    assert.not.ok(lock.signal.aborted, String(lock.signal.reason));
    assert.is(await lock.release(), true);
  } finally {
    server.resume();
    await locker.close();
  }
});

test('what an unanswered acquisition may have taken is deleted once Redis answers again', async ({
  server,
}) => {
  const a = await createLocker({ url: server.url, keyValidityMs: 30_000, commandTimeoutMs: 200 });
  const b = await createLocker({ url: server.url, keyValidityMs: 30_000 });
  try {
    server.pause();
    const error = await a.tryWithContext('unanswered').catch((e: unknown) => e);
    assert.is((error as LockError).code, 'ERR_UNAVAILABLE');
    server.resume();
    // Its SETs run once the server thaws; the deletion queued behind them undoes them, so the
    // name is free long before the 30 s validity.
    const lock = await b.withContext('unanswered', { signal: AbortSignal.timeout(5000) });
    await lock.release();
  } finally {
    server.resume();
    await a.close();
    await b.close();
  }
});

/** Two lockers with a long validity (only invalidations move the lock), and a plain client. */
async function twoLockers(url: string) {
  const client = await connect(url);
  const a = await createLocker({ url, keyValidityMs: 30_000 });
  const b = await createLocker({ url, keyValidityMs: 30_000 });
  const close = async () => {
    await Promise.all([a.close(), b.close()]);
    await client.close();
  };
  return { client, a, b, close };
}

test.run();
