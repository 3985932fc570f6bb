import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type Lock, type Locker, type LockerOptions } from '../src/index.js';
import { type Client, connect, keysOf } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { bound, until, watched } from './helpers/wait.js';

// Two races of the queue that bench/go-mixed found (fixed in d73fcff), made deterministic with
// CLIENT PAUSE WRITE: the commands that raced are held at the server, then run back to back in
// the order of the race, so that their replies and pushes reach the waiter in one socket read.
// The same scenarios are in bench/go-mixed/repro (dropped-handoff.ts, missed-wake.ts). Each
// test pauses its server: each has one of its own.
const test = suite<{ server: RedisServer; admin: Client; lockers: Locker[] }>('queue races');

test.before.each(async (ctx) => {
  ctx.server = await startRedisServer();
  ctx.admin = await connect(ctx.server.url);
  ctx.lockers = [];
});

test.after.each(async (ctx) => {
  // A test that failed while writes were paused would make every close wait for them.
  await ctx.admin.sendCommand(['CLIENT', 'UNPAUSE']).catch(() => {});
  await Promise.all(ctx.lockers.map((locker) => locker.close()));
  ctx.admin.destroy();
  await ctx.server.stop();
});

/**
 * Held writes must not time out on the client: commands are bounded by commandTimeoutMs, and
 * a pause here lasts as long as the machine takes to line the commands up.
 */
const PAUSE_MS = 20_000;

/** A locker whose connection is named `name` on the server (CLIENT LIST shows what it sends). */
async function locker(
  ctx: { server: RedisServer; lockers: Locker[] },
  name: string,
  options: LockerOptions,
): Promise<Locker> {
  const created = await createLocker({
    url: ctx.server.url,
    client: { name },
    commandTimeoutMs: PAUSE_MS + 10_000,
    ...options,
  });
  ctx.lockers.push(created);
  return created;
}

/** The CLIENT LIST line of the connection named `name`, if there is one. */
async function clientLine(admin: Client, name: string): Promise<string | undefined> {
  const list = String(await admin.sendCommand(['CLIENT', 'LIST']));
  return list.split('\n').find((line) => line.includes(` name=${name} `));
}

/**
 * Whether the connection named `name` is held by the pause with `command`: a paused client is
 * flagged blocked (`b`), and its `cmd` is the command it waits to run. The server runs held
 * clients in the order the pause caught them.
 */
async function held(admin: Client, name: string, command = 'evalsha'): Promise<boolean> {
  const line = (await clientLine(admin, name)) ?? '';
  const flags = / flags=(\S*) /.exec(line)?.[1] ?? '';
  return flags.includes('b') && line.includes(` cmd=${command} `);
}

/** Keys the server has expired since it started (INFO stats). */
async function expiredKeys(admin: Client): Promise<number> {
  const info = String(await admin.sendCommand(['INFO', 'stats']));
  return Number(/expired_keys:(\d+)/.exec(info)?.[1]);
}

/** The lock's keys hold one value, a holder's, with at least `minPttlMs` left. */
async function heldByOne(admin: Client, name: string, minPttlMs: number): Promise<string> {
  const keys = keysOf(name);
  const values = await admin.mGet(keys);
  const value = values[0];
  assert.ok(value && values.every((v) => v === value), `the keys hold ${values.join(', ')}`);
  for (const key of keys) {
    const pttl = await admin.pTTL(key);
    assert.ok(pttl > minPttlMs, `${key} has ${pttl} ms left, expected more than ${minPttlMs}`);
  }
  return value;
}

