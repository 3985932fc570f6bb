import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createLocker,
  type Lock,
  type Locker,
  type LockerOptions,
  LockLostError,
  NotLockedError,
  UnavailableError,
} from '../src/index.js';
import { on } from './helpers/redis.js';
import { type RedisCluster, startRedisCluster } from './helpers/redis-cluster.js';
import { type RedisSentinelSet, startRedisSentinel } from './helpers/redis-sentinel.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { mostAtOnce } from './helpers/semaphores.js';
import { abortedWithin, sleep, until, watched } from './helpers/wait.js';

// Semaphores and read-write locks (docs/semaphores.md, Topologies) on a Redis Cluster and with
// Sentinel: one slot per semaphore, so one master, surviving what the mutex survives there.

// Key names spelled out here, not taken from src/, so that the tests check the layout.
const base = (name: string, kind = 's') => `{rueidislock:${kind}:${name}}`;
const holdersOf = (name: string, kind = 's') => `${base(name, kind)}:h`;
const queueOf = (name: string, kind = 's') => `${base(name, kind)}:q`;
const until60 = { waitTimeoutMs: 60_000 };

/** `promise`, its rejection handled: a test that fails first must not leave it unhandled. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/**
 * Start a wait and resolve once it is queued, with its promise (in an object: a promise
 * returned from an async function would be awaited): `entries` reads the queue
 * where it lives (the master of its slot, the primary).
 */
async function enqueue(entries: () => Promise<string[]>, start: () => Promise<Lock>) {
  const before = new Set(await entries());
  const waiting = handled(start());
  await until(async () => (await entries()).some((entry) => !before.has(entry)));
  return { waiting };
}

/** The ports `locker.stats().servers` names. */
const statsPorts = (locker: Locker) =>
  Object.keys(locker.stats().servers).map((at) => Number(at.split(':').at(-1)));

// ---------------------------------------------------------------------------------------------
// Cluster: 3 masters with a replica each, so that a master can fail over.

type ClusterCtx = { cluster: RedisCluster; lockers: Locker[] };
const cluster = suite<ClusterCtx>('semaphore: cluster');

cluster.before(async (ctx) => {
  ctx.cluster = await startRedisCluster({ masters: 3, replicasPerMaster: 1 });
  ctx.lockers = [];
});

cluster.after.each(async (ctx) => {
  await Promise.all(ctx.lockers.splice(0).map((locker) => locker.close()));
});

cluster.after(async (ctx) => {
  await ctx.cluster.stop();
});

async function clusterLocker(ctx: ClusterCtx, more: LockerOptions = {}): Promise<Locker> {
  const locker = await createLocker({ cluster: { rootNodes: ctx.cluster.rootNodes }, ...more });
  ctx.lockers.push(locker);
  return locker;
}

/** The queue entries of semaphore `name`, read on the master of its slot. */
const clusterEntries =
  (ctx: ClusterCtx, name: string, kind = 's') =>
  async () => {
    const master = await ctx.cluster.masterFor(queueOf(name, kind));
    return (await on(master.url, ['ZRANGE', queueOf(name, kind), '0', '-1'])) as string[];
  };

/** The servers that say they are masters now. */
async function masters(ctx: ClusterCtx): Promise<RedisServer[]> {
  const found: RedisServer[] = [];
  for (const server of ctx.cluster.servers) {
    if (!server.running) continue;
    const role = (await on(server.url, ['ROLE'])) as unknown[];
    if (role[0] === 'master') found.push(server);
  }
  return found;
}

cluster(
  'a semaphore with limit 2 used by several lockers has at most 2 holders at once',
  async (ctx) => {
    const lockers = await Promise.all([clusterLocker(ctx), clusterLocker(ctx), clusterLocker(ctx)]);
    const name = 'cluster-count';
    assert.is(await mostAtOnce(lockers, name, 2, 12), 2, 'the most holders at once');
    const master = await ctx.cluster.masterFor(holdersOf(name));
    assert.equal(await on(master.url, ['KEYS', `${base(name)}:[hmoq]*`]), [], 'what is left');
  },
);

cluster(
  'a waiter is woken by push: its wait ends long before the holders’ keys would expire',
  async (ctx) => {
    // With 60 s keys, a waiter that missed the push sleeps for half a validity (its ticket's
    // renewal) or until the earliest holder would expire: 30 s at least.
    const options = { keyValidityMs: 60_000 };
    const [a, b] = await Promise.all([clusterLocker(ctx, options), clusterLocker(ctx, options)]);
    const name = 'cluster-push';
    const sem = (locker: Locker) => locker.semaphore(name, { limit: 2 });
    const first = await sem(a).withContext();
    const second = await sem(a).withContext();
    const { waiting } = await enqueue(clusterEntries(ctx, name), () => sem(b).withContext(until60));
    const releasedAt = performance.now();
    await first.release();
    const next = await waiting;
    const tookMs = performance.now() - releasedAt;
    assert.ok(tookMs < 10_000, `the waiter got the permit ${tookMs} ms after the release`);
    await Promise.all([second.release(), next.release()]);
  },
);

