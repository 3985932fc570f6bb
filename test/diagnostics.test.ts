import { channel, subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  type AcquireMessage,
  CHANNELS,
  createLocker,
  type ExtendMessage,
  type InvalidationMessage,
  type Locker,
  LockLostError,
  type LostMessage,
  NotLockedError,
  type ReleaseMessage,
  type ServerMessage,
} from '../src/index.js';
import { connect, keysOf, provideRedis, queued, type TestRedis } from './helpers/redis.js';
import { abortedWithin, bound, until } from './helpers/wait.js';

// Issue 15: what tracklock publishes on node:diagnostics_channel, and that it publishes nothing
// (builds no message) while nobody subscribes.
const test = suite<{ redis: TestRedis; lockers: Locker[]; stops: (() => void)[] }>('diagnostics');

test.before(async (ctx) => {
  ctx.redis = await provideRedis();
});

test.before.each((ctx) => {
  ctx.lockers = [];
  ctx.stops = [];
});

test.after.each(async (ctx) => {
  for (const stop of ctx.stops) stop();
  await Promise.all(ctx.lockers.map((locker) => locker.close()));
});

test.after(async (ctx) => {
  await ctx.redis.stop();
});

type Ctx = { redis: TestRedis; lockers: Locker[]; stops: (() => void)[] };

async function locker(ctx: Ctx, options = {}) {
  const created = await createLocker({ url: ctx.redis.url, ...options });
  ctx.lockers.push(created);
  return created;
}

type Event = 'start' | 'end' | 'asyncStart' | 'asyncEnd' | 'error';

/** Every event of a tracing channel, with a copy of its message at that moment. */
function traced<T extends object>(ctx: Ctx, name: string) {
  const events: { event: Event; message: T; copy: T }[] = [];
  const record = (event: Event) => (message: unknown) =>
    events.push({ event, message: message as T, copy: { ...(message as T) } });
  const handlers = {
    start: record('start'),
    end: record('end'),
    asyncStart: record('asyncStart'),
    asyncEnd: record('asyncEnd'),
    error: record('error'),
  };
  const tracing = tracingChannel(name);
  tracing.subscribe(handlers);
  ctx.stops.push(() => tracing.unsubscribe(handlers));
  return events;
}

/** Every message of a plain channel. */
function heard<T>(ctx: Ctx, name: string): T[] {
  const messages: T[] = [];
  const onMessage = (message: unknown) => messages.push(message as T);
  subscribe(name, onMessage);
  ctx.stops.push(() => unsubscribe(name, onMessage));
  return messages;
}

/** Until a waiter's attempt has found lock `name` held: it is in the queue. */
async function waitInLine(ctx: Ctx, name: string): Promise<void> {
  const client = await connect(ctx.redis.url);
  try {
    await until(async () => (await queued(client, name)) === 1);
  } finally {
    client.destroy();
  }
}

const kinds = (events: readonly { event: Event }[]) => events.map(({ event }) => event);

test('a wait is traced: name and mode at start; attempts, wait, outcome and token at asyncEnd', async (ctx) => {
  const events = traced<AcquireMessage>(ctx, CHANNELS.acquire);
  const [holder, waiter] = [await locker(ctx), await locker(ctx)];
  const first = await holder.withContext('traced-wait', bound());
  const waiting = waiter.withContext('traced-wait', bound());
  await waitInLine(ctx, 'traced-wait');
  await first.release();
  const second = await waiting;
  const mine = events.filter(({ message }) => message !== events[0]?.message);
  assert.equal(kinds(mine), ['start', 'end', 'asyncStart', 'asyncEnd']);
  const [start, , , end] = mine;
  assert.equal(start?.copy, {
    name: 'traced-wait',
    mode: 'wait',
    attempts: 0,
    contended: false,
    waitMs: 0,
    outcome: undefined,
    token: undefined,
  });
  // One context object for the whole call, as TracingChannel's contract says.
  assert.ok(start?.message === end?.message);
  const done = end?.copy as AcquireMessage;
  assert.is(done.outcome, 'acquired');
  assert.ok(done.attempts >= 1, `${done.attempts} attempts`);
  assert.is(done.contended, true);
  assert.ok(done.waitMs > 0);
  assert.is(done.token, second.token);
  assert.ok(done.result === second);
  await second.release();
});

