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
const handoffOf = (value: string, names = S) => `${names.queue.handoffs}${value}`;
/** A holder's scripts name its own key only; a waiter's also its ticket, wake and handoff keys. */
const holderKeys = (value: string, names = S) => ({ own: own(value, names) });
const waiterKeys = (value: string, names = S) => ({
  own: own(value, names),
  ticket: ticketOf(value, names),
  wake: wakeOf(value, names),
  handoff: handoffOf(value, names),
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
/** A release's whole reply: whether it held, and whom it woke or granted (`'+' + value`). */
const released = (value: string, request = permits()) =>
  runScript(
    send,
    SEMAPHORE_SCRIPTS.release,
    holderKeys(value, request.names),
    argsOf(value, request),
  );
const release = async (value: string, request = permits()) => (await released(value, request)).held;
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

/** Busy and queued at `rank`, else a failure that shows the reply; the reply. */
async function queuedAt(value: string, rank: number, request = permits(), via = send) {
  const reply = await acquire(value, request, via);
  assert.ok(
    reply.status === 'busy' && reply.place?.rank === rank,
    `${value}: ${JSON.stringify(reply, bigints)}`,
  );
  return reply;
}

/**
 * Busy as the queue's head, else a failure: the token it reserved (what a grant gives it) and
 * its ticket's deadline (until when a grant's permits last).
 */
async function headReserving(value: string, request = permits(), via = send) {
  const reply = await queuedAt(value, 0, request, via);
  const token = reply.status === 'busy' ? reply.place?.token : undefined;
  assert.ok(token !== undefined, `${value}: ${JSON.stringify(reply, bigints)}`);
  assert.is(
    await client.hGet(request.names.queue.rolesKey, `#${value}`),
    `${request.spec} ${token} ${request.validityMs}`,
  );
  assert.is(await client.get(request.names.fence), String(token));
  const deadline = Number(await client.get(ticketOf(value, request.names)));
  assert.ok(deadline > 0, `${value}'s ticket: ${deadline}`);
  return { token, deadline };
}

/**
 * `value` was granted its permits by a script, not by an attempt of its own: its members and
 * own key last until its ticket's deadline, its handoff key holds the token it reserved, and
 * it left the queue (ticket, wake key and roles with it).
 */
async function assertGranted(
  value: string,
  { token, deadline }: { token: bigint; deadline: number },
  request = permits(),
) {
  const { names } = request;
  assert.is(await client.get(handoffOf(value, names)), String(token));
  assert.is(Number(await client.sendCommand(['PEXPIRETIME', handoffOf(value, names)])), deadline);
  const set = request.spec === 'w' ? names.writers : names.holders;
  const k = request.spec === 'w' || request.spec === 'r' ? 1 : Number(request.spec);
  const mine = (await client.zRangeWithScores(set, 0, -1)).filter((m) =>
    m.value.startsWith(`${value}#`),
  );
  assert.equal(
    mine.map((m) => [m.value, m.score]),
    Array.from({ length: k }, (_, i) => [`${value}#${i}`, deadline]),
  );
  assert.is(await client.get(own(value, names)), String(k));
  assert.is(Number(await client.sendCommand(['PEXPIRETIME', own(value, names)])), deadline);
  assert.not.ok((await client.zRange(names.queue.queueKey, 0, -1)).includes(value));
  assert.is(await client.exists([ticketOf(value, names), wakeOf(value, names)]), 0);
  assert.is(await client.hGet(names.queue.rolesKey, `#${value}`), null);
}

/**
 * `a` holds the one permit, and `b` is the head without having attempted as one (promoted by
 * the script of `x`, the head before it, giving up): it reserved no token, so it cannot be
 * granted.
 */
async function headNeverAttempting(one: Request) {
  await held('a', one);
  await queuedAt('x', 0, one);
  await queuedAt('b', 1, one);
  assert.is(await release('x', one), false);
}

/** The granted `value`'s attempt: HELD with the token it reserved, its handoff key gone. */
async function takesGrant(value: string, token: bigint, request = permits()) {
  assert.is(await held(value, request), token);
  assert.is(await client.exists(handoffOf(value, request.names)), 0);
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

test("permits freed by expiry are granted to the queue's head when it fits, though the script that finds them queues", async () => {
  for (const value of ['a', 'b', 'c']) await held(value);
  const reserved = await headReserving('d', permits(2));
  // Written by d's promotion to head (its role), not because it fits.
  assert.is(await client.get(wakeOf('d')), 'head');
  assert.equal(await extend('c'), { status: 'extended' });
  assert.is(await client.get(wakeOf('d')), 'head');
  await expireNow('a#0');
  await expireNow('b#0');
  // e's arrival finds a and b expired: 2 free, d fits and is granted them. e queues behind d
  // (the head now, it does not fit).
  const e = await queuedAt('e', 1);
  assert.ok(e.status === 'busy' && e.woken.includes('+d'), JSON.stringify(e, bigints));
  await assertGranted('d', reserved, permits(2));
  assert.equal((await holders()).map((m) => m.value).sort(), ['c#0', 'd#0', 'd#1']);
  assert.equal(await queue(), ['e']);
  assert.is(await client.get(wakeOf('e')), 'head');
  await takesGrant('d', reserved.token, permits(2));
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
  await headNeverAttempting(one);
  // a leaves: b is woken to fit but has not come yet, and nobody holds.
  assert.is(await release('a', one), true);
  assert.is(await client.get(wakeOf('b')), 'fit');
  assert.is(await client.exists(S.holders), 0);
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
  const reserved = await headReserving('c');
  await client.zRem(S.holders, 'a#1');
  assert.equal(await extend('a', permits(2)), { status: 'lost' });
  assert.equal((await holders()).map((m) => m.value).sort(), ['b#0', 'c#0']);
  assert.is(await client.exists(own('a')), 0);
  await assertGranted('c', reserved);
  assert.is(await client.exists(S.queue.queueKey), 0);
});

test("a release frees the permits and grants them to the queue's head; a second release frees nothing", async () => {
  const one = permits(1, { limit: 1 });
  await held('a', one);
  const reserved = await headReserving('b', one);
  assert.is(await client.get(wakeOf('b')), 'head');
  assert.equal(await released('a', one), { held: true, woken: ['+b'] });
  await assertGranted('b', reserved, one);
  assert.is(await client.exists(own('a')), 0);
  const granted = await snapshot();
  assert.equal(await released('a', one), { held: false, woken: [] });
  assert.equal(await snapshot(), granted);
  await takesGrant('b', reserved.token, one);
  // Admitted, b left the queue, and the last one out took every queue key with it.
  assert.is(await client.exists([S.queue.queueKey, S.queue.rolesKey, ticketOf('b')]), 0);
  assert.is(await release('b', one), true);
  // The last holder gone, the limit goes too: another limit may be taken now.
  assert.is(await client.exists([S.holders, S.meta]), 0);
  await held('c', permits(1, { limit: 2 }));
});

test("a holder of a longer validity than the head's grants it while a quarter of the head's ticket is left, not of its own validity", async () => {
  const head = permits(1, { limit: 1, validityMs: 1000 });
  await held('a', permits(1, { limit: 1 }));
  const reserved = await headReserving('b', head);
  assert.equal(await released('a', permits(1, { limit: 1 })), { held: true, woken: ['+b'] });
  await assertGranted('b', reserved, head);
  await takesGrant('b', reserved.token, head);
  assert.is(await release('b', head), true);
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
  const reserved = await headReserving('b', permits(1, two));
  await queuedAt('c', 1, permits(1, two));
  // b is granted one of the two permits a frees; c, the head now, fits and is woken.
  assert.is(await release('a', permits(2, two)), true);
  await assertGranted('b', reserved, permits(1, two));
  assert.is(await client.get(wakeOf('c')), 'fit');
  // One permit free, yet d and e queue behind c, and d (not the head) is not admitted.
  await queuedAt('d', 1, permits(1, two));
  await queuedAt('e', 2, permits(1, two));
  await queuedAt('d', 1, permits(1, two));
  assert.equal(
    (await holders()).map((m) => m.value),
    ['b#0'],
  );
  await takesGrant('b', reserved.token, permits(1, two));
  await held('c', permits(1, two));
  assert.is(await release('e', permits(1, two)), false);
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
    places.push(
      reply.place && [reply.place.role, reply.place.rank, reply.place.watching, reply.place.token],
    );
  }
  // The head alone reserves a token, the one a grant would give it: the last drawn.
  const token = places[0]?.[3];
  assert.ok(typeof token === 'bigint' && String(token) === (await client.get(S.fence)));
  // Looking again, the head keeps its token while none was drawn since.
  const again = await acquire('b');
  assert.ok(
    again.status === 'busy' && again.place?.token === token,
    JSON.stringify(again, bigints),
  );
  assert.is(await client.get(S.fence), String(token));
  assert.equal(places, [
    ['head', 0, undefined, token],
    ['deputy', 1, 'b', undefined],
    ['queued', 2, undefined, undefined],
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
    '#b': `1 ${token} ${LONG_MS}`,
    '#c': '1',
    '#d': '1',
  });
});

test('a head for 2 permits blocks later arrivals for 1, and is admitted once 2 are free', async () => {
  await held('a');
  await held('b');
  const reserved = await headReserving('c', permits(2));
  // One permit is free, but d would starve c: it queues.
  await queuedAt('d', 1);
  assert.is((await tryAcquire('e')).status, 'busy');
  assert.is(await client.get(wakeOf('c')), 'head');
  assert.equal(await released('a'), { held: true, woken: ['d', '+c'] });
  await assertGranted('c', reserved, permits(2));
  // d, the head now, does not fit: only its promotion wrote its wake key.
  assert.is(await client.get(wakeOf('d')), 'head');
  await takesGrant('c', reserved.token, permits(2));
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
    // A token drawn since c reserved its own (as another admission would): c cannot be
    // granted, and is woken instead (the grants' tests are below).
    await client.incr(S.fence);
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
  const reserved = await headReserving('w', WRITE);
  assert.is((await tryAcquire('w2', WRITE)).status, 'busy');
  assert.is(await release('r1', READ), true);
  assert.is(await client.get(wakeOf('w', RW)), 'head');
  assert.is(await client.exists(RW.writers), 0);
  assert.equal(await released('r2', READ), { held: true, woken: ['+w'] });
  await assertGranted('w', reserved, WRITE);
  await takesGrant('w', reserved.token, WRITE);
  assert.equal(await client.zRange(RW.writers, 0, -1), ['w#0']);
  assert.is(await client.exists([RW.holders, RW.meta]), 0);
});

test('a writer excludes readers and other writers', async () => {
  await held('w', WRITE);
  assert.is((await tryAcquire('r', READ)).status, 'busy');
  assert.is((await tryAcquire('w2', WRITE)).status, 'busy');
  const reserved = await headReserving('r', READ);
  assert.is(await release('w', WRITE), true);
  await assertGranted('r', reserved, READ);
  assert.is(await client.exists(RW.writers), 0);
  await takesGrant('r', reserved.token, READ);
});

test('a queued writer stops later readers, though only readers hold (FIFO)', async () => {
  await held('r1', READ);
  const w = await headReserving('w', WRITE);
  await queuedAt('r2', 1, READ);
  assert.is((await tryAcquire('r3', READ)).status, 'busy');
  assert.is(await release('r1', READ), true);
  await assertGranted('w', w, WRITE);
  // r2, the head now, waits for the writer it queued behind.
  assert.is(await client.get(wakeOf('r2', RW)), 'head');
  assert.is(await client.exists(RW.holders), 0);
  await takesGrant('w', w.token, WRITE);
  const r2 = await headReserving('r2', READ);
  assert.is(await release('w', WRITE), true);
  await assertGranted('r2', r2, READ);
  await takesGrant('r2', r2.token, READ);
});

test('readers queued ahead of a writer are admitted in turn, each waking the next', async () => {
  await held('w1', WRITE);
  const r1 = await headReserving('r1', READ);
  await queuedAt('r2', 1, READ);
  await queuedAt('w2', 2, WRITE);
  // w1's release grants r1, which made r2 the head, and r2 fits beside r1: woken (one grant
  // per script). w2 is the deputy now.
  assert.is(await release('w1', WRITE), true);
  await assertGranted('r1', r1, READ);
  assert.is(await client.get(wakeOf('r2', RW)), 'fit');
  assert.is(await client.get(wakeOf('w2', RW)), 'deputy');
  await takesGrant('r1', r1.token, READ);
  await held('r2', READ);
  assert.is(await client.get(wakeOf('w2', RW)), 'head');
  const w2 = await headReserving('w2', WRITE);
  assert.is(await release('r1', READ), true);
  assert.is(await client.get(wakeOf('w2', RW)), 'head');
  assert.is(await release('r2', READ), true);
  await assertGranted('w2', w2, WRITE);
  await takesGrant('w2', w2.token, WRITE);
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

// Grants (the mutex's handoff): a release, extension or arrival that frees room for the head
// hands it the permits in the same script, when the head reserved a token at its last attempt
// as the head, no token was drawn since, and its ticket has a quarter of a validity left.
// Otherwise the head is woken to fit, as before.

test('a head that never attempted as the head reserved no token: it is woken to fit, not granted', async () => {
  const one = permits(1, { limit: 1 });
  await headNeverAttempting(one);
  assert.is(await client.hGet(S.queue.rolesKey, '#b'), '1');
  assert.ok(Number(await client.get(ticketOf('b'))) > 0);
  const fence = await client.get(S.fence);
  assert.equal(await released('a', one), { held: true, woken: ['b'] });
  assert.is(await client.get(wakeOf('b')), 'fit');
  assert.is(await client.exists([handoffOf('b'), own('b'), S.holders]), 0);
  assert.equal(await queue(), ['b']);
  // Its attempt is admitted, with a token drawn then.
  assert.ok((await held('b', one)) > BigInt(fence ?? '0'));
});

test('a token drawn since the head reserved its own: the head is woken to fit, not granted', async () => {
  const one = permits(1, { limit: 1 });
  await held('a', one);
  const reserved = await headReserving('b', one);
  await client.incr(S.fence);
  assert.equal(await released('a', one), { held: true, woken: ['b'] });
  assert.is(await client.get(wakeOf('b')), 'fit');
  assert.is(await client.exists([handoffOf('b'), own('b'), S.holders]), 0);
  assert.equal(await queue(), ['b']);
  assert.is(await client.hGet(S.queue.rolesKey, '#b'), `1 ${reserved.token} ${LONG_MS}`);
  assert.ok((await held('b', one)) > reserved.token + 1n);
});

test("a head's ticket with less than a quarter of a validity left, or a promoter's, is woken to fit, not granted", async () => {
  const one = permits(1, { limit: 1 });
  for (const [value, left] of [
    ['b', LONG_MS / 4 - 5_000],
    ['c', -1],
  ] as const) {
    await client.flushAll();
    await held('a', one);
    await headReserving(value, one);
    const now = await serverMs();
    // Less than a quarter left (time only shortens it), or negative: set by a promoter.
    const deadline = left > 0 ? now + left : -(now + LONG_MS);
    await client.set(ticketOf(value), String(deadline), { PX: LONG_MS });
    assert.equal(await released('a', one), { held: true, woken: [value] });
    assert.is(await client.get(wakeOf(value)), 'fit');
    assert.is(await client.exists([handoffOf(value), own(value), S.holders]), 0);
    assert.equal(await queue(), [value]);
    await held(value, one);
  }
  // With a quarter left, granted.
  await client.flushAll();
  await held('a', one);
  const { token } = await headReserving('d', one);
  const deadline = (await serverMs()) + LONG_MS / 4 + 10_000;
  await client.set(ticketOf('d'), String(deadline), { PX: LONG_MS });
  assert.equal(await released('a', one), { held: true, woken: ['+d'] });
  await assertGranted('d', { token, deadline }, one);
});

test("a head granted before its attempt ran is held by it, with the granted token and this attempt's expiry", async () => {
  const one = permits(1, { limit: 1 });
  await held('a', one);
  const reserved = await headReserving('b', one);
  assert.is(await release('a', one), true);
  await assertGranted('b', reserved, one);
  const before = await serverMs();
  const reply = await acquire('b', one);
  assert.equal(reply, { status: 'held', token: reserved.token, woken: [] });
  assert.is(await client.exists([handoffOf('b'), S.queue.queueKey, S.queue.rolesKey]), 0);
  // No token drawn: the grant's is still the last.
  assert.is(await client.get(S.fence), String(reserved.token));
  const [member] = await holders();
  assert.ok(member && member.value === 'b#0' && member.score >= before + LONG_MS);
  assert.is(Number(await client.sendCommand(['PEXPIRETIME', own('b')])), member?.score);
  assert.is(await release('b', one), true);
});

test('one grant per script: of two heads that fit in turn, the first is granted and the second woken to fit', async () => {
  const two = { limit: 2 };
  await held('a', permits(2, two));
  const reserved = await headReserving('b', permits(1, two));
  await queuedAt('c', 1, permits(1, two));
  // Only a head reserves, so no second head ever has a token still good: set one by hand,
  // the one b reserved, which no draw outdates before c is woken.
  await client.hSet(S.queue.rolesKey, '#c', `1 ${reserved.token}`);
  const reply = await released('a', permits(2, two));
  assert.equal([...reply.woken].sort(), ['+b', 'c']);
  await assertGranted('b', reserved, permits(1, two));
  assert.is(await client.get(wakeOf('c')), 'fit');
  assert.is(await client.exists([handoffOf('c'), own('c')]), 0);
  assert.equal(await queue(), ['c']);
  assert.equal(
    (await holders()).map((m) => m.value),
    ['b#0'],
  );
  await held('c', permits(1, two));
  await takesGrant('b', reserved.token, permits(1, two));
});

test("a writer's release grants a reader at the head, and wakes the next reader to fit", async () => {
  await held('w', WRITE);
  const reserved = await headReserving('r1', READ);
  await queuedAt('r2', 1, READ);
  await queuedAt('r3', 2, READ);
  const reply = await released('w', WRITE);
  assert.equal([...reply.woken].sort(), ['+r1', 'r2', 'r3']);
  await assertGranted('r1', reserved, READ);
  assert.is(await client.exists(RW.writers), 0);
  assert.is(await client.get(wakeOf('r2', RW)), 'fit');
  assert.is(await client.get(wakeOf('r3', RW)), 'deputy');
  assert.is(await client.exists(handoffOf('r2', RW)), 0);
  assert.equal(await client.zRange(RW.queue.queueKey, 0, -1), ['r2', 'r3']);
  await takesGrant('r1', reserved.token, READ);
  await held('r2', READ);
});

test('an arrival whose script grants the head, and which is then the head and fits, is admitted, not left waiting on a wake key it wrote itself', async () => {
  for (const value of ['a', 'b', 'c']) await held(value);
  const reserved = await headReserving('d');
  await expireNow('a#0');
  await expireNow('b#0');
  // e's arrival frees 2: d is granted 1, and e, the head after it, fits in the other. Its own
  // script's write of its wake key is never pushed to it (NOLOOP, and written before it read
  // it): answered busy, it would wait until its next timed look.
  const reply = await acquire('e');
  assert.ok(reply.status === 'held', JSON.stringify(reply, bigints));
  assert.equal(reply.woken, ['+d']);
  assert.ok(reply.token > reserved.token);
  await assertGranted('d', reserved);
  assert.equal((await holders()).map((m) => m.value).sort(), ['c#0', 'd#0', 'e#0']);
  assert.is(await client.exists([S.queue.queueKey, wakeOf('e'), ticketOf('e')]), 0);
});

test('a busy attempt deletes a handoff key of its own left by a grant that is gone, so that its expiry cannot read as a grant', async () => {
  const one = permits(1, { limit: 1 });
  await held('a', one);
  await client.set(handoffOf('b'), '42', { PX: LONG_MS });
  assert.is((await acquire('b', one)).status, 'busy');
  assert.is(await client.exists(handoffOf('b')), 0);
});

test.run();
