/**
 * A lock holder in a process of its own, driven over IPC by a test:
 * argv: url name keyValidityMs. Sends 'held' once it holds the lock; on 'release' it releases
 * and sends 'released'; on 'die' it SIGKILLs itself while holding (a crashed holder).
 */
import { createLocker } from '../../src/index.js';

const [url, name, validity] = process.argv.slice(2) as [string, string, string];
const send = (message: string) => process.send?.(message);
const locker = await createLocker({ url, keyValidityMs: Number(validity) });
const lock = await locker.withContext(name, { signal: AbortSignal.timeout(10_000) });
send('held');
process.on('message', async (message) => {
  if (message === 'die') process.kill(process.pid, 'SIGKILL');
  if (message === 'release') {
    send(`released:${await lock.release()}`);
    await locker.close();
    process.disconnect();
  }
});
process.on('disconnect', () => process.exit(0));
