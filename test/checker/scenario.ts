/**
 * One run of the mutual-exclusion checker: fresh lock servers and a store, worker processes
 * that share one lock name, a fault injected while they run, and the figures of the log.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DEFAULTS, type LockerOptions } from '../../src/index.js';
import { killOnExit } from '../helpers/reaper.js';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.js';
import { analyse, type Figures, reportFromLog, starvedSince } from './history.js';
import { type FaultyProxy, startProxy } from './proxy.js';
import { mulberry32 } from './random.js';
import { closeKilled, type Role, readStore } from './store.js';
import type { Kind, Mode, Protocol, WorkerConfig, WorkerReport } from './worker.js';

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));
const STARTUP_MS = 30_000;

export interface Scenario {
  readonly name: string;
  readonly mode: Mode;
  /**
   * What the workers share ('mutex'). A 'semaphore' (`limit` holders, 2 · limit + 1 workers)
   * or an 'rw' lock (five workers: 0 and 3 write, the others read) is checked by counting who
   * is inside (store.ts's `enter`), not by a counter.
   */
  readonly kind?: Kind;
  /** A semaphore's limit (2). */
  readonly limit?: number;
  /**
   * The lock must be seen shared: two workers inside at once (a semaphore's permits, readers),
   * so that a lock that lets in one at a time does not pass for a semaphore.
   */
  readonly expectShared?: boolean;
  readonly topology: 'server' | 'nodes3';
  /** docs/guarantees.md: tracklock is safe here, so no violation and no lost update may show. */
  readonly safe: boolean;
  /** Worker 0 reaches server 0 through a proxy the fault can degrade. */
  readonly proxy?: boolean;
  /**
   * Worker 0 takes the lock first (the others start 300 ms later), keeps its first critical
   * section open for 600 ms, and reconnects only after 1 s: it learns late of a server that
   * restarted meanwhile.
   */
  readonly slowWorker0?: boolean;
  /** The fault must leave a stale holder whose read or write the fenced store refuses. */
  readonly expectRefused?: boolean;
  /** The fault must make a worker see its signal aborted with this (code and loss). */
  readonly expectAbort?: string;
  /** A critical section sleeps from half this to this between its read and write (5 ms). */
  readonly workMs?: number;
  readonly durationMs?: number;
  /** Worker processes (3; for a counted lock, as `kind` says). */
  readonly workers?: number;
  /**
   * The last this many workers speak Go rueidislock's protocol (go-locker.ts), and must get
   * some of the critical sections.
   */
  readonly goWorkers?: number;
  /** The longest time nobody may hold the lock, in ms (a safe row that must keep moving). */
  readonly maxGapMs?: number;
  /**
   * Every worker still running must enter a critical section after the fault is over (the
   * run leaves time for it): nobody is left behind for good.
   */
  readonly everyoneAfterFault?: boolean;
  /**
   * How the tracklock workers hear of a changed key: by default invalidation pushes; 'off'
   * (the lock's `tracking: 'off'`): every one polls; 'mixed': the odd-numbered ones poll.
   */
  readonly tracking?: 'off' | 'mixed';
  /** Starts when the workers do; must undo what it did (resume, restart) before it returns. */
  fault?(env: FaultEnv): Promise<void>;
}

export interface FaultEnv {
  readonly servers: readonly RedisServer[];
  readonly proxy: FaultyProxy | undefined;
  readonly storeUrl: string;
  /** Worker PIDs, by worker id. */
  readonly pids: readonly number[];
  /** When the workers stop taking the lock (Date.now() time). */
  readonly endsAt: number;
  /**
   * SIGKILL a worker; the run goes on without it. Resolves once the store has run every
   * command it sent and the section it was in, if any, is closed ('killed'); its figures then
   * come from the store's log.
   */
  kill(worker: number): Promise<void>;
  /**
   * The fault is over (its disruption; it may go on watching): `everyoneAfterFault` counts
   * from here. By default, from when the fault returns.
   */
  over(): void;
  /** Something the fault saw that a safe row must not show: the row fails with it. */
  problem(text: string): void;
  /** What the workers share. */
  readonly kind: Kind;
  /**
   * The step a holder logs first that a fault can stop it after, mid-section: 'read' for a
   * mutex (then it writes), 'enter' for a counted lock (then it works and exits).
   */
  readonly midStep: 'read' | 'enter';
  /** A semaphore's limit. */
  readonly limit: number;
  /** The lock servers' key prefix and the workers' lock name. */
  readonly keyPrefix: string;
  readonly lockName: string;
  readonly validityMs: number;
  /** Uniform in [0, 1), from the scenario's seed. */
  readonly random: () => number;
}

