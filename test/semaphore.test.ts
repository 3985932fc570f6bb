import { execFileSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createLocker,
  LimitMismatchError,
  type Lock,
  type Locker,
  LockerClosedError,
  type LockerOptions,
  LockLostError,
  MAX_SEMAPHORE_LIMIT,
  MaxHoldError,
  NotLockedError,
  UnavailableError,
} from '../src/index.js';
import { runScript, type SendTo } from '../src/redis/lua.js';
import { SEMAPHORE_SCRIPTS, sharedArgs } from '../src/redis/semaphore-scripts.js';
import { semaphoreNames } from '../src/shared/keys.js';
import { type Client, connect } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { mostAtOnce } from './helpers/semaphores.js';
import { abortedWithin, sleep, until, watched } from './helpers/wait.js';

// Semaphores and read-write locks (issue 16, docs/semaphores.md) on one server of the test's
// own: counts, fairness, loss, tokens, limits, close, and what waiting costs.
const test = suite<{ server: RedisServer; admin: Client; lockers: Locker[] }>('semaphore');
type Ctx = { server: RedisServer; admin: Client; lockers: Locker[] };

test.before(async (ctx) => {
  ctx.server = await startRedisServer();
  ctx.admin = await connect(ctx.server.url);
  ctx.lockers = [];
});

test.after.each(async (ctx) => {
  await Promise.all(ctx.lockers.splice(0).map((locker) => locker.close()));
});

test.after(async (ctx) => {
  ctx.admin.destroy();
  await ctx.server.stop();
});

let n = 0;
const fresh = (what = 'sem') => `${what}-${++n}`;

async function locker(ctx: Ctx, options: LockerOptions = {}): Promise<Locker> {
  const created = await createLocker({ url: ctx.server.url, ...options });
  ctx.lockers.push(created);
  return created;
}

/** What `promise` rejects with; fails when it resolves. */
async function rejection(promise: Promise<unknown> | (() => Promise<unknown>)): Promise<unknown> {
  const settled = typeof promise === 'function' ? promise() : promise;
  const outcome = await settled.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if ('value' in outcome) throw new Error('resolved where a rejection was expected');
  return outcome.error;
}

/** `promise`, its rejection handled: a test that fails first must not leave it unhandled. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

// Key names spelled out here, not taken from src/, so that the tests check the layout.
const base = (name: string, kind = 's') => `{rueidislock:${kind}:${name}}`;
const queueOf = (name: string, kind = 's') => `${base(name, kind)}:q`;
const entries = (admin: Client, name: string, kind = 's') =>
  admin.zRange(queueOf(name, kind), 0, -1);
const until60 = { waitTimeoutMs: 60_000 };

/** Start a wait and resolve once it is queued on the server, with its place's value. */
async function enqueue(admin: Client, name: string, start: () => Promise<Lock>, kind = 's') {
  const before = new Set(await entries(admin, name, kind));
  const waiting = handled(start());
  let value: string | undefined;
  await until(async () => {
    value = (await entries(admin, name, kind)).find((entry) => !before.has(entry));
    return value !== undefined;
  });
  return { waiting, value: value as string };
}

test('at most limit holders at once among many callers of several lockers, each getting a permit in the end', async (ctx) => {
  const lockers = await Promise.all([locker(ctx), locker(ctx), locker(ctx)]);
  const name = fresh();
  const limit = 2;
  assert.is(await mostAtOnce(lockers, name, limit, 12), limit, 'the most holders at once');
  assert.equal(await ctx.admin.keys(`${base(name)}:[hmoq]*`), [], 'what is left of it');
});

test('tryWithContext is refused with NotLockedError when the permits are taken, and while anyone waits', async (ctx) => {
  const [a, b] = await Promise.all([locker(ctx), locker(ctx)]);
  const name = fresh();
  const held = await a.semaphore(name, { limit: 2 }).withContext({ permits: 2 });
  const error = await b
    .semaphore(name, { limit: 2 })
    .tryWithContext()
    .catch((e: unknown) => e);
  assert.instance(error, NotLockedError);
  // One waiter for 2 permits; one permit frees: a try for 1 must not pass the waiter.
  const { waiting } = await enqueue(ctx.admin, name, () =>
    b.semaphore(name, { limit: 2 }).withContext({ permits: 2, ...until60 }),
  );
  await held.release();
  const second = await waiting;
  const refused = await a
    .semaphore(name, { limit: 2 })
    .tryWithContext()
    .catch((e: unknown) => e);
  assert.instance(refused, NotLockedError);
  await second.release();
  const free = await a.semaphore(name, { limit: 2 }).tryWithContext();
  await free.release();
});

