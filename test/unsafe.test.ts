import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker } from '../src/index.js';
import { connect } from './helpers/redis.js';
import { startRedisServer } from './helpers/redis-server.js';
import { bound, sleep } from './helpers/wait.js';

// Where docs/guarantees.md says tracklock is NOT safe, shown: two holders at once. The fencing token
// is what still tells them apart.
const test = suite('unsafe, as documented');

test('a client clock behind the server by less than the validity lets a second holder in early', async () => {
  // Keys expire only when touched (no active expiry cycle): the second holder's own attempt
  // expires them, so the invalidation that tells the first one leaves no earlier than that.
  const server = await startRedisServer(['--enable-debug-command', 'yes']);
  const admin = await connect(server.url);
  await admin.sendCommand(['DEBUG', 'SET-ACTIVE-EXPIRE', '0']);
  const realNow = Date.now;
  const options = { url: server.url, keyValidityMs: 1000, extendIntervalMs: 800 };
  const [first, second] = await Promise.all([createLocker(options), createLocker(options)]);
  try {
    // PXAT from a clock 600 ms behind: the server expires the keys 400 ms after the set, while
    // the holder counts on 1000 ms less its 12 ms margin.
    Date.now = () => realNow() - 600;
    const held = await first.withContext('skewed', bound(10_000));
    Date.now = realNow;
    // Past the keys' expiry on the server's clock. Not polled: a read would expire them, and
    // tell the first holder, before the second holder's attempt does.
    await sleep(450);
    const taken = await second.tryWithContext('skewed', bound(10_000));
    assert.is(held.signal.aborted, false, 'the first holder already knew');
    await taken.release();
  } finally {
    Date.now = realNow;
    admin.destroy();
    await Promise.all([first.close(), second.close()]);
    await server.stop();
  }
});

test.run();
