import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type LockerOptions } from '../src/index.js';
import { runScript } from '../src/redis/lua.js';
import { SCRIPTS } from '../src/redis/scripts.js';
import { type Client, connect } from './helpers/redis.js';
import { startRedisCluster } from './helpers/redis-cluster.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { bound } from './helpers/wait.js';

// The Lua scripts are loaded when a locker connects, so that no first call of one bounces off
// NOSCRIPT (an extra round trip, and the whole script sent, at the worst time: a release).
const test = suite('scripts');
const shas = Object.values(SCRIPTS).map((script) => script.sha);

const noscripts = async (client: Client) => {
  const errors = String(await client.sendCommand(['INFO', 'errorstats']));
  return Number(/errorstat_NOSCRIPT:count=(\d+)/.exec(errors)?.[1] ?? 0);
};

/** Whether `servers` hold every script of the registry, once a locker connected to them. */
async function loadedOn(servers: readonly RedisServer[], options: LockerOptions) {
  const locker = await createLocker(options);
  try {
    return await Promise.all(
      servers.map(async (server) => {
        const client = await connect(server.url);
        try {
          return await client.sendCommand(['SCRIPT', 'EXISTS', ...shas]);
        } finally {
          await client.close();
        }
      }),
    );
  } finally {
    await locker.close();
  }
}

test('a release through the queue on a fresh server finds its script loaded', async () => {
  const server = await startRedisServer();
  const admin = await connect(server.url);
  const locker = await createLocker({ url: server.url });
  try {
    const lock = await locker.withContext('fresh', bound(10_000));
    assert.is(await lock.release(), true);
    assert.is(await noscripts(admin), 0);
    const stats = String(await admin.sendCommand(['INFO', 'commandstats']));
    assert.match(stats, /cmdstat_evalsha:calls=2,.*failed_calls=0/);
  } finally {
    await locker.close();
    await admin.close();
    await server.stop();
  }
});

test('every script is loaded on each of the nodes at connect', async () => {
  const servers = await Promise.all([0, 1, 2].map(() => startRedisServer()));
  try {
    const loaded = await loadedOn(servers, { nodes: servers.map((server) => server.url) });
    assert.equal(
      loaded,
      servers.map(() => shas.map(() => 1)),
    );
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('every script is loaded on each master of a cluster at connect', async () => {
  const cluster = await startRedisCluster({ masters: 3 });
  try {
    const loaded = await loadedOn(cluster.servers, { cluster: { rootNodes: cluster.rootNodes } });
    assert.equal(
      loaded,
      cluster.servers.map(() => shas.map(() => 1)),
    );
  } finally {
    await cluster.stop();
  }
});

test('a server that lost its scripts gets each one again by EVAL, once', async () => {
  const server = await startRedisServer();
  const admin = await connect(server.url);
  const locker = await createLocker({ url: server.url });
  try {
    await admin.sendCommand(['SCRIPT', 'FLUSH']);
    for (let i = 0; i < 2; i++) {
      const lock = await locker.withContext('flushed', bound(10_000));
      assert.is(await lock.release(), true);
    }
    // The acquire's and the delete's first EVALSHA each, then EVAL cached them again.
    assert.is(await noscripts(admin), 2);
  } finally {
    await locker.close();
    await admin.close();
    await server.stop();
  }
});

test('a call that names a later key but leaves out an earlier optional one is refused unsent', async () => {
  const sent: string[][] = [];
  const send = async (args: string[]) => {
    sent.push(args);
    return [];
  };
  const keys = { keys: ['k'], ticket: 't', wake: 'w', handoff: 'h' };
  const args = {
    value: 'v',
    expiry: '1',
    unit: 'PX',
    condition: 'NX',
    from: '',
    keyCount: '1',
    majority: '1',
    validityMs: '1',
  };
  const refused = await runScript(send, SCRIPTS.acquire, keys, args).then(
    () => undefined,
    (error: unknown) => error,
  );
  assert.instance(refused, TypeError);
  assert.match(String(refused), 'ticket given without fence');
  assert.equal(sent, []);
  await runScript(send, SCRIPTS.acquire, { ...keys, fence: 'f' }, args);
  assert.equal(sent, [
    [
      'EVALSHA',
      SCRIPTS.acquire.sha,
      '5',
      'k',
      'f',
      't',
      'w',
      'h',
      'v',
      '1',
      'PX',
      'NX',
      '',
      '1',
      '1',
      '1',
    ],
  ]);
});

test.run();
