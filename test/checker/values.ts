/**
 * Which worker a lock value belongs to. A queue entry (`${prefix}:q:${name}`) and the keys a
 * release hands over hold a waiter's value, which its locker drew with `node:crypto`'s
 * `randomUUID`, out of reach of the public API. A tracklock worker therefore wraps that
 * function before it draws any value: its first group (8 hex digits of 32 random bits) becomes
 * the worker's id, and the other 90 random bits stay. The coordinator reads the id back to
 * know which process to stop or kill. Should tracklock ever draw its values elsewhere, no
 * value names a worker, and the faults that look for one fail loudly (they throw).
 */
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';

const TAG = /^c0([0-9a-f]{6})-/;

/** In a worker process, before its locker draws a value: from now on, its values name it. */
export function tagValues(worker: number): void {
  const original = crypto.randomUUID;
  const tag = `c0${worker.toString(16).padStart(6, '0')}`;
  crypto.randomUUID = ((options?: crypto.RandomUUIDOptions) =>
    `${tag}${original(options).slice(8)}`) as typeof crypto.randomUUID;
  // `import { randomUUID } from 'node:crypto'` in src is a live binding: this updates it.
  syncBuiltinESMExports();
}

/** The worker whose locker drew `value`, or undefined for a value no worker tagged. */
export function workerOf(value: string): number | undefined {
  const match = TAG.exec(value);
  return match ? Number.parseInt(match[1] as string, 16) : undefined;
}
