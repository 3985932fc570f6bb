import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, provideRedis, type TestRedis } from './helpers/redis.js';

const test = suite<{ redis: TestRedis }>('close');

test.before(async (ctx) => {
  ctx.redis = await provideRedis();
});

test.after(async (ctx) => {
  await ctx.redis.stop();
});

test('close aborts held signals, rejects waiters and later calls, deletes keys and leaves no handle', async ({
  redis,
}) => {
  const child = fileURLToPathSafe(new URL('./helpers/close-child.ts', import.meta.url));
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', child, redis.url],
    {
      timeout: 20_000,
    },
  );
  const seen = JSON.parse(stdout.trim().split('\n').at(-1) as string);
  assert.is(seen.heldReason, 'ERR_LOCKER_CLOSED');
  assert.is(seen.waiterError, 'ERR_LOCKER_CLOSED');
  assert.is(seen.laterError, 'ERR_LOCKER_CLOSED');
  assert.is(seen.releaseAfterClose, false);
  assert.equal(seen.handles, []);
  const client = await connect(redis.url);
  assert.is(await client.exists(['rueidislock:0:close-held', 'rueidislock:1:close-held']), 0);
  await client.close();
});

function fileURLToPathSafe(url: URL): string {
  return decodeURIComponent(url.pathname);
}

test.run();
