import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, LockError, type LockerOptions, LockLostError } from '../src/index.js';
import { connect, keysOf, stillHeldAgainst } from './helpers/redis.js';
import { type RedisSentinelSet, startRedisSentinel } from './helpers/redis-sentinel.js';
import { freePort } from './helpers/redis-server.js';
import { abortedWithin, bound, until } from './helpers/wait.js';

// A primary, its replica and 3 sentinels. The failover tests kill or freeze the primary, so
// each starts a set of its own; the others share one.
const test = suite<{ set: RedisSentinelSet }>('sentinel');

test.before(async (ctx) => {
  ctx.set = await startRedisSentinel();
});

test.after(async (ctx) => {
  await ctx.set.stop();
});

const sentinelOptions = (set: RedisSentinelSet, more: LockerOptions = {}): LockerOptions => ({
  sentinel: { name: set.name, sentinelRootNodes: set.sentinelRootNodes },
  ...more,
});

/** How many keys of lock `name` are set on the server at `port`. */
async function keysOn(port: number, name: string): Promise<number> {
  const client = await connect(`redis://127.0.0.1:${port}`);
  try {
    return await client.exists(keysOf(name));
  } finally {
    client.destroy();
  }
}

test('a locker on sentinel acquires on the primary, extends, releases and hands over', async ({
  set,
}) => {
  const options = sentinelOptions(set, { keyValidityMs: 600 });
  const [holder, other] = await Promise.all([createLocker(options), createLocker(options)]);
  try {
    const lock = await holder.withContext('handover', bound(10_000));
    assert.is(await keysOn(set.primary.port, 'handover'), 3);
    // Five rounds of 300 ms: past two validities, so only extensions keep it.
    await stillHeldAgainst(lock, other, 5);
    const waiting = other.withContext('handover', bound(10_000));
    assert.is(await lock.release(), true);
    const next = await waiting;
    assert.ok((next.token as bigint) > (lock.token as bigint), 'fencing token did not grow');
    assert.is(await next.release(), true);
    assert.is(await keysOn(set.primary.port, 'handover'), 0);
  } finally {
    await Promise.all([holder.close(), other.close()]);
  }
});

test('a locker on sentinel polls where the primary refuses CLIENT TRACKING, or with tracking off', async ({
  set,
}) => {
  const admin = await connect(`redis://127.0.0.1:${set.primary.port}`);
  const warnings: Error[] = [];
  const heard = (warning: Error) => {
    if ((warning as { code?: string }).code === 'TRACKLOCK_POLLING') warnings.push(warning);
  };
  process.on('warning', heard);
  try {
    await admin.sendCommand(['ACL', 'SETUSER', 'default', '-client|tracking']);
    const options = sentinelOptions(set, { keyValidityMs: 60_000 });
    const [holder, other] = [
      await createLocker(options),
      await createLocker({ ...options, tracking: 'off' }),
    ];
    try {
      assert.equal([holder.mode, other.mode], ['poll', 'poll']);
      await until(() => warnings.length === 1);
      assert.match(warnings[0]?.message ?? '', /refused CLIENT TRACKING/);
      const lock = await holder.withContext('polled', bound(10_000));
      const waiting = other.withContext('polled', bound(10_000));
      assert.is(await lock.release(), true);
      // With 60 s keys, only polling gets it there.
      const next = await waiting;
      assert.ok((next.token as bigint) > (lock.token as bigint), 'fencing token did not grow');
      assert.is(await next.release(), true);
    } finally {
      await Promise.all([holder.close(), other.close()]);
    }
  } finally {
    process.off('warning', heard);
    await admin.sendCommand(['ACL', 'SETUSER', 'default', '+client|tracking']);
    admin.destroy();
  }
});

/** createLocker rejects `options` with `type`, its message containing `text`. */
async function rejects(options: LockerOptions, type: ErrorConstructor, text: string) {
  const error = await createLocker(options).catch((e: unknown) => e);
  assert.instance(error, type, text);
  assert.ok((error as Error).message.includes(text), `"${(error as Error).message}" ∌ ${text}`);
}