export interface Row extends Figures {
  readonly scenario: string;
  /** The scenario's name, kind and mode, as printed (`labelOf`). */
  readonly label: string;
  readonly mode: Mode;
  readonly kind: Kind;
  readonly expectShared: boolean;
  readonly safe: boolean;
  readonly expectRefused: boolean;
  readonly expectAbort: string | undefined;
  readonly goWorkers: number;
  readonly maxGapMs: number | undefined;
  /**
   * With `everyoneAfterFault`: the running workers that entered no section after the fault
   * was over (else undefined).
   */
  readonly starved: readonly number[] | undefined;
  /** What the fault saw that a safe row must not show. */
  readonly problems: readonly string[];
  readonly seconds: number;
}

export const VALIDITY_MS = 500;
const WORKERS = 3;
const LIMIT = 2;
const RW_WORKERS = 5;
/** The workers' lock keys have tracklock's default prefix, which Go's rueidislock shares. */
const KEY_PREFIX = DEFAULTS.keyPrefix;
const LOCK_NAME = 'checked';

export async function runScenario(scenario: Scenario, seed: number): Promise<Row> {
  const started = performance.now();
  // Started one by one inside the try, so that a failure stops whatever did start.
  const servers: RedisServer[] = [];
  let store: RedisServer | undefined;
  let proxy: FaultyProxy | undefined;
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < (scenario.topology === 'nodes3' ? 3 : 1); i++) {
      servers.push(await startRedisServer());
    }
    store = await startRedisServer();
    const storeUrl = store.url;
    if (scenario.proxy) proxy = await startProxy(servers[0]?.port as number);
    const workers = workersOf(scenario);
    const reports = Array.from({ length: workers }, (_, id) => {
      const child = fork(
        WORKER,
        [JSON.stringify(workerConfig(scenario, servers, proxy, storeUrl, id, workers, seed))],
        {
          execArgv: ['--import', 'tsx'],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        },
      );
      children.push(child);
      killOnExit(child);
      return messages(child);
    });
    await Promise.all(reports.map((r) => bounded(r.ready, STARTUP_MS, 'worker start')));
    const durationMs = scenario.durationMs ?? 3000;
    const until = Date.now() + durationMs;
    for (const child of children) child.send(until);
    const killed = new Set<number>();
    const problems: string[] = [];
    // The store's clock is this machine's: µs since the epoch.
    let faultOverUs: number | undefined;
    const env: FaultEnv = {
      servers,
      proxy,
      storeUrl,
      pids: children.map((child) => child.pid as number),
      endsAt: until,
      kill: async (worker) => {
        const child = children[worker];
        if (!child || killed.has(worker)) throw new Error(`no worker ${worker} to kill`);
        killed.add(worker);
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await bounded(exited, 10_000, `worker ${worker}'s exit`);
        await closeKilled(storeUrl, worker, 10_000);
      },
      over: () => {
        faultOverUs ??= Date.now() * 1000;
      },
      problem: (text) => problems.push(text),
      kind: scenario.kind ?? 'mutex',
      midStep: (scenario.kind ?? 'mutex') === 'mutex' ? 'read' : 'enter',
      limit: scenario.limit ?? LIMIT,
      keyPrefix: KEY_PREFIX,
      lockName: LOCK_NAME,
      validityMs: VALIDITY_MS,
      random: mulberry32(seed),
    };
    await bounded(scenario.fault?.(env) ?? Promise.resolve(), durationMs + 20_000, 'fault');
    env.over();
    const alive = await Promise.all(
      reports.map((r, id) =>
        killed.has(id) ? undefined : bounded(r.report, durationMs + 30_000, 'worker report'),
      ),
    );
    const { steps, counter } = await readStore(storeUrl);
    const done = alive.map(
      (report, id) => report ?? reportFromLog(steps, id, protocolOf(scenario, id, workers)),
    );
    return {
      scenario: scenario.name,
      label: labelOf(scenario),
      mode: scenario.mode,
      kind: scenario.kind ?? 'mutex',
      expectShared: scenario.expectShared ?? false,
      safe: scenario.safe,
      expectRefused: scenario.expectRefused ?? false,
      expectAbort: scenario.expectAbort,
      goWorkers: scenario.goWorkers ?? 0,
      maxGapMs: scenario.maxGapMs,
      starved: scenario.everyoneAfterFault
        ? starvedSince(
            steps,
            faultOverUs ?? 0,
            done.flatMap((_, id) => (killed.has(id) ? [] : [id])),
          )
        : undefined,
      problems,
      seconds: Math.round((performance.now() - started) / 100) / 10,
      ...analyse(steps, counter, done, scenario.limit ?? LIMIT),
    };
  } finally {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGCONT');
        child.kill('SIGKILL');
      }
    }
    await proxy?.close();
    await Promise.all([...servers, store].map((server) => server?.stop()));
  }
}