test('waiters are served in arrival order: a waiter for 2 permits is not passed by later waiters for 1', async (ctx) => {
  const lockers = await Promise.all([locker(ctx), locker(ctx), locker(ctx), locker(ctx)]);
  const name = fresh();
  const sem = (i: number) => (lockers[i] as Locker).semaphore(name, { limit: 3 });
  const holders = await Promise.all([
    sem(0).withContext(),
    sem(0).withContext(),
    sem(0).withContext(),
  ]);
  const order: string[] = [];
  const wait = async (label: string, i: number, permits: number) => {
    const queued = await enqueue(ctx.admin, name, () =>
      sem(i).withContext({ permits, ...until60 }),
    );
    void queued.waiting.then(() => order.push(label));
    return { waiting: queued.waiting };
  };
  const { waiting: two } = await wait('two', 1, 2);
  const { waiting: one } = await wait('one', 2, 1);
  const { waiting: later } = await wait('later', 3, 1);
  // One permit frees: the head (2 permits) does not fit, and nobody passes it.
  await (holders[0] as Lock).release();
  await sleep(100);
  assert.equal(order, [], 'admitted while the head for 2 did not fit');
  await (holders[1] as Lock).release();
  const twoLock = await two;
  // The head took 2 of the 3; the third holder still has 1: the next waits.
  await sleep(50);
  assert.equal(order, ['two']);
  await (holders[2] as Lock).release();
  const oneLock = await one;
  await twoLock.release();
  const laterLock = await later;
  assert.equal(order, ['two', 'one', 'later']);
  await Promise.all([oneLock.release(), laterLock.release()]);
});

test('every holder gets a token greater than every earlier holder’s of the same semaphore', async (ctx) => {
  const [a, b] = await Promise.all([locker(ctx), locker(ctx)]);
  const name = fresh();
  let last = 0n;
  let previous: Lock | undefined;
  for (let i = 0; i < 6; i++) {
    // Two held at once: the earlier one is still a holder when the later draws its token.
    const lock = await (i % 2 ? a : b).semaphore(name, { limit: 2 }).withContext();
    assert.ok(lock.token !== undefined && lock.token > last, `token ${lock.token} after ${last}`);
    last = lock.token as bigint;
    await previous?.release();
    previous = lock;
  }
  await previous?.release();
});

test('two lockers that give one name two limits: the second is refused with LimitMismatchError, writing nothing', async (ctx) => {
  const [a, b] = await Promise.all([locker(ctx), locker(ctx)]);
  const name = fresh();
  const held = await a.semaphore(name, { limit: 2 }).withContext();
  const keys = async () => {
    const found = (await ctx.admin.keys(`${base(name)}*`)).sort();
    return Promise.all(found.map(async (key) => [key, await ctx.admin.dump(key)]));
  };
  const before = await keys();
  for (const call of [
    () => b.semaphore(name, { limit: 3 }).withContext(),
    () => b.semaphore(name, { limit: 1 }).tryWithContext(),
  ]) {
    const error = await call().catch((e: unknown) => e);
    assert.instance(error, LimitMismatchError);
    assert.is((error as LimitMismatchError).code, 'ERR_LIMIT_MISMATCH');
    assert.is((error as LimitMismatchError).stored, 2);
  }
  assert.equal(await keys(), before, 'the keys after the refused calls');
  await held.release();
  // Once every holder of the old limit is gone, a new one is taken.
  const taken = await b.semaphore(name, { limit: 3 }).withContext();
  await taken.release();
});