cluster(
  'names with braces (a}b, {x}, }) work, and every key of each is in one slot, on its master',
  async (ctx) => {
    const [a, b] = await Promise.all([clusterLocker(ctx), clusterLocker(ctx)]);
    const all = await masters(ctx);
    for (const name of ['a}b', '{x}', '}']) {
      const sem = (locker: Locker) => locker.semaphore(name, { limit: 2 });
      const held = await sem(a).withContext();
      const more = await sem(a).withContext();
      // A waiter behind them, so that the queue, its roles, a ticket and a wake key exist too.
      const { waiting } = await enqueue(clusterEntries(ctx, name), () =>
        sem(b).withContext(until60),
      );
      // Every key of this name on any master (the pattern is literal: braces are not special).
      const found: { key: string; port: number }[] = [];
      for (const master of all) {
        const keys = (await on(master.url, ['KEYS', `{rueidislock:s:${name}}:*`])) as string[];
        for (const key of keys) found.push({ key, port: master.port });
      }
      const suffixes = new Set(found.map(({ key }) => key.slice(base(name).length).split(':')[1]));
      for (const kind of ['m', 'h', 'o', 'f', 'q', 'r', 'w']) {
        assert.ok(suffixes.has(kind), `no ${kind} key of "${name}" in ${JSON.stringify(found)}`);
      }
      const slots = new Set<number>();
      for (const { key } of found) {
        slots.add(Number(await on((all[0] as RedisServer).url, ['CLUSTER', 'KEYSLOT', key])));
      }
      assert.is(slots.size, 1, `the slots of "${name}"'s keys: ${[...slots]}`);
      const master = await ctx.cluster.masterFor(holdersOf(name));
      assert.equal(new Set(found.map(({ port }) => port)), new Set([master.port]));
      await held.release();
      const next = await waiting;
      assert.instance(
        await sem(b)
          .tryWithContext()
          .catch((e: unknown) => e),
        NotLockedError,
      );
      await Promise.all([more.release(), next.release()]);
    }
  },
);

cluster(
  'a read-write lock: readers share it, a writer waits for them and then holds it alone',
  async (ctx) => {
    const [a, b, c] = await Promise.all([
      clusterLocker(ctx),
      clusterLocker(ctx),
      clusterLocker(ctx),
    ]);
    const name = 'cluster-rw';
    const rw = (locker: Locker) => locker.readWriteLock(name);
    const r1 = await rw(a).read.withContext();
    const r2 = await rw(b).read.withContext();
    assert.instance(
      await rw(c)
        .write.tryWithContext()
        .catch((e: unknown) => e),
      NotLockedError,
    );
    const writer = await enqueue(clusterEntries(ctx, name, 'rw'), () =>
      rw(c).write.withContext(until60),
    );
    const writing = watched(writer.waiting);
    await r1.release();
    await sleep(100); // a window: the writer must not get in beside a reader
    assert.not.ok(writing.resolved(), 'the writer held beside a reader');
    await r2.release();
    const w = await writing.promise;
    assert.ok((w.token as bigint) > (r2.token as bigint), 'the writer’s token did not grow');
    assert.instance(
      await rw(a)
        .read.tryWithContext()
        .catch((e: unknown) => e),
      NotLockedError,
    );
    await w.release();
    const r3 = await rw(a).read.withContext();
    await r3.release();
  },
);

cluster('every holder gets a token greater than every earlier holder’s', async (ctx) => {
  const [a, b] = await Promise.all([clusterLocker(ctx), clusterLocker(ctx)]);
  let last = 0n;
  let previous: Lock | undefined;
  for (let i = 0; i < 6; i++) {
    // Two held at once: the earlier one is still a holder when the later draws its token.
    const lock = await (i % 2 ? a : b).semaphore('cluster-tokens', { limit: 2 }).withContext();
    assert.ok(lock.token !== undefined && lock.token > last, `token ${lock.token} after ${last}`);
    last = lock.token as bigint;
    await previous?.release();
    previous = lock;
  }
  await previous?.release();
});

/**
 * For `rounds` times 300 ms (past several validities: only extensions keep them): every one
 * of `holders` stays held, and none of `waiting` gets in (the limit is taken).
 */
