import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type LockerOptions, LockLostError } from '../src/index.js';
import { keysOf, on, scriptCounter, stillHeldAgainst } from './helpers/redis.js';
import { type RedisCluster, startRedisCluster } from './helpers/redis-cluster.js';
import { abortedWithin, bound, sleep, until } from './helpers/wait.js';

// A 3-master cluster with one replica each, so that a master can fail over.
const test = suite<{ cluster: RedisCluster }>('cluster');

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

/** The value of `key` on `url`, read there directly. */
async function valueOn(url: string, key: string): Promise<string | null> {
  return (await on(url, ['GET', key])) as string | null;
}

/**
 * Every key of lock `name` is set on the master of its slot: keys whose master answered after
 * the majority was decided join the lock a little later.
 */
async function everyKeyOnItsMaster(cluster: RedisCluster, name: string): Promise<boolean> {
  for (const key of keysOf(name)) {
    if ((await valueOn((await cluster.masterFor(key)).url, key)) === null) return false;
  }
  return true;
}

test('a name with braces is rejected: a {hashtag} would put every key in one slot', async ({
  cluster,
}) => {
  const locker = await createLocker(clusterOptions(cluster));
  try {
    for (const name of ['{user:1}:job', 'job:{x}']) {
      const error = await locker.tryWithContext(name).catch((e: unknown) => e);
      assert.instance(error, TypeError);
      assert.match((error as Error).message, 'hashtag');
    }
    // No hashtag, but a brace would break the key's fence, whose hashtag is the key.
    for (const name of ['job:{}', 'job}']) {
      const error = await locker.tryWithContext(name).catch((e: unknown) => e);
      assert.instance(error, TypeError);
      assert.match((error as Error).message, 'braces');
    }
  } finally {
    await locker.close();
  }
});

test('each key is set on the master of its slot', async ({ cluster }) => {
  const locker = await createLocker(clusterOptions(cluster));
  try {
    const lock = await locker.withContext('slots', bound(10_000));
    // Keys whose master answered after the majority was decided are set a little later.
    await until(() => everyKeyOnItsMaster(cluster, 'slots'));
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
    const lock = await holder.withContext('failover', bound(10_000));
    await until(() => everyKeyOnItsMaster(cluster, 'failover'));
    await sleep(50); // and the locker has read its reply, which nothing outside shows
    const master = await cluster.masterFor('rueidislock:0:failover');
    const replica = await cluster.replicaOf(master);
    assert.ok(replica, 'no replica');
    await cluster.failover(replica);
    assert.is((await cluster.masterFor('rueidislock:0:failover')).port, replica.port);
    // Three validities: the extensions of key 0 must reach its new master.
    await stillHeldAgainst(lock, other, 8);
    // The stats name the new master, and no longer the old one (once node-redis has connected
    // to it: the extensions of the other keys may have kept the lock until then).
    const ports = () => Object.keys(holder.stats().servers).map((at) => Number(at.split(':')[1]));
    await until(() => ports().includes(replica.port));
    assert.ok(!ports().includes(master.port), ports().join());
    assert.is(ports().length, 3);
    assert.is(await lock.release(), true);
  } finally {
    await Promise.all([holder.close(), other.close()]);
  }
});

/** CLIENT KILL the connections named `name` on every node. */
async function killNamed(cluster: RedisCluster, name: string): Promise<void> {
  for (const server of cluster.servers) {
    const list = String(await on(server.url, ['CLIENT', 'LIST']));
    for (const [, id] of list.matchAll(new RegExp(`id=(\\d+) [^\\n]* name=${name} `, 'g'))) {
      await on(server.url, ['CLIENT', 'KILL', 'ID', id as string]);
    }
  }
}

test('dropped connections to the masters of a majority of the keys abort the lock', async ({
  cluster,
}) => {
  // A name on the locker's connections, so that only they are killed.
  const options = clusterOptions(cluster, { keyValidityMs: 2000 });
  const locker = await createLocker({
    ...options,
    cluster: { rootNodes: cluster.rootNodes, defaults: { name: 'holder' } },
  });
  try {
    const lock = await locker.withContext('dropped', bound(10_000));
    // Every master's connections drop: those masters may have restarted without the keys.
    await killNamed(cluster, 'holder');
    const reason = await abortedWithin(lock.signal, 5000);
    assert.instance(reason, LockLostError);
    assert.is((reason as LockLostError).loss, 'disconnected');
    // Once the connections are back (and the keys are deleted or expired), it can be taken.
    const next = await locker.withContext('dropped', bound(10_000));
    assert.is(await next.release(), true);
  } finally {
    await locker.close();
  }
});

