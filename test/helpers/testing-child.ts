/**
 * Runs `startRedis` in a process of its own and prints what it saw as JSON, so that the handles
 * and exit listeners left after `stop()` are the helper's alone, and so that PATH can name an
 * empty folder without changing it for the other tests. argv: `lifecycle`, `timeout` or `start`.
 */
import { startRedis } from '../../src/testing/index.js';
import { handleCheck } from './handles.js';

if (process.argv[2] === 'lifecycle') {
  const handles = handleCheck();
  const exitListeners = process.listenerCount('exit');
  const redis = await startRedis({ source: 'local' });
  await redis.pause();
  await redis.resume();
  await redis.restart();
  await redis.stop();
  console.log(
    JSON.stringify({
      url: redis.url,
      // At once: stop() resolves only when nothing of the server is left.
      handles: await handles.left(0),
      exitListeners: process.listenerCount('exit') - exitListeners,
    }),
  );
} else if (process.argv[2] === 'timeout') {
  const handles = handleCheck();
  const error = await startRedis({ source: 'local', startTimeoutMs: 1 }).catch((e: Error) => e);
  // At once, as for stop(): a failed start leaves nothing of its process either.
  const message = error instanceof Error ? error.message : null;
  console.log(JSON.stringify({ message, handles: await handles.left(0) }));
} else {
  const error = await startRedis({ source: 'local' }).then(
    async (redis) => {
      await redis.stop();
      return undefined;
    },
    (error: unknown) => error,
  );
  console.log(JSON.stringify({ message: error instanceof Error ? error.message : null }));
}
