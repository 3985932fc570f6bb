import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, DEFAULTS, LockError, type LockerOptions } from '../src/index.js';
import { resolveOptions } from '../src/shared/resolve-options.js';
import { connect, provideRedis, type TestRedis } from './helpers/redis.js';
import { freePort } from './helpers/redis-server.js';
import { sleep } from './helpers/wait.js';

const test = suite<{ redis: TestRedis }>('options');

test.before(async (ctx) => {
  ctx.redis = await provideRedis();
});

test.after(async (ctx) => {
  await ctx.redis.stop();
});

const rejects = async (
  options: LockerOptions,
  kind: typeof TypeError | typeof RangeError,
  mention: string,
) => {
  const error = await createLocker(options).catch((e: unknown) => e);
  assert.instance(error, kind);
  assert.ok((error as Error).message.includes(mention), (error as Error).message);
};

test('bad options are refused with an error that names the option', async () => {
  await rejects({ keyMajority: 0 }, RangeError, 'keyMajority');
  await rejects({ keyMajority: 1.5 }, RangeError, 'keyMajority');
  await rejects({ keyValidityMs: 0 }, RangeError, 'keyValidityMs');
  await rejects({ keyValidityMs: -5 }, RangeError, 'keyValidityMs');
  await rejects({ keyValidityMs: 2 ** 31 }, RangeError, 'keyValidityMs');
  await rejects({ keyValidityMs: 1000, extendIntervalMs: 1000 }, RangeError, 'extendIntervalMs');
  await rejects({ keyValidityMs: 1000, extendIntervalMs: 995 }, RangeError, 'drift margin');
  await rejects({ driftFactor: 0.5 }, RangeError, 'driftFactor');
  await rejects({ tryNextAfterMs: Number.NaN }, RangeError, 'tryNextAfterMs');
  await rejects({ keyPrefix: '' }, TypeError, 'keyPrefix');
  await rejects({ noLoopTracking: 'yes' as unknown as boolean }, TypeError, 'noLoopTracking');
  await rejects({ client: { RESP: 2 } } as unknown as LockerOptions, TypeError, 'RESP');
  await rejects({ keyValidity: 5000 } as LockerOptions, TypeError, 'unknown option "keyValidity"');
});

test('keyMajority is bounded, so that a typo cannot run a script for minutes on a shared server', async () => {
  await rejects(
    { keyMajority: 100_000 },
    RangeError,
    'keyMajority must be a whole number from 1 to 32',
  );
  await rejects({ keyMajority: 33 }, RangeError, 'keyMajority must be a whole number from 1 to 32');
});

test('an option of the wrong type is a TypeError that says what it got, strings included', async () => {
  // Options often come from environment variables, as strings.
  await rejects({ keyValidityMs: '5000' } as unknown as LockerOptions, TypeError, 'keyValidityMs');
  await rejects(
    { keyValidityMs: '5000' } as unknown as LockerOptions,
    TypeError,
    'got the string "5000"',
  );
  await rejects({ keyMajority: '3' } as unknown as LockerOptions, TypeError, 'got the string "3"');
  await rejects(
    { driftFactor: '0.1' } as unknown as LockerOptions,
    TypeError,
    'driftFactor must be a number',
  );
  await rejects({ commandTimeoutMs: true } as unknown as LockerOptions, TypeError, 'got a boolean');
  const error = await createLocker({ extendIntervalMs: 1.5 }).catch((e: unknown) => e);
  assert.instance(error, RangeError, 'a number out of range stays a RangeError');
});

