import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type Lock, type Locker, type LockerOptions } from '../src/index.js';
import { checkMutex } from './helpers/mutex-check.js';
import { calls, connect, keysOf } from './helpers/redis.js';
import { startRedisCluster } from './helpers/redis-cluster.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { bound, sleep, until } from './helpers/wait.js';

// The queue where a lock's keys are on several servers: it lives beside key 0, on key 0's
// server, and orders who listens to the keys and tries them; the release is a plain delete.
// Each suite starts its servers once; the test that stops key 0's server comes last.

/** Servers arranged as 3 nodes or a 3-master cluster, and where a name's queue lives. */
interface Spread {
  readonly options: LockerOptions;
  readonly servers: readonly RedisServer[];
  /** A lock name whose keys are on three different servers. */
  name(base: string): Promise<string>;
  /** The server of key 0 of `name`, which holds its queue. */
  queueServer(name: string): Promise<RedisServer>;
  /** Bring a stopped server back, and wait until it serves its keys again. */
  restart(server: RedisServer): Promise<void>;
  stop(): Promise<void>;
}

const KINDS: readonly { label: string; start(): Promise<Spread> }[] = [
  {
    label: '3 nodes',
    async start() {
      const servers = await Promise.all(Array.from({ length: 3 }, () => startRedisServer()));
      return {
        options: { nodes: servers.map((server) => server.url) },
        servers,
        name: async (base) => base,
        // Listed first, node 0 holds key 0 of every lock.
        queueServer: async () => servers[0] as RedisServer,
        restart: (server) => server.restart(),
        stop: async () => {
          for (const server of servers) server.resume();
          await Promise.all(servers.map((server) => server.stop()));
        },
      };
    },
  },
  {
    label: 'cluster of 3 masters',
    async start() {
      const cluster = await startRedisCluster({ masters: 3 });
      // Without replicas, a master that is down would take the whole cluster down with it:
      // here the others go on serving their slots, as independent nodes would.
      for (const server of cluster.servers) {
        const client = await connect(server.url);
        await client.configSet('cluster-require-full-coverage', 'no');
        client.destroy();
      }
      const masterOf = (key: string) => cluster.masterFor(key);
      return {
        options: { cluster: { rootNodes: cluster.rootNodes } },
        servers: cluster.servers,
        // Keys of one name may share a master: the tests need one key per master.
        name: async (base) => {
          for (let i = 0; i < 200; i++) {
            const name = `${base}-${i}`;
            const masters = await Promise.all(keysOf(name).map(masterOf));
            if (new Set(masters.map((master) => master.port)).size === 3) return name;
          }
          throw new Error(`no name from ${base} has its keys on three masters`);
        },
        queueServer: (name) => masterOf(keysOf(name)[0] as string),
        restart: async (server) => {
          await server.restart();
          await cluster.settle();
        },
        stop: async () => {
          for (const server of cluster.servers) server.resume();
          await cluster.stop();
        },
      };
    },
  },
];

/** The queue of lock `name` (default prefix): beside key 0, with key 0 as its hashtag. */
const queueKey = (name: string) => `{rueidislock:0:${name}}:q`;

/** How many waiters are queued for `name`, on its queue's server. */
async function queued(spread: Spread, name: string): Promise<number> {
  const client = await connect((await spread.queueServer(name)).url);
  try {
    return await client.zCard(queueKey(name));
  } finally {
    client.destroy();
  }
}

/**
 * The scripts and key reads (MGET) the servers have run so far: each call of the lock's
 * logic is one script, or for a check one MGET (with a PTTL per key in the same write, which
 * commandstats cannot tell from the scripts' own).
 */
async function callsOn(servers: readonly RedisServer[]): Promise<number> {
  let total = 0;
  for (const server of servers) {
    const client = await connect(server.url);
    for (const command of ['evalsha', 'eval', 'mget']) total += await calls(client, command);
    client.destroy();
  }
  return total;
}

/**
 * Waits the test awaits later: one that rejects before (the test failed first, and closing
 * its locker rejects the rest) must not end the process as an unhandled rejection.
 */
function later<T>(promises: Promise<T>[]): Promise<T>[] {
  for (const promise of promises) promise.catch(() => {});
  return promises;
}