test('a try that finds the lock held is traced with the error event and outcome busy', async (ctx) => {
  const events = traced<AcquireMessage>(ctx, CHANNELS.acquire);
  const [holder, other] = [await locker(ctx), await locker(ctx)];
  const lock = await holder.tryWithContext('traced-try');
  events.length = 0;
  const rejected = await other.tryWithContext('traced-try').catch((error: unknown) => error);
  assert.instance(rejected, NotLockedError);
  assert.equal(kinds(events), ['start', 'end', 'error', 'asyncStart', 'asyncEnd']);
  const error = events[2]?.copy as AcquireMessage;
  assert.is(error.mode, 'try');
  assert.is(error.outcome, 'busy');
  assert.is(error.attempts, 1);
  assert.is(error.contended, true);
  assert.ok(error.error === rejected);
  await lock.release();
});

test('a wait that times out is traced with outcome timeout', async (ctx) => {
  const events = traced<AcquireMessage>(ctx, CHANNELS.acquire);
  const [holder, waiter] = [await locker(ctx), await locker(ctx)];
  const lock = await holder.withContext('traced-timeout', bound());
  events.length = 0;
  await waiter.withContext('traced-timeout', { waitTimeoutMs: 50 }).catch(() => {});
  const error = events.find(({ event }) => event === 'error')?.copy as AcquireMessage;
  assert.is(error.outcome, 'timeout');
  assert.ok(error.waitMs >= 50, `${error.waitMs} ms`);
  await lock.release();
});

test('a force is traced; the holder it took over from publishes lost with reason changed', async (ctx) => {
  const events = traced<AcquireMessage>(ctx, CHANNELS.acquire);
  const lost = heard<LostMessage>(ctx, CHANNELS.lost);
  const [holder, forcer] = [await locker(ctx), await locker(ctx)];
  const lock = await holder.withContext('traced-force', bound());
  const forced = await forcer.forceWithContext('traced-force');
  const end = events.filter(({ event }) => event === 'asyncEnd').at(-1)?.copy as AcquireMessage;
  assert.is(end.mode, 'force');
  assert.is(end.outcome, 'acquired');
  assert.is(end.token, forced.token);
  const first = events.find(({ event }) => event === 'asyncEnd')?.copy as AcquireMessage;
  assert.is(first.contended, false, 'the first lock was free');
  await abortedWithin(lock.signal, 5000);
  await until(() => lost.length === 1);
  const [message] = lost as [LostMessage];
  assert.is(message.name, 'traced-force');
  assert.is(message.reason, 'changed');
  assert.is(message.token, lock.token);
  assert.instance(message.error, LockLostError);
  assert.ok(message.heldMs >= 0);
  await forced.release();
});

test('a lock whose keys are deleted publishes lost with its reason and held time', async (ctx) => {
  const lost = heard<LostMessage>(ctx, CHANNELS.lost);
  const holder = await locker(ctx);
  const lock = await holder.withContext('traced-lost', bound());
  const client = await connect(ctx.redis.url);
  try {
    await new Promise((resolve) => setTimeout(resolve, 30)); // a held time worth measuring
    await client.del(keysOf('traced-lost'));
  } finally {
    client.destroy();
  }
  await abortedWithin(lock.signal, 5000);
  assert.is(lost.length, 1);
  assert.is(lost[0]?.reason, 'changed');
  assert.ok((lost[0]?.heldMs as number) >= 30, `${lost[0]?.heldMs} ms`);
  // release() of a lock already lost: traced, not held, and no second lost message.
  const releases = traced<ReleaseMessage>(ctx, CHANNELS.release);
  assert.is(await lock.release(), false);
  assert.is(releases[0]?.copy.held, false);
  assert.is(releases.at(-1)?.copy.outcome, 'not-held');
  assert.is(lost.length, 1);
});

