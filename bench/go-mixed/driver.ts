/**
 * tracklock and Go's rueidislock on the same locks, on one throwaway `redis-server`:
 *
 * 1. fairness: 3 Go workers and 3 tracklock workers (a process each) loop acquire → GET/SET of
 *    a counter → release on one name; sections per side and per worker, and the counter.
 * 2. polling: a Go holder with rueidislock's default `NoLoopTracking: false` holds the lock
 *    while 10 tracklock lockers wait; their EVALSHA calls per second (MONITOR, per connection)
 *    beside the server's INFO commandstats.
 * 3. handoff: release in one side → the blocked acquire resolving in the other, both ways.
 *
 * Each runs with tracklock's default (the queue) and with `queue: false`. See README.md.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { killOnExit } from '../../test/helpers/reaper.js';
import { closeIoredis, connectIoredis } from '../src/adapters/ioredis.js';
import { commandStats, type RedisServer, startRedisServer } from '../src/redis.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at === -1 ? fallback : (process.argv[at + 1] ?? fallback);
}
const SECONDS = Number(option('seconds', '10'));
const HOLD_SECONDS = Number(option('hold-seconds', '5'));
const WAITERS = Number(option('waiters', '10'));
const ROUNDS = Number(option('rounds', '100'));
/** How long a waiter is given to make its first attempt before the holder lets go. */
const SETTLE_MS = Number(option('settle-ms', '100'));
const PHASES = option('only', 'fairness,polling,handoff').split(',');
const MODES = option('modes', 'queue,race').split(',') as Mode[];

/** `queue`: tracklock's defaults; `race`: `queue: false`, 0.2's racing waiters. */
type Mode = 'queue' | 'race';
type Event = Record<string, unknown> & { event: string };

const monoMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const print = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
/** The machine's load: the runs share it with whatever else runs there. */
const load = (): string =>
  `load average ${loadavg()
    .map((n) => n.toFixed(2))
    .join(' ')}`;

/** A worker process (Go or tracklock) and the JSON events it prints, one a line. */
class Worker {
  readonly label: string;
  private readonly child: ChildProcess;
  private readonly events: Event[] = [];
  private wake: (() => void) | undefined;
  private exited = false;

  constructor(label: string, command: string, args: string[]) {
    this.label = label;
    this.child = spawn(command, args, { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
    killOnExit(this.child);
    this.child.once('exit', () => {
      this.exited = true;
      this.wake?.();
    });
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      this.events.push(JSON.parse(line) as Event);
      this.wake?.();
    });
  }

  send(command: Record<string, unknown>): void {
    this.child.stdin?.write(`${JSON.stringify(command)}\n`);
  }