test('bad input is refused before anything is written, naming what is wrong', async (ctx) => {
  const a = await locker(ctx);
  for (const limit of [0, -1, 1.5, Number.NaN, MAX_SEMAPHORE_LIMIT + 1]) {
    assert.throws(
      () => a.semaphore('x', { limit }),
      (e: Error) => e instanceof RangeError && /limit/.test(e.message),
    );
  }
  assert.throws(() => a.semaphore('x', { limit: '2' as unknown as number }), /limit/);
  assert.throws(() => a.semaphore('x', undefined as unknown as { limit: number }), /limit/);
  assert.throws(() => a.semaphore('', { limit: 1 }), TypeError);
  const sem = a.semaphore('bad-permits', { limit: 2 });
  for (const permits of [0, 3, 1.5]) {
    assert.match(String(await rejection(sem.withContext({ permits }))), /permits/);
  }
  assert.equal(await ctx.admin.keys('*bad-permits*'), []);
});

test('semaphores and read-write locks are refused on independent nodes, with a TypeError saying why', async (ctx) => {
  const a = await createLocker({ nodes: [ctx.server.url] });
  ctx.lockers.push(a);
  assert.throws(() => a.semaphore('x', { limit: 2 }), /majority of independent nodes/);
  assert.throws(() => a.readWriteLock('x'), /majority of independent nodes/);
});

test('a semaphore, a read-write lock and a mutex of one name share no key', async (ctx) => {
  const a = await locker(ctx);
  const name = fresh('shared');
  const mutex = await a.tryWithContext(name);
  const permit = await a.semaphore(name, { limit: 1 }).tryWithContext();
  const write = await a.readWriteLock(name).write.tryWithContext();
  await Promise.all([mutex.release(), permit.release(), write.release()]);
});

test('a holder whose own key is deleted, or whose permits are removed, is told by LockLostError; the next waiter goes', async (ctx) => {
  const [a, b] = await Promise.all([locker(ctx), locker(ctx, { keyValidityMs: 2000 })]);
  const name = fresh();
  const held = await a.semaphore(name, { limit: 1 }).withContext();
  const { waiting } = await enqueue(ctx.admin, name, () =>
    b.semaphore(name, { limit: 1 }).withContext(until60),
  );
  const [own] = await ctx.admin.keys(`${base(name)}:o:*`);
  await ctx.admin.del(own as string);
  const reason = await abortedWithin(held.signal, 5000);
  assert.instance(reason, LockLostError);
  assert.is((reason as LockLostError).loss, 'changed');
  const next = await waiting;
  // Its permits removed from outside (the own key stays): the next extension finds it lost.
  await ctx.admin.del(`${base(name)}:h`);
  const gone = await abortedWithin(next.signal, 5000);
  assert.instance(gone, LockLostError);
  assert.is(await next.release(), false);
});

test('a holder that cannot extend (server paused) aborts before its permits can expire on the server', async (ctx) => {
  const a = await locker(ctx, { keyValidityMs: 600, commandTimeoutMs: 200 });
  const held = await a.semaphore(fresh(), { limit: 1 }).withContext();
  await ctx.admin.sendCommand(['CLIENT', 'PAUSE', '1200', 'ALL']);
  const reason = await abortedWithin(held.signal, 5000);
  assert.instance(reason, LockLostError);
  assert.is((reason as LockLostError).loss, 'expired');
});

test('waitTimeoutMs ends a wait with NotLockedError and leaves the queue; the caller’s signal too', async (ctx) => {
  const [a, b] = await Promise.all([locker(ctx), locker(ctx)]);
  const name = fresh();
  const held = await a.semaphore(name, { limit: 1 }).withContext();
  const timedOut = await b
    .semaphore(name, { limit: 1 })
    .withContext({ waitTimeoutMs: 100 })
    .catch((e: unknown) => e);
  assert.instance(timedOut, NotLockedError);
  await until(async () => (await entries(ctx.admin, name)).length === 0);
  const controller = new AbortController();
  const { waiting } = await enqueue(ctx.admin, name, () =>
    b.semaphore(name, { limit: 1 }).withContext({ signal: controller.signal }),
  );
  controller.abort(new Error('given up'));
  assert.match(String(await rejection(waiting)), /given up/);
  await until(async () => (await entries(ctx.admin, name)).length === 0);
  assert.equal(b.stats().waiting, 0);
  await held.release();
});

