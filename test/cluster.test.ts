import { createClient } from '@redis/client';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type LockError, type LockerOptions } from '../src/index.js';
import { sleep } from './helpers/redis.js';
import { type RedisCluster, startRedisCluster } from './helpers/redis-cluster.js';

// A 3-master cluster with one replica each, so that a master can fail over.
const test = suite<{ cluster: RedisCluster }>('cluster');
const bound = (ms = 10_000) => ({ signal: AbortSignal.timeout(ms) });

test.before(async (ctx) => {
  ctx.cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
});

test.after(async (ctx) => {
  await ctx.cluster.stop();
});

const clusterOptions = (cluster: RedisCluster, more: LockerOptions = {}): LockerOptions => ({
  cluster: { rootNodes: cluster.rootNodes },
  ...more,
});

/** The value of `key` on `url`, read there directly (no redirection). */
async function valueOn(url: string, key: string): Promise<string | null> {
  const client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.sendCommand(['GET', key])) as string | null;
  } finally {
    client.destroy();
  }
}

test('a name with a {hashtag} is rejected: every key would share one slot', async ({ cluster }) => {
  const locker = await createLocker(clusterOptions(cluster));
  try {
    for (const name of ['{user:1}:job', 'job:{x}']) {
      const error = await locker.tryWithContext(name).catch((e: unknown) => e);
      assert.instance(error, TypeError);
      assert.match((error as Error).message, 'hashtag');
    }
    // Empty braces are no hashtag: Redis hashes the whole key.
    const lock = await locker.tryWithContext('job:{}', bound());
    await lock.release();
  } finally {
    await locker.close();
  }
});

test('each key is set on the master of its slot', async ({ cluster }) => {
  const locker = await createLocker(clusterOptions(cluster));
  try {
    const lock = await locker.withContext('slots', bound());
    await sleep(50); // keys whose master answered after the majority was decided
    for (let i = 0; i < 3; i++) {
      const key = `rueidislock:${i}:slots`;
      const master = await cluster.masterFor(key);
      assert.ok((await valueOn(master.url, key)) !== null, `${key} not on its master`);
    }
    assert.is(await lock.release(), true);
  } finally {
    await locker.close();
  }
});

test('a failover of a key\u2019s master: the lock stays held, extensions follow MOVED', async ({
  cluster,
}) => {
  const options = clusterOptions(cluster, { keyValidityMs: 800, commandTimeoutMs: 500 });
  const [holder, other] = await Promise.all([createLocker(options), createLocker(options)]);
  try {
    const lock = await holder.withContext('failover', bound());
    await sleep(50);
    const master = await cluster.masterFor('rueidislock:0:failover');
    const replica = await cluster.replicaOf(master);
    assert.ok(replica, 'no replica');
    await cluster.failover(replica);
    assert.is((await cluster.masterFor('rueidislock:0:failover')).port, replica.port);
    // Three validities: the extensions of key 0 must reach its new master.
    for (let i = 0; i < 8; i++) {
      await sleep(300);
      assert.is(lock.signal.aborted, false, String(lock.signal.reason));
      const attempt = await other.tryWithContext('failover').catch((e: LockError) => e);
      assert.is((attempt as LockError).code, 'ERR_NOT_LOCKED');
    }
    assert.is(await lock.release(), true);
  } finally {
    await Promise.all([holder.close(), other.close()]);
  }
});

test('a waiter from before a failover still wakes by push after it', async ({ cluster }) => {
  // With 60 s keys, a waiter that missed the push would sleep until they expire.
  const options = clusterOptions(cluster, { keyValidityMs: 60_000 });
  const [holder, waiter] = await Promise.all([createLocker(options), createLocker(options)]);
  try {
    const lock = await holder.withContext('failover-push', bound());
    const waiting = waiter.withContext('failover-push', bound(20_000));
    await sleep(50);
    const master = await cluster.masterFor('rueidislock:1:failover-push');
    const replica = await cluster.replicaOf(master);
    assert.ok(replica, 'no replica');
    await cluster.failover(replica);
    await sleep(200); // the new master's connection is up and tracks again
    await lock.release();
    const next = await waiting;
    assert.is(next.signal.aborted, false);
    await next.release();
  } finally {
    await Promise.all([holder.close(), waiter.close()]);
  }
});

test.run();
