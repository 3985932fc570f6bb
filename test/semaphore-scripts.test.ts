import { createConnection } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runScript, type SendTo } from '../src/redis/lua.js';
import { SEMAPHORE_SCRIPTS, type Spec, sharedArgs } from '../src/redis/semaphore-scripts.js';
import { type SemaphoreNames, semaphoreNames } from '../src/shared/keys.js';
import { type Client, connect } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { until } from './helpers/wait.js';

// Issue 16 of docs/design/semaphores.md: the scripts of semaphores and read-write locks, with
// the mutex's queue, called directly on a server of our own (nothing public calls them yet).
const test = suite('semaphore scripts');

const S = semaphoreNames('rueidislock', 's', 'sem');
const RW = semaphoreNames('rueidislock', 'rw', 'rw');
const LONG_MS = 60_000;
const SHORT_MS = 200;

let server: RedisServer;
let client: Client;
const send: SendTo = (args) => client.sendCommand(args);

/** One request: which lock, what it takes, and the arguments every script shares. */
interface Request {
  readonly names: SemaphoreNames;
  readonly spec: Spec;
  readonly limit: number | undefined;
  readonly validityMs: number;
}

const permits = (k = 1, { limit = 3, validityMs = LONG_MS } = {}): Request => ({
  names: S,
  spec: String(k),
  limit,
  validityMs,
});
const READ: Request = { names: RW, spec: 'r', limit: undefined, validityMs: LONG_MS };
const WRITE: Request = { ...READ, spec: 'w' };

const own = (value: string, names = S) => `${names.owns}${value}`;
const ticketOf = (value: string, names = S) => `${names.queue.tickets}${value}`;
const wakeOf = (value: string, names = S) => `${names.queue.wakes}${value}`;
/** A holder's scripts name its own key only; a waiter's also its ticket, wake and handoff keys. */
const holderKeys = (value: string, names = S) => ({ own: own(value, names) });
const waiterKeys = (value: string, names = S) => ({
  own: own(value, names),
  ticket: ticketOf(value, names),
  wake: wakeOf(value, names),
  handoff: `${names.queue.handoffs}${value}`,
});
const argsOf = (value: string, { names, spec, validityMs, limit }: Request) =>
  sharedArgs(names, value, spec, validityMs, limit);

/** A waiting acquisition (a try names no ticket nor wake key: it never queues). */
const acquire = (value: string, request = permits(), via = send) =>
  runScript(via, SEMAPHORE_SCRIPTS.acquire, waiterKeys(value, request.names), {
    ...argsOf(value, request),
    lifeMs: String(LONG_MS),
    mode: 'wait',
  });
const tryAcquire = (value: string, request = permits()) =>
  runScript(send, SEMAPHORE_SCRIPTS.acquire, holderKeys(value, request.names), {
    ...argsOf(value, request),
    lifeMs: String(LONG_MS),
    mode: 'try',
  });
/** An extension's status (the waiters it woke are the review tests' concern). */
const extend = async (value: string, request = permits(), via = send) => {
  const found = await runScript(
    via,
    SEMAPHORE_SCRIPTS.extend,
    holderKeys(value, request.names),
    argsOf(value, request),
  );
  return found.status === 'limit' ? found : { status: found.status };
};
const release = async (value: string, request = permits()) =>
  (
    await runScript(
      send,
      SEMAPHORE_SCRIPTS.release,
      holderKeys(value, request.names),
      argsOf(value, request),
    )
  ).held;
const check = (value: string, request = permits(), via = send) =>
  runScript(via, SEMAPHORE_SCRIPTS.check, holderKeys(value, request.names), argsOf(value, request));

/** JSON.stringify's replacer for replies that hold a token. */
const bigints = (_: string, v: unknown) => (typeof v === 'bigint' ? String(v) : v);

/** Admitted, else a failure that shows the reply. */
async function held(value: string, request = permits()): Promise<bigint> {
  const reply = await acquire(value, request);
  assert.ok(reply.status === 'held', `${value}: ${JSON.stringify(reply, bigints)}`);
  return reply.token;
}