test('close() aborts every holder with LockerClosedError, rejects waiters, and leaves no permit behind', async (ctx) => {
  const [a, b] = await Promise.all([locker(ctx), locker(ctx)]);
  const name = fresh();
  const held = await a.semaphore(name, { limit: 2 }).withContext({ permits: 2 });
  const write = await a.readWriteLock(name).write.withContext();
  const waiter = handled(a.semaphore(name, { limit: 2 }).withContext());
  const other = watched(handled(b.semaphore(name, { limit: 2 }).withContext(until60)));
  assert.is(a.stats().held, 2);
  await a.close();
  assert.instance(held.signal.reason, LockerClosedError);
  assert.instance(write.signal.reason, LockerClosedError);
  assert.instance(await rejection(waiter), LockerClosedError);
  const next = await other.promise;
  // Of the closed locker's permits nothing is left: the semaphore's one holder is the other
  // locker's waiter, which got it.
  assert.equal(await ctx.admin.keys(`${base(name, 'rw')}:[ho]*`), []);
  const owns = await ctx.admin.keys(`${base(name)}:o:*`);
  assert.is(owns.length, 1, `own keys left: ${owns}`);
  const value = (owns[0] as string).slice(`${base(name)}:o:`.length);
  assert.equal(await ctx.admin.zRange(`${base(name)}:h`, 0, -1), [`${value}#0`]);
  await next.release();
});

test('read-write lock: readers share it, a writer holds it alone, and a queued writer stops later readers', async (ctx) => {
  const [a, b, c] = await Promise.all([locker(ctx), locker(ctx), locker(ctx)]);
  const name = fresh('rw');
  const rw = (one: Locker) => one.readWriteLock(name);
  const r1 = await rw(a).read.withContext();
  const r2 = await rw(b).read.withContext();
  assert.instance(await rejection(rw(c).write.tryWithContext()), NotLockedError);
  const writer = await enqueue(ctx.admin, name, () => rw(c).write.withContext(until60), 'rw');
  // A reader arriving after the writer waits behind it, although readers hold.
  const reader = await enqueue(ctx.admin, name, () => rw(a).read.withContext(until60), 'rw');
  assert.instance(await rejection(rw(b).read.tryWithContext()), NotLockedError);
  await r1.release();
  await sleep(50);
  await r2.release();
  const w = await writer.waiting;
  const late = watched(reader.waiting);
  await sleep(100);
  assert.not.ok(late.resolved(), 'a reader held beside the writer');
  await w.release();
  const r3 = await late.promise;
  // Readers queued behind it go together once it is gone.
  const r4 = await rw(b).read.withContext();
  await Promise.all([r3.release(), r4.release()]);
});

/**
 * A permit of limit 1 released by locker `a` to locker `b`'s waiter, queued behind it; then the
 * new holder's own key deleted: resolves with what `b` got and the loss it was told of.
 */
async function passedThenDeleted(ctx: Ctx, options: LockerOptions) {
  const [a, b] = await Promise.all([locker(ctx, options), locker(ctx, options)]);
  const name = fresh();
  const held = await a.semaphore(name, { limit: 1 }).withContext();
  const { waiting } = await enqueue(ctx.admin, name, () =>
    b.semaphore(name, { limit: 1 }).withContext(until60),
  );
  await held.release();
  const next = await waiting;
  const attempts = b.stats().calls.acquire;
  const [own] = await ctx.admin.keys(`${base(name)}:o:*`);
  await ctx.admin.del(own as string);
  return { held, next, attempts, loss: await abortedWithin(next.signal, 5000) };
}

test('polling (tracking off): a waiter gets the permit within its poll, a holder sees a deletion by its check', async (ctx) => {
  const options = { tracking: 'off' as const, pollIntervalMs: 50, checkIntervalMs: 100 };
  const { loss } = await passedThenDeleted(ctx, options);
  assert.instance(loss, LockLostError);
});

/** EVALSHA and EVAL calls on the server so far (INFO commandstats). */
async function scripts(admin: Client): Promise<number> {
  const info = String(await admin.sendCommand(['INFO', 'commandstats']));
  const calls = (name: string) =>
    Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
  return calls('evalsha') + calls('eval');
}

