/**
 * A queued waiter in a process of its own, driven over IPC by a test: argv url name
 * keyValidityMs. Sends 'waiting' once its first attempt is out; once it holds the lock,
 * `held:<aborted>` (whether the lock's signal had already aborted when it got it), and
 * `lost:<code>` when the signal aborts; on 'release' it releases and sends `released:<result>`.
 * On 'ping' it sends 'pong': every message it sent before has arrived by then. A test kills it
 * (SIGKILL) or stops it (SIGSTOP) while it waits.
 */
import { createLocker } from '../../src/index.js';

const [url, name, validity] = process.argv.slice(2) as [string, string, string];
const send = (message: string) => process.send?.(message);
process.on('message', (message) => {
  if (message === 'ping') send('pong');
});
const locker = await createLocker({ url, keyValidityMs: Number(validity) });
const waiting = locker.withContext(name, { signal: AbortSignal.timeout(60_000) });
send('waiting');
const lock = await waiting.catch(() => undefined);
if (lock) {
  send(`held:${lock.signal.aborted}`);
  const code = (reason: unknown) => (reason as { code?: string } | undefined)?.code;
  lock.signal.addEventListener('abort', () => send(`lost:${code(lock.signal.reason)}`), {
    once: true,
  });
  process.on('message', async (message) => {
    if (message === 'release') send(`released:${await lock.release()}`);
  });
}
process.on('disconnect', () => {
  void locker.close().finally(() => process.exit(0));
});
