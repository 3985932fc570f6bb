/**
 * A checker worker: a process of its own that takes the lock, does a read-modify-write of the
 * store's counter inside it, looking at the lock's signal before every step, and reports what
 * it did. argv: its WorkerConfig as JSON. Modes:
 *   tracklock  the lock as users use it;
 *   fenced     the same, and every write carries the lock's token (the store refuses stale ones);
 *   no-nx      negative control: SET without NX, so every worker "holds" the lock at once;
 *   no-abort   negative control: tracklock, but the worker never looks at the signal.
 * A worker whose `protocol` is 'go' speaks Go rueidislock's protocol instead (go-locker.ts), on
 * the same keys; the mode then only says how it uses the store (it has no token).
 *
 * With `kind` 'semaphore' or 'rw' the worker takes a permit of a semaphore, or the read or
 * write side of a read-write lock (its `role`), and its section is enter (the store counts
 * who is inside: store.ts), the work, exit; the section ends the moment the signal aborts.
 * Modes there: tracklock, and two negative controls:
 *   no-count         the semaphore's limit is the number of workers, the checker's `limit` less;
 *   no-writer-check  the readers read-lock another name than the writers write-lock.
 */
import { createClient } from '@redis/client';
import { createLocker, type Lock, type Locker, type LockerOptions } from '../../src/index.js';
import { GoLocker } from './go-locker.js';
import { mulberry32 } from './random.js';
import { openStore, type Role } from './store.js';
import { tagValues } from './values.js';

export type Mode = 'tracklock' | 'fenced' | 'no-nx' | 'no-abort' | 'no-count' | 'no-writer-check';
export type Protocol = 'tracklock' | 'go';
/** What the workers share: a mutex, a semaphore (`limit` holders) or a read-write lock. */
export type Kind = 'mutex' | 'semaphore' | 'rw';

export interface WorkerConfig {
  readonly id: number;
  readonly mode: Mode;
  readonly kind: Kind;
  /** A counted lock's (semaphore, rw): how this worker holds it. */
  readonly role: Role | undefined;
  /** A semaphore's limit as the store enforces it (the lock's too, but in mode 'no-count'). */
  readonly limit: number;
  /** The number of workers (the limit of the 'no-count' semaphore). */
  readonly workers: number;
  /** 'go': Go rueidislock's commands on the same keys (go-locker.ts), not tracklock. */
  readonly protocol: Protocol;
  readonly lock: LockerOptions;
  readonly storeUrl: string;
  readonly name: string;
  readonly seed: number;
  /** A critical section sleeps from half this to this many ms between its read and write. */
  readonly workMs: number;
  /** Wait this long before the first acquisition (to let another worker go first). */
  readonly startDelayMs: number;
  /** The first critical section sleeps this long between its read and write, if set. */
  readonly firstWorkMs: number | undefined;
}

export interface WorkerReport {
  readonly protocol: Protocol;
  readonly acquisitions: number;
  /** Writes the store accepted. */
  readonly increments: number;
  /** Writes the store refused (stale token). */
  readonly refused: number;
  /** Sections cut short because the signal had aborted, by reason. */
  readonly aborts: Record<string, number>;
}

interface Held {
  readonly signal: AbortSignal;
  readonly token: bigint | undefined;
  release(): Promise<unknown>;
}

const config = JSON.parse(process.argv[2] as string) as WorkerConfig;
const random = mulberry32(config.seed);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Before the locker draws any value: the coordinator can then tell whose a queue entry is.
tagValues(config.id);
const store = await openStore(config.storeUrl, config.id, config.mode === 'fenced');
const acquire = await lockFor(config);
const report = {
  protocol: config.protocol,
  acquisitions: 0,
  increments: 0,
  refused: 0,
  aborts: {} as Record<string, number>,
};
// Ready: the coordinator sends the time to stop once every worker is.
process.send?.('ready');
const until = await new Promise<number>((resolve) => process.once('message', resolve));
await sleep(config.startDelayMs);

while (Date.now() < until) {
  const held = await acquire(AbortSignal.timeout(Math.max(1, until - Date.now()))).catch(
    () => undefined,
  );
  if (!held) continue;
  report.acquisitions++;
  try {
    await (config.role ? countedSection(held, config.role) : criticalSection(held));
  } finally {
    await held.release().catch(() => {});
  }
}
await store.close();
await acquire.close();
process.send?.(report, () => process.exit(0));

async function criticalSection(held: Held): Promise<void> {
  const { signal } = held;
  const token = held.token;
  if (aborted(signal)) return;
  await store.note('enter', String(token ?? ''));
  if (aborted(signal)) return;
  const read = await store.read(token);
  if (!read) {
    report.refused++;
    await store.note('abort', 'refused');
    return;
  }
  const first = report.acquisitions === 1 ? config.firstWorkMs : undefined;
  await sleep(first ?? ((1 + random()) / 2) * config.workMs);
  if (aborted(signal)) return;
  if (await store.write(read.counter + 1, read.writes, token)) report.increments++;
  else report.refused++;
  if (aborted(signal)) return;
  await store.note('exit');
}

