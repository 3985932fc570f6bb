/**
 * A benchmark worker: a separate Node process with its own connections, as a separate service
 * would be. It does what the coordinator asks over IPC (see protocol.ts) and timestamps the
 * instants that are measured on the clock all processes share.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { semaphoreVariantById, variantById } from './adapters/index.js';
import { closeIoredis, connectIoredis } from './adapters/ioredis.js';
import type { Held, LockClient } from './adapters/types.js';
import {
  type ContendResult,
  type CrowdAcquired,
  type Envelope,
  type HandoffEvent,
  type MemoryResult,
  now,
  type Reply,
  type Request,
} from './protocol.js';

/** How long a worker whose coordinator vanished may spend closing before it just exits. */
const ORPHAN_EXIT_MS = 2000;
/** Locks taken at once by holdMany and memory: enough to be quick, few enough not to flood. */
const BATCH = 200;
/** The most a slot that let go waits for someone else to take the lock before it queues again. */
const REJOIN_WAIT_MS = 2000;

const clients = new Map<string, LockClient>();
const held = new Map<string, Held>();
const pending = new Map<string, Promise<Held>>();
const many = new Map<string, Held[]>();
const crowds = new Map<string, Crowd>();

/** The scale phase's clients in this process: who holds, who waits, what was not reported. */
interface Crowd {
  readonly clients: Map<number, LockClient>;
  readonly held: Map<number, Held>;
  readonly waiting: Set<number>;
  readonly acquired: CrowdAcquired[];
  /** The pending crowdNext, answered by the next acquisition. */
  next: ((acquired: CrowdAcquired | null) => void) | undefined;
  readonly stop: AbortController;
  closing: boolean;
}

function crowd(handle: string): Crowd {
  const found = crowds.get(handle);
  if (!found) throw new Error(`no crowd '${handle}' in worker ${process.pid}`);
  return found;
}

/** A client of the variant an `open` or `crowdOpen` names: a semaphore's when it gives `limit`. */
function create(request: {
  variant: string;
  target: string;
  namespace: string;
  limit?: number;
}): Promise<LockClient> {
  const { variant, target, namespace, limit } = request;
  return limit === undefined
    ? variantById(variant).create(target, namespace)
    : semaphoreVariantById(variant).create(target, namespace, limit);
}

function client(handle: string): LockClient {
  const found = clients.get(handle);
  if (!found) throw new Error(`no client '${handle}' in worker ${process.pid}`);
  return found;
}

function take<K, T>(map: Map<K, T>, key: K, what: string): T {
  const value = map.get(key);
  if (value === undefined) throw new Error(`worker ${process.pid}: no ${what} for ${key}`);
  map.delete(key);
  return value;
}

