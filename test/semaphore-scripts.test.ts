import { createConnection } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runScript } from '../src/redis/lua.js';
import { SEMAPHORE_SCRIPTS } from '../src/redis/semaphore-scripts.js';
import { semaphoreNames } from '../src/shared/keys.js';
import { type Client, connect } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { until } from './helpers/wait.js';

// Issue 16, step 2 of docs/design/semaphores.md: the semaphore's scripts, called directly on a
// server of our own (nothing public calls them yet).
const test = suite('semaphore scripts');

const NAMES = semaphoreNames('rueidislock', 's', 'sem');
const LONG_MS = 60_000;
const SHORT_MS = 200;

let server: RedisServer;
let client: Client;
const send = (args: string[]) => client.sendCommand(args);

const keysFor = (value: string) => ({ own: `${NAMES.owns}${value}` });
const shared = (value: string, permits: number) => ({
  value,
  permits: String(permits),
  meta: NAMES.meta,
  holders: NAMES.holders,
  vacancy: NAMES.vacancy,
});
const argsFor = (value: string, permits: number, limit: number, validityMs: number) => ({
  ...shared(value, permits),
  limit: String(limit),
  validityMs: String(validityMs),
});

const acquire = (value: string, { permits = 1, limit = 3, validityMs = LONG_MS } = {}) =>
  runScript(send, SEMAPHORE_SCRIPTS.acquire, keysFor(value), {
    ...argsFor(value, permits, limit, validityMs),
    fence: NAMES.fence,
  });
const extend = (value: string, { permits = 1, limit = 3, validityMs = LONG_MS } = {}) =>
  runScript(
    send,
    SEMAPHORE_SCRIPTS.extend,
    keysFor(value),
    argsFor(value, permits, limit, validityMs),
  );
const release = (value: string, permits = 1) =>
  runScript(send, SEMAPHORE_SCRIPTS.release, keysFor(value), {
    ...shared(value, permits),
    validityMs: String(LONG_MS),
  });
const check = (value: string, permits = 1) =>
  runScript(send, SEMAPHORE_SCRIPTS.check, keysFor(value), shared(value, permits));

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

const holders = () => client.zRangeWithScores(NAMES.holders, 0, -1);