test('a release is traced: held time at start, outcome and duration at asyncEnd', async (ctx) => {
  const events = traced<ReleaseMessage>(ctx, CHANNELS.release);
  const lost = heard<LostMessage>(ctx, CHANNELS.lost);
  const holder = await locker(ctx);
  const lock = await holder.withContext('traced-release', bound());
  assert.is(await lock.release(), true);
  assert.is(await lock.release(), true); // memoised: traced once
  assert.equal(kinds(events), ['start', 'end', 'asyncStart', 'asyncEnd']);
  const [start, , , end] = events;
  assert.is(start?.copy.name, 'traced-release');
  assert.is(start?.copy.token, lock.token);
  assert.is(start?.copy.held, true);
  assert.ok((start?.copy.heldMs as number) >= 0);
  assert.is(start?.copy.outcome, undefined);
  assert.is(end?.copy.outcome, 'released');
  assert.ok((end?.copy.durationMs as number) > 0);
  assert.is(end?.copy.result, true);
  assert.is(lost.length, 0, 'a release is no loss');
});

test('a lock that ends otherwise publishes lost with the code or aborted', async (ctx) => {
  const lost = heard<LostMessage>(ctx, CHANNELS.lost);
  const holder = await locker(ctx);
  const capped = await holder.withContext('traced-cap', { maxHoldMs: 20, ...bound() });
  await abortedWithin(capped.signal, 5000);
  const controller = new AbortController();
  const aborted = await holder.withContext('traced-abort', { signal: controller.signal });
  controller.abort(new Error('done here'));
  const closed = await holder.withContext('traced-close', bound());
  await holder.close();
  assert.ok(aborted.signal.aborted && closed.signal.aborted);
  assert.equal(
    lost.map(({ name, reason }) => [name, reason]),
    [
      ['traced-cap', 'ERR_MAX_HOLD'],
      ['traced-abort', 'aborted'],
      ['traced-close', 'ERR_LOCKER_CLOSED'],
    ],
  );
});

test('a lock ended by its caller\u2019s signal publishes lost, reason aborted, whatever that signal\u2019s reason', async (ctx) => {
  const lost = heard<LostMessage>(ctx, CHANNELS.lost);
  const releases = traced<ReleaseMessage>(ctx, CHANNELS.release);
  const holder = await locker(ctx);
  // Nested in a lock that is released: its hold is recorded once, by lost.
  const outer = await holder.withContext('nest-outer', bound());
  const inner = await holder.withContext('nest-inner', { signal: outer.signal });
  assert.is(await outer.release(), true);
  await abortedWithin(inner.signal, 5000);
  assert.is(await inner.release(), false);
  const held = releases.filter(({ event }) => event === 'start').map(({ copy }) => copy.held);
  assert.equal(held, [true, false]);
  // Nested in a lock that is lost: aborted by the caller's signal, not changed.
  const lostOuter = await holder.withContext('nest-lost', bound());
  const innerOfLost = await holder.withContext('nest-lost-inner', { signal: lostOuter.signal });
  const client = await connect(ctx.redis.url);
  try {
    await client.del(keysOf('nest-lost'));
  } finally {
    client.destroy();
  }
  await abortedWithin(innerOfLost.signal, 5000);
  // (A lock's signal aborts before its own message goes out: the nested one's comes first.)
  assert.equal(lost.map(({ name, reason }) => [name, reason]).sort(), [
    ['nest-inner', 'aborted'],
    ['nest-lost', 'changed'],
    ['nest-lost-inner', 'aborted'],
  ]);
});

