import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type LockError, type Locker, UnavailableError } from '../src/index.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';

// A server that stops answering (SIGSTOP): what the caller is told, and when.
const test = suite<{ server: RedisServer; locker: Locker }>('frozen server');

test.before.each(async (ctx) => {
  ctx.server = await startRedisServer();
  // A long command timeout: a rejection that waits for it is plainly late.
  ctx.locker = await createLocker({ url: ctx.server.url, commandTimeoutMs: 8000 });
});

test.after.each(async (ctx) => {
  ctx.server.resume();
  await ctx.locker.close();
  await ctx.server.stop();
});

/** How long `call` takes to reject, and with what. */
async function rejection(call: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const start = performance.now();
  const error = await call.then(
    () => assert.unreachable('resolved'),
    (e: unknown) => e,
  );
  return { ms: performance.now() - start, error };
}

test('an aborted wait rejects at once, not when the attempt in flight times out', async ({
  server,
  locker,
}) => {
  server.pause();
  const signal = AbortSignal.timeout(300);
  const { ms, error } = await rejection(locker.withContext('frozen-wait', { signal }));
  assert.is(error, signal.reason);
  // commandTimeoutMs is 8 s: anywhere near it means the rejection waited for the attempt.
  assert.ok(ms < 4000, `rejected after ${Math.round(ms)} ms`);
});

test('an aborted try rejects at once too', async ({ server, locker }) => {
  server.pause();
  const signal = AbortSignal.timeout(300);
  const { ms, error } = await rejection(locker.tryWithContext('frozen-try', { signal }));
  assert.is(error, signal.reason);
  assert.ok(ms < 4000, `rejected after ${Math.round(ms)} ms`);
});

test('a wait that ran out while Redis did not answer says so, with the cause', async ({
  server,
}) => {
  const locker = await createLocker({ url: server.url, commandTimeoutMs: 200 });
  try {
    server.pause();
    const { error } = await rejection(locker.withContext('frozen-timeout', { waitTimeoutMs: 300 }));
    assert.instance(error, UnavailableError);
    assert.is((error as LockError).code, 'ERR_UNAVAILABLE');
    assert.match((error as Error).message, /waitTimeoutMs \(300 ms\)/);
    assert.not.match((error as Error).message, /held by another owner/);
    assert.match(String((error as Error).cause), /did not answer/);
  } finally {
    server.resume();
    await locker.close();
  }
});

test.run();

const refusing = suite('a server that refuses the scripts');

refusing(
  'a wait that ran out while Redis failed the attempts says so, with the cause',
  async () => {
    // SCRIPT LOAD works (createLocker succeeds), but every attempt fails.
    const server = await startRedisServer(['--rename-command', 'EVALSHA', '']);
    const locker = await createLocker({ url: server.url });
    try {
      const { error } = await rejection(
        locker.withLock('refused', () => 'ran', { waitTimeoutMs: 0 }),
      );
      assert.is((error as LockError).code, 'ERR_UNAVAILABLE');
      assert.match(String((error as Error).cause), /unknown command/i);
    } finally {
      await locker.close();
      await server.stop();
    }
  },
);

refusing.run();
