import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createLocker,
  LockError,
  type Locker,
  type LockerOptions,
  LockLostError,
} from '../src/index.js';
import { checkMutex } from './helpers/mutex-check.js';
import { type Client, calls, connect, keysOf } from './helpers/redis.js';
import { startRedisCluster } from './helpers/redis-cluster.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { abortedWithin, bound, sleep, until } from './helpers/wait.js';

// Servers without invalidation pushes (issue 14): an ACL that refuses CLIENT TRACKING, a server
// without HELLO (RESP2 only), and `tracking: 'off'`. The locker polls them; every promise the
// README makes of a waiter and a holder still holds, later. Each test counts commands or looks
// at the connections, so each gets a server of its own.
type Ctx = { server: RedisServer; admin: Client; lockers: Locker[]; warnings: Error[] };
const test = suite<Ctx>('polling');

const onWarning = (ctx: Ctx) => (warning: Error) => {
  if ((warning as { code?: string }).code === 'TRACKLOCK_POLLING') ctx.warnings.push(warning);
};
let listener: ((warning: Error) => void) | undefined;

test.before.each(async (ctx) => {
  ctx.server = await startRedisServer();
  ctx.admin = await connect(ctx.server.url);
  ctx.lockers = [];
  ctx.warnings = [];
  listener = onWarning(ctx);
  process.on('warning', listener);
});

test.after.each(async (ctx) => {
  if (listener) process.off('warning', listener);
  await Promise.all(ctx.lockers.map((locker) => locker.close()));
  ctx.admin.destroy();
  await ctx.server.stop();
});

/** A locker closed after the test: on the test's server unless `options` place the keys. */
async function locker(ctx: Ctx, options: LockerOptions = {}): Promise<Locker> {
  const elsewhere = options.nodes !== undefined || options.cluster !== undefined;
  const created = await createLocker(elsewhere ? options : { url: ctx.server.url, ...options });
  ctx.lockers.push(created);
  return created;
}

/** A user whose ACL allows everything but CLIENT TRACKING, as several managed services do. */
async function noTrackingUrl(ctx: Ctx): Promise<string> {
  await ctx.admin.sendCommand(['ACL', 'SETUSER', 'app', 'on', '>pw', '~*', '&*', '+@all']);
  await ctx.admin.sendCommand(['ACL', 'SETUSER', 'app', '-client|tracking']);
  return `redis://app:pw@127.0.0.1:${ctx.server.port}`;
}

/** The protocol (`resp=2` or `3`) of every connection but the test's own. */
async function protocols(admin: Client): Promise<string[]> {
  const list = String(await admin.sendCommand(['CLIENT', 'LIST']));
  const own = String(await admin.sendCommand(['CLIENT', 'ID']));
  return list
    .split('\n')
    .filter((line) => line.startsWith('id=') && !line.startsWith(`id=${own} `))
    .map((line) => /resp=(\d)/.exec(line)?.[1] ?? '?');
}

/** A holder in one locker, a waiter in another: the waiter gets the lock once it is released. */
async function handsOver(holder: Locker, waiter: Locker, name: string): Promise<void> {
  const lock = await holder.withContext(name, bound());
  const waiting = waiter.withContext(name, { waitTimeoutMs: 10_000 });
  await sleep(50); // the waiter's first attempts find the lock held
  await lock.release();
  const next = await waiting;
  assert.ok((next.token as bigint) > (lock.token as bigint), 'the fencing token did not grow');
  assert.is(await next.release(), true);
}

