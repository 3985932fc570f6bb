/**
 * A tracklock worker for bench/go-mixed: one locker (`createLocker({ url })`, defaults unless
 * `--queue false`) in a process of its own, driven line by line over stdin/stdout by driver.ts
 * with the same JSON protocol as the Go worker (go/main.go).
 *
 * Times are CLOCK_MONOTONIC in ms (`process.hrtime`), the clock the Go worker reads too.
 */
import { createInterface } from 'node:readline';
import type { Redis } from 'ioredis';
import { createLocker, type Lock, type LockerOptions } from '../../src/index.js';
import { closeIoredis, connectIoredis } from '../src/adapters/ioredis.js';

interface Command {
  readonly cmd: 'loop' | 'acquire' | 'release' | 'close';
  readonly name?: string;
  readonly counter?: string;
  readonly untilMs?: number;
}

/** Bound on one run's iterations, far above what 10 s allow. */
const MAX_ITERATIONS = 10_000_000;

const monoMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const emit = (event: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(event)}\n`);
};

function arg(name: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? undefined : process.argv[at + 1];
}

const url = arg('url');
if (url === undefined) throw new Error('--url is required');
const queue = arg('queue');
const options: LockerOptions = { url, ...(queue === undefined ? {} : { queue: queue === 'true' }) };
const locker = await createLocker(options);
// The counter lives on a connection of its own: tracklock does not lend out its client.
const counterClient = await connectIoredis(url);
emit({ event: 'ready', pid: process.pid, side: 'tracklock', queue: options.queue ?? 'default' });

let held: Lock | undefined;
const loops: Promise<void>[] = [];
for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line) as Command;
  if (command.cmd === 'loop') {
    loops.push(loop(command).then(emit));
  } else if (command.cmd === 'acquire') {
    // Not awaited, so the process keeps reading; the driver sends nothing else to a waiter.
    emit({ event: 'waiting', t: monoMs() });
    const lock = await locker.withContext(required(command.name, 'name'));
    const t = monoMs();
    held = lock;
    emit({ event: 'acquired', t });
  } else if (command.cmd === 'release') {
    const lock = held;
    if (lock === undefined) throw new Error('release without a held lock');
    const t0 = monoMs();
    await lock.release();
    const t1 = monoMs();
    held = undefined;
    emit({ event: 'released', t0, t1 });
  } else if (command.cmd === 'close') {
    await Promise.all(loops);
    await locker.close();
    await closeIoredis(counterClient);
    emit({ event: 'closed' });
    break;
  }
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`command without ${what}`);
  return value;
}

/**
 * acquire → GET/SET of the counter → release on one name until `untilMs`. The deadline bounds
 * only the wait (`waitTimeoutMs`): a lock already ours finishes its critical section.
 */
async function loop(command: Command): Promise<Record<string, unknown>> {
  const name = required(command.name, 'name');
  const counter = required(command.counter, 'counter');
  const untilMs = required(command.untilMs, 'untilMs');
  let count = 0;
  let lost = 0;
  let errors = 0;
  let lastError = '';
  const waits: number[] = [];
  for (let i = 0; i < MAX_ITERATIONS; i++) {
    const remaining = Math.floor(untilMs - monoMs());
    if (remaining <= 0) break;
    const t0 = monoMs();
    let lock: Lock;
    try {
      lock = await locker.withContext(name, { waitTimeoutMs: remaining });
    } catch (error) {
      if ((error as { code?: string }).code !== 'ERR_NOT_LOCKED') {
        errors++;
        lastError = String(error);
      }
      continue;
    }
    waits.push(monoMs() - t0);
    try {
      await increment(counterClient, counter);
    } catch (error) {
      errors++;
      lastError = String(error);
    }
    if (lock.signal.aborted) lost++;
    await lock.release();
    count++;
  }
  return { event: 'loop', count, lost, errors, lastError, wait: summary(waits) };
}

async function increment(client: Redis, key: string): Promise<void> {
  const value = Number((await client.get(key)) ?? 0);
  await client.set(key, String(value + 1));
}

function summary(ms: number[]): Record<string, number> {
  if (ms.length === 0) return { n: 0 };
  ms.sort((a, b) => a - b);
  const at = (q: number): number => ms[Math.floor(q * (ms.length - 1))] as number;
  const over1s = ms.filter((wait) => wait >= 1000).length;
  return { n: ms.length, p50: at(0.5), p99: at(0.99), max: at(1), over1s };
}
