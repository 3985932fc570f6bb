import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { LockerOptions } from '../src/index.js';
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
    // node-redis sleeps between reconnect attempts to the node that is down on a timer that
    // close() cannot cancel; it fires within its longest delay (2 s + 200 ms jitter) and ends.
    await closeInChild(
      { nodes: [servers[0]?.url as string, servers[1]?.url as string, down] },
      2500,
    );
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

function fileURLToPathSafe(url: URL): string {
  return decodeURIComponent(url.pathname);
}

test.run();
