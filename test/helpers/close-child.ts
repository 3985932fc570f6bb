/**
 * Runs close() in a process of its own, so that the handles left afterwards are the locker's
 * alone, and prints what it saw as JSON. argv: the locker options, as JSON.
 */
import { createLocker, type LockerOptions } from '../../src/index.js';
import { handleCheck } from './handles.js';

const options = JSON.parse(process.argv[2] as string) as LockerOptions;
/** How long after close() to look: see the nodes test for why it may be longer. */
const settleMs = Number(process.argv[3] ?? 20);
const code = (value: unknown) => (value as { code?: string } | undefined)?.code ?? String(value);
// What the process has before any locker (its own stdio pipes): the locker must leave only that.
const handles = handleCheck();
const other = await createLocker(options);
const locker = await createLocker(options);
const held = await locker.withContext('close-held');
await other.withContext('close-busy');
const waiting = locker.withContext('close-busy').catch((error: unknown) => error);
// A moment for the waiter to get under way; close must reject it wherever it is, and the
// options may name any topology, so no one server shows its attempt.
await new Promise((resolve) => setTimeout(resolve, 30));
await Promise.all([locker.close(), locker.close()]);
const later = await locker.tryWithContext('close-later').catch((error: unknown) => error);
await other.close();
const left = await handles.left(settleMs);
console.log(
  JSON.stringify({
    heldReason: code(held.signal.reason),
    waiterError: code(await waiting),
    laterError: code(later),
    releaseAfterClose: await held.release(),
    handles: left,
  }),
);