test('bad sentinel options are refused with errors that name them', async ({ set }) => {
  const sentinel = { name: set.name, sentinelRootNodes: set.sentinelRootNodes };
  const as = (options: unknown) => options as LockerOptions;
  await rejects({ sentinel, url: 'redis://127.0.0.1:1' }, TypeError, 'not url and sentinel');
  await rejects({ sentinel, nodes: ['redis://127.0.0.1:1'] }, TypeError, 'nodes and sentinel');
  await rejects({ sentinel, client: {} }, TypeError, 'sentinel.nodeClientOptions');
  await rejects(as({ sentinel: 'locks' }), TypeError, 'createSentinel options');
  await rejects(as({ sentinel: { ...sentinel, name: '' } }), TypeError, 'sentinel.name');
  await rejects({ sentinel: { ...sentinel, sentinelRootNodes: [] } }, TypeError, 'non-empty');
  await rejects(
    as({ sentinel: { ...sentinel, sentinelRootNodes: ['127.0.0.1:26379'] } }),
    TypeError,
    'sentinelRootNodes[0]',
  );
  await rejects(as({ sentinel: { ...sentinel, RESP: 2 } }), TypeError, 'sentinel.RESP');
  await rejects(
    as({ sentinel: { ...sentinel, nodeClientOptions: { RESP: 2 } } }),
    TypeError,
    'sentinel.nodeClientOptions.RESP',
  );
  await rejects(
    { sentinel: { ...sentinel, clientSideCache: { ttl: 0 } } },
    TypeError,
    'clientSideCache is set by tracklock',
  );
  await rejects({ sentinel: { ...sentinel, replicaPoolSize: 1 } }, TypeError, 'replicaPoolSize');
  await rejects({ sentinel: { ...sentinel, masterPoolSize: 2 } }, TypeError, 'masterPoolSize');
  await rejects({ sentinel: { ...sentinel, keyPrefix: 'app:' } }, TypeError, 'keyPrefix option');
  await rejects(
    { sentinel: { ...sentinel, maxCommandRediscovers: 16 } },
    TypeError,
    'maxCommandRediscovers',
  );

  await rejects(
    as({ sentinel: { ...sentinel, nodeClientOptions: { url: 'redis://x' } } }),
    TypeError,
    'nodeClientOptions.url',
  );
});

test('a wrong password for the primary is a credentials error at once', async ({ set }) => {
  const started = performance.now();
  const error = await createLocker(
    sentinelOptions(set, {
      connectTimeoutMs: 60_000,
      sentinel: {
        name: set.name,
        sentinelRootNodes: set.sentinelRootNodes,
        nodeClientOptions: { username: 'nobody', password: 'wrong' },
      },
    }),
  ).catch((e: unknown) => e);
  assert.instance(error, LockError);
  assert.match((error as Error).message, /refused the credentials/);
  assert.ok(performance.now() - started < 30_000, 'it waited for connectTimeoutMs');
});

test('a name the sentinels do not monitor, or no sentinel, fails to connect and says why', async ({
  set,
}) => {
  const unknown = await createLocker({
    sentinel: { name: 'nobody', sentinelRootNodes: set.sentinelRootNodes },
    connectTimeoutMs: 1500,
  }).catch((e: unknown) => e);
  assert.instance(unknown, LockError);
  assert.is((unknown as LockError).code, 'ERR_CONNECT');
  assert.match((unknown as Error).message, /No such master with that name/);
  const none = await createLocker({
    sentinel: {
      name: set.name,
      sentinelRootNodes: [{ host: '127.0.0.1', port: await freePort() }],
    },
    connectTimeoutMs: 1500,
  }).catch((e: unknown) => e);
  assert.is((none as LockError).code, 'ERR_CONNECT');
  assert.match((none as Error).message, /sentinels \(127\.0\.0\.1:\d+, master "locks"\)/);
});

/** Run `helper` (close-child or connect-child) in a process of its own: what it printed. */
async function inChild(helper: string, options: LockerOptions): Promise<Record<string, unknown>> {
  const child = decodeURIComponent(new URL(`./helpers/${helper}`, import.meta.url).pathname);
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', child, JSON.stringify(options)],
    { timeout: 20_000 },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1) as string);
}

