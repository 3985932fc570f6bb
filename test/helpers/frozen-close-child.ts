/**
 * Takes a lock, says `held` over IPC, and on the message `close` (sent once the test has frozen
 * Redis) runs close() and reports `closed {"handles":[…],"reason":"…"}`: the handles left
 * besides those it had before the locker. Then it drops the IPC channel: from there on only the
 * locker's leftovers could keep the process alive. argv: the locker options, as JSON.
 */
import { once } from 'node:events';
import { createLocker, type LockerOptions } from '../../src/index.js';
import { handleCheck } from './handles.js';

const options = JSON.parse(process.argv[2] as string) as LockerOptions;
const code = (value: unknown) => (value as { code?: string } | undefined)?.code ?? String(value);
// The IPC channel and stdio: the locker must leave only these.
const handles = handleCheck();
const locker = await createLocker(options);
const held = await locker.withContext('frozen-close');
process.send?.('held');
await once(process, 'message');
await locker.close();
const left = await handles.left();
process.send?.(`closed ${JSON.stringify({ handles: left, reason: code(held.signal.reason) })}`);
process.disconnect();