async function handle(request: Request): Promise<unknown> {
  switch (request.op) {
    case 'open':
      clients.set(request.handle, await create(request));
      return null;
    case 'close': {
      const found = clients.get(request.handle);
      clients.delete(request.handle);
      await found?.close();
      return null;
    }
    case 'hold': {
      const lock = await client(request.handle).acquire(request.name);
      const at = now();
      held.set(`${request.handle}/${request.name}`, lock);
      return { at };
    }
    case 'wait': {
      const acquiring = client(request.handle).acquire(request.name);
      acquiring.catch(() => {}); // 'take' reports it
      pending.set(`${request.handle}/${request.name}`, acquiring);
      return null;
    }
    case 'take': {
      const key = `${request.handle}/${request.name}`;
      const lock = await take(pending, key, 'pending acquire');
      const at = now();
      held.set(key, lock);
      return { at };
    }
    case 'release': {
      const lock = take(held, `${request.handle}/${request.name}`, 'held lock');
      const at = now();
      await lock.release();
      return { at };
    }
    case 'chain':
      return chain(client(request.handle), request);
    case 'contend':
      return contend(client(request.handle), request);
    case 'cycles':
      return cycles(client(request.handle), request.maxCycles, request.until);
    case 'holdMany': {
      const c = client(request.handle);
      const locks: Held[] = [];
      many.set(request.handle, locks);
      for (let i = 0; i < request.count; i += BATCH) {
        const names = Array.from(
          { length: Math.min(BATCH, request.count - i) },
          (_, j) => `idle${i + j}`,
        );
        locks.push(...(await Promise.all(names.map((name) => keep(c, name)))));
      }
      return null;
    }
    case 'releaseMany': {
      const locks = many.get(request.handle) ?? [];
      many.delete(request.handle);
      await Promise.all(locks.map((lock) => lock.release().catch(() => {})));
      return null;
    }
    case 'watchLoss': {
      const lock = held.get(`${request.handle}/${request.name}`);
      const signal = lock?.lost;
      if (!signal) throw new Error(`worker ${process.pid}: no held lock with a loss signal`);
      if (!signal.aborted)
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      const at = now();
      const reason: unknown = signal.reason;
      return { at, reason: reason instanceof Error ? reason.message : String(reason) };
    }
    case 'memory':
      return memory(request);
    case 'crowdOpen': {
      const c: Crowd = crowds.get(request.handle) ?? {
        clients: new Map(),
        held: new Map(),
        waiting: new Set(),
        acquired: [],
        next: undefined,
        stop: new AbortController(),
        closing: false,
      };
      // Every waiter of the crowd listens to it: hundreds at once are expected, not a leak.
      setMaxListeners(0, c.stop.signal);
      crowds.set(request.handle, c);
      for (let i = 0; i < request.count; i += BATCH) {
        const indices = Array.from(
          { length: Math.min(BATCH, request.count - i) },
          (_, j) => request.first + i + j,
        );
        await Promise.all(
          indices.map(async (index) => {
            c.clients.set(index, await create(request));
          }),
        );
      }
      return null;
    }
    case 'crowdHold': {
      const c = crowd(request.handle);
      const lock = await (c.clients.get(request.index) as LockClient).acquire(request.name);
      const at = now();
      c.held.set(request.index, lock);
      return { at };
    }
    case 'crowdWait':
      return crowdWait(crowd(request.handle), request.name);
    case 'crowdNext': {
      const c = crowd(request.handle);
      if (c.closing) return null;
      const first = c.acquired.shift();
      if (first) return first;
      if (c.next) throw new Error(`worker ${process.pid}: crowdNext already pending`);
      return new Promise<CrowdAcquired | null>((resolve) => {
        c.next = resolve;
      });
    }
    case 'crowdRelease': {
      const c = crowd(request.handle);
      const lock = take(c.held, request.index, 'held crowd lock');
      const at = now();
      await lock.release();
      return { at };
    }
    case 'crowdClose':
      return crowdClose(request.handle, request.drainMs);
  }
}

async function chain(
  c: LockClient,
  request: Extract<Request, { op: 'chain' }>,
): Promise<{ events: HandoffEvent[] }> {
  // Every acquisition bumps a counter; a slot that let go waits for the bump before it
  // queues again. Otherwise a poller's releasing slot, whose first attempt is immediate, would
  // mostly take the lock straight back, and that is no handoff to a waiter.
  const counter = await connectIoredis(request.counterUrl);
  const events: HandoffEvent[] = [];
  const slot = async () => {
    while (now() < request.until) {
      const calledAt = now();
      const lock = await c.acquire(request.name);
      const acquiredAt = now();
      if (acquiredAt >= request.until) {
        // Time is up: let the other waiters through at once, so they drain quickly too.
        await lock.release();
        break;
      }
      const seen = await counter.incr(request.counterKey);
      await sleep(request.holdMs);
      const releasedAt = now();
      await lock.release();
      events.push({ calledAt, acquiredAt, releasedAt });
      const rejoinBy = Math.min(now() + REJOIN_WAIT_MS, request.until);
      while (now() < rejoinBy && Number(await counter.get(request.counterKey)) === seen) {
        await sleep(1);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: request.slots }, slot));
  } finally {
    await closeIoredis(counter);
  }
  return { events };
}

async function contend(
  c: LockClient,
  request: Extract<Request, { op: 'contend' }>,
): Promise<ContendResult> {
  // The counter lives in the same Redis but on a connection of its own, as application data
  // would: the lock is what must keep the read-modify-write from interleaving.
  const counter = await connectIoredis(request.counterUrl);
  const { counterKey, limit } = request;
  let acquisitions = 0;
  let increments = 0;
  let overLimit = 0;
  let mostInside = 0;
  const waits: number[] = [];
  const holds: number[] = [];
  /** A mutex's protected read-modify-write, or a semaphore's count of the holders inside. */
  const work =
    limit === undefined
      ? async () => {
          const value = Number((await counter.get(counterKey)) ?? 0);
          await counter.set(counterKey, String(value + 1));
        }
      : async () => {
          const inside = await counter.incr(counterKey);
          if (inside > limit) overLimit++;
          mostInside = Math.max(mostInside, inside);
          await counter.decr(counterKey);
        };
  const loop = async () => {
    while (now() < request.until) {
      const calledAt = now();
      const lock = await c.acquire(request.name);
      const acquiredAt = now();
      if (acquiredAt < request.until) acquisitions++;
      // Kept also when it resolved after `until`: a loop starved all run long waits that long.
      waits.push(acquiredAt - calledAt);
      await work();
      increments++;
      holds.push(now() - acquiredAt);
      await lock.release();
    }
  };
  try {
    await Promise.all(Array.from({ length: request.workers }, loop));
  } finally {
    await closeIoredis(counter);
  }
  return { acquisitions, increments, waits, holds, overLimit, mostInside };
}