async function heldThrough(holders: Lock[], waiting: { resolved(): boolean }[], rounds: number) {
  for (let i = 0; i < rounds; i++) {
    await sleep(300); // a window, not a wait: the permits must stay held all through it
    for (const lock of holders) {
      if (lock.signal.aborted) throw new Error(`permit lost: ${String(lock.signal.reason)}`);
    }
    assert.not.ok(
      waiting.some((one) => one.resolved()),
      'a waiter got in beside the limit’s holders',
    );
  }
}

cluster(
  'a failover of the semaphore’s master: holders keep their permits (extensions follow MOVED), waiters get theirs, the limit holds',
  async (ctx) => {
    const options = { keyValidityMs: 800, commandTimeoutMs: 500 };
    const lockers = await Promise.all(Array.from({ length: 4 }, () => clusterLocker(ctx, options)));
    const [h1, h2, w1, w2] = lockers as [Locker, Locker, Locker, Locker];
    const name = 'cluster-failover';
    const sem = (locker: Locker) => locker.semaphore(name, { limit: 2 });
    const holders = [await sem(h1).withContext(), await sem(h2).withContext()];
    const entries = clusterEntries(ctx, name);
    const waiting: ReturnType<typeof watched<Lock>>[] = [];
    for (const locker of [w1, w2]) {
      const queued = await enqueue(entries, () =>
        sem(locker).withContext({ waitTimeoutMs: 30_000 }),
      );
      waiting.push(watched(queued.waiting));
    }
    const master = await ctx.cluster.masterFor(holdersOf(name));
    const replica = await ctx.cluster.replicaOf(master);
    assert.ok(replica, 'no replica');
    // Replicated: both holders and both waiters are on the replica too.
    const onReplica = (key: string) => on(replica.url, ['READONLY'], ['ZCARD', key]);
    await until(async () => (await onReplica(holdersOf(name))) === 2);
    await until(async () => (await onReplica(queueOf(name))) === 2);
    await ctx.cluster.failover(replica);
    assert.is((await ctx.cluster.masterFor(holdersOf(name))).port, replica.port);
    // Three validities: the holders' extensions must reach the new master.
    await heldThrough(holders, waiting, 8);
    assert.is(await on(replica.url, ['ZCARD', holdersOf(name)]), 2, 'holders on the new master');
    // One permit frees: one waiter gets it, the other still waits.
    await (holders[0] as Lock).release();
    await until(() => waiting.some((one) => one.resolved()), AbortSignal.timeout(15_000));
    await sleep(100); // a window: the second waiter must not get in beside the two holders
    assert.is(waiting.filter((one) => one.resolved()).length, 1, 'waiters in with one permit free');
    await (holders[1] as Lock).release();
    const admitted = await Promise.all(waiting.map((one) => one.promise));
    for (const lock of admitted) assert.not.ok(lock.signal.aborted);
    await Promise.all(admitted.map((lock) => lock.release()));
    // The same lockers, after the failover: never more than the limit.
    assert.is(await mostAtOnce(lockers, name, 2, 12), 2, 'the most holders at once');
    // The stats name the new master and no longer the old one.
    for (const locker of lockers) {
      await until(() => statsPorts(locker).includes(replica.port));
      assert.not.ok(statsPorts(locker).includes(master.port), statsPorts(locker).join());
      assert.is(statsPorts(locker).length, 3);
    }
  },
);

cluster(
  'the semaphore’s master dies: holders are told at once (disconnected), waiters get permits on the promoted replica',
  async (ctx) => {
    const options = { keyValidityMs: 2000, commandTimeoutMs: 500 };
    const lockers = await Promise.all(Array.from({ length: 3 }, () => clusterLocker(ctx, options)));
    const [h1, h2, w1] = lockers as [Locker, Locker, Locker];
    const name = 'cluster-dies';
    const sem = (locker: Locker) => locker.semaphore(name, { limit: 2 });
    const holders = [await sem(h1).withContext(), await sem(h2).withContext()];
    const { waiting } = await enqueue(clusterEntries(ctx, name), () =>
      sem(w1).withContext({ waitTimeoutMs: 30_000 }),
    );
    const master = await ctx.cluster.masterFor(holdersOf(name));
    const replica = await ctx.cluster.replicaOf(master);
    assert.ok(replica, 'no replica');
    await until(
      async () => (await on(replica.url, ['READONLY'], ['ZCARD', holdersOf(name)])) === 2,
    );
    await master.stop();
    // The connection dropped: the master may come back without the permits.
    for (const lock of holders) {
      const reason = await abortedWithin(lock.signal, 2000);
      assert.instance(reason, LockLostError);
      assert.is((reason as LockLostError).loss, 'disconnected');
    }
    // The cluster fails the master over by itself (cluster-node-timeout 1 s).
    await until(
      async () => (await ctx.cluster.masterFor(holdersOf(name))).port === replica.port,
      AbortSignal.timeout(20_000),
    );
    await ctx.cluster.settle();
    // The lost holders' permits were replicated and nobody could give them back: the waiter
    // gets one once they expire (or at once, if they are gone), within the wait's bound.
    const next = await waiting;
    assert.not.ok(next.signal.aborted);
    assert.ok((next.token as bigint) > (holders[1]?.token as bigint), 'token did not grow');
    await next.release();
    assert.is(await mostAtOnce(lockers, name, 2, 9), 2, 'the most holders at once');
    for (const locker of lockers) {
      await until(() => statsPorts(locker).includes(replica.port));
      assert.not.ok(statsPorts(locker).includes(master.port), statsPorts(locker).join());
    }
  },
);

