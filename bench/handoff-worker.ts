/**
 * One side of the handoff benchmark, forked by bench/handoff.ts. It owns one locker (its own
 * Redis connection, as a separate service would) and does exactly what the coordinator says
 * over IPC, timestamping the two instants that the handoff latency is measured between.
 */
import { createLocker, type Lock, type Locker } from '../src/index.js';

/**
 * What the worker needs before any message can reach it, in its environment: a message sent
 * before this module has added its listener (tsx is still loading it) would be lost.
 */
export interface WorkerEnv {
  readonly HANDOFF_REDIS_URL: string;
  /** Both workers get the same one, so they contend for the same keys. */
  readonly HANDOFF_KEY_PREFIX: string;
}

/** Coordinator → worker, once the worker has said 'ready'. */
export type Command =
  /** Take the lock, which is free: the first holder. */
  | { readonly type: 'hold' }
  /** Start waiting for the lock, which the other worker holds. */
  | { readonly type: 'wait' }
  /** Release the lock held. */
  | { readonly type: 'release' }
  | { readonly type: 'close' };

/** Worker → coordinator. Times are `performance.timeOrigin + performance.now()`, in ms. */
export type Reply =
  /** Connected: the worker now listens for commands. */
  | { readonly type: 'ready' }
  | { readonly type: 'held' }
  | { readonly type: 'waiting' }
  | { readonly type: 'acquired'; readonly at: number }
  | { readonly type: 'released'; readonly at: number; readonly held: boolean }
  | { readonly type: 'closed' }
  | { readonly type: 'error'; readonly message: string };

const LOCK_NAME = 'handoff';
/** How long a worker whose coordinator vanished may spend closing before it just exits. */
const ORPHAN_EXIT_MS = 2000;

let locker: Locker | undefined;
let held: Lock | undefined;
/** Set once closing starts: a pending wait then rejects, as it should, and is not an error. */
let closing = false;

/**
 * A timestamp comparable across processes: each process's timeOrigin is its start on the
 * wall clock, so the sum is wall-clock time at sub-millisecond resolution.
 */
function now(): number {
  return performance.timeOrigin + performance.now();
}

function send(reply: Reply): void {
  // The callback takes a failed send (the coordinator just disconnected: EPIPE), which would
  // otherwise be an unhandled 'error' event; nobody is left to tell anyway.
  if (process.connected) process.send?.(reply, undefined, undefined, () => {});
}

function fail(error: unknown): void {
  send({
    type: 'error',
    message: error instanceof Error ? (error.stack ?? error.message) : String(error),
  });
}

function requireLocker(): Locker {
  if (!locker) throw new Error('worker: got a command before it was ready');
  return locker;
}

async function handle(command: Command): Promise<void> {
  switch (command.type) {
    case 'hold':
      held = await requireLocker().withContext(LOCK_NAME);
      send({ type: 'held' });
      return;
    case 'wait':
      wait(requireLocker());
      return;
    case 'release':
      await release();
      return;
    case 'close':
      await close();
      send({ type: 'closed' });
      return;
  }
}

/**
 * Not awaited by the message handler: 'waiting' must go out while the call is pending, and
 * the next command ('close' on a failed run) must still get through.
 */
function wait(current: Locker): void {
  const acquiring = current.withContext(LOCK_NAME);
  send({ type: 'waiting' });
  acquiring.then(
    (lock) => {
      // Taken first, before anything else runs, so the sample holds only the library's work.
      const at = now();
      held = lock;
      send({ type: 'acquired', at });
    },
    (error: unknown) => {
      if (!closing) fail(error);
    },
  );
}

async function release(): Promise<void> {
  const lock = held;
  if (!lock) throw new Error('worker: asked to release, but holds no lock');
  held = undefined;
  const at = now();
  const wasHeld = await lock.release();
  send({ type: 'released', at, held: wasHeld });
}

async function close(): Promise<void> {
  closing = true;
  await held?.release().catch(() => {});
  held = undefined;
  await locker?.close();
  locker = undefined;
}

async function start(): Promise<void> {
  const env: Partial<WorkerEnv> = process.env;
  const url = env.HANDOFF_REDIS_URL;
  const keyPrefix = env.HANDOFF_KEY_PREFIX;
  if (!url || !keyPrefix) throw new Error('worker: HANDOFF_REDIS_URL and HANDOFF_KEY_PREFIX unset');
  locker = await createLocker({ url, keyPrefix });
  send({ type: 'ready' });
}

process.on('message', (command: Command) => {
  handle(command).catch(fail);
});

// The coordinator is gone (finished, crashed or killed): do not outlive it. The Redis
// connection would otherwise keep this process alive forever.
process.on('disconnect', () => {
  setTimeout(() => process.exit(1), ORPHAN_EXIT_MS).unref();
  close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});

start().catch(fail);