test('close() and a failed connect leave no handle behind', async ({ set }) => {
  const closed = await inChild('close-child.ts', sentinelOptions(set));
  assert.is(closed.heldReason, 'ERR_LOCKER_CLOSED');
  assert.equal(closed.handles, []);
  const failed = await inChild('connect-child.ts', {
    sentinel: { name: 'nobody', sentinelRootNodes: set.sentinelRootNodes },
    connectTimeoutMs: 1500,
  });
  assert.is(failed.code, 'ERR_CONNECT');
  assert.equal(failed.handles, []);
});

test.run();

const failover = suite('sentinel: failover');

/**
 * Hold a lock on a set's primary, with a waiter in another locker queued behind it, then
 * `fault` the primary: the holder's signal must abort within `abortWithinMs`, and the waiter
 * get the lock on the new primary once the sentinels have promoted the replica.
 */
async function failOver(fault: (set: RedisSentinelSet) => void, abortWithinMs: number) {
  const set = await startRedisSentinel();
  try {
    const options = sentinelOptions(set, { keyValidityMs: 1000, commandTimeoutMs: 500 });
    const [holder, waiter] = await Promise.all([createLocker(options), createLocker(options)]);
    try {
      const lock = await holder.withContext('failover', bound(10_000));
      const waiting = waiter.withContext('failover', bound(20_000));
      waiting.catch(() => {}); // awaited below; a failure before that must not crash the run
      // Replicated: the keys are on the replica too.
      await until(async () => (await keysOn(set.replica.port, 'failover')) === 3);
      const faultAt = Date.now();
      fault(set);
      const reason = await abortedWithin(lock.signal, abortWithinMs);
      assert.instance(reason, LockLostError);
      const promoted = await set.failedOver(set.primary.port);
      assert.is(promoted, set.replica.port);
      const next = await waiting;
      const tookMs = Date.now() - faultAt;
      // The stats name the new primary alone.
      assert.equal(Object.keys(waiter.stats().servers), [`127.0.0.1:${set.replica.port}`]);
      // down-after-milliseconds (1 s), the sentinels' vote and the promotion: some 3 s here.
      assert.ok(tookMs < 10_000, `the waiter got the lock ${tookMs} ms after the fault`);
      assert.is(next.signal.aborted, false);
      assert.is(await keysOn(set.replica.port, 'failover'), 3, 'not on the new primary');
      assert.ok((next.token as bigint) > (lock.token as bigint), 'fencing token did not grow');
      assert.is(await next.release(), true);
      return { reason: reason as LockLostError, tookMs };
    } finally {
      set.primary.resume();
      await Promise.all([holder.close(), waiter.close()]);
    }
  } finally {
    await set.stop();
  }
}

failover(
  'the primary dies: the holder\u2019s signal aborts at once, a waiter gets the new primary',
  async () => {
    const { reason } = await failOver((set) => {
      set.primary.stop();
    }, 1000);
    // The connection dropped: its keys may be gone, the lock with them.
    assert.is(reason.loss, 'disconnected');
  },
);

failover(
  'the primary freezes: the holder\u2019s signal aborts by its validity, a waiter gets the new primary',
  async () => {
    // A frozen primary keeps its connections open: the extension goes unanswered, and the signal
    // aborts before the keys could expire (1000 ms, less the margin).
    await failOver((set) => set.primary.pause(), 1500);
  },
);

failover(
  'a locker created while the primary is down connects once the sentinels have promoted the replica',
  async () => {
    const set = await startRedisSentinel();
    try {
      await set.primary.stop();
      // The sentinels still name the dead primary for about a second, then vote and promote.
      const locker = await createLocker(sentinelOptions(set, { connectTimeoutMs: 20_000 }));
      try {
        const lock = await locker.withContext('after', bound(10_000));
        assert.is(await keysOn(set.replica.port, 'after'), 3, 'not on the new primary');
        assert.is(await lock.release(), true);
      } finally {
        await locker.close();
      }
    } finally {
      await set.stop();
    }
  },
);

failover.run();