function workerConfig(
  scenario: Scenario,
  servers: readonly RedisServer[],
  proxy: FaultyProxy | undefined,
  storeUrl: string,
  id: number,
  workers: number,
  seed: number,
): WorkerConfig {
  const where: LockerOptions =
    scenario.topology === 'nodes3'
      ? { nodes: servers.map((server) => server.url) }
      : { url: id === 0 && proxy ? proxy.url : (servers[0]?.url as string) };
  return {
    id,
    mode: scenario.mode,
    kind: scenario.kind ?? 'mutex',
    role: roleOf(scenario, id),
    limit: scenario.limit ?? LIMIT,
    workers,
    protocol: protocolOf(scenario, id, workers),
    lock: {
      ...where,
      ...(polls(scenario, id) ? { tracking: 'off' } : {}),
      keyValidityMs: VALIDITY_MS,
      commandTimeoutMs: 100,
      // A 52 ms margin: timers on a loaded 2-core machine run late.
      driftFactor: 0.1,
      client: { socket: { reconnectStrategy: id === 0 && scenario.slowWorker0 ? 1000 : 20 } },
    },
    storeUrl,
    name: LOCK_NAME,
    seed: seed * 100 + id,
    workMs: scenario.workMs ?? 5,
    startDelayMs: id !== 0 && scenario.slowWorker0 ? 300 : 0,
    firstWorkMs: id === 0 && scenario.slowWorker0 ? 600 : undefined,
  };
}

/** The number of worker processes: 2 · limit + 1 for a semaphore, so that some always wait. */
export function workersOf(scenario: Scenario): number {
  if (scenario.workers !== undefined) return scenario.workers;
  if (scenario.kind === 'semaphore') return 2 * (scenario.limit ?? LIMIT) + 1;
  return scenario.kind === 'rw' ? RW_WORKERS : WORKERS;
}

/** How worker `id` holds a counted lock: rw workers 0 and 3 write (one slow in slowWorker0). */
function roleOf(scenario: Scenario, id: number): Role | undefined {
  if (scenario.kind === 'semaphore') return 'permit';
  if (scenario.kind === 'rw') return id % 3 === 0 ? 'write' : 'read';
  return undefined;
}

/** A row's name as printed: the kind (and a semaphore's limit), the fault, the mode. */
export function labelOf(scenario: Scenario): string {
  const kind =
    scenario.kind === 'semaphore'
      ? `semaphore ${scenario.limit ?? LIMIT} of ${workersOf(scenario)}: `
      : scenario.kind === 'rw'
        ? 'rw: '
        : '';
  return `${kind}${scenario.name} [${scenario.mode}]`;
}

function polls(scenario: Scenario, id: number): boolean {
  return scenario.tracking === 'off' || (scenario.tracking === 'mixed' && id % 2 === 1);
}

function protocolOf(scenario: Scenario, id: number, workers: number): Protocol {
  return id >= workers - (scenario.goWorkers ?? 0) ? 'go' : 'tracklock';
}

/** A worker's two messages: 'ready', then its report. */
function messages(child: ChildProcess) {
  let ready!: () => void;
  let report!: (r: WorkerReport) => void;
  const readyP = new Promise<void>((resolve) => {
    ready = resolve;
  });
  const reportP = new Promise<WorkerReport>((resolve, reject) => {
    report = resolve;
    child.once('exit', (code) => reject(new Error(`worker exited (${code}) without a report`)));
  });
  readyP.catch(() => {});
  reportP.catch(() => {});
  child.on('message', (message: unknown) => {
    if (message === 'ready') ready();
    else report(message as WorkerReport);
  });
  return { ready: readyP, report: reportP };
}

async function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no end within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