test('a handoff that reaches the waiter with the reply of its first attempt gives it the lock before any key expires', async (ctx) => {
  // Long enough that within the test only the dropped handoff's keys running out could move
  // the lock (the fixed waiter holds it as soon as it reads the handoff), and that the pause
  // cannot make the handoff come too late for the waiter's first attempt, sent before it.
  const keyValidityMs = 20_000;
  const name = 'race-handoff';
  const holder = await locker(ctx, 'holder', { keyValidityMs });
  const waiter = await locker(ctx, 'waiter', { keyValidityMs });
  const third = await locker(ctx, 'third', { keyValidityMs });
  const { admin } = ctx;

  const before = await holder.withContext(name, bound());
  await admin.sendCommand(['CLIENT', 'PAUSE', String(PAUSE_MS), 'WRITE']);
  // In this order at the server: the waiter's first attempt (it joins the queue as its head),
  // the holder's release (it hands the keys to that head), a third locker's attempt (it joins
  // the queue the handoff emptied). The waiter reads the handoff's push with its reply.
  const waiting = watched(waiter.withContext(name, bound(3 * keyValidityMs)));
  waiting.promise.catch(() => {}); // awaited below
  await until(() => held(admin, 'waiter'), bound().signal);
  const released = before.release();
  await until(() => held(admin, 'holder'), bound().signal);
  const behind = watched(third.withContext(name, bound(3 * keyValidityMs)));
  behind.promise.catch(() => {}); // awaited below
  await until(() => held(admin, 'third'), bound().signal);
  const expired = await expiredKeys(admin);
  await admin.sendCommand(['CLIENT', 'UNPAUSE']);

  const first = await Promise.race([
    waiting.promise.then((lock) => ({ who: 'waiter', lock })),
    behind.promise.then((lock) => ({ who: 'third', lock })),
  ]);
  assert.is(
    await expiredKeys(admin),
    expired,
    'a key expired before anyone got the lock: the handoff was dropped, its keys had to run out',
  );
  assert.is(first.who, 'waiter', 'the waiter the release handed the lock to holds it');
  assert.is(await released, true);
  const lock = first.lock;
  assert.not.ok(lock.signal.aborted);
  const value = await heldByOne(admin, name, keyValidityMs / 2);
  assert.is(await admin.exists(`rueidislock:h:${value}`), 1, 'the keys are the handoff to it');
  assert.ok(
    lock.token !== undefined && before.token !== undefined && lock.token > before.token,
    `the handed lock has a later fencing token (${lock.token} after ${before.token})`,
  );
  assert.not.ok(behind.resolved(), 'the third locker waits behind it');

  // And the queue goes on: the third locker gets the lock from the waiter's release.
  assert.is(await lock.release(), true);
  const next: Lock = await behind.promise;
  assert.not.ok(next.signal.aborted);
  await heldByOne(admin, name, keyValidityMs / 2);
  assert.is(await next.release(), true);
  assert.is(await expiredKeys(admin), expired, 'no key expired');
});

test("a deputy whose attempt makes it the head hears a deletion of the keys that comes with that attempt's reply", async (ctx) => {
  // With the push missed, the new head would wake only by its timer, after keyValidityMs / 2:
  // far beyond the bound on its wait, which only that could reach.
  const keyValidityMs = 60_000;
  const name = 'race-wake';
  const keys = keysOf(name);
  const queue = `rueidislock:q:${name}`;
  const roles = `rueidislock:r:${name}`;
  const { admin } = ctx;
  // Plays a holder that deletes its keys on release (as Go's rueidislock does), and a head
  // that died ahead of the waiter: its ticket is deleted below.
  const raw = await connect(ctx.server.url);
  try {
    await raw.sendCommand(['CLIENT', 'SETNAME', 'go-holder']);
    for (const key of keys) await raw.sendCommand(['SET', key, 'go-holder', 'PX', '600000']);
    await raw.zAdd(queue, { score: 1, value: 'ghost' });
    await raw.hSet(roles, 'ghost', 'head');
    const deadline = String(Date.now() + 600_000);
    await raw.sendCommand(['SET', 'rueidislock:t:ghost', deadline, 'PX', '600000']);

    const waiter = await locker(ctx, 'waiter', { keyValidityMs });
    const waiting = waiter.withContext(name, bound(20_000));
    waiting.catch(() => {}); // awaited below
    // The waiter joins as the deputy, behind the ghost, and listens to the ghost's ticket: it
    // reads it with a PTTL of its own.
    await until(async () => {
      const members = await admin.zRange(queue, 0, -1);
      return members.length === 2 && (await admin.hGet(roles, members[1] as string)) === 'deputy';
    }, bound().signal);
    await until(
      async () => / cmd=pttl /.test((await clientLine(admin, 'waiter')) ?? ''),
      bound().signal,
    );
    // The ghost's ticket goes, and in the same read the server pauses writes (node-redis sends
    // what is asked in one tick in one write): the deputy's attempt, woken by the ticket's
    // invalidation, is held, and will make it the head; the holder's DEL is held behind it.
    await Promise.all([
      admin.del('rueidislock:t:ghost'),
      admin.sendCommand(['CLIENT', 'PAUSE', String(PAUSE_MS), 'WRITE']),
    ]);
    await until(() => held(admin, 'waiter'), bound().signal);
    const deleted = raw.del(keys);
    await until(() => held(admin, 'go-holder', 'del'), bound().signal);
    const expired = await expiredKeys(admin);
    await admin.sendCommand(['CLIENT', 'UNPAUSE']);

    const lock = await waiting.catch((error: unknown) => {
      assert.unreachable(
        `the waiter did not get the free lock (${error}): it missed the DEL's push`,
      );
      throw error;
    });
    assert.is(await deleted, keys.length);
    assert.not.ok(lock.signal.aborted);
    const value = await heldByOne(admin, name, keyValidityMs / 2);
    assert.is.not(value, 'go-holder');
    assert.is(await expiredKeys(admin), expired, 'no key expired');
    assert.is(await lock.release(), true);
  } finally {
    raw.destroy();
  }
});

test.run();