test('an acquisition\u2019s outcome: aborted by the caller\u2019s signal whatever its reason, error for bad arguments, closed', async (ctx) => {
  const events = traced<AcquireMessage>(ctx, CHANNELS.acquire);
  const holder = await locker(ctx);
  const outcomes = async (call: () => Promise<unknown>) => {
    events.length = 0;
    await call().catch(() => {});
    return events.find(({ event }) => event === 'asyncEnd')?.copy.outcome;
  };
  // A signal aborted with a LockError: a released lock's, or one whose reason reads "not locked".
  const released = await holder.withContext('outcome-released', bound());
  await released.release();
  const mine = { signal: released.signal };
  assert.is(await outcomes(() => holder.withContext('outcome', mine)), 'aborted');
  assert.is(await outcomes(() => holder.tryWithContext('outcome', mine)), 'aborted');
  const notLocked = AbortSignal.abort(new NotLockedError('elsewhere'));
  assert.is(await outcomes(() => holder.withContext('outcome', { signal: notLocked })), 'aborted');
  // Bad arguments.
  assert.is(await outcomes(() => holder.tryWithContext('')), 'error');
  assert.is(await outcomes(() => holder.withContext('outcome', { waitTimeoutMs: -1 })), 'error');
  const notASignal = { signal: {} as AbortSignal };
  assert.is(await outcomes(() => holder.withContext('outcome', notASignal)), 'error');
  await holder.close();
  assert.is(await outcomes(() => holder.withContext('outcome')), 'closed');
});

test('each extension publishes the keys asked, the keys extended and its duration', async (ctx) => {
  const extensions = heard<ExtendMessage>(ctx, CHANNELS.extend);
  const holder = await locker(ctx, { keyValidityMs: 300 });
  const lock = await holder.withContext('traced-extend', bound());
  await until(() => extensions.length >= 2);
  await lock.release();
  const [first] = extensions as [ExtendMessage];
  assert.is(first.name, 'traced-extend');
  assert.is(first.keys, 3);
  assert.is(first.extended, 3);
  assert.ok(first.durationMs > 0);
});

test('invalidations and the server connection are published', async (ctx) => {
  const servers = heard<ServerMessage>(ctx, CHANNELS.server);
  const invalidations = heard<InvalidationMessage>(ctx, CHANNELS.invalidation);
  const [holder, waiter] = [await locker(ctx), await locker(ctx)];
  assert.equal(servers.length, 2);
  const address = new URL(ctx.redis.url);
  assert.equal(servers[0], {
    address: `${address.hostname}:${address.port || 6379}`,
    mode: 'push',
    reconnect: false,
  });
  const lock = await holder.withContext('traced-push', bound());
  const waiting = waiter.withContext('traced-push', bound());
  await waitInLine(ctx, 'traced-push');
  await lock.release();
  await (await waiting).release();
  assert.ok(
    invalidations.some(({ key }) => key === keysOf('traced-push')[0]),
    JSON.stringify(invalidations),
  );
});

test('nothing is built or published while nobody subscribes; a late subscriber sees only what follows', async (ctx) => {
  // A subscriber would make the channels active: spy on their publish instead (an own
  // property, over whichever prototype node gives the channel as subscribers come and go).
  const published: string[] = [];
  const names = [
    ...Object.values(CHANNELS).filter(
      (name) => name !== CHANNELS.acquire && name !== CHANNELS.release,
    ),
    // The tracing channels' end event is published on every traced call.
    `tracing:${CHANNELS.acquire}:end`,
    `tracing:${CHANNELS.release}:end`,
  ];
  for (const name of names) {
    const spied = channel(name) as { publish(message: unknown): void };
    spied.publish = (message: unknown) => {
      published.push(name);
      Object.getPrototypeOf(spied).publish.call(spied, message);
    };
    ctx.stops.push(() => delete (spied as { publish?: unknown }).publish);
  }
  const [holder, waiter] = [
    await locker(ctx, { keyValidityMs: 300 }),
    await locker(ctx, { keyValidityMs: 300 }),
  ];
  const lock = await holder.withContext('unsubscribed', bound());
  const waiting = waiter.withContext('unsubscribed', bound());
  await until(() => holder.stats().calls.extend >= 2); // extensions went by
  await lock.release();
  const next = await waiting; // a handoff, heard by invalidation
  await next.release();
  const lost = await holder.withContext('unsubscribed', { maxHoldMs: 10, ...bound() });
  await abortedWithin(lost.signal, 5000);
  assert.ok(waiter.stats().invalidations > 0);
  assert.equal(published, []);
  const extensions = heard<ExtendMessage>(ctx, CHANNELS.extend);
  const again = await holder.withContext('unsubscribed', bound());
  await until(() => extensions.length >= 1);
  await again.release();
  assert.equal(published, [CHANNELS.extend]);
});

test.run();