test('topology options are refused when they conflict or cannot work', async () => {
  const three = ['redis://127.0.0.1:1', 'redis://127.0.0.1:2', 'redis://127.0.0.1:3'];
  const five = [...three, 'redis://127.0.0.1:4', 'redis://127.0.0.1:5'];
  const cluster = { rootNodes: [{ url: three[0] as string }] };
  await rejects({ url: three[0] as string, nodes: three }, TypeError, 'not url and nodes');
  await rejects({ nodes: three, cluster }, TypeError, 'not nodes and cluster');
  await rejects({ nodes: [] }, TypeError, 'nodes must be a non-empty array');
  await rejects({ nodes: [42] } as unknown as LockerOptions, TypeError, 'nodes[0]');
  await rejects({ nodes: five, keyMajority: 2 }, RangeError, 'keyMajority 3');
  // Every node must hold as many of each lock's keys as every other: 5 keys on 4 nodes would
  // sit 2+1+1+1, and the lock would be granted on 2 of 4 servers.
  const four = five.slice(0, 4);
  await rejects({ nodes: four }, RangeError, 'an odd number of nodes');
  await rejects({ nodes: four, keyMajority: 4 }, RangeError, 'an odd number of nodes');
  await rejects(
    { nodes: three, keyMajority: 3 },
    RangeError,
    'keyMajority 2 (3 keys) or keyMajority 5 (9 keys)',
  );
  await rejects({ groups: [three, four] }, RangeError, 'groups[1]');
  // Sets of 3 and 5: every lock's keys must be a multiple of 15, whichever set it is on.
  assert.is(resolveOptions({ groups: [three, five] }).keyMajority, 8);
  await rejects(
    { groups: [three, five], keyMajority: 2 },
    RangeError,
    'keyMajority 8 (15 keys) or keyMajority 23',
  );
  await rejects(
    { groups: [three, five], keyMajority: 3 },
    RangeError,
    'keyMajority 8 (15 keys) or keyMajority 23',
  );
  // Sets of 5 and 7 fit 35 keys, but not 105: only what the bound allows is suggested.
  const seven = [...five, 'redis://127.0.0.1:6', 'redis://127.0.0.1:7'];
  await rejects(
    { groups: [five, seven], keyMajority: 2 },
    RangeError,
    'use keyMajority 18 (35 keys)',
  );
  await rejects({ groups: [three, five, seven] }, RangeError, 'use sets of one size');
  await rejects({ groups: [] }, TypeError, 'groups must be');
  await rejects({ groups: [three, []] }, TypeError, 'groups[1]');
  await rejects({ cluster: { rootNodes: [] } }, TypeError, 'rootNodes');
  await rejects({ cluster, client: {} }, TypeError, 'cluster.defaults');
  await rejects({ cluster: { ...cluster, useReplicas: true } }, TypeError, 'useReplicas');
  await rejects({ cluster, keyPrefix: '{locks}' }, TypeError, 'keyPrefix');
  await rejects({ nodes: [...three, three[1] as string] }, TypeError, 'twice');
  await rejects(
    { nodes: [three[0] as string, { url: three[0] as string }, three[2] as string] },
    TypeError,
    'twice',
  );
});

test('bad names are refused before any key is written', async ({ redis }) => {
  const client = await connect(redis.url);
  const locker = await createLocker({ url: redis.url });
  try {
    const keysBefore = await client.dbSize();
    for (const name of ['', 42, undefined, 'lone \ud800 surrogate']) {
      for (const call of [locker.withContext, locker.tryWithContext, locker.forceWithContext]) {
        const error = await call.call(locker, name as string).catch((e: unknown) => e);
        assert.instance(error, TypeError, `name ${String(name)}`);
      }
    }
    const error = await locker
      .withContext('x', { signal: 'soon' as unknown as AbortSignal })
      .catch((e: unknown) => e);
    assert.instance(error, TypeError);
    assert.is(await client.dbSize(), keysBefore);
  } finally {
    await locker.close();
    await client.close();
  }
});

test('an unreachable Redis makes createLocker reject with ERR_CONNECT within connectTimeoutMs', async () => {
  const port = await freePort(); // nobody listens there
  const error = await createLocker({
    url: `redis://127.0.0.1:${port}`,
    connectTimeoutMs: 500,
  }).catch((e: unknown) => e);
  assert.instance(error, LockError);
  assert.is((error as LockError).code, 'ERR_CONNECT');
  assert.match((error as Error).message, /ECONNREFUSED|connectTimeoutMs/);
});

/**
 * Not a Redis: a socket that answers the handshake the way an old server would, since no
 * Redis older than 6.2 is installed here. It only ever sees the connection handshake.
 */