test('what W waiters cost the server while the permits are held does not grow with W: extensions wake nobody', async (ctx) => {
  // Holders extend 4 times a validity. Per window the design allows: the holder's extensions,
  // the head's and the deputy's renewals of their tickets (each at most twice a validity), and
  // the deputy's attempt when the head's renewal is pushed to it. The others sleep on their
  // wake keys: each waiter has a locker of its own, whose count of calls says what it sent.
  const validity = 800;
  const options = { keyValidityMs: validity, extendIntervalMs: validity / 4 };
  for (const w of [2, 8]) {
    const name = fresh('cost');
    const holder = await locker(ctx, options);
    const held = await holder.semaphore(name, { limit: 1 }).withContext();
    const waiters: Locker[] = [];
    for (let i = 0; i < w; i++) {
      const one = await locker(ctx, options);
      waiters.push(one);
      await enqueue(ctx.admin, name, () => one.semaphore(name, { limit: 1 }).withContext(until60));
    }
    const sent = () => waiters.map((one) => one.stats().calls.acquire + one.stats().calls.check);
    const before = await scripts(ctx.admin);
    const sentBefore = sent();
    const startedAt = performance.now();
    await sleep(4 * validity);
    const windowMs = performance.now() - startedAt;
    const made = (await scripts(ctx.admin)) - before;
    const byWaiter = sent().map((calls, i) => calls - (sentBefore[i] as number));
    // The holder's extensions (and one at each edge); the head's and the deputy's renewals,
    // each at most twice a validity; and the deputy's attempt woken by each of the head's
    // renewals (it watches the head's ticket).
    const extensions = Math.ceil(windowMs / (validity / 4)) + 1;
    const renewals = 3 * (Math.ceil(windowMs / (validity / 2)) + 1);
    assert.ok(made <= extensions + renewals, `W = ${w}: ${made} scripts in ${windowMs} ms`);
    // The sleepers sent nothing: the cost is the same at W = 2 and W = 8.
    assert.equal(
      byWaiter.slice(2),
      new Array(w - 2).fill(0),
      `W = ${w}: calls by waiter ${byWaiter}`,
    );
    assert.not.ok(held.signal.aborted);
    await Promise.all(ctx.lockers.splice(0).map((done) => done.close()));
  }
});

test('a waiter of one locker promoted by that locker’s own admission of another is woken, and keeps its place (NOLOOP, stale ranks)', async (ctx) => {
  // One locker: its own writes are not pushed back to it, so it must wake whom its scripts
  // promote. W4 joined at rank 4; two ahead of it left, so it is 3rd while its last attempt
  // said 4, and W5, later, said 3: ranks found at different times do not tell who is next.
  const validity = 1000;
  const a = await locker(ctx, { keyValidityMs: validity });
  const name = fresh();
  const sem = a.semaphore(name, { limit: 1 });
  const holder = await sem.withContext();
  const w: { waiting: Promise<Lock>; value: string }[] = [];
  const aborts: AbortController[] = [];
  for (let i = 0; i < 5; i++) {
    const controller = new AbortController();
    aborts.push(controller);
    w.push(
      await enqueue(ctx.admin, name, () =>
        sem.withContext({ ...until60, signal: controller.signal }),
      ),
    );
  }
  // W2 and W3 give up: W4 is 3rd now (no promotion: the first two stay).
  (aborts[2] as AbortController).abort(new Error('gone'));
  (aborts[3] as AbortController).abort(new Error('gone'));
  await until(async () => (await entries(ctx.admin, name)).length === 3);
  const w5 = await enqueue(ctx.admin, name, () => sem.withContext(until60));
  await holder.release();
  const first = await (w[0] as { waiting: Promise<Lock> }).waiting;
  // W0's admission made W4 the deputy (W1 the head). A deputy that is not told never renews
  // the ticket its promoter gave it: after a validity it is buried, and W5 passes it.
  await sleep(2.5 * validity);
  const w4 = (w[4] as { value: string }).value;
  assert.ok(
    (await ctx.admin.zRank(queueOf(name), w4)) !== null,
    'W4 was dropped from the queue (never woken as deputy)',
  );
  await first.release();
  const second = await (w[1] as { waiting: Promise<Lock> }).waiting;
  await second.release();
  const order = await Promise.race([
    (w[4] as { waiting: Promise<Lock> }).waiting.then((lock) => ({ who: 'W4', lock })),
    w5.waiting.then((lock) => ({ who: 'W5', lock })),
    sleep(5000).then(() => ({ who: 'nobody', lock: undefined })),
  ]);
  assert.is(order.who, 'W4', 'the next holder after W1');
  await order.lock?.release();
});

