import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createLocker,
  type Locker,
  type LockerOptions,
  type LockerStats,
  type LockLostError,
} from '../src/index.js';
import { LockCommands } from '../src/redis/commands.js';
import { resolveOptions } from '../src/shared/resolve-options.js';
import { connect, keysOf } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { abortedWithin, bound, until } from './helpers/wait.js';

// Issue 15: locker.stats(), a snapshot of what a locker holds, waits for and sent.
const test = suite<{ server: RedisServer; lockers: Locker[] }>('stats');

test.before(async (ctx) => {
  ctx.server = await startRedisServer();
});

test.before.each((ctx) => {
  ctx.lockers = [];
});

test.after.each(async (ctx) => {
  await Promise.all(ctx.lockers.splice(0).map((locker) => locker.close()));
});

test.after(async (ctx) => {
  await ctx.server.stop();
});

async function locker(
  ctx: { server: RedisServer; lockers: Locker[] },
  options: LockerOptions = {},
) {
  const created = await createLocker({ url: ctx.server.url, ...options });
  ctx.lockers.push(created);
  return created;
}

const address = (url: string) => {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port}`;
};

test('a new locker has nothing held, waiting or sent, and names its server with its mode', async (ctx) => {
  const stats: LockerStats = (await locker(ctx)).stats();
  assert.equal(stats, {
    held: 0,
    waiting: 0,
    calls: { acquire: 0, extend: 0, check: 0, release: 0, other: 0 },
    invalidations: 0,
    extensionsFailed: 0,
    servers: { [address(ctx.server.url)]: 'push' },
  });
  const polling = await locker(ctx, { tracking: 'off' });
  assert.equal(polling.stats().servers, { [address(ctx.server.url)]: 'poll' });
});

test('held, waiting, the calls by kind and the invalidations follow the locks', async (ctx) => {
  const [holder, waiter] = [await locker(ctx), await locker(ctx)];
  const lock = await holder.withContext('counted', bound());
  assert.is(holder.stats().held, 1);
  assert.is(holder.stats().calls.acquire, 1);
  const waiting = waiter.withContext('counted', bound());
  await until(() => waiter.stats().waiting === 1 && waiter.stats().calls.acquire >= 1);
  assert.is(waiter.stats().held, 0);
  await lock.release();
  const next = await waiting;
  assert.is(holder.stats().held, 0);
  assert.is(holder.stats().calls.release, 1);
  const after = waiter.stats();
  assert.is(after.held, 1);
  assert.is(after.waiting, 0);
  assert.ok(after.invalidations >= 1, `${after.invalidations} invalidations`);
  // The snapshot is a copy: it does not change as the locker goes on.
  await next.release();
  assert.is(after.calls.release, 0);
  assert.is(waiter.stats().calls.release, 1);
});

test('extensions are counted, and one that finds the keys gone counts as failed', async (ctx) => {
  // Polling, with a read of the keys far apart: the extension is the first to find them gone.
  const holder = await locker(ctx, {
    tracking: 'off',
    keyValidityMs: 2000,
    checkIntervalMs: 60_000,
  });
  const lock = await holder.withContext('extended', bound());
  await until(() => holder.stats().calls.extend >= 1);
  assert.is(holder.stats().extensionsFailed, 0);
  const client = await connect(ctx.server.url);
  try {
    await client.del(keysOf('extended'));
  } finally {
    client.destroy();
  }
  // Found by the next extension (a second of validity ahead: no expiry on a loaded machine).
  const reason = await abortedWithin(lock.signal, 10_000);
  assert.is((reason as LockLostError).loss, 'changed');
  assert.is(holder.stats().extensionsFailed, 1);
  assert.is(holder.stats().held, 0);
});

test('a nodes locker names each of its 3 servers with its own mode', async (ctx) => {
  const servers = await Promise.all([startRedisServer(), startRedisServer(), startRedisServer()]);
  const warned = (warning: Error) => warning; // the polling warning: expected here
  process.on('warning', warned);
  try {
    // The third refuses pushes: it alone is polled.
    const admin = await connect(servers[2]?.url as string);
    await admin.sendCommand(['ACL', 'SETUSER', 'default', '-client|tracking']);
    admin.destroy();
    const nodes = servers.map((server) => server.url);
    const spread = await createLocker({ nodes });
    ctx.lockers.push(spread);
    // createLocker resolves once a majority of the nodes is up: the last may come just after
    // (it did at load 14).
    await until(() => Object.keys(spread.stats().servers).length === 3);
    assert.equal(spread.stats().servers, {
      [address(nodes[0] as string)]: 'push',
      [address(nodes[1] as string)]: 'push',
      [address(nodes[2] as string)]: 'poll',
    });
    assert.is(spread.mode, 'poll');
    // One acquire script per server, and a deletion on each (and another where a server's
    // answer came after the majority: its key is deleted when it comes).
    await (await spread.tryWithContext('spread')).release();
    assert.is(spread.stats().calls.acquire, 3);
    assert.ok(spread.stats().calls.release >= 3, `${spread.stats().calls.release} deletions`);
  } finally {
    process.off('warning', warned);
    await Promise.all(ctx.lockers.splice(0).map((done) => done.close()));
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('in a cluster, a script sent again apart after TRYAGAIN is counted with its fence\u2019s', async () => {
  const calls = { acquire: 0, extend: 0, check: 0, release: 0, other: 0 };
  // A slot migrating: a script on the key and its fence is refused, one on a single key runs.
  const send = async (args: string[]) => {
    if (args[2] !== '1') throw new Error('TRYAGAIN Multiple keys request during rehashing of slot');
    return [1];
  };
  const commands = new LockCommands(
    send,
    () => 'fence',
    'raised, apart on TRYAGAIN',
    resolveOptions(),
    calls,
  );
  await commands.extend(['key'], 'value', 7n);
  await commands.delete(['key'], 'value', 7n);
  // Each: the script on both keys, then the key's alone and the fence's raise.
  assert.equal(calls, { acquire: 0, extend: 2, check: 0, release: 2, other: 2 });
});

test.run();
