import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type Lock, type Locker, type LockerOptions } from '../src/index.js';
import { type Client, connect } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { sleep, until } from './helpers/wait.js';

// Review of issue 16's semaphores: defects found, each shown by a test that fails without its
// fix. On a redis-server child of the test's own.
type Ctx = { server: RedisServer; admin: Client; lockers: Locker[] };
const test = suite<Ctx>('semaphore review');

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
const fresh = (what = 'review') => `${what}-${++n}`;

async function locker(ctx: Ctx, options: LockerOptions = {}): Promise<Locker> {
  const created = await createLocker({ url: ctx.server.url, ...options });
  ctx.lockers.push(created);
  return created;
}

function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

const base = (name: string, kind = 's') => `{rueidislock:${kind}:${name}}`;
const queueOf = (name: string) => `${base(name)}:q`;
const entries = (admin: Client, name: string) => admin.zRange(queueOf(name), 0, -1);
const until60 = { waitTimeoutMs: 60_000 };

/** Start a wait and resolve once it is queued on the server, with its place's value. */
async function enqueue(admin: Client, name: string, start: () => Promise<Lock>) {
  const before = new Set(await entries(admin, name));
  const waiting = handled(start());
  let value: string | undefined;
  await until(async () => {
    value = (await entries(admin, name)).find((entry) => !before.has(entry));
    return value !== undefined;
  });
  return { waiting, value: value as string };
}

test('a waiter of one locker promoted by that locker’s own admission of another is woken, and keeps its place (NOLOOP, stale ranks)', async (ctx) => {
  // One locker: its own writes are not pushed back to it, so #nudge must wake whom its
  // scripts promote. W4 joined at rank 4; two ahead of it left, so it is 3rd while its last
  // attempt said 4, and W5, later, said 3: #nudge sorts by those ranks and wakes W5, not W4.
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

/** EVALSHA and EVAL calls on the server so far (INFO commandstats). */
async function scripts(admin: Client): Promise<number> {
  const info = String(await admin.sendCommand(['INFO', 'commandstats']));
  const calls = (name: string) =>
    Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
  return calls('evalsha') + calls('eval');
}

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

test.run();