/**
 * A counted lock's section: enter, the work, exit, with a look at the signal before each. The
 * section also ends the moment the signal aborts (its note goes to the store at once, not at
 * the next look), so that the store counts a holder whose permit is gone no longer than it
 * must: the next holder may enter a moment later.
 */
async function countedSection(held: Held, role: Role): Promise<void> {
  const { signal } = held;
  if (aborted(signal)) return;
  const leave = () => aborted(signal);
  signal.addEventListener('abort', leave, { once: true });
  try {
    await store.enter(role, config.limit, held.token);
    if (signal.aborted) return;
    const first = report.acquisitions === 1 ? config.firstWorkMs : undefined;
    await sleep(first ?? ((1 + random()) / 2) * config.workMs);
    if (signal.aborted) return;
  } finally {
    signal.removeEventListener('abort', leave);
  }
  // Aborted after the last look: the exit is on its way, too late (as a write after a look).
  await store.note('exit');
}

/** Looks at the signal (as the lock's user must); counts and logs an abort. */
function aborted(signal: AbortSignal): boolean {
  if (!signal.aborted) return false;
  const reason = signal.reason as { code?: unknown; loss?: string; name?: string } | undefined;
  // A LockError's code; else the run's end (the deadline signal's TimeoutError).
  const code = typeof reason?.code === 'string' ? reason.code : `${reason?.name} (run end)`;
  const why = [code, reason?.loss].filter(Boolean).join(' ');
  report.aborts[why] = (report.aborts[why] ?? 0) + 1;
  store.note('abort', why).catch(() => {});
  return true;
}

type Acquire = ((signal: AbortSignal) => Promise<Held>) & { close(): Promise<void> };

async function lockFor(config: WorkerConfig): Promise<Acquire> {
  if (config.mode === 'no-nx') return brokenLock(config);
  if (config.protocol === 'go') return goLock(config);
  const locker = await createLocker(config.lock);
  // A polling row whose workers pushed (or the reverse) would check the wrong thing.
  if (locker.mode !== (config.lock.tracking === 'off' ? 'poll' : 'push')) {
    throw new Error(`worker ${config.id}: tracking ${config.lock.tracking}, mode ${locker.mode}`);
  }
  const never = new AbortController().signal;
  const take = taker(config, locker);
  const acquire = async (signal: AbortSignal): Promise<Held> => {
    const lock = await take(signal);
    return {
      signal: config.mode === 'no-abort' ? never : lock.signal,
      token: lock.token,
      release: () => lock.release(),
    };
  };
  return Object.assign(acquire, { close: () => locker.close() });
}

/** How this worker waits for its lock: the mutex, a semaphore's permit, a side of a rw lock. */
function taker(config: WorkerConfig, locker: Locker): (signal: AbortSignal) => Promise<Lock> {
  if (config.kind === 'semaphore') {
    // The negative control counts everyone in; the store still enforces `limit`.
    const limit = config.mode === 'no-count' ? config.workers : config.limit;
    const semaphore = locker.semaphore(config.name, { limit });
    return (signal) => semaphore.withContext({ signal });
  }
  if (config.kind === 'rw') {
    // The negative control's readers lock another name: no writer ever stops them.
    const apart = config.mode === 'no-writer-check' && config.role === 'read';
    const rw = locker.readWriteLock(apart ? `${config.name}-readers` : config.name);
    const side = config.role === 'read' ? rw.read : rw.write;
    return (signal) => side.withContext({ signal });
  }
  return (signal) => locker.withContext(config.name, { signal });
}

/** Go rueidislock's protocol (no token: Go draws none). */
async function goLock(config: WorkerConfig): Promise<Acquire> {
  const locker = await GoLocker.connect(config.lock.url as string, config.lock.keyValidityMs ?? 0);
  const acquire = async (signal: AbortSignal): Promise<Held> => {
    const held = await locker.withContext(config.name, signal);
    return { signal: held.signal, token: undefined, release: () => held.release() };
  };
  return Object.assign(acquire, { close: async () => locker.close() });
}

/** The negative control: a lock that takes its key whoever holds it. */
async function brokenLock(config: WorkerConfig): Promise<Acquire> {
  const client = createClient({ url: config.lock.url as string });
  client.on('error', () => {});
  await client.connect();
  const never = new AbortController().signal;
  const acquire = async (): Promise<Held> => {
    await client.set(`broken:${config.name}`, String(config.id), { PX: 5000 });
    return { signal: never, token: undefined, release: () => client.del(`broken:${config.name}`) };
  };
  return Object.assign(acquire, { close: async () => client.destroy() });
}
