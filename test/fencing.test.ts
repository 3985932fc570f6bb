import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type Lock, type Locker } from '../src/index.js';
import { calls, connect, queued } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { bound, sleep, until } from './helpers/wait.js';

// Fencing tokens: every acquisition's token is greater than every earlier holder's.
const test = suite('fencing');

/** Hold and release `name` `rounds` times, alternating lockers; the tokens in order. */
async function tokens(lockers: Locker[], name: string, rounds: number): Promise<bigint[]> {
  const seen: bigint[] = [];
  for (let i = 0; i < rounds; i++) {
    const lock: Lock = await (lockers[i % lockers.length] as Locker).withContext(
      name,
      bound(10_000),
    );
    assert.is(typeof lock.token, 'bigint');
    seen.push(lock.token as bigint);
    await lock.release();
  }
  return seen;
}

function assertIncreasing(seen: readonly bigint[]): void {
  for (let i = 1; i < seen.length; i++) {
    assert.ok(
      (seen[i] as bigint) > (seen[i - 1] as bigint),
      `token ${i}: ${seen[i]} after ${seen[i - 1]}`,
    );
  }
}

test('tokens grow with every acquisition, across lockers, and after a restart that lost them', async () => {
  const server = await startRedisServer();
  try {
    const options = { url: server.url };
    const [a, b] = await Promise.all([createLocker(options), createLocker(options)]);
    const before = await tokens([a, b], 'fenced', 20);
    assertIncreasing(before);
    // Near the server's clock in microseconds: a restart that forgets the fence keys cannot
    // hand out a smaller one.
    assert.ok(Math.abs(Number(before[0]) / 1000 - Date.now()) < 60_000, 'not time-based');
    await Promise.all([a.close(), b.close()]);
    await server.restart();
    const [c, d] = await Promise.all([createLocker(options), createLocker(options)]);
    const after = await tokens([c, d], 'fenced', 5);
    assertIncreasing([...before, ...after]);
    await Promise.all([c.close(), d.close()]);
  } finally {
    await server.stop();
  }
});

test('with nodes, a holder leaves its token on every node, so the next one draws more', async () => {
  const servers: RedisServer[] = await Promise.all([0, 1, 2].map(() => startRedisServer()));
  const admins = await Promise.all(servers.map((server) => connect(server.url)));
  try {
    const options = { nodes: servers.map((server) => server.url) };
    const [a, b] = await Promise.all([createLocker(options), createLocker(options)]);
    assertIncreasing(await tokens([a, b], 'spread', 10));
    // Each node drew its own token (the holder's is the largest of those the majority was
    // decided on); the release raised every node's fence to at least the holder's.
    const lock = await a.withContext('spread', bound(10_000));
    // Every node's key joined (it may answer after the majority was decided).
    const everyKey = () => Promise.all(admins.map((admin) => admin.exists('rueidislock:0:spread')));
    await until(async () => (await everyKey()).every((found) => found === 1));
    await sleep(50); // and the locker has read its reply, which nothing outside shows
    await lock.release();
    for (const admin of admins) {
      const fence = BigInt((await admin.get('rueidislock:f:spread')) ?? 0);
      assert.ok(fence >= (lock.token as bigint), `a fence at ${fence} < ${lock.token}`);
    }
    const next = await b.withContext('spread', bound(10_000));
    assert.ok((next.token as bigint) > (lock.token as bigint));
    await next.release();
    await Promise.all([a.close(), b.close()]);
  } finally {
    for (const admin of admins) admin.destroy();
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('with nodes, a holder keeps its token on every node for as long as it holds', async () => {
  const servers: RedisServer[] = await Promise.all([0, 1, 2].map(() => startRedisServer()));
  const admins = await Promise.all(servers.map((server) => connect(server.url)));
  const locker = await createLocker({
    nodes: servers.map((server) => server.url),
    keyValidityMs: 500,
  });
  try {
    const lock = await locker.withContext('long', bound(10_000));
    // Four validities: each extension must keep every fence alive and at the holder's token,
    // so that a holder that crashes now is followed by a larger token whatever the clocks.
    for (let i = 0; i < 8; i++) {
      await sleep(250); // checked all along the hold: the time is the point
      for (const admin of admins) {
        const fence = BigInt((await admin.get('rueidislock:f:long')) ?? 0);
        assert.ok(fence >= (lock.token as bigint), `a fence at ${fence} < ${lock.token}`);
        assert.ok((await admin.pTTL('rueidislock:f:long')) > 2000, 'the fence outlives the keys');
      }
    }
    await lock.release();
  } finally {
    await locker.close();
    for (const admin of admins) admin.destroy();
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('a lock handed over by a release has a token: greater than the last holder, less than the next', async () => {
  const server = await startRedisServer();
  try {
    const options = { url: server.url };
    const [a, b] = await Promise.all([createLocker(options), createLocker(options)]);
    const client = await connect(server.url);
    const first = await a.withContext('handed', bound(10_000));
    const waiting = b.withContext('handed', bound(10_000));
    await until(async () => (await queued(client, 'handed')) === 1);
    const before = await calls(client, 'evalsha');
    await first.release();
    const handed = await waiting;
    // Handed over: b sent nothing to take it, and knows its token all the same.
    assert.is((await calls(client, 'evalsha')) - before, 1);
    assert.ok((handed.token as bigint) > (first.token as bigint), 'the handed token is greater');
    await handed.release();
    const later = await a.withContext('handed', bound(10_000));
    assert.ok((later.token as bigint) > (handed.token as bigint));
    await later.release();
    await Promise.all([a.close(), b.close()]);
    client.destroy();
  } finally {
    await server.stop();
  }
});

test('a token drawn for the head is not handed over once another holder drew a greater one', async () => {
  const server = await startRedisServer();
  try {
    const options = { url: server.url };
    const [a, b, c] = await Promise.all([0, 1, 2].map(() => createLocker(options)));
    const client = await connect(server.url);
    const first = await (a as Locker).withContext('stale', bound(10_000));
    const waiting = (b as Locker).withContext('stale', bound(10_000));
    await until(async () => (await queued(client, 'stale')) === 1);
    // A force draws a token after the head's: handing the head its older one would go back.
    const forced = await (c as Locker).forceWithContext('stale', bound(10_000));
    await forced.release();
    const handed = await waiting;
    assert.ok((handed.token as bigint) > (forced.token as bigint), 'tokens never go back');
    await handed.release();
    await first.release();
    await Promise.all([a, b, c].map((locker) => (locker as Locker).close()));
    client.destroy();
  } finally {
    await server.stop();
  }
});

test.run();