cluster.run();

// ---------------------------------------------------------------------------------------------
// Sentinel: a primary, its replica and 3 sentinels. The failover test kills the primary, so it
// starts a set of its own.

type SentinelCtx = { set: RedisSentinelSet; lockers: Locker[] };
const sentinel = suite<SentinelCtx>('semaphore: sentinel');

sentinel.before(async (ctx) => {
  ctx.set = await startRedisSentinel();
  ctx.lockers = [];
});

sentinel.after.each(async (ctx) => {
  await Promise.all(ctx.lockers.splice(0).map((locker) => locker.close()));
});

sentinel.after(async (ctx) => {
  await ctx.set.stop();
});

const sentinelOptions = (set: RedisSentinelSet, more: LockerOptions = {}): LockerOptions => ({
  sentinel: { name: set.name, sentinelRootNodes: set.sentinelRootNodes },
  ...more,
});

sentinel(
  'a semaphore and a read-write lock work on the primary: limit, tokens, keys',
  async (ctx) => {
    const lockers = await Promise.all(
      Array.from({ length: 3 }, () => createLocker(sentinelOptions(ctx.set))),
    );
    ctx.lockers.push(...lockers);
    const [a, b] = lockers as [Locker, Locker];
    assert.is(await mostAtOnce(lockers, 'sentinel-count', 2, 12), 2, 'the most holders at once');
    const first = await a.semaphore('sentinel-count', { limit: 2 }).withContext();
    assert.is(await on(ctx.set.primary.url, ['ZCARD', holdersOf('sentinel-count')]), 1);
    const second = await b.semaphore('sentinel-count', { limit: 2 }).withContext();
    assert.ok((second.token as bigint) > (first.token as bigint), 'token did not grow');
    await Promise.all([first.release(), second.release()]);
    const read = await a.readWriteLock('sentinel-rw').read.withContext();
    assert.instance(
      await b
        .readWriteLock('sentinel-rw')
        .write.tryWithContext()
        .catch((e: unknown) => e),
      NotLockedError,
    );
    await read.release();
    const write = await b.readWriteLock('sentinel-rw').write.withContext();
    assert.ok((write.token as bigint) > (read.token as bigint), 'the writer’s token did not grow');
    await write.release();
  },
);

sentinel.run();

const sentinelFailover = suite('semaphore: sentinel failover');

/**
 * Two holders of a semaphore (limit 2) on a set's primary, a waiter in another locker queued
 * behind them; then `fault` the primary: the holders' signals abort within `abortWithinMs`, the
 * waiter gets a permit on the new primary once the sentinels have promoted the replica, and the
 * limit holds there. As the mutex's sentinel failover (test/sentinel.test.ts).
 */
