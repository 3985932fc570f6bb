import { createClient } from '@redis/client';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, DEFAULTS, type LockError, type Locker } from '../src/index.js';
import { MAX_HANDOFF_RUN } from '../src/redis/commands.js';
import { forkHelper, message } from './helpers/child.js';
import { type Client, calls, connect, keysOf } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { bound, sleep, until, watched } from './helpers/wait.js';

// A Go rueidislock on the same keys, played command for command as its lock.go sends them: per
// key, in key order, `SET key value NX PXAT deadline` and `GET key` pipelined together; each
// held key extended by `extend` and let go by `delkey`, both by value. Nothing of tracklock's
// own (scripts, fence key, queue) is involved on the Go side. Its keys expire 30 s out, so
// anything that happens within a test's bound was told by a push, not an expiry.
const EXTEND = `if redis.call("GET",KEYS[1]) == ARGV[1] then return redis.call("PEXPIREAT",KEYS[1],ARGV[2]) else return 0 end`;
const DELKEY = `if redis.call("GET",KEYS[1]) == ARGV[1] then return redis.call("DEL",KEYS[1]) else return 0 end`;
const GO_VALIDITY_MS = 30_000;

const test = suite<{ server: RedisServer; admin: Client; locker: Locker; go: Go }>('go-protocol');

test.before.each(async (ctx) => {
  ctx.server = await startRedisServer();
  ctx.admin = await connect(ctx.server.url);
  ctx.locker = await createLocker({ url: ctx.server.url, keyValidityMs: GO_VALIDITY_MS });
  ctx.go = await goClient(ctx.server.url);
});

test.after.each(async (ctx) => {
  ctx.go.client.destroy();
  await ctx.locker.close();
  ctx.admin.destroy();
  await ctx.server.stop();
});

/** A Go locker's connection: RESP3 with tracking on, as rueidis makes it. */
async function goClient(url: string) {
  const invalidated = new Set<string>();
  const client = createClient({ url, RESP: 3, emitInvalidate: true });
  client.on('error', () => {});
  client.on('invalidate', (key: Buffer | string | null) => {
    if (key !== null) invalidated.add(key.toString());
  });
  await client.connect();
  return { client, invalidated };
}
type Go = Awaited<ReturnType<typeof goClient>>;
type GoClient = Go['client'];

/** Go's acquire of one key: SET NX PXAT and GET in one pipeline; true when the key is ours. */
async function goAcquire(client: GoClient, key: string, value: string): Promise<boolean> {
  const deadline = String(Date.now() + GO_VALIDITY_MS);
  const [set] = await Promise.all([
    client.sendCommand(['SET', key, value, 'NX', 'PXAT', deadline]),
    client.sendCommand(['GET', key]),
  ]);
  return set !== null;
}

/** Go's try: its keys in order, until a majority of three is ours or lost. */
async function goTry(client: GoClient, name: string, value: string): Promise<number> {
  let ours = 0;
  for (const key of keysOf(name)) if (await goAcquire(client, key, value)) ours++;
  return ours;
}

async function goScript(client: GoClient, script: string, key: string, ...args: string[]) {
  return Number(await client.sendCommand(['EVAL', script, '1', key, ...args]));
}

test('a tracklock waiter wakes by push when a Go holder lets go, and takes the lock', async ({
  admin,
  locker,
  go,
}) => {
  assert.is(await goTry(go.client, 'shared', 'go-holder'), 3);
  const refused = await locker.tryWithContext('shared').catch((error: LockError) => error);
  assert.is((refused as LockError).code, 'ERR_NOT_LOCKED');
  const before = await calls(admin, 'evalsha');
  const waiting = watched(locker.withContext('shared', bound(10_000)));
  await until(async () => (await calls(admin, 'evalsha')) > before); // it found the lock taken
  for (const key of keysOf('shared')) {
    assert.is(await goScript(go.client, DELKEY, key, 'go-holder'), 1);
  }
  const lock = await waiting.promise;
  // A majority is the waiter's; the last key Go deleted may still be free (a retake at the
  // next extension takes it).
  const values = await admin.mGet(keysOf('shared'));
  assert.not.ok(values.includes('go-holder'), String(values));
  assert.ok(values.filter((value) => value !== null).length >= 2, String(values));
  assert.is(await lock.release(), true);
});

test('a Go waiter hears a tracklock release by push, and takes every key', async ({
  admin,
  locker,
  go,
}) => {
  const lock = await locker.withContext('shared', bound(10_000));
  // Go's attempt fails on every key, and its GET makes the server track each for it.
  assert.is(await goTry(go.client, 'shared', 'go-waiter'), 0);
  assert.is(await lock.release(), true);
  await until(async () => go.invalidated.size === 3);
  assert.is(await goTry(go.client, 'shared', 'go-waiter'), 3);
  assert.equal(await admin.mGet(keysOf('shared')), ['go-waiter', 'go-waiter', 'go-waiter']);
});

test('Go holding a majority keeps tracklock out, and tracklock gives back the key it took', async ({
  admin,
  locker,
  go,
}) => {
  const [first, second] = keysOf('split');
  assert.ok(await goAcquire(go.client, first as string, 'go-holder'));
  assert.ok(await goAcquire(go.client, second as string, 'go-holder'));
  const refused = await locker.tryWithContext('split').catch((error: LockError) => error);
  assert.is((refused as LockError).code, 'ERR_NOT_LOCKED');
  // The third key, taken by the attempt, is deleted by value behind it; Go's stay.
  await until(async () => (await admin.get(keysOf('split')[2] as string)) === null);
  assert.equal((await admin.mGet(keysOf('split'))).slice(0, 2), ['go-holder', 'go-holder']);
});