test('connections that drop for good (no reconnect strategy) abort the lock too', async ({
  cluster,
}) => {
  const locker = await createLocker({
    ...clusterOptions(cluster, { keyValidityMs: 60_000 }),
    cluster: {
      rootNodes: cluster.rootNodes,
      defaults: { name: 'given-up', socket: { reconnectStrategy: false } },
    },
  });
  try {
    const lock = await locker.withContext('given-up', bound(10_000));
    await killNamed(cluster, 'given-up');
    const reason = await abortedWithin(lock.signal, 5000);
    assert.is((reason as LockLostError).loss, 'disconnected');
  } finally {
    await locker.close();
  }
});

test('a waiter from before a failover still wakes by push after it', async ({ cluster }) => {
  // With 60 s keys, a waiter that missed the push would sleep until they expire.
  const options = clusterOptions(cluster, { keyValidityMs: 60_000 });
  const [holder, waiter] = await Promise.all([createLocker(options), createLocker(options)]);
  try {
    const scripts = await scriptCounter(cluster.servers.map((server) => server.url));
    const lock = await holder.withContext('failover-push', bound(10_000));
    await until(() => everyKeyOnItsMaster(cluster, 'failover-push'));
    const holders = await scripts();
    const waiting = waiter.withContext('failover-push', bound(20_000));
    waiting.catch(() => {}); // awaited below; a failure before that must not crash the run
    // The waiter tried once (as many scripts as the holder's acquisition) and sleeps.
    await until(async () => (await scripts()) >= 2 * holders);
    const master = await cluster.masterFor('rueidislock:1:failover-push');
    const replica = await cluster.replicaOf(master);
    assert.ok(replica, 'no replica');
    await cluster.failover(replica);
    // The new master's connection is up and tracks again: nothing outside tells when a
    // locker's connection to it is, so a moment for it (the test passes either way).
    await sleep(200);
    await lock.release();
    const next = await waiting;
    assert.is(next.signal.aborted, false);
    await next.release();
  } finally {
    await Promise.all([holder.close(), waiter.close()]);
  }
});

test('a slot being migrated: the acquisition follows ASK, the extensions MOVED once it is done', async ({
  cluster,
}) => {
  const key = 'rueidislock:0:migrating';
  const source = await cluster.masterFor(key);
  const masters = [];
  for (const server of cluster.servers) {
    const role = (await on(server.url, ['ROLE'])) as unknown[];
    if (role[0] === 'master') masters.push(server);
  }
  const target = masters.find((server) => server.port !== source.port);
  assert.ok(target, 'no other master');
  const slot = String(await on(source.url, ['CLUSTER', 'KEYSLOT', key]));
  const sourceId = String(await on(source.url, ['CLUSTER', 'MYID']));
  const targetId = String(await on(target.url, ['CLUSTER', 'MYID']));
  await on(target.url, ['CLUSTER', 'SETSLOT', slot, 'IMPORTING', sourceId]);
  await on(source.url, ['CLUSTER', 'SETSLOT', slot, 'MIGRATING', targetId]);
  const options = clusterOptions(cluster, { keyValidityMs: 800, commandTimeoutMs: 500 });
  const [holder, other] = await Promise.all([createLocker(options), createLocker(options)]);
  try {
    // The key is absent on the source, so the source answers ASK: it is set on the target.
    const lock = await holder.withContext('migrating', bound(10_000));
    const onTarget = async () => (await on(target.url, ['ASKING'], ['GET', key])) !== null;
    await until(onTarget); // key 0 on the target, if it answered after the majority was decided
    // The migration ends: the slot is the target's, and the source answers MOVED.
    for (const master of masters) {
      await on(master.url, ['CLUSTER', 'SETSLOT', slot, 'NODE', targetId]);
    }
    await stillHeldAgainst(lock, other, 8);
    assert.ok((await valueOn(target.url, key)) !== null, 'key 0 not extended on the target');
    assert.is(await lock.release(), true);
  } finally {
    await Promise.all([holder.close(), other.close()]);
  }
});

test.run();