async function semaphoreFailover(
  fault: (set: RedisSentinelSet) => unknown,
  abortWithinMs: number,
): Promise<LockLostError[]> {
  const set = await startRedisSentinel();
  try {
    const options = sentinelOptions(set, { keyValidityMs: 1000, commandTimeoutMs: 500 });
    const lockers = await Promise.all(Array.from({ length: 3 }, () => createLocker(options)));
    const [h1, h2, w1] = lockers as [Locker, Locker, Locker];
    try {
      const name = 'sentinel-failover';
      const sem = (locker: Locker) => locker.semaphore(name, { limit: 2 });
      const holders = [await sem(h1).withContext(), await sem(h2).withContext()];
      const entries = async () =>
        (await on(set.primary.url, ['ZRANGE', queueOf(name), '0', '-1'])) as string[];
      const { waiting } = await enqueue(entries, () =>
        sem(w1).withContext({ waitTimeoutMs: 20_000 }),
      );
      // Replicated: the permits are on the replica too.
      await until(async () => (await on(set.replica.url, ['ZCARD', holdersOf(name)])) === 2);
      const faultAt = Date.now();
      fault(set);
      const reasons: LockLostError[] = [];
      for (const lock of holders) {
        const reason = await abortedWithin(lock.signal, abortWithinMs);
        assert.instance(reason, LockLostError);
        reasons.push(reason as LockLostError);
      }
      assert.is(await set.failedOver(set.primary.port), set.replica.port);
      const next = await waiting;
      const tookMs = Date.now() - faultAt;
      // down-after-milliseconds (1 s), the vote, the promotion, and the lost permits' expiry.
      assert.ok(tookMs < 10_000, `the waiter got a permit ${tookMs} ms after the fault`);
      assert.is(next.signal.aborted, false);
      assert.equal(Object.keys(w1.stats().servers), [`127.0.0.1:${set.replica.port}`]);
      assert.ok((next.token as bigint) > (holders[1]?.token as bigint), 'token did not grow');
      await next.release();
      // On the new primary, with every locker: never more than the limit.
      assert.is(await mostAtOnce(lockers, name, 2, 9), 2, 'the most holders at once');
      return reasons;
    } finally {
      set.primary.resume();
      await Promise.all(lockers.map((locker) => locker.close()));
    }
  } finally {
    await set.stop();
  }
}

sentinelFailover(
  'the primary dies: holders are told at once (disconnected), a waiter gets a permit on the new primary',
  async () => {
    const reasons = await semaphoreFailover((set) => set.primary.stop(), 1000);
    // The connection dropped: the permits may be gone with the server.
    assert.equal(
      reasons.map((reason) => reason.loss),
      ['disconnected', 'disconnected'],
    );
  },
);

sentinelFailover(
  'the primary freezes: holders are told by their validity, a waiter gets a permit on the new primary',
  async () => {
    // A frozen primary keeps its connections open: the extensions go unanswered, and the
    // signals abort before the permits could expire (1000 ms, less the margin).
    await semaphoreFailover((set) => set.primary.pause(), 1500);
  },
);

sentinelFailover.run();

// ---------------------------------------------------------------------------------------------
// Attempts that fail: a master that is down or not yet known fails them at once (no offline
// queue), so a waiter must back off between them, or it retries without end; where the failure
// comes without I/O, it starves the event loop (no timer fires, not even its waitTimeoutMs).
// One server out of memory (maxmemory 1, noeviction) makes every attempt fail, each by a
// reply, with an error that retrying may cure.

const failing = suite<{ server: RedisServer }>('semaphore: attempts that fail');

failing.before(async (ctx) => {
  ctx.server = await startRedisServer();
});

failing.after(async (ctx) => {
  await ctx.server.stop();
});

/** Script calls (EVALSHA and EVAL) that failed on the server so far. */
async function failedScripts(url: string): Promise<number> {
  const info = String(await on(url, ['INFO', 'commandstats']));
  let failed = 0;
  for (const [, rejected, errors] of info.matchAll(
    /cmdstat_eval(?:sha)?:.*rejected_calls=(\d+),failed_calls=(\d+)/g,
  )) {
    failed += Number(rejected) + Number(errors);
  }
  return failed;
}

failing(
  'a waiter whose attempts fail backs off between them (its give-back does not wake it)',
  async (ctx) => {
    const options = { url: ctx.server.url, keyValidityMs: 60_000 };
    const [a, b] = await Promise.all([createLocker(options), createLocker(options)]);
    try {
      const held = await a.semaphore('out-of-memory', { limit: 1 }).withContext();
      await on(ctx.server.url, ['CONFIG', 'SET', 'maxmemory', '1']);
      try {
        const before = await failedScripts(ctx.server.url);
        const waitTimeoutMs = 1500;
        const error = await b
          .semaphore('out-of-memory', { limit: 1 })
          .withContext({ waitTimeoutMs })
          .catch((e: unknown) => e);
        assert.instance(error, UnavailableError);
        const failed = (await failedScripts(ctx.server.url)) - before;
        // Backing off from tryNextAfterMs (20 ms), doubling: some 7 attempts in 1.5 s, each with
        // its give-back (which fails too). Without a backoff, one attempt per round trip: thousands.
        assert.ok(failed <= 40, `${failed} scripts failed in ${waitTimeoutMs} ms of waiting`);
      } finally {
        await on(ctx.server.url, ['CONFIG', 'SET', 'maxmemory', '0']);
      }
      await held.release();
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  },
);

failing.run();
