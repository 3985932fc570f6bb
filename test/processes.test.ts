import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type Locker } from '../src/index.js';
import { exited, forkHelper, message } from './helpers/child.js';
import { provideRedis, type TestRedis } from './helpers/redis.js';
import { bound, sleep, watched } from './helpers/wait.js';

const test = suite<{ redis: TestRedis; locker: Locker }>('processes');

test.before(async (ctx) => {
  ctx.redis = await provideRedis();
  ctx.locker = await createLocker({ url: ctx.redis.url, keyValidityMs: 30_000 });
});

test.after(async (ctx) => {
  await ctx.locker.close();
  await ctx.redis.stop();
});

test('a lock released in another process is handed over by invalidation, not by expiry', async ({
  redis,
  locker,
}) => {
  const holder = forkHelper('./holder.ts', [redis.url, 'handover', '30000']);
  try {
    await message(holder, 'held');
    // Validity is 30 s and nobody polls: within 5 s only the invalidation push can wake us.
    const waiting = watched(locker.withContext('handover', bound()));
    await sleep(50); // a window: the waiter must not get the held lock in it
    assert.not.ok(waiting.resolved(), 'the waiter got a lock that another process holds');
    holder.send('release');
    assert.is(await message(holder, 'released'), 'released:true');
    const lock = await waiting.promise;
    assert.not.ok(lock.signal.aborted);
    await lock.release();
  } finally {
    holder.kill('SIGKILL');
    await exited(holder);
  }
});

test('the lock of a holder process that crashed is taken once its keys expire', async ({
  redis,
  locker,
}) => {
  const holder = forkHelper('./holder.ts', [redis.url, 'crashed', '800']);
  try {
    await message(holder, 'held');
    holder.send('die');
    await exited(holder);
    const lock = await locker.withContext('crashed', { signal: AbortSignal.timeout(10_000) });
    assert.not.ok(lock.signal.aborted);
    await lock.release();
  } finally {
    holder.kill('SIGKILL');
  }
});

test.run();