  /** The next event, which must be `name`; rejects after `timeoutMs` or if the process exits. */
  async next(name: string, timeoutMs = 30_000): Promise<Event> {
    const deadline = monoMs() + timeoutMs;
    for (;;) {
      const event = this.events.shift();
      if (event !== undefined) {
        if (event.event !== name) {
          throw new Error(`${this.label}: expected '${name}', got ${JSON.stringify(event)}`);
        }
        return event;
      }
      if (this.exited) throw new Error(`${this.label} exited while '${name}' was awaited`);
      const left = deadline - monoMs();
      if (left <= 0) throw new Error(`${this.label}: no '${name}' in ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Ask it to close, wait a little, then SIGKILL whatever is left. */
  async close(): Promise<void> {
    if (this.exited) return;
    this.send({ cmd: 'close' });
    await this.next('closed', 10_000).catch(() => {});
    if (!this.exited) this.child.kill('SIGKILL');
    for (let i = 0; i < 100 && !this.exited; i++) await sleep(50);
  }
}

interface Session {
  readonly server: RedisServer;
  readonly admin: Redis;
  readonly goBin: string;
  readonly workers: Set<Worker>;
}

function goWorker(session: Session, label: string, noLoop: boolean): Worker {
  const worker = new Worker(label, session.goBin, [
    `-addr=127.0.0.1:${session.server.port}`,
    `-noloop=${noLoop}`,
  ]);
  session.workers.add(worker);
  return worker;
}

function tracklockWorker(session: Session, label: string, mode: Mode): Worker {
  const args = ['--import', 'tsx', join(here, 'tracklock-worker.ts'), '--url', session.server.url];
  if (mode === 'race') args.push('--queue', 'false');
  const worker = new Worker(label, process.execPath, args);
  session.workers.add(worker);
  return worker;
}

async function closeAll(session: Session, workers: Iterable<Worker>): Promise<void> {
  await Promise.all([...workers].map((worker) => worker.close()));
  for (const worker of workers) session.workers.delete(worker);
}

/** Run 1: 3 Go and 3 tracklock workers loop on one name for SECONDS. */
async function fairness(session: Session, mode: Mode): Promise<void> {
  const name = `gomix-fair-${mode}`;
  const counter = `gomix-counter-${mode}`;
  print(
    `\n## fairness, tracklock ${mode === 'queue' ? 'default (queue)' : 'queue: false'} (${load()})`,
  );
  const workers = [
    ...[1, 2, 3].map((i) => goWorker(session, `go-${i}`, true)),
    ...[1, 2, 3].map((i) => tracklockWorker(session, `tracklock-${i}`, mode)),
  ];
  try {
    for (const worker of workers)
      print(`${worker.label} ${JSON.stringify(await worker.next('ready'))}`);
    const untilMs = monoMs() + SECONDS * 1000;
    for (const worker of workers) worker.send({ cmd: 'loop', name, counter, untilMs });
    const results = await Promise.all(workers.map((w) => w.next('loop', SECONDS * 1000 + 60_000)));
    const counted = Number((await session.admin.get(counter)) ?? 0);
    let total = 0;
    const sides = new Map<string, number>();
    for (const [i, result] of results.entries()) {
      const worker = workers[i] as Worker;
      print(`${worker.label} ${JSON.stringify(result)}`);
      const side = worker.label.replace(/-\d+$/, '');
      sides.set(side, (sides.get(side) ?? 0) + Number(result.count));
      total += Number(result.count);
    }
    const shares = [...sides].map(
      ([side, n]) => `${side} ${n} (${((100 * n) / total).toFixed(1)}%)`,
    );
    print(`sections: ${shares.join(', ')}, total ${total} in ${SECONDS} s`);
    print(
      `counter ${counted} ${counted === total ? '= total: no lost update' : '!= total: LOST UPDATES'}`,
    );
  } finally {
    await closeAll(session, workers);
  }
}

/** Addresses (`ip:port`) of the server's clients now. */
async function clientAddresses(admin: Redis): Promise<Set<string>> {
  const list = (await admin.client('LIST')) as string;
  return new Set([...list.matchAll(/\baddr=(\S+)/g)].map((m) => m[1] as string));
}

/**
 * MONITOR on a raw connection (ioredis' monitor mode trips on this traffic): `onCall` gets each
 * command's client address, lower-cased name and the rest of the line (its arguments, quoted);
 * commands run by scripts (source `lua`) are left out.
 */
async function startMonitor(
  port: number,
  onCall: (source: string, command: string, args: string) => void,
): Promise<Socket> {
  const socket = createConnection({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  socket.write('MONITOR\r\n');
  createInterface({ input: socket }).on('line', (line) => {
    const call = /^\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)" ?(.*)$/.exec(line);
    if (call === null || call[1] === 'lua') return;
    onCall(call[1] as string, (call[2] as string).toLowerCase(), call[3] as string);
  });
  return socket;
}

/**
 * Start a worker and wait until it is ready; the connections that appeared meanwhile are its own
 * (in `owner`). Start workers one at a time for that to hold.
 */
async function startOwned(
  session: Session,
  owner: Map<string, string>,
  start: () => Worker,
): Promise<Event> {
  const before = await clientAddresses(session.admin);
  const worker = start();
  const ready = await worker.next('ready');
  for (const address of await clientAddresses(session.admin)) {
    if (!before.has(address) && !owner.has(address)) owner.set(address, worker.label);
  }
  return ready;
}

/** Run 2: a Go holder without NOLOOP, WAITERS tracklock lockers waiting; who sends what. */
async function polling(session: Session, mode: Mode): Promise<void> {
  const name = `gomix-poll-${mode}`;
  print(
    `\n## polling, Go holder NoLoopTracking false, ${WAITERS} tracklock ${mode === 'queue' ? 'default (queue)' : 'queue: false'} (${load()})`,
  );
  const owner = new Map<string, string>(); // connection address → worker label
  let holder: Worker | undefined;
  const waiters: Worker[] = [];
  try {
    const ready = await startOwned(session, owner, () => {
      holder = goWorker(session, 'go-holder', false);
      return holder;
    });
    if (holder === undefined) throw new Error('no holder');
    print(`go-holder ${JSON.stringify(ready)}`);
    holder.send({ cmd: 'acquire', name });
    await holder.next('waiting');
    await holder.next('acquired');
    for (let i = 1; i <= WAITERS; i++) {
      await startOwned(session, owner, () => {
        const waiter = tracklockWorker(session, `tracklock-${i}`, mode);
        waiters.push(waiter);
        return waiter;
      });
    }
    for (const waiter of waiters) waiter.send({ cmd: 'acquire', name });
    for (const waiter of waiters) await waiter.next('waiting');
    if (mode === 'queue') {
      const queueKey = `rueidislock:q:${name}`;
      for (let i = 0; i < 200 && (await session.admin.zcard(queueKey)) < WAITERS; i++)
        await sleep(50);
      print(`queue ${queueKey}: ${await session.admin.zcard(queueKey)} entries`);
    }
    await sleep(500);

    const calls = new Map<string, Map<string, number>>(); // label → command → calls
    const monitor = await startMonitor(session.server.port, (source, command) => {
      const label = owner.get(source) ?? 'other';
      const perCommand = calls.get(label) ?? new Map<string, number>();
      perCommand.set(command, (perCommand.get(command) ?? 0) + 1);
      calls.set(label, perCommand);
    });
    const before = await commandStats(session.admin);
    const t0 = monoMs();
    await sleep(HOLD_SECONDS * 1000);
    const after = await commandStats(session.admin);
    const seconds = (monoMs() - t0) / 1000;
    monitor.destroy();

    const delta = (command: string) => (after.get(command) ?? 0) - (before.get(command) ?? 0);
    print(
      `INFO commandstats over ${seconds.toFixed(2)} s, all clients: evalsha ${delta('evalsha')}, eval ${delta('eval')}, ` +
        `${(delta('evalsha') / seconds).toFixed(0)} evalsha/s`,
    );
    const scripts = (perCommand: Map<string, number> | undefined) =>
      (perCommand?.get('evalsha') ?? 0) + (perCommand?.get('eval') ?? 0);
    let waitersTotal = 0;
    for (const label of [holder.label, ...waiters.map((w) => w.label), 'other']) {
      const perCommand = calls.get(label);
      if (perCommand === undefined && label === 'other') continue;
      const n = scripts(perCommand);
      if (label.startsWith('tracklock')) waitersTotal += n;
      print(
        `MONITOR ${label}: ${n} EVALSHA+EVAL (${(n / seconds).toFixed(1)}/s); all: ${JSON.stringify(Object.fromEntries(perCommand ?? []))}`,
      );
    }
    print(
      `tracklock waiters together: ${waitersTotal} scripts, ${(waitersTotal / seconds).toFixed(1)}/s, ` +
        `${(waitersTotal / seconds / WAITERS).toFixed(1)}/s per waiter on average`,
    );

    // Let go, and see every waiter get the lock in turn.
    holder.send({ cmd: 'release' });
    await holder.next('released');
    // One 'acquired' awaited per waiter (a Worker serves one next() at a time).
    const pending = new Map(waiters.map((w) => [w, w.next('acquired', 60_000).then(() => w)]));
    for (let i = 0; i < WAITERS; i++) {
      const next = await Promise.race(pending.values());
      pending.delete(next);
      next.send({ cmd: 'release' });
      await next.next('released');
    }
    print(`after the Go release, all ${WAITERS} waiters took the lock in turn`);
  } finally {
    await closeAll(session, [...(holder === undefined ? [] : [holder]), ...waiters]);
  }
}

type Direction = 'go-to-tracklock' | 'tracklock-to-go';
/** A handoff round's two windows: the waiter blocked (before the release), and woken. */
type Window = 'blocked' | 'wake';

/**
 * Run 3: ROUNDS handoffs each way between one Go and one tracklock worker. MONITOR counts the
 * waiter's commands while it is blocked and after the release; markers (`ECHO` on the driver's
 * connection, answered before the next step) cut the stream into rounds.
 */
async function handoff(session: Session, mode: Mode): Promise<void> {
  const name = `gomix-handoff-${mode}`;
  print(
    `\n## handoff latency, Go NoLoopTracking true, tracklock ${mode === 'queue' ? 'default (queue)' : 'queue: false'}, ${ROUNDS} rounds each way, waiter settles ${SETTLE_MS} ms (${load()})`,
  );
  const owner = new Map<string, string>();
  const started: Worker[] = [];
  const latencies: Record<Direction, number[]> = { 'go-to-tracklock': [], 'tracklock-to-go': [] };
  // direction → window → per-round script calls of the waiter, and its commands by name
  const scripts = new Map<string, number[]>();
  const commands = new Map<string, Map<string, number>>();
  let window: string | undefined;
  let waiterLabel = '';
  const monitor = await startMonitor(session.server.port, (source, command, args) => {
    const marker = /^"gomix-mark:(\S+)"$/.exec(args);
    if (command === 'echo' && marker !== null) {
      window = marker[1] === 'none' ? undefined : marker[1];
      if (window !== undefined) scripts.set(window, [...(scripts.get(window) ?? []), 0]);
      return;
    }
    if (window === undefined || owner.get(source) !== waiterLabel) return;
    const [direction, kind] = window.split(':') as [string, string];
    const key = `${direction}:${kind}`;
    const perCommand = commands.get(key) ?? new Map<string, number>();
    perCommand.set(command, (perCommand.get(command) ?? 0) + 1);
    commands.set(key, perCommand);
    if (command === 'evalsha' || command === 'eval') {
      const rounds = scripts.get(window) as number[];
      rounds[rounds.length - 1] = (rounds[rounds.length - 1] as number) + 1;
    }
  });
  const mark = async (what: string) => {
    await session.admin.echo(`gomix-mark:${what}`);
  };
  try {
    let go: Worker | undefined;
    let tracklock: Worker | undefined;
    await startOwned(session, owner, () => {
      go = goWorker(session, 'go', true);
      started.push(go);
      return go;
    });
    await startOwned(session, owner, () => {
      tracklock = tracklockWorker(session, 'tracklock', mode);
      started.push(tracklock);
      return tracklock;
    });
    if (go === undefined || tracklock === undefined) throw new Error('no workers');
    for (let round = 0; round < ROUNDS; round++) {
      for (const [holder, waiter, direction] of [
        [go, tracklock, 'go-to-tracklock'],
        [tracklock, go, 'tracklock-to-go'],
      ] as const) {
        holder.send({ cmd: 'acquire', name });
        await holder.next('waiting');
        await holder.next('acquired');
        waiterLabel = waiter.label;
        await mark(`${direction}:blocked`);
        waiter.send({ cmd: 'acquire', name });
        await waiter.next('waiting');
        await sleep(SETTLE_MS);
        await mark(`${direction}:wake`);
        holder.send({ cmd: 'release' });
        const [released, acquired] = await Promise.all([
          holder.next('released'),
          waiter.next('acquired'),
        ]);
        await mark('none');
        latencies[direction].push(Number(acquired.t) - Number(released.t0));
        waiter.send({ cmd: 'release' });
        await waiter.next('released');
      }
    }
    for (const [direction, ms] of Object.entries(latencies)) {
      ms.sort((a, b) => a - b);
      const at = (q: number) => (ms[Math.floor(q * (ms.length - 1))] as number).toFixed(3);
      print(
        `${direction}: release → acquire n ${ms.length}, p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, p99 ${at(0.99)} ms, min ${at(0)} ms, max ${at(1)} ms`,
      );
      for (const kind of ['blocked', 'wake'] satisfies Window[]) {
        const rounds = scripts.get(`${direction}:${kind}`) ?? [];
        const total = rounds.reduce((a, b) => a + b, 0);
        print(
          `  waiter's scripts while ${kind === 'blocked' ? `blocked (${SETTLE_MS} ms before the release)` : 'woken (release → acquired)'}: ` +
            `${total} in ${rounds.length} rounds, at most ${Math.max(0, ...rounds)} in one; ` +
            `all its commands: ${JSON.stringify(Object.fromEntries(commands.get(`${direction}:${kind}`) ?? []))}`,
        );
      }
    }
  } finally {
    monitor.destroy();
    await closeAll(session, started);
  }
}

/** The Go worker binary: `--go-bin PATH`, or built here with the `go` on PATH. */
function goBinary(): { path: string; cleanup: () => void } {
  const given = option('go-bin', '');
  if (given !== '') return { path: given, cleanup: () => {} };
  const dir = mkdtempSync(join(tmpdir(), 'gomixed-'));
  const path = join(dir, 'gomixed');
  // -mod=mod: go.sum is not committed (it is written on the first build, from the proxy).
  const built = spawnSync('go', ['build', '-mod=mod', '-o', path, '.'], {
    cwd: join(here, 'go'),
    stdio: 'inherit',
  });
  if (built.status !== 0) throw new Error('go build failed (see README.md)');
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const binary = goBinary();
const server = await startRedisServer();
const session: Session = {
  server,
  admin: await connectIoredis(server.url),
  goBin: binary.path,
  workers: new Set(),
};
try {
  const info = await session.admin.info('server');
  print(
    `# go-mixed: redis ${/redis_version:(\S+)/.exec(info)?.[1]} on port ${server.port} (pid ${server.pid}), ` +
      `node ${process.version}, ${SECONDS} s runs, ${HOLD_SECONDS} s hold, ${WAITERS} waiters, ${ROUNDS} rounds`,
  );
  // The floor every latency here stands on: one round trip on this machine, now.
  const pings: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = monoMs();
    await session.admin.ping();
    pings.push(monoMs() - t0);
  }
  pings.sort((a, b) => a - b);
  const ping = (q: number) => (pings[Math.floor(q * (pings.length - 1))] as number).toFixed(3);
  print(`PING round trip (ioredis, 200 in a row): p50 ${ping(0.5)} ms, p99 ${ping(0.99)} ms`);
  for (const phase of PHASES) {
    for (const mode of MODES) {
      if (phase === 'fairness') await fairness(session, mode);
      else if (phase === 'polling') await polling(session, mode);
      else if (phase === 'handoff') await handoff(session, mode);
      else throw new Error(`unknown phase '${phase}'`);
    }
  }
} finally {
  await closeAll(session, session.workers);
  await closeIoredis(session.admin);
  await server.stop();
  binary.cleanup();
}