test('a refused tryWithContext, or a call refused for its limit, costs one script: nothing was taken, nothing is given back', async (ctx) => {
  // The holder extends every 30 s: not within this test.
  const [a, b] = await Promise.all([locker(ctx, { keyValidityMs: 60_000 }), locker(ctx)]);
  const name = fresh();
  const held = await a.semaphore(name, { limit: 1 }).withContext();
  for (const call of [
    () => b.semaphore(name, { limit: 1 }).tryWithContext(),
    () => b.semaphore(name, { limit: 2 }).tryWithContext(),
    () => b.semaphore(name, { limit: 2 }).withContext(),
  ]) {
    const before = await scripts(ctx.admin);
    await call().catch(() => {});
    // A give-back, if one is sent, goes out as the call settles: give it time to arrive.
    await sleep(50);
    assert.is((await scripts(ctx.admin)) - before, 1, `scripts for ${call}`);
  }
  await held.release();
});

test('a waiter whose user the ACL refuses the semaphore’s keys is told at once with UnavailableError, as the mutex’s', async (ctx) => {
  // A user that may use the mutex's keys only: the semaphore's base begins with a brace.
  await ctx.admin.sendCommand([
    'ACL',
    'SETUSER',
    'narrow',
    'on',
    '>narrow-pw',
    '~rueidislock:*',
    '+@all',
  ]);
  const url = ctx.server.url.replace('redis://', 'redis://narrow:narrow-pw@');
  const a = await locker(ctx, { url });
  const startedAt = performance.now();
  const error = await rejection(a.semaphore(fresh(), { limit: 1 }).withContext(until60));
  assert.instance(error, UnavailableError);
  assert.match(String((error as UnavailableError).cause), /NOPERM/);
  assert.ok(performance.now() - startedAt < 30_000, 'it waited for its waitTimeoutMs');
});

test('a release hands the permit to the queue’s head in its script: the head sends nothing more, holds with a greater token, and hears of its loss', async (ctx) => {
  // A long validity: a loss seen within the bound can only come from a push.
  const { held, next, attempts, loss } = await passedThenDeleted(ctx, { keyValidityMs: 30_000 });
  assert.ok((next.token as bigint) > (held.token as bigint));
  assert.is(attempts, 1, 'attempts of the waiter: its first, queued, only');
  assert.instance(loss, LockLostError);
});

test('a grant heard while an attempt is in flight, made before it and gone when it ran (a stall), is not taken from the attempt that queued the waiter again', async (ctx) => {
  // One validity for both: a grant needs a quarter of the releaser's left on the head's ticket.
  const options = { keyValidityMs: 1000 };
  const [a, w] = await Promise.all([locker(ctx, options), locker(ctx, options)]);
  const name = fresh();
  const names = semaphoreNames('rueidislock', 's', name);
  const roles = `${base(name)}:r`;
  await a.semaphore(name, { limit: 1 }).withContext();
  const [heldOwn] = await ctx.admin.keys(`${base(name)}:o:*`);
  const heldValue = (heldOwn as string).slice(names.owns.length);
  const { waiting: started, value } = await enqueue(ctx.admin, name, () =>
    w.semaphore(name, { limit: 1 }).withContext({ waitTimeoutMs: 20_000 }),
  );
  const waiting = watched(started);
  handled(waiting.promise);
  // The head reserved its token: a release grants it the permit.
  await until(async () => ((await ctx.admin.hGet(roles, `#${value}`)) ?? '').includes(' '));
  // The holder's release, as its locker sends it, sent by redis-cli in the stall below.
  let release: string[] = [];
  const capture: SendTo = async (args) => {
    release = args;
    return [1, []];
  };
  await runScript(
    capture,
    SEMAPHORE_SCRIPTS.release,
    { own: heldOwn as string },
    sharedArgs(names, heldValue, '1', 1000, 1),
  );
  const cli = (...args: string[]) =>
    execFileSync('redis-cli', ['-p', String(ctx.server.port), ...args]);
  // A stalled event loop, on purpose. The release grants the head the permit; the grant runs
  // out (its deadline is within a validity of the head's last attempt), then someone else
  // holds the permit. The waiter's sleep (at most half a validity) ends in the stall: its next
  // attempt is sent before the grant's push is read, and runs after both.
  const stallUntil = Date.now() + 1300;
  cli(...release);
  while (Date.now() < stallUntil - 100) {}
  cli('ZADD', names.holders, String(Date.now() + 60_000), 'c#0');
  cli('SET', `${names.owns}c`, '1', 'PX', '60000');
  while (Date.now() < stallUntil) {}
  // That attempt found the grant gone and queued the waiter again, as the head.
  const requeued = async () =>
    (await entries(ctx.admin, name)).includes(value) &&
    ((await ctx.admin.hGet(roles, `#${value}`)) ?? '').includes(' ');
  await until(async () => waiting.resolved() || (await requeued()));
  await sleep(300); // a window: the waiter must not take the permit that c holds in it
  assert.not.ok(waiting.resolved(), 'the waiter holds beside c, beyond the limit of 1');
  await ctx.admin.zRem(names.holders, 'c#0');
  await ctx.admin.del(`${names.owns}c`);
  const lock = await waiting.promise;
  assert.is(await lock.release(), true);
});

