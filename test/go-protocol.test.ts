import { createClient } from '@redis/client';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type LockError, type Locker } from '../src/index.js';
import { type Client, calls, connect, keysOf } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { bound, until, watched } from './helpers/wait.js';

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

test.run();