async function cycles(
  c: LockClient,
  maxCycles: number,
  until: number,
): Promise<{ samples: number[] }> {
  const samples: number[] = [];
  const run = `${process.pid}.${Math.random().toString(36).slice(2)}`;
  for (let i = 0; i < maxCycles && now() < until; i++) {
    const start = now();
    const lock = await c.acquire(`fresh.${run}.${i}`);
    await lock.release();
    samples.push(now() - start);
  }
  return { samples };
}

function crowdWait(c: Crowd, name: string): { started: number } {
  let started = 0;
  for (const [index, lockClient] of c.clients) {
    if (c.held.has(index) || c.waiting.has(index) || c.closing) continue;
    c.waiting.add(index);
    started++;
    lockClient.acquire(name, c.stop.signal).then(
      (lock) => {
        const at = now();
        c.waiting.delete(index);
        if (c.closing) {
          // Draining: a library that cannot abort its waiters lets them through one by one.
          lock.release().catch(() => {});
          return;
        }
        c.held.set(index, lock);
        const acquired = { index, at };
        const next = c.next;
        c.next = undefined;
        if (next) next(acquired);
        else c.acquired.push(acquired);
      },
      () => c.waiting.delete(index),
    );
  }
  return { started };
}

async function crowdClose(handle: string, drainMs: number): Promise<{ stuck: number }> {
  const c = crowds.get(handle);
  if (!c) return { stuck: 0 };
  c.closing = true;
  c.next?.(null);
  c.next = undefined;
  c.stop.abort(new Error('crowd closed'));
  await Promise.all([...c.held.values()].map((lock) => lock.release().catch(() => {})));
  c.held.clear();
  const deadline = now() + drainMs;
  while (c.waiting.size > 0 && now() < deadline) await sleep(10);
  const stuck = c.waiting.size;
  await Promise.all(
    [...c.clients.values()].map((lockClient) => lockClient.close().catch(() => {})),
  );
  crowds.delete(handle);
  return { stuck };
}

/** Hold with the library's keep-alive where it has one, else with its plain acquire. */
function keep(c: LockClient, name: string): Promise<Held> {
  return c.hold ? c.hold(name) : c.acquire(name);
}

function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('worker: run with --expose-gc for the memory phase');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

async function memory(request: Extract<Request, { op: 'memory' }>): Promise<MemoryResult> {
  const variant = variantById(request.variant);
  const a = await variant.create(request.target, request.namespace);
  const b = await variant.create(request.target, request.namespace);
  const beforeHeld = heapAfterGc();
  const locks: Held[] = [];
  for (let i = 0; i < request.count; i += BATCH) {
    const names = Array.from(
      { length: Math.min(BATCH, request.count - i) },
      (_, j) => `mem${i + j}`,
    );
    locks.push(...(await Promise.all(names.map((name) => keep(a, name)))));
  }
  const afterHeld = heapAfterGc();
  await b.acquire('contended');
  const beforeWaiting = heapAfterGc();
  for (let i = 0; i < request.count; i++) a.acquire('contended').catch(() => {});
  await sleep(request.settleMs);
  const afterWaiting = heapAfterGc();
  // No clean-up: the process exits after this reply, and some waiters cannot be stopped.
  return {
    count: request.count,
    heapPerHeldBytes: (afterHeld - beforeHeld) / request.count,
    heapPerWaiterBytes: (afterWaiting - beforeWaiting) / request.count,
  };
}

function reply(message: Reply): void {
  // A failed send means the coordinator just went away; the disconnect handler exits.
  if (process.connected) process.send?.(message, undefined, undefined, () => {});
}

process.on('message', (envelope: Envelope) => {
  handle(envelope).then(
    (value) => reply({ id: envelope.id, ok: true, value }),
    (error: unknown) =>
      reply({
        id: envelope.id,
        ok: false,
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      }),
  );
});

// The coordinator is gone (finished, crashed or killed): do not outlive it. Open connections
// and polling waiters would otherwise keep this process alive for ever.
process.on('disconnect', () => {
  setTimeout(() => process.exit(0), ORPHAN_EXIT_MS).unref();
  const everyClient = [
    ...clients.values(),
    ...[...crowds.values()].flatMap((c) => [...c.clients.values()]),
  ];
  Promise.all(everyClient.map((c) => c.close().catch(() => {}))).finally(() => process.exit(0));
});

reply({ id: 0, ok: true, value: 'ready' });