test('a server whose ACL refuses CLIENT TRACKING is polled, with one warning that says why', async (ctx) => {
  const url = await noTrackingUrl(ctx);
  const holder = await locker(ctx, { url, keyValidityMs: 60_000 });
  assert.is(holder.mode, 'poll');
  await until(() => ctx.warnings.length > 0);
  assert.is(ctx.warnings.length, 1);
  assert.match(
    ctx.warnings[0]?.message ?? '',
    /refused CLIENT TRACKING \(NOPERM.*client\|tracking/,
  );
  assert.match(ctx.warnings[0]?.message ?? '', /127\.0\.0\.1:\d+/);
  const waiter = await locker(ctx, { url, keyValidityMs: 60_000 });
  // With 60 s keys, a waiter that did not poll would wait until they expire.
  await handsOver(holder, waiter, 'acl');
  assert.equal(await protocols(ctx.admin), ['2', '2'], 'polling lockers speak RESP2');
  assert.is(ctx.warnings.length, 2, 'one warning per locker');
});

test("tracking: 'on' refuses a server without CLIENT TRACKING at once, saying what to do", async (ctx) => {
  const url = await noTrackingUrl(ctx);
  const started = performance.now();
  const error = await createLocker({ url, tracking: 'on', connectTimeoutMs: 60_000 }).catch(
    (e: unknown) => e,
  );
  assert.instance(error, LockError);
  assert.is((error as LockError).code, 'ERR_CONNECT');
  assert.match((error as Error).message, /refused CLIENT TRACKING/);
  assert.match((error as Error).message, /\+client\|tracking/);
  assert.match((error as Error).message, /tracking: 'auto'/);
  assert.ok(performance.now() - started < 30_000, 'it waited for the connect timeout');
  await until(async () => (await protocols(ctx.admin)).length === 0);
});

test('a server without HELLO (RESP2 only) is polled over RESP2', async (ctx) => {
  const old = await startRedisServer(['--rename-command', 'HELLO', '""']);
  try {
    const url = old.url;
    const error = await createLocker({ url, tracking: 'on' }).catch((e: unknown) => e);
    assert.instance(error, LockError);
    assert.is((error as LockError).code, 'ERR_SERVER_VERSION');
    assert.match((error as Error).message, /refused RESP3/);
    const [holder, waiter] = [
      await createLocker({ url, keyValidityMs: 60_000 }),
      await createLocker({ url, keyValidityMs: 60_000 }),
    ];
    try {
      assert.is(holder.mode, 'poll');
      assert.match(ctx.warnings[0]?.message ?? '', /refused RESP3 \(HELLO 3\)/);
      await handsOver(holder, waiter, 'resp2');
      // Force, and the holder hears of it at its next poll.
      const held = await holder.withContext('forced', bound());
      await (await waiter.forceWithContext('forced', bound())).release();
      assert.instance(await abortedWithin(held.signal, 5000), LockLostError);
    } finally {
      await Promise.all([holder.close(), waiter.close()]);
    }
  } finally {
    await old.stop();
  }
});

test("tracking: 'off' polls a server that allows pushes, without a warning and without tracking", async (ctx) => {
  const [holder, waiter] = [
    await locker(ctx, { tracking: 'off', keyValidityMs: 60_000 }),
    await locker(ctx, { tracking: 'off', keyValidityMs: 60_000 }),
  ];
  assert.is(holder.mode, 'poll');
  await handsOver(holder, waiter, 'off');
  assert.is(await calls(ctx.admin, 'client\\|tracking'), 0);
  assert.is(ctx.warnings.length, 0);
  const pushing = await locker(ctx);
  assert.is(pushing.mode, 'push');
});

test('a polling waiter looks often at first, then about once per pollIntervalMs', async (ctx) => {
  const options: LockerOptions = { tracking: 'off', keyValidityMs: 60_000, pollIntervalMs: 100 };
  const [holder, waiter] = [await locker(ctx, options), await locker(ctx, options)];
  const lock = await holder.withContext('slow', bound());
  const before = await calls(ctx.admin, 'evalsha');
  const started = performance.now();
  const waiting = waiter.withContext('slow', { waitTimeoutMs: 10_000 });
  await sleep(1000); // a hold of a second: the window whose polls are counted
  const polls = (await calls(ctx.admin, 'evalsha')) - before;
  const windowMs = performance.now() - started;
  // Pauses of 2, 4, … ms up to 100, each at least half its length: at most 8 to reach 100 ms,
  // then one per 50 ms at most. And it does poll (with 60 s keys, it would not otherwise).
  assert.ok(polls <= 8 + Math.ceil(windowMs / 50), `${polls} attempts in ${windowMs} ms`);
  assert.ok(polls >= 5, `${polls} attempts in ${windowMs} ms`);
  await lock.release();
  await (await waiting).release();
});

test('a polling holder notices its keys deleted within checkIntervalMs, not at its next extension', async (ctx) => {
  const holder = await locker(ctx, { tracking: 'off', keyValidityMs: 60_000, checkIntervalMs: 50 });
  const lock = await holder.withContext('deleted', bound());
  await ctx.admin.del(keysOf('deleted').slice(0, 2));
  // The next extension is 30 s away.
  const reason = await abortedWithin(lock.signal, 10_000);
  assert.instance(reason, LockLostError);
  assert.is((reason as LockLostError).loss, 'changed');
});

test('polling waiters of several lockers are served in arrival order', async (ctx) => {
  const options: LockerOptions = { tracking: 'off', keyValidityMs: 60_000, pollIntervalMs: 20 };
  const holder = await locker(ctx, options);
  const waiters = [
    await locker(ctx, options),
    await locker(ctx, options),
    await locker(ctx, options),
  ];
  const lock = await holder.withContext('fifo', bound());
  const order: number[] = [];
  const done = waiters.map(async (waiter, i) => {
    // Each joins the queue before the next one starts waiting.
    await until(async () => (await ctx.admin.zCard('rueidislock:q:fifo')) === i);
    const next = await waiter.withContext('fifo', { waitTimeoutMs: 20_000 });
    order.push(i);
    await sleep(20);
    await next.release();
  });
  await until(async () => (await ctx.admin.zCard('rueidislock:q:fifo')) === 3);
  await lock.release();
  await Promise.all(done);
  assert.equal(order, [0, 1, 2]);
});

test('pushing and polling lockers on one server never hold the lock together', async (ctx) => {
  const lockers = [
    await locker(ctx),
    await locker(ctx, { tracking: 'off', pollIntervalMs: 10 }),
    await locker(ctx, { tracking: 'off', pollIntervalMs: 10 }),
  ];
  const { acquisitions, overlaps } = await checkMutex(lockers, 'mixed', 15, 20_000);
  assert.is(acquisitions, 90);
  assert.is(overlaps, 0);
});

test('nodes that refuse CLIENT TRACKING are polled, with one warning for the locker', async (ctx) => {
  const servers = await Promise.all([startRedisServer(), startRedisServer(), startRedisServer()]);
  try {
    for (const server of servers) {
      const admin = await connect(server.url);
      await admin.sendCommand(['ACL', 'SETUSER', 'default', '-client|tracking']);
      admin.destroy();
    }
    const nodes = servers.map((server) => server.url);
    const [holder, waiter] = [
      await locker(ctx, { nodes, keyValidityMs: 60_000 }),
      await locker(ctx, { nodes, keyValidityMs: 60_000 }),
    ];
    assert.is(holder.mode, 'poll');
    await handsOver(holder, waiter, 'nodes');
    assert.is(ctx.warnings.length, 2, 'one warning per locker, not per node');
  } finally {
    await Promise.all(ctx.lockers.splice(0).map((done) => done.close()));
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('a cluster whose nodes refuse CLIENT TRACKING is polled', async (ctx) => {
  const cluster = await startRedisCluster({ masters: 3 });
  try {
    for (const server of cluster.servers) {
      const admin = await connect(server.url);
      await admin.sendCommand(['ACL', 'SETUSER', 'default', '-client|tracking']);
      admin.destroy();
    }
    const options: LockerOptions = {
      cluster: { rootNodes: cluster.rootNodes },
      keyValidityMs: 60_000,
    };
    const [holder, waiter] = [await locker(ctx, options), await locker(ctx, options)];
    assert.is(holder.mode, 'poll');
    assert.match(ctx.warnings[0]?.message ?? '', /refused CLIENT TRACKING/);
    await handsOver(holder, waiter, 'cluster');
    const error = await createLocker({ ...options, tracking: 'on' }).catch((e: unknown) => e);
    assert.is((error as LockError).code, 'ERR_CONNECT');
    assert.match((error as Error).message, /refused CLIENT TRACKING/);
  } finally {
    await Promise.all(ctx.lockers.splice(0).map((done) => done.close()));
    await cluster.stop();
  }
});

test('a locker whose reconnect is refused CLIENT TRACKING goes on by polling', async (ctx) => {
  const [holder, waiter] = [
    await locker(ctx, { keyValidityMs: 60_000 }),
    await locker(ctx, { keyValidityMs: 60_000 }),
  ];
  assert.is(holder.mode, 'push');
  // The server's rules change (a managed service's update), and the connections drop.
  await ctx.admin.sendCommand(['ACL', 'SETUSER', 'default', '-client|tracking']);
  await ctx.admin.sendCommand(['CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes']);
  await until(() => holder.mode === 'poll' && waiter.mode === 'poll');
  assert.match(ctx.warnings[0]?.message ?? '', /refused CLIENT TRACKING/);
  await handsOver(holder, waiter, 'changed');
});

test('with queue: false, every polling locker tries the keys itself', async (ctx) => {
  const options: LockerOptions = { tracking: 'off', queue: false, keyValidityMs: 60_000 };
  const [holder, waiter] = [await locker(ctx, options), await locker(ctx, options)];
  await handsOver(holder, waiter, 'racing');
  assert.is(await ctx.admin.exists('rueidislock:q:racing'), 0, 'a queue was made');
});

test('pollIntervalMs, checkIntervalMs and tracking are checked', async () => {
  for (const bad of [0, 1.5, -1]) {
    for (const name of ['pollIntervalMs', 'checkIntervalMs']) {
      const error = await createLocker({ [name]: bad }).catch((e: unknown) => e);
      assert.instance(error, RangeError);
      assert.match((error as Error).message, new RegExp(name));
    }
  }
  const error = await createLocker({ tracking: 'yes' as 'on' }).catch((e: unknown) => e);
  assert.instance(error, TypeError);
  assert.match((error as Error).message, /tracking must be 'auto', 'on' or 'off'/);
});

test.run();