/** Busy and queued at `rank`, else a failure that shows the reply. */
async function queuedAt(value: string, rank: number, request = permits(), via = send) {
  const reply = await acquire(value, request, via);
  assert.ok(
    reply.status === 'busy' && reply.place?.rank === rank,
    `${value}: ${JSON.stringify(reply, bigints)}`,
  );
}

async function serverMs(): Promise<number> {
  const [seconds, micros] = (await client.sendCommand(['TIME'])) as [string, string];
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

/** Every key and its serialized value (DUMP carries no TTL): equal when nothing was written. */
async function snapshot(): Promise<Record<string, unknown>> {
  const keys = ((await client.sendCommand(['KEYS', '*'])) as string[]).sort();
  const dumps = await Promise.all(keys.map((key) => client.sendCommand(['DUMP', key])));
  return Object.fromEntries(keys.map((key, i) => [key, dumps[i]]));
}

const holders = (names = S) => client.zRangeWithScores(names.holders, 0, -1);

/**
 * Expires `member` now, as its validity running out would, once the tests' setup is done: its
 * score becomes the server's time, and we wait until the server's clock is past it.
 */
async function expireNow(member: string): Promise<void> {
  const now = await serverMs();
  assert.is(await client.zAdd(S.holders, { score: now, value: member }, { XX: true, CH: true }), 1);
  await until(async () => (await serverMs()) > now);
}

/** A waiter dies: its ticket expires and nobody renews it. */
async function ticketExpires(value: string): Promise<void> {
  assert.ok(await client.pExpire(ticketOf(value), 1));
  await until(async () => (await client.exists(ticketOf(value))) === 0);
}
const queue = (names = S) => client.zRange(names.queue.queueKey, 0, -1);

/** Until the server's clock is past every score in the holders' set. */
async function untilExpired(): Promise<void> {
  const last = (await holders()).at(-1)?.score;
  assert.ok(last !== undefined, 'no holders');
  await until(async () => (await serverMs()) > last);
}

test.before(async () => {
  server = await startRedisServer();
  client = await connect(server.url);
});

test.after(async () => {
  await client.close();
  await server.stop();
});

test.before.each(async () => {
  await client.flushAll();
});

test('three holders of one permit each are admitted under a limit of 3, and a fourth is busy and queues', async () => {
  for (const value of ['a', 'b', 'c']) await held(value);
  const busy = await acquire('d');
  assert.ok(busy.status === 'busy', busy.status);
  assert.ok(busy.earliestMs > 0 && busy.earliestMs <= LONG_MS, String(busy.earliestMs));
  assert.equal(busy.place && [busy.place.role, busy.place.rank, busy.place.joined], [
    'head',
    0,
    true,
  ]);
  assert.is(await client.zCard(S.holders), 3);
  assert.is(await client.exists(own('d')), 0);
  assert.equal(await queue(), ['d']);
});

test('a request for 2 permits with 1 free is busy and writes nothing; one for 1 is admitted', async () => {
  await held('a');
  await held('b');
  const before = await snapshot();
  const busy = await tryAcquire('c', permits(2));
  assert.ok(busy.status === 'busy' && busy.place === undefined, JSON.stringify(busy));
  assert.ok(busy.earliestMs > 0 && busy.earliestMs <= LONG_MS, String(busy.earliestMs));
  assert.equal(await snapshot(), before);
  assert.ok((await tryAcquire('d')).status === 'held');
  assert.is(await client.zCard(S.holders), 3);
});

test('an admission writes one member per permit, scored by the server clock plus the validity, and the own key', async () => {
  const before = await serverMs();
  await held('a', permits(3, { limit: 5, validityMs: 10_000 }));
  const after = await serverMs();
  const members = await holders();
  assert.equal(
    members.map((m) => m.value),
    ['a#0', 'a#1', 'a#2'],
  );
  for (const { score } of members) {
    assert.ok(score >= before + 10_000 && score <= after + 10_000, `score ${score}`);
  }
  assert.is(await client.get(own('a')), '3');
  const expiry = Number(await client.sendCommand(['PEXPIRETIME', own('a')]));
  assert.is(expiry, members[0]?.score);
  assert.is(await client.hGet(S.meta, 'limit'), '5');
  // The set and the limit go with the last holder: an idle semaphore leaves no keys.
  assert.is(Number(await client.sendCommand(['PEXPIRETIME', S.holders])), expiry);
  assert.is(Number(await client.sendCommand(['PEXPIRETIME', S.meta])), expiry);
  // An admission on an empty queue leaves no queue behind.
  assert.is(await client.exists([S.queue.queueKey, S.queue.rolesKey, ticketOf('a')]), 0);
});

test('expired permits are removed by the next script, with their own keys, and free room', async () => {
  for (const value of ['a', 'b', 'c']) await held(value);
  // a and c expire on the server's clock (their own keys do not: only the cleanup deletes
  // them, and the deletion is what tells a holder at once that its permit was taken).
  await expireNow('a#0');
  await expireNow('c#0');
  // Still in the set (nothing removes them but a script), their room not free.
  assert.is(await client.zCard(S.holders), 3);
  assert.is(await client.exists([own('a'), own('c')]), 2);
  await held('d', permits(2));
  assert.equal((await holders()).map((m) => m.value).sort(), ['b#0', 'd#0', 'd#1']);
  assert.is(await client.exists([own('a'), own('c')]), 0);
});

test("permits freed by expiry wake the queue's head when it fits, though the script that finds them queues", async () => {
  for (const value of ['a', 'b', 'c']) await held(value);
  await queuedAt('d', 0, permits(2));
  // Written by d's promotion to head (its role), not because it fits.
  assert.is(await client.get(wakeOf('d')), 'head');
  assert.equal(await extend('c'), { status: 'extended' });
  assert.is(await client.get(wakeOf('d')), 'head');
  await expireNow('a#0');
  await expireNow('b#0');
  // e's arrival finds a and b expired: 2 free, d fits. e queues behind d.
  await queuedAt('e', 1);
  assert.equal(
    (await holders()).map((m) => m.value),
    ['c#0'],
  );
  assert.is(await client.get(wakeOf('d')), 'fit');
  await held('d', permits(2));
});

test('a locker with another limit is answered with the stored limit and nothing is written', async () => {
  for (const value of ['a', 'b', 'w']) await held(value);
  await queuedAt('q', 0, permits(2));
  await expireNow('a#0');
  const before = await snapshot();
  // Not even the cleanup of a's expired permit, nor a join: the limit is compared first.
  assert.equal(await acquire('c', permits(1, { limit: 4 })), { status: 'limit', stored: 3 });
  assert.equal(await tryAcquire('c', permits(1, { limit: 4 })), { status: 'limit', stored: 3 });
  assert.equal(await extend('b', permits(1, { limit: 2 })), { status: 'limit', stored: 3 });
  assert.equal(await snapshot(), before);
  assert.is(await client.zCard(S.holders), 3);
  assert.equal(await queue(), ['q']);
});

test('a locker with another limit is refused while waiters of the old one queue, though nobody holds', async () => {
  const one = permits(1, { limit: 1 });
  await held('a', one);
  await queuedAt('b', 0, one);
  // a leaves: b is woken to fit but has not come yet, and nobody holds.
  assert.is(await release('a', one), true);
  assert.is(await client.get(wakeOf('b')), 'fit');
  assert.equal(await acquire('c', permits(1, { limit: 5 })), { status: 'limit', stored: 1 });
  assert.equal(await queue(), ['b']);
});

test('each admission draws a token greater than every earlier one', async () => {
  const tokens: bigint[] = [];
  for (let i = 0; i < 5; i++) {
    tokens.push(await held(`v${i}`, permits(1, { limit: 1 })));
    assert.is(await release(`v${i}`, permits(1, { limit: 1 })), true);
  }
  for (let i = 1; i < tokens.length; i++) {
    assert.ok((tokens[i] as bigint) > (tokens[i - 1] as bigint), String(tokens));
  }
  assert.is(await client.get(S.fence), String(tokens.at(-1)));
});

test('an extension moves every score and the own key to the new expiry', async () => {
  await held('a', permits(2, { validityMs: 10_000 }));
  const first = (await holders())[0]?.score ?? 0;
  assert.equal(await extend('a', permits(2)), { status: 'extended' });
  const scores = (await holders()).map((m) => m.score);
  assert.is(scores.length, 2);
  assert.ok(scores.every((score) => score === scores[0] && score >= first + LONG_MS - 10_000));
  const expiry = Number(await client.sendCommand(['PEXPIRETIME', own('a')]));
  assert.is(expiry, scores[0]);
});

test('an extension never re-admits a holder whose permits were removed, even with room', async () => {
  await held('a');
  await client.zRem(S.holders, 'a#0');
  assert.equal(await extend('a'), { status: 'lost' });
  assert.is(await client.zCard(S.holders), 0);
  assert.is(await client.exists([own('a'), S.meta]), 0);
});

test('an extension never re-admits a holder whose permits expired', async () => {
  await held('a', permits(1, { validityMs: SHORT_MS }));
  await untilExpired();
  assert.equal(await extend('a'), { status: 'lost' });
  assert.is(await client.zCard(S.holders), 0);
  assert.is(await client.exists(own('a')), 0);
});

test("a holder that lost one of its permits is lost, and what is left of it is freed for the queue's head", async () => {
  await held('a', permits(2));
  await held('b');
  await queuedAt('c', 0);
  await client.zRem(S.holders, 'a#1');
  assert.equal(await extend('a', permits(2)), { status: 'lost' });
  assert.equal(
    (await holders()).map((m) => m.value),
    ['b#0'],
  );
  assert.is(await client.exists(own('a')), 0);
  assert.is(await client.get(wakeOf('c')), 'fit');
});

test("a release frees the permits and wakes the queue's head; a second release frees nothing", async () => {
  const one = permits(1, { limit: 1 });
  await held('a', one);
  await queuedAt('b', 0, one);
  assert.is(await client.get(wakeOf('b')), 'head');
  assert.is(await release('a', one), true);
  assert.is(await client.get(wakeOf('b')), 'fit');
  assert.is(await client.exists(own('a')), 0);
  await client.del(wakeOf('b'));
  assert.is(await release('a', one), false);
  assert.is(await client.exists(wakeOf('b')), 0);
  await held('b', one);
  // Admitted, b left the queue, and the last one out took every queue key with it.
  assert.is(await client.exists([S.queue.queueKey, S.queue.rolesKey, ticketOf('b')]), 0);
  assert.is(await release('b', one), true);
  // The last holder gone, the limit goes too: another limit may be taken now.
  assert.is(await client.exists([S.holders, S.meta]), 0);
  await held('c', permits(1, { limit: 2 }));
});

test('a waiter that gives up leaves the queue, and the next in line becomes the head', async () => {
  const one = permits(1, { limit: 1 });
  await held('a', one);
  await queuedAt('b', 0, one);
  await queuedAt('c', 1, one);
  assert.is(await release('b', one), false);
  assert.equal(await queue(), ['c']);
  assert.is(await client.exists([ticketOf('b'), wakeOf('b')]), 0);
  assert.is(await client.hGet(S.queue.rolesKey, 'c'), 'head');
  // Promoted: its wake key says so, though a still holds the only permit.
  assert.is(await client.get(wakeOf('c')), 'head');
});

test('a check tells whether the holder still holds all its permits, and writes nothing', async () => {
  await held('a', permits(2));
  await held('b');
  await queuedAt('c', 0, permits(2));
  const found = await check('a', permits(2));
  assert.ok(found.held && found.pttlMs > 0 && found.pttlMs <= LONG_MS, JSON.stringify(found));
  await expireNow('b#0');
  const before = await snapshot();
  assert.is((await check('b')).held, false);
  // b's expired permit is still in the set, and c is not woken: a check does not clean up.
  assert.equal(await snapshot(), before);
  await client.zRem(S.holders, 'a#1');
  const tampered = await snapshot();
  assert.is((await check('a', permits(2))).held, false);
  assert.is((await check('c')).held, false);
  assert.equal(await snapshot(), tampered);
});

/**
 * A second connection whose tracked keys' invalidations go to a plain socket (RESP2
 * invalidation messages carry an array, which no client parses).
 */
async function trackedConnection() {
  const listener = createConnection({ host: '127.0.0.1', port: server.port });
  let raw = '';
  listener.on('data', (data) => {
    raw += data.toString();
  });
  const tracked = await connect(server.url);
  listener.write('CLIENT ID\r\nSUBSCRIBE __redis__:invalidate\r\n');
  await until(() => raw.includes('__redis__:invalidate'));
  const id = /^:(\d+)/.exec(raw)?.[1] ?? '';
  await tracked.sendCommand(['CLIENT', 'TRACKING', 'ON', 'REDIRECT', id, 'NOLOOP']);
  const subscribed = raw.length;
  const pushed = () =>
    [
      ...raw
        .slice(subscribed)
        .matchAll(/__redis__:invalidate\r\n\*\d+\r\n((?:\$\d+\r\n[^\r]*\r\n)+)/g),
    ].flatMap((m) => [...(m[1] ?? '').matchAll(/\$\d+\r\n([^\r]*)\r\n/g)].map((k) => k[1]));
  let barriers = 0;
  return {
    via: ((args: string[]) => tracked.sendCommand(args)) as SendTo,
    /**
     * Every key pushed so far, in order, once every write made before this call is pushed:
     * pushes come in order, so they have once a barrier key written now is.
     */
    async heard(): Promise<(string | undefined)[]> {
      const barrier = `barrier:${barriers++}`;
      await tracked.get(barrier);
      await client.set(barrier, '1');
      await until(() => pushed().includes(barrier));
      return pushed().filter((key) => !key?.startsWith('barrier:'));
    },
    close: async () => {
      await tracked.close();
      listener.destroy();
    },
  };
}

test("a holder's scripts leave only its own key tracked on its connection", async () => {
  // What the design asks of loss by push: another holder's admission, extension or release
  // must not be pushed to this one (N holders would cost N² pushes per validity).
  const tracked = await trackedConnection();
  try {
    const reply = await runScript(tracked.via, SEMAPHORE_SCRIPTS.acquire, waiterKeys('a'), {
      ...argsOf('a', permits()),
      lifeMs: String(LONG_MS),
      mode: 'wait',
    });
    assert.is(reply.status, 'held');
    assert.equal(await extend('a', permits(), tracked.via), { status: 'extended' });
    assert.ok((await check('a', permits(), tracked.via)).held);
    await held('b');
    assert.equal(await extend('b'), { status: 'extended' });
    assert.is(await release('b'), true);
    assert.equal(await tracked.heard(), []);
    await client.del(own('a'));
    assert.equal(await tracked.heard(), [own('a')]);
  } finally {
    await tracked.close();
  }
});

// The queue (the mutex's QUEUE): arrivals wait behind it in order, only its head is admitted,
// and only the head is woken, by its wake key, when it fits.

test('arrivals join behind a non-empty queue even with permits free, and only the head is admitted', async () => {
  const two = { limit: 2 };
  await held('a', permits(2, two));
  await queuedAt('b', 0, permits(1, two));
  await queuedAt('c', 1, permits(1, two));
  assert.is(await release('a', permits(2, two)), true);
  // Two permits free, yet d queues behind b and c, and c (not the head) is not admitted.
  await queuedAt('d', 2, permits(1, two));
  await queuedAt('c', 1, permits(1, two));
  assert.is(await client.zCard(S.holders), 0);
  await held('b', permits(1, two));
  await held('c', permits(1, two));
  // d is the head now, and both permits are taken.
  await queuedAt('d', 0, permits(1, two));
  assert.equal(await queue(), ['d']);
});

test("a waiter's place is the mutex's: the head, the deputy watching the head's ticket, the others queued", async () => {
  await held('a', permits(3));
  const places = [];
  for (const value of ['b', 'c', 'd']) {
    const reply = await acquire(value);
    assert.ok(reply.status === 'busy', reply.status);
    places.push(reply.place && [reply.place.role, reply.place.rank, reply.place.watching]);
  }
  assert.equal(places, [
    ['head', 0, undefined],
    ['deputy', 1, 'b'],
    ['queued', 2, undefined],
  ]);
  // The listeners renewed their tickets (a deadline, on the server's clock); d has none.
  const now = await serverMs();
  for (const value of ['b', 'c']) {
    const deadline = Number(await client.get(ticketOf(value)));
    assert.ok(deadline > now && deadline <= now + LONG_MS, `${value}: ${deadline}`);
  }
  assert.is(await client.exists(ticketOf('d')), 0);
  assert.equal(await client.hGetAll(S.queue.rolesKey), {
    b: 'head',
    c: 'deputy',
    '#b': '1',
    '#c': '1',
    '#d': '1',
  });
});

test('a head for 2 permits blocks later arrivals for 1, and is admitted once 2 are free', async () => {
  await held('a');
  await held('b');
  await queuedAt('c', 0, permits(2));
  // One permit is free, but d would starve c: it queues.
  await queuedAt('d', 1);
  assert.is((await tryAcquire('e')).status, 'busy');
  assert.is(await client.get(wakeOf('c')), 'head');
  assert.is(await release('a'), true);
  assert.is(await client.get(wakeOf('c')), 'fit');
  await held('c', permits(2));
  await queuedAt('d', 0);
  assert.equal((await holders()).map((m) => m.value).sort(), ['b#0', 'c#0', 'c#1']);
});

test("a release writes only the head's wake key, only when the head fits, and an extension none", async () => {
  // The waiters read their keys through a tracked connection: every write to a key one of
  // them read is pushed, in order.
  const tracked = await trackedConnection();
  try {
    for (const value of ['a', 'b', 'x']) await held(value);
    await queuedAt('c', 0, permits(2), tracked.via);
    await queuedAt('d', 1, permits(1), tracked.via);
    await queuedAt('e', 2, permits(1), tracked.via);
    assert.equal(await extend('a'), { status: 'extended' });
    // One permit free: c, which needs 2, does not fit, and d and e wait behind it.
    assert.is(await release('a'), true);
    assert.is(await release('b'), true);
    assert.equal(await tracked.heard(), [wakeOf('c')]);
    assert.is(await client.get(wakeOf('c')), 'fit');
    // c fits and has not come yet; it reads its wake key again. x's extension leaves it be;
    // x's release, which frees a permit, writes it again.
    await tracked.via(['GET', wakeOf('c')]);
    assert.equal(await extend('x'), { status: 'extended' });
    assert.equal(await tracked.heard(), [wakeOf('c')]);
    assert.is(await release('x'), true);
    assert.equal(await tracked.heard(), [wakeOf('c'), wakeOf('c')]);
  } finally {
    await tracked.close();
  }
});

test('a try never joins the queue, and is busy while anyone waits', async () => {
  await held('a');
  await queuedAt('b', 0, permits(3));
  const before = await snapshot();
  // Two permits are free, but b waits for three.
  const busy = await tryAcquire('c');
  assert.ok(busy.status === 'busy' && busy.place === undefined, JSON.stringify(busy));
  assert.equal(await snapshot(), before);
  assert.equal(await queue(), ['b']);
  assert.is(await client.exists([ticketOf('c'), wakeOf('c')]), 0);
  assert.is(await release('b', permits(3)), false);
  assert.is(await client.exists(S.queue.queueKey), 0);
  assert.ok((await tryAcquire('c')).status === 'held');
});

// Read-write locks: readers in `holders`, the writer in `writers`, no limit; the same queue.

test('readers hold together, and a writer waits for them all', async () => {
  await held('r1', READ);
  await held('r2', READ);
  assert.is(await client.zCard(RW.holders), 2);
  await queuedAt('w', 0, WRITE);
  assert.is((await tryAcquire('w2', WRITE)).status, 'busy');
  assert.is(await release('r1', READ), true);
  assert.is(await client.get(wakeOf('w', RW)), 'head');
  assert.is(await release('r2', READ), true);
  assert.is(await client.get(wakeOf('w', RW)), 'fit');
  await held('w', WRITE);
  assert.equal(await client.zRange(RW.writers, 0, -1), ['w#0']);
  assert.is(await client.exists([RW.holders, RW.meta]), 0);
});

test('a writer excludes readers and other writers', async () => {
  await held('w', WRITE);
  assert.is((await tryAcquire('r', READ)).status, 'busy');
  assert.is((await tryAcquire('w2', WRITE)).status, 'busy');
  await queuedAt('r', 0, READ);
  assert.is(await release('w', WRITE), true);
  assert.is(await client.get(wakeOf('r', RW)), 'fit');
  await held('r', READ);
});

test('a queued writer stops later readers, though only readers hold (FIFO)', async () => {
  await held('r1', READ);
  await queuedAt('w', 0, WRITE);
  await queuedAt('r2', 1, READ);
  assert.is((await tryAcquire('r3', READ)).status, 'busy');
  assert.is(await release('r1', READ), true);
  await held('w', WRITE);
  await queuedAt('r2', 0, READ);
  assert.is(await release('w', WRITE), true);
  assert.is(await client.get(wakeOf('r2', RW)), 'fit');
  await held('r2', READ);
});

test('readers queued ahead of a writer are admitted in turn, each waking the next', async () => {
  await held('w1', WRITE);
  await queuedAt('r1', 0, READ);
  await queuedAt('r2', 1, READ);
  await queuedAt('w2', 2, WRITE);
  assert.is(await release('w1', WRITE), true);
  assert.is(await client.get(wakeOf('r1', RW)), 'fit');
  assert.is(await client.get(wakeOf('r2', RW)), 'deputy');
  await held('r1', READ);
  // r1's admission made r2 the head, and r2 fits beside r1.
  assert.is(await client.get(wakeOf('r2', RW)), 'fit');
  await held('r2', READ);
  assert.is(await client.get(wakeOf('w2', RW)), 'head');
  await queuedAt('w2', 0, WRITE);
  assert.is(await release('r1', READ), true);
  assert.is(await client.get(wakeOf('w2', RW)), 'head');
  assert.is(await release('r2', READ), true);
  assert.is(await client.get(wakeOf('w2', RW)), 'fit');
  await held('w2', WRITE);
});

test('a dead head is buried by the next script, and the next head woken when it fits', async () => {
  const one = permits(1, { limit: 1 });
  await held('a', one);
  await queuedAt('b', 0, one);
  await queuedAt('c', 1, one);
  await ticketExpires('b');
  assert.equal(await queue(), ['b', 'c']);
  assert.is(await release('a', one), true);
  assert.equal(await queue(), ['c']);
  // b's role and spec went with it; c is the head now.
  assert.equal(await client.hGetAll(S.queue.rolesKey), { c: 'head', '#c': '1' });
  assert.is(await client.exists(wakeOf('b')), 0);
  assert.is(await client.get(wakeOf('c')), 'fit');
  await held('c', one);
  assert.is(await client.exists(S.queue.queueKey), 0);
});

test('a dead head buried by an arrival makes the next the head, not woken to fit while it does not', async () => {
  const one = permits(1, { limit: 1 });
  await held('a', one);
  await queuedAt('b', 0, one);
  await queuedAt('c', 1, one);
  await ticketExpires('b');
  await queuedAt('d', 1, one);
  assert.equal(await queue(), ['c', 'd']);
  assert.is(await client.get(wakeOf('c')), 'head');
  assert.is(await release('a', one), true);
  assert.is(await client.get(wakeOf('c')), 'fit');
});

test.run();