test('Go extensions and deletions by another value leave a tracklock holder alone', async ({
  admin,
  locker,
  go,
}) => {
  const lock = await locker.withContext('kept', bound(10_000));
  const values = await admin.mGet(keysOf('kept'));
  for (const key of keysOf('kept')) {
    const later = String(Date.now() + 100);
    assert.is(await goScript(go.client, EXTEND, key, 'go-value', later), 0);
    assert.is(await goScript(go.client, DELKEY, key, 'go-value'), 0);
  }
  assert.equal(await admin.mGet(keysOf('kept')), values);
  assert.not.ok(lock.signal.aborted, String(lock.signal.reason));
  assert.is(await lock.release(), true);
});

/** Keys the server expired so far (INFO stats). */
async function expiredKeys(admin: Client): Promise<number> {
  const stats = String(await admin.sendCommand(['INFO', 'stats']));
  return Number(/expired_keys:(\d+)/.exec(stats)?.[1]);
}

test("a Go holder's release wakes the queue's head by push, which takes the lock without waiting for an expiry", async ({
  admin,
  locker,
  go,
}) => {
  assert.is(await goTry(go.client, 'pushed', 'go-holder'), 3);
  const waiting = watched(locker.withContext('pushed', { waitTimeoutMs: 10_000 }));
  waiting.promise.catch(() => {}); // awaited below; a failure before must not end the run
  await until(async () => (await admin.zCard('rueidislock:q:pushed')) === 1);
  const [head] = (await admin.zRange('rueidislock:q:pushed', 0, -1)) as [string];
  assert.is(await admin.hGet('rueidislock:r:pushed', head), 'head');
  // Its attempt found the keys held for 30 s, and it sleeps up to half a validity (15 s).
  const scripts = await calls(admin, 'evalsha');
  const expired = await expiredKeys(admin);
  for (const key of keysOf('pushed')) {
    assert.is(await goScript(go.client, DELKEY, key, 'go-holder'), 1);
  }
  const lock = await waiting.promise;
  // Each attempt was woken by one of the three deletions' pushes (Go's delkey is an EVAL, not
  // an EVALSHA), and no key expired meanwhile.
  const attempts = (await calls(admin, 'evalsha')) - scripts;
  assert.ok(attempts >= 1 && attempts <= 3, `${attempts} attempts for 3 deletions`);
  assert.is(await expiredKeys(admin), expired, 'a key expired');
  const values = await admin.mGet(keysOf('pushed'));
  assert.ok(values.filter((value) => value === head).length >= 2, String(values));
  assert.is(await lock.release(), true);
});

test('a Go waiter is not starved by tracklock lockers passing and handing the lock among themselves', async ({
  server,
}) => {
  const name = 'contended';
  const t1 = await createLocker({ url: server.url });
  const t2 = await createLocker({ url: server.url });
  // A lock passes at most localHandoffs times in a row within t1 before a release goes to the
  // queue, and the queue's release deletes the keys instead of handing them over at least
  // every (MAX_HANDOFF_RUN + 1)th time in a run: so at least one release in
  // (localHandoffs + 1) * (MAX_HANDOFF_RUN + 1) gives the Go waiter a race for the keys. A fair
  // race is lost half the time: RACES of them in a row are all lost once in 2 ** RACES runs.
  const RACES = 30;
  const limit = (DEFAULTS.localHandoffs + 1) * (MAX_HANDOFF_RUN + 1) * RACES;
  const stop = new AbortController();
  let releases = 0;
  /** Releases when the Go waiter's first try went out, and when it held the lock. */
  let goStarted: number | undefined;
  let goHeld: number | undefined;
  let holders = 0;
  let overlaps = 0;
  const loop = async (locker: Locker) => {
    while (!stop.signal.aborted && (goStarted === undefined || releases - goStarted < limit)) {
      const lock = await locker
        .withContext(name, { signal: stop.signal, waitTimeoutMs: 20_000 })
        .catch(() => undefined);
      if (!lock) return;
      if (holders++ > 0) overlaps++;
      // Holds it a while: the queue's head renews its reserved token after each local pass
      // (whose new token makes the old one stale) before the next release, so that the queue's
      // handoffs stick and the Go waiter gets its race from MAX_HANDOFF_RUN's deletions.
      await sleep(5);
      holders--;
      releases++;
      await lock.release();
    }
    stop.abort();
  };
  // The Go service is a process of its own, as it would be: played in this one, its second
  // key's SET could never go out before the head's attempt, which this event loop sends first.
  const loops = Promise.all([loop(t1), loop(t1), loop(t2)]);
  const child = forkHelper('./go-waiter.ts', [server.url, name]);
  let released: Promise<string> | undefined;
  try {
    child.on('message', (m: unknown) => {
      if (!String(m).startsWith('held:') || goHeld !== undefined) return;
      goHeld = releases;
      // The Go waiter holds a majority of the keys: no tracklock lock may be held meanwhile.
      if (holders++ > 0) overlaps++;
      stop.abort();
      released = message(child, 'released');
      child.send('release');
    });
    await message(child, 'ready', 30_000); // a loaded machine starts a process slowly
    goStarted = releases;
    await loops;
    if (released) {
      await released;
      holders--;
    }
  } finally {
    child.kill('SIGKILL');
    await Promise.all([t1.close(), t2.close()]);
  }
  assert.is(overlaps, 0, 'two holders');
  assert.ok(
    goHeld !== undefined,
    `the Go waiter never got the lock in ${releases - (goStarted ?? 0)} tracklock releases`,
  );
});

test.run();
