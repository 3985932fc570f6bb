/**
 * A waiter in a process of its own (it queues, as by default): argv url name keyValidityMs. Sends
 * 'waiting' once its first attempt is out; a test kills it while it waits.
 */
import { createLocker } from '../../src/index.js';

const [url, name, validity] = process.argv.slice(2) as [string, string, string];
const locker = await createLocker({ url, keyValidityMs: Number(validity) });
const waiting = locker.withContext(name, { signal: AbortSignal.timeout(30_000) });
process.send?.('waiting');
await waiting.then((lock) => lock.release()).catch(() => {});
await locker.close();
process.disconnect?.();