for (const kind of KINDS) {
  const test = suite<{ spread: Spread; lockers: Locker[] }>(`queue on ${kind.label}`);

  test.before(async (ctx) => {
    ctx.spread = await kind.start();
  });

  test.before.each((ctx) => {
    ctx.lockers = [];
  });

  test.after.each(async (ctx) => {
    await Promise.all(ctx.lockers.map((locker) => locker.close()));
  });

  test.after(async (ctx) => {
    await ctx.spread.stop();
  });

  /** `n` lockers of their own (each its own connections), closed after the test. */
  async function lockers(
    ctx: { spread: Spread; lockers: Locker[] },
    n: number,
    more: LockerOptions = {},
  ): Promise<Locker[]> {
    const made = await Promise.all(
      Array.from({ length: n }, () => createLocker({ ...ctx.spread.options, ...more })),
    );
    ctx.lockers.push(...made);
    return made;
  }

  test('the calls per extension do not grow with the number of waiters', async (ctx) => {
    const { spread } = ctx;
    const name = await spread.name('scale');
    // Extensions every 1000 ms (half the validity).
    const validity = 2000;
    const [holder, ...waiters] = await lockers(ctx, 17, { keyValidityMs: validity });
    const lock = await (holder as Locker).withContext(name, bound(60_000));
    const waiting = later(
      waiters.map((locker) =>
        locker.withContext(name, bound(60_000)).then((next) => next.release()),
      ),
    );
    await until(async () => (await queued(spread, name)) === waiters.length);
    // Every waiter read the keys once, at its first attempt: the next extension is pushed to
    // each of them once. Count from after that one.
    await sleep(validity);
    const before = await callsOn(spread.servers);
    const windowMs = 4000;
    await sleep(windowMs); // a window: its commands are counted
    const spent = (await callsOn(spread.servers)) - before;
    // The design, per extension (at most window / interval + 1 of them), with N = 3 servers
    // (3 keys, one call each): the holder's N extend scripts; the head, woken by each of the
    // N keys' pushes and by its own timer, at most N + 1 attempts of N scripts each; the
    // deputy, woken once by the head's renewed ticket, one script in line (and a PTTL of that
    // ticket). The others sleep and send nothing. With W waiters racing, each extension would
    // wake all W of them: W x N scripts (48 here).
    const n = 3;
    const extensions = windowMs / (validity / 2) + 1;
    const perExtension = n + (n + 1) * n + 1;
    assert.ok(spent <= extensions * perExtension, `${spent} calls in ${windowMs} ms`);
    await lock.release();
    await Promise.all(waiting);
  });

  test('waiters in different lockers get the lock in the order they queued', async (ctx) => {
    const { spread } = ctx;
    const name = await spread.name('fifo');
    const [holder, ...waiters] = await lockers(ctx, 5, { keyValidityMs: 30_000 });
    const lock = await (holder as Locker).withContext(name, bound(60_000));
    const order: number[] = [];
    const done: Promise<void>[] = [];
    for (const [i, locker] of waiters.entries()) {
      done.push(
        ...later([
          locker.withContext(name, bound(20_000)).then(async (next) => {
            order.push(i);
            await next.release();
          }),
        ]),
      );
      await until(async () => (await queued(spread, name)) === i + 1); // one after another
    }
    await lock.release();
    await Promise.all(done);
    assert.equal(order, [0, 1, 2, 3]);
  });

  test('never two holders: three lockers, two waiters each, many turns', async (ctx) => {
    const name = await ctx.spread.name('mutex');
    const all = await lockers(ctx, 3, { keyValidityMs: 2000 });
    const { acquisitions, overlaps } = await checkMutex(all, name, 15, 30_000);
    assert.is(acquisitions, 90);
    assert.is(overlaps, 0);
  });

  test('while key 0’s server is frozen, the listening waiters race for the lock; the others follow once it answers', async (ctx) => {
    const { spread } = ctx;
    const name = await spread.name('frozen');
    const options = { keyValidityMs: 2000, commandTimeoutMs: 300 };
    const [holder, ...waiters] = await lockers(ctx, 4, options);
    const lock = await (holder as Locker).withContext(name, bound(60_000));
    const got: number[] = [];
    const done = later(
      waiters.map((locker, i) =>
        locker.withContext(name, bound(30_000)).then(async (next) => {
          got.push(i);
          await next.release();
        }),
      ),
    );
    await until(async () => (await queued(spread, name)) === waiters.length);
    const server = await spread.queueServer(name);
    server.pause();
    try {
      await lock.release();
      // The head and the deputy listen: they find the queue's server failing and race.
      await until(async () => got.length >= 2, AbortSignal.timeout(15_000));
    } finally {
      server.resume();
    }
    // The third slept on its wake key: it gets its turn once the server answers again.
    await Promise.all(done);
    assert.is(got.length, 3);
    // And waiters queue again.
    const again = await lockers(ctx, 2, options);
    const held = await (again[0] as Locker).withContext(name, bound(60_000));
    const [next] = later([(again[1] as Locker).withContext(name, bound(20_000))]);
    await until(async () => (await queued(spread, name)) === 1);
    await held.release();
    await (await (next as Promise<Lock>)).release();
  });

  test('while key 0’s server is down, every waiter races for the lock; they queue again once it is back', async (ctx) => {
    const { spread } = ctx;
    const name = await spread.name('down');
    const options = { keyValidityMs: 2000, commandTimeoutMs: 300 };
    const [holder, ...waiters] = await lockers(ctx, 4, options);
    const lock = await (holder as Locker).withContext(name, bound(60_000));
    const done = later(
      waiters.map((locker) =>
        locker.withContext(name, bound(30_000)).then((next) => next.release()),
      ),
    );
    await until(async () => (await queued(spread, name)) === waiters.length);
    const server = await spread.queueServer(name);
    await server.stop();
    await lock.release();
    // Even the one asleep on its wake key: the dropped connection woke it.
    await Promise.all(done);
    await spread.restart(server);
    const held = await (holder as Locker).withContext(name, bound(10_000));
    const next = later(
      waiters.map((locker) =>
        locker.withContext(name, bound(30_000)).then((lock) => lock.release()),
      ),
    );
    await until(async () => (await queued(spread, name)) === waiters.length);
    await held.release();
    await Promise.all(next);
  });

  test.run();
}