async function oldServer(answer: (command: string) => string): Promise<Server> {
  const server = createServer((socket) => {
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString();
      // Each RESP command is an array: *<n>\r\n$<len>\r\n<word>…; answer per command name.
      for (
        let match = /^\*(\d+)\r\n/.exec(buffered);
        match;
        match = /^\*(\d+)\r\n/.exec(buffered)
      ) {
        const parts: string[] = [];
        let rest = buffered.slice(match[0].length);
        for (let i = 0; i < Number(match[1]); i++) {
          const bulk = /^\$(\d+)\r\n/.exec(rest);
          if (!bulk || rest.length < bulk[0].length + Number(bulk[1]) + 2) return;
          parts.push(rest.slice(bulk[0].length, bulk[0].length + Number(bulk[1])));
          rest = rest.slice(bulk[0].length + Number(bulk[1]) + 2);
        }
        buffered = rest;
        socket.write(answer(parts.join(' ').toUpperCase()));
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

const urlOf = (server: Server) =>
  `redis://127.0.0.1:${(server.address() as { port: number }).port}`;

test("a server without RESP3 (before 6.0) is refused with ERR_SERVER_VERSION under tracking: 'on'", async () => {
  const server = await oldServer(() => "-ERR unknown command 'HELLO'\r\n");
  try {
    const error = await createLocker({
      url: urlOf(server),
      connectTimeoutMs: 2000,
      tracking: 'on',
    }).catch((e: unknown) => e);
    assert.instance(error, LockError);
    assert.is((error as LockError).code, 'ERR_SERVER_VERSION');
    assert.match((error as Error).message, /6\.0/);
  } finally {
    server.close();
  }
});

test('a server without PXAT (before 6.2) is refused unless fallbackSetPx is set', async () => {
  const info = 'redis_version:6.0.16\r\n';
  const server = await oldServer((command) =>
    command.startsWith('HELLO')
      ? '%1\r\n+server\r\n+redis\r\n'
      : command.startsWith('INFO')
        ? `$${info.length}\r\n${info}\r\n`
        : '+OK\r\n',
  );
  try {
    const error = await createLocker({ url: urlOf(server), connectTimeoutMs: 2000 }).catch(
      (e: unknown) => e,
    );
    assert.instance(error, LockError);
    assert.is((error as LockError).code, 'ERR_SERVER_VERSION');
    assert.match((error as Error).message, /fallbackSetPx: true/);
    const locker = await createLocker({
      url: urlOf(server),
      connectTimeoutMs: 2000,
      fallbackSetPx: true,
    });
    await locker.close();
  } finally {
    server.close();
  }
});

test('fallbackSetPx writes relative expiries that work the same', async ({ redis }) => {
  const client = await connect(redis.url);
  const locker = await createLocker({
    url: redis.url,
    fallbackSetPx: true,
    keyValidityMs: 400,
    extendIntervalMs: 100,
  });
  try {
    const lock = await locker.withContext('relative', { signal: AbortSignal.timeout(5000) });
    await sleep(900); // a window: more than two validities, and the lock must hold
    assert.not.ok(lock.signal.aborted);
    const pttl = await client.pTTL('rueidislock:0:relative');
    assert.ok(pttl > 0 && pttl <= 400, `PTTL ${pttl}`);
    assert.is(await lock.release(), true);
  } finally {
    await locker.close();
    await client.close();
  }
});

test('keyMajority 1 uses one key and keyMajority 3 five', async ({ redis }) => {
  const client = await connect(redis.url);
  for (const [keyMajority, count] of [
    [1, 1],
    [3, 5],
  ] as const) {
    const locker = await createLocker({
      url: redis.url,
      keyMajority,
      keyPrefix: `m${keyMajority}`,
    });
    const lock = await locker.withContext('n');
    const keys = Array.from({ length: count + 1 }, (_, i) => `m${keyMajority}:${i}:n`);
    assert.is(await client.exists(keys), count);
    await lock.release();
    await locker.close();
  }
  await client.close();
});

test('waiters queue on every topology unless queue is false', () => {
  const three = ['redis://127.0.0.1:1', 'redis://127.0.0.1:2', 'redis://127.0.0.1:3'];
  const where: LockerOptions[] = [
    { url: three[0] as string },
    { nodes: three },
    { cluster: { rootNodes: [{ url: three[0] as string }] } },
    { groups: [three, three.map((url) => `${url}0`)] },
  ];
  for (const topology of where) {
    assert.is(resolveOptions(topology).queue, true);
    assert.is(resolveOptions({ ...topology, queue: true }).queue, true);
    assert.is(resolveOptions({ ...topology, queue: false }).queue, false);
  }
});

test('DEFAULTS holds the documented defaults', () => {
  assert.equal(
    { ...DEFAULTS },
    {
      keyPrefix: 'rueidislock',
      keyValidityMs: 5000,
      extendIntervalMs: 2500,
      tryNextAfterMs: 20,
      keyMajority: 2,
      tracking: 'auto',
      pollIntervalMs: 100,
      checkIntervalMs: 500,
      noLoopTracking: true,
      fallbackSetPx: false,
      queue: true,
      localHandoffs: 8,
      maxHoldMs: Infinity,
      driftFactor: 0.01,
      commandTimeoutMs: 1000,
      connectTimeoutMs: 5000,
    },
  );
});

test.run();