/** Until the server's clock is past every score in the holders' set. */
async function untilExpired(): Promise<void> {
  const last = (await holders()).at(-1)?.score ?? 0;
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

test('three holders of one permit each are admitted under a limit of 3, and a fourth is busy', async () => {
  for (const value of ['a', 'b', 'c']) assert.is((await acquire(value)).status, 'held');
  const busy = await acquire('d');
  assert.is(busy.status, 'busy');
  assert.ok(busy.status === 'busy' && busy.needed === 1);
  assert.ok(busy.status === 'busy' && busy.earliestMs > 0 && busy.earliestMs <= LONG_MS);
  assert.is(await client.zCard(NAMES.holders), 3);
  assert.is(await client.exists(`${NAMES.owns}d`), 0);
});

test('a request for 2 permits with 1 free is busy, needing 1 more; one for 1 is admitted', async () => {
  assert.is((await acquire('a')).status, 'held');
  assert.is((await acquire('b')).status, 'held');
  const busy = await acquire('c', { permits: 2 });
  assert.ok(busy.status === 'busy' && busy.needed === 1, JSON.stringify(busy));
  assert.is(await client.zCard(NAMES.holders), 2);
  assert.is((await acquire('d')).status, 'held');
});

test('an admission writes one member per permit, scored by the server clock plus the validity, and the own key', async () => {
  const before = await serverMs();
  assert.is((await acquire('a', { permits: 3, limit: 5, validityMs: 10_000 })).status, 'held');
  const after = await serverMs();
  const members = await holders();
  assert.equal(
    members.map((m) => m.value),
    ['a#0', 'a#1', 'a#2'],
  );
  for (const { score } of members) {
    assert.ok(score >= before + 10_000 && score <= after + 10_000, `score ${score}`);
  }
  assert.is(await client.get(`${NAMES.owns}a`), '3');
  const expiry = Number(await client.sendCommand(['PEXPIRETIME', `${NAMES.owns}a`]));
  assert.is(expiry, members[0]?.score);
  assert.is(await client.hGet(NAMES.meta, 'limit'), '5');
  // The set and the limit go with the last holder: an idle semaphore leaves no keys.
  assert.is(Number(await client.sendCommand(['PEXPIRETIME', NAMES.holders])), expiry);
  assert.is(Number(await client.sendCommand(['PEXPIRETIME', NAMES.meta])), expiry);
});

test('expired permits are removed by the next script, with their own keys, and free room', async () => {
  assert.is((await acquire('a', { validityMs: SHORT_MS })).status, 'held');
  assert.is((await acquire('c', { validityMs: SHORT_MS })).status, 'held');
  assert.is((await acquire('b')).status, 'held');
  // Redis' own expiry of a's own key would hide whether the cleanup deletes it (the deletion
  // is what tells a holder at once that its permit was taken): only the cleanup may, here.
  await client.persist(`${NAMES.owns}a`);
  // a and c expire: still in the set (nothing removes them but a script), their room not free.
  const last = (await holders()).find((m) => m.value === 'c#0')?.score ?? 0;
  await until(async () => (await serverMs()) > last);
  assert.is(await client.zCard(NAMES.holders), 3);
  assert.is((await acquire('d', { permits: 2 })).status, 'held');
  assert.equal((await holders()).map((m) => m.value).sort(), ['b#0', 'd#0', 'd#1']);
  assert.is(await client.exists([`${NAMES.owns}a`, `${NAMES.owns}c`]), 0);
  assert.is(await client.get(NAMES.vacancy), '1');
});

test('a locker with another limit is answered with the stored limit and nothing is written', async () => {
  assert.is((await acquire('a', { validityMs: SHORT_MS })).status, 'held');
  assert.is((await acquire('b')).status, 'held');
  await until(async () => (await serverMs()) > ((await holders())[0]?.score ?? 0));
  const before = await snapshot();
  // Not even the cleanup of a's expired permit: the limit is compared first.
  assert.equal(await acquire('c', { limit: 4 }), { status: 'limit', stored: 3 });
  assert.equal(await extend('b', { limit: 2 }), { status: 'limit', stored: 3 });
  assert.equal(await snapshot(), before);
  assert.is(await client.zCard(NAMES.holders), 2);
});

test('each admission draws a token greater than every earlier one', async () => {
  const tokens: bigint[] = [];
  for (let i = 0; i < 5; i++) {
    const held = await acquire(`v${i}`, { limit: 1 });
    assert.ok(held.status === 'held', held.status);
    tokens.push(held.token);
    assert.is(await release(`v${i}`), true);
  }
  for (let i = 1; i < tokens.length; i++) {
    assert.ok((tokens[i] as bigint) > (tokens[i - 1] as bigint), String(tokens));
  }
  assert.is(await client.get(NAMES.fence), String(tokens.at(-1)));
});

test('an extension moves every score and the own key to the new expiry', async () => {
  assert.is((await acquire('a', { permits: 2, validityMs: 10_000 })).status, 'held');
  const first = (await holders())[0]?.score ?? 0;
  assert.equal(await extend('a', { permits: 2 }), { status: 'extended' });
  const scores = (await holders()).map((m) => m.score);
  assert.is(scores.length, 2);
  assert.ok(scores.every((score) => score === scores[0] && score >= first + LONG_MS - 10_000));
  const expiry = Number(await client.sendCommand(['PEXPIRETIME', `${NAMES.owns}a`]));
  assert.is(expiry, scores[0]);
});

test('an extension never re-admits a holder whose permits were removed, even with room', async () => {
  assert.is((await acquire('a')).status, 'held');
  await client.zRem(NAMES.holders, 'a#0');
  assert.equal(await extend('a'), { status: 'lost' });
  assert.is(await client.zCard(NAMES.holders), 0);
  assert.is(await client.exists([`${NAMES.owns}a`, NAMES.vacancy, NAMES.meta]), 0);
});

test('an extension never re-admits a holder whose permits expired', async () => {
  assert.is((await acquire('a', { validityMs: SHORT_MS })).status, 'held');
  await untilExpired();
  assert.equal(await extend('a'), { status: 'lost' });
  assert.is(await client.zCard(NAMES.holders), 0);
  assert.is(await client.exists(`${NAMES.owns}a`), 0);
});

test('a holder that lost one of its permits is lost, and what is left of it is freed', async () => {
  assert.is((await acquire('a', { permits: 2 })).status, 'held');
  assert.is((await acquire('b')).status, 'held');
  await client.zRem(NAMES.holders, 'a#1');
  assert.equal(await extend('a', { permits: 2 }), { status: 'lost' });
  assert.equal(
    (await holders()).map((m) => m.value),
    ['b#0'],
  );
  assert.is(await client.exists(`${NAMES.owns}a`), 0);
  assert.is(await client.get(NAMES.vacancy), '1');
});

test('a release frees the permits and writes the vacancy key; a second release frees nothing', async () => {
  assert.is((await acquire('a', { limit: 1 })).status, 'held');
  assert.is((await acquire('b', { limit: 1 })).status, 'busy');
  assert.is(await client.exists(NAMES.vacancy), 0);
  assert.is(await release('a'), true);
  assert.is(await client.get(NAMES.vacancy), '1');
  assert.is(await client.exists(`${NAMES.owns}a`), 0);
  assert.is(await release('a'), false);
  assert.is(await client.get(NAMES.vacancy), '1');
  assert.is((await acquire('b', { limit: 1 })).status, 'held');
  assert.is(await release('b'), true);
  // The last holder gone, the limit goes too: another limit may be taken now.
  assert.is(await client.exists([NAMES.holders, NAMES.meta]), 0);
  assert.is((await acquire('c', { limit: 2 })).status, 'held');
});

test('a check tells whether the holder still holds all its permits, and writes nothing', async () => {
  assert.is((await acquire('a', { permits: 2 })).status, 'held');
  assert.is((await acquire('b', { validityMs: SHORT_MS })).status, 'held');
  const held = await check('a', 2);
  assert.ok(held.held && held.pttlMs > 0 && held.pttlMs <= LONG_MS, JSON.stringify(held));
  await until(async () => (await serverMs()) > ((await holders())[0]?.score ?? 0));
  const before = await snapshot();
  assert.is((await check('b')).held, false);
  // b's expired permit is still in the set: a check does not clean up.
  assert.equal(await snapshot(), before);
  await client.zRem(NAMES.holders, 'a#1');
  assert.is((await check('a', 2)).held, false);
  assert.is((await check('c')).held, false);
});

test("a holder's scripts leave only its own key tracked on its connection", async () => {
  // What the design asks of loss by push: another holder's admission, extension or release
  // must not be pushed to this one (N holders would cost N² pushes per validity). The pushes
  // go to a plain socket: RESP2 invalidation messages carry an array, which no client parses.
  const listener = createConnection({ host: '127.0.0.1', port: server.port });
  let heard = '';
  listener.on('data', (data) => {
    heard += data.toString();
  });
  const tracked = await connect(server.url);
  try {
    listener.write('CLIENT ID\r\nSUBSCRIBE __redis__:invalidate\r\n');
    await until(() => heard.includes('__redis__:invalidate'));
    const id = /^:(\d+)/.exec(heard)?.[1] ?? '';
    await tracked.sendCommand(['CLIENT', 'TRACKING', 'ON', 'REDIRECT', id, 'NOLOOP']);
    const viaTracked = (args: string[]) => tracked.sendCommand(args);
    const args = argsFor('a', 1, 3, LONG_MS);
    const keys = keysFor('a');
    const held = await runScript(viaTracked, SEMAPHORE_SCRIPTS.acquire, keys, {
      ...args,
      fence: NAMES.fence,
    });
    assert.is(held.status, 'held');
    assert.equal(await runScript(viaTracked, SEMAPHORE_SCRIPTS.extend, keys, args), {
      status: 'extended',
    });
    const checked = await runScript(viaTracked, SEMAPHORE_SCRIPTS.check, keys, shared('a', 1));
    assert.ok(checked.held);
    assert.is((await acquire('b')).status, 'held');
    assert.equal(await extend('b'), { status: 'extended' });
    assert.is(await release('b'), true);
    await client.del(keys.own);
    await until(() => heard.includes(keys.own));
    for (const other of [NAMES.meta, NAMES.holders, NAMES.fence, NAMES.vacancy]) {
      assert.not.ok(heard.includes(other), `${other} was pushed: ${heard}`);
    }
  } finally {
    await tracked.close();
    listener.destroy();
  }
});

test.run();