test('review-final: maxHoldMs and the caller’s signal end a semaphore holder, and its permit goes to the waiter', async (ctx) => {
  const [a, b] = await Promise.all([locker(ctx), locker(ctx)]);
  const name = fresh();
  const held = await a.semaphore(name, { limit: 1 }).withContext({ maxHoldMs: 200 });
  const waiter = watched(handled(b.semaphore(name, { limit: 1 }).withContext(until60)));
  assert.instance(await abortedWithin(held.signal, 5000), MaxHoldError);
  const next = await waiter.promise;
  assert.is(a.stats().held, 0);
  const controller = new AbortController();
  const third = watched(handled(a.semaphore(name, { limit: 1 }).withContext(until60)));
  await next.release();
  const got = await third.promise;
  assert.is(a.stats().held, 1);
  await got.release();
  const parented = await a.semaphore(name, { limit: 1 }).withContext({ signal: controller.signal });
  const after = watched(handled(b.semaphore(name, { limit: 1 }).withContext(until60)));
  controller.abort(new Error('caller gave up'));
  assert.match(String(parented.signal.reason), /caller gave up/);
  const last = await after.promise;
  assert.is(a.stats().held, 0);
  assert.is(b.stats().held, 1);
  assert.is(b.stats().waiting, 0);
  await last.release();
});

test('review-final: close() right after the head is granted the permit leaves no permit of the closed locker behind', async (ctx) => {
  for (let round = 0; round < 20; round++) {
    const [a, w, c] = await Promise.all([locker(ctx), locker(ctx), locker(ctx)]);
    const name = fresh();
    const held = await a.semaphore(name, { limit: 1 }).withContext();
    const { waiting } = await enqueue(ctx.admin, name, () =>
      w.semaphore(name, { limit: 1 }).withContext(until60),
    );
    // The head reserved its token: a release grants it the permit.
    await until(async () =>
      (
        (await ctx.admin.hGet(`${base(name)}:r`, `#${(await entries(ctx.admin, name))[0]}`)) ?? ''
      ).includes(' '),
    );
    const other = watched(handled(c.semaphore(name, { limit: 1 }).withContext(until60)));
    await until(async () => (await entries(ctx.admin, name)).length === 2);
    const released = held.release();
    if (round % 2 === 1) await released;
    await w.close();
    const outcome = await waiting.then(
      (lock) => lock.signal.reason,
      (e: unknown) => e,
    );
    assert.instance(outcome, LockerClosedError);
    const next = await other.promise;
    const owns = await ctx.admin.keys(`${base(name)}:o:*`);
    assert.is(owns.length, 1, `own keys left: ${owns}`);
    assert.is(await ctx.admin.zCard(`${base(name)}:h`), 1);
    await next.release();
    await released;
    await Promise.all(ctx.lockers.splice(0).map((one) => one.close()));
  }
});

test.run();
