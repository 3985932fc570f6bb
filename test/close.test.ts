import { type ChildProcess, execFile } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { LockerOptions } from '../src/index.js';
import { forkHelper, message } from './helpers/child.js';
import { connect, provideRedis, type TestRedis } from './helpers/redis.js';
import { startRedisCluster } from './helpers/redis-cluster.js';
import { freePort, startRedisServer } from './helpers/redis-server.js';

const test = suite<{ redis: TestRedis }>('close');

test.before(async (ctx) => {
  ctx.redis = await provideRedis();
});

test.after(async (ctx) => {
  await ctx.redis.stop();
});

async function closeInChild(options: LockerOptions, settleMs = 20) {
  const child = fileURLToPathSafe(new URL('./helpers/close-child.ts', import.meta.url));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', child, JSON.stringify(options), String(settleMs)],
    { timeout: 20_000 },
  );
  const seen = JSON.parse(stdout.trim().split('\n').at(-1) as string);
  assert.is(seen.heldReason, 'ERR_LOCKER_CLOSED');
  assert.is(seen.waiterError, 'ERR_LOCKER_CLOSED');
  assert.is(seen.laterError, 'ERR_LOCKER_CLOSED');
  assert.is(seen.releaseAfterClose, false);
  assert.equal(seen.handles, []);
}

test('close aborts held signals, rejects waiters and later calls, deletes keys and leaves no handle', async ({
  redis,
}) => {
  await closeInChild({ url: redis.url });
  const client = await connect(redis.url);
  assert.is(await client.exists(['rueidislock:0:close-held', 'rueidislock:1:close-held']), 0);
  await client.close();
});

test('with nodes, close leaves no handle, not even for a node that never came up', async () => {
  const servers = await Promise.all([startRedisServer(), startRedisServer()]);
  try {
    const down = `redis://127.0.0.1:${await freePort()}`;
    // The pause between attempts to connect to the node that is down is a timer of tracklock's,
    // which close() clears (node-redis' own pause could not be cancelled).
    await closeInChild({ nodes: [servers[0]?.url as string, servers[1]?.url as string, down] });
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('with a cluster, close leaves no handle', async () => {
  const cluster = await startRedisCluster({ masters: 3 });
  try {
    await closeInChild({ cluster: { rootNodes: cluster.rootNodes } });
  } finally {
    await cluster.stop();
  }
});

/**
 * Take a lock in a child process, `freeze` Redis (SIGSTOP: its sockets stay open and nothing
 * answers), and close the locker: the child must report no handle left, then exit by itself
 * while Redis is still frozen (the caller resumes it afterwards).
 */
async function closeWhileFrozen(options: LockerOptions, freeze: () => unknown) {
  const child = forkHelper('./frozen-close-child.ts', [JSON.stringify(options)]);
  try {
    await message(child, 'held', 20_000);
    await freeze();
    const closed = message(child, 'closed ', 10_000);
    child.send('close');
    const seen = JSON.parse((await closed).slice('closed '.length));
    assert.is(seen.reason, 'ERR_LOCKER_CLOSED');
    assert.equal(seen.handles, []);
    await exitWithin(child, 10_000);
    assert.is(child.exitCode, 0);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

async function exitWithin(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await once(child, 'exit', { signal: AbortSignal.timeout(ms) }).catch(() => {
    throw new Error(`the child did not exit within ${ms} ms of close() while Redis was frozen`);
  });
}

test('close while the one server is frozen leaves no socket, and the process exits', async () => {
  const server = await startRedisServer();
  try {
    await closeWhileFrozen({ url: server.url }, () => server.pause());
  } finally {
    server.resume();
    await server.stop();
  }
});

test('close while one of three nodes is frozen leaves no socket, and the process exits', async () => {
  const servers = await Promise.all([startRedisServer(), startRedisServer(), startRedisServer()]);
  try {
    await closeWhileFrozen({ nodes: servers.map((server) => server.url) }, () =>
      servers[0]?.pause(),
    );
  } finally {
    for (const server of servers) server.resume();
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('close while every node is frozen leaves no socket, and the process exits', async () => {
  const servers = await Promise.all([startRedisServer(), startRedisServer(), startRedisServer()]);
  try {
    await closeWhileFrozen({ nodes: servers.map((server) => server.url) }, () => {
      for (const server of servers) server.pause();
    });
  } finally {
    for (const server of servers) server.resume();
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('close while a cluster master is frozen leaves no socket, and the process exits', async () => {
  const cluster = await startRedisCluster({ masters: 3 });
  try {
    const master = await cluster.masterFor('rueidislock:0:frozen-close');
    await closeWhileFrozen({ cluster: { rootNodes: cluster.rootNodes } }, () => master.pause());
  } finally {
    for (const server of cluster.servers) server.resume();
    await cluster.stop();
  }
});

function fileURLToPathSafe(url: URL): string {
  return decodeURIComponent(url.pathname);
}

test.run();
