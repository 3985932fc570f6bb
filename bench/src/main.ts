/**
 * tracklock against the locks users would pick instead, in one run on one server:
 *
 *   npm run bench [-- --smoke | --full] [--name NAME] [--rounds N] [--only id,id]
 *
 * (`--only semaphore` runs the semaphore phase alone.)
 *
 * Starts a throwaway redis-server (or uses REDIS_URL), forks four worker processes, measures
 * every phase for every library, prints the tables, and writes bench/results/NAME.json (default
 * `latest`), NAME.md and the charts NAME-*.svg. Then the "many servers" rows: tracklock and
 * redlock on 3 independent servers and tracklock on a 3-master cluster, all throwaway.
 */
import { setMaxListeners } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  ALL_VARIANTS,
  CONTENTION_VARIANTS,
  SCALE_VARIANTS,
  SEMAPHORE_GROUP,
  SEMAPHORE_VARIANTS,
  TOPOLOGY_VARIANTS,
  VARIANTS,
} from './adapters/index.js';
import { closeIoredis, connectIoredis } from './adapters/ioredis.js';
import type { SemaphoreVariant, Variant } from './adapters/types.js';
import { renderCharts } from './charts.js';
import type { Context } from './context.js';
import { describeMachine } from './machine.js';
import { MODES, type Mode } from './modes.js';
import { measureCost } from './phases/cost.js';
import { FAIRNESS_SHAPES, measureFairness } from './phases/fairness.js';
import { chainHandoff, pairHandoff } from './phases/handoff.js';
import { measureLoss } from './phases/loss.js';
import { MANY_SERVERS_STEPS, measureManyServers } from './phases/many-servers.js';
import { measureMemory } from './phases/memory.js';
import { measurePing } from './phases/ping.js';
import { measureScale, scaleSteps } from './phases/scale.js';
import { measureSemaphores, semaphoreSteps } from './phases/semaphore.js';
import { measureThroughput, WORKER_COUNTS } from './phases/throughput.js';
import { measureUncontended } from './phases/uncontended.js';
import { startWorkers } from './pool.js';
import { progressBar } from './progress.js';
import { redact, serverVersion, startRedisServer } from './redis.js';
import { renderReport } from './report.js';
import type {
  ContentionVariantResult,
  Results,
  ScaleVariantResult,
  SemaphoreVariantResult,
  TopologyResult,
  VariantResult,
} from './results.js';
import { cdfPoints } from './stats.js';
import { computeTargets } from './targets.js';

const WAITER_COUNTS = [10, 100] as const;
const PROCESSES = 4;
const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

const USAGE = `npm run bench -- [options]   (bench/README.md says what each phase measures)

  (no mode)       every phase, enough samples to compare    about 2 minutes
  --smoke         every phase, few samples (CI)             about 1 minute
  --full          the published figures                     about 10 minutes
  --name NAME     write bench/results/NAME.* instead of latest.*
  --only A,B      only these libraries (ids as in the tables); "semaphore": every
                  semaphore row (issue 16), so "--only semaphore" runs that phase alone
  --rounds N      the two-process handoff rounds
  -h, --help      this text`;

interface Args {
  readonly mode: Mode;
  readonly name: string;
  readonly variants: readonly Variant[];
  /** Rows of the contention table only, no other phase (CONTENTION_VARIANTS). */
  readonly contentionVariants: readonly Variant[];
  /** The "many servers" rows: each needs servers of its own (`topology`). */
  readonly topologyVariants: readonly Variant[];
  /** The "scale" rows: W waiters on one name, on a server of their own. */
  readonly scaleVariants: readonly Variant[];
  /** The semaphore rows (issue 16). */
  readonly semaphoreVariants: readonly SemaphoreVariant[];
  readonly command: string;
}

function parse(): Args {
  const argv = process.argv.slice(2);
  const { values } = parseArgs({
    args: argv,
    options: {
      smoke: { type: 'boolean', default: false },
      full: { type: 'boolean', default: false },
      name: { type: 'string', default: 'latest' },
      rounds: { type: 'string' },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (values.smoke && values.full) throw new RangeError('--smoke and --full: choose one');
  let mode = MODES[values.smoke ? 'smoke' : values.full ? 'full' : 'default'];
  if (values.rounds !== undefined) {
    const rounds = Number(values.rounds);
    if (!/^\d+$/.test(values.rounds) || rounds < 1) {
      throw new RangeError(`--rounds must be a positive whole number, got "${values.rounds}"`);
    }
    mode = { ...mode, handoffRounds: rounds };
  }
  if (!/^[\w.-]+$/.test(values.name)) throw new RangeError('--name: letters, digits, . _ - only');
  const semaphoreIds = SEMAPHORE_VARIANTS.map((v) => v.id);
  const only = values.only
    ?.split(',')
    .flatMap((id) => (id === SEMAPHORE_GROUP ? semaphoreIds : [id]));
  const known = [...ALL_VARIANTS.map((v) => v.id), ...semaphoreIds];
  const unknown = only?.filter((id) => !known.includes(id));
  if (unknown?.length) {
    throw new RangeError(
      `--only: unknown ${unknown.join(', ')}; known: ${[...known, SEMAPHORE_GROUP].join(', ')}`,
    );
  }
  const pick = <V extends { readonly id: string }>(list: readonly V[]) =>
    only ? list.filter((v) => only.includes(v.id)) : list;
  const command = `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  return {
    mode,
    name: values.name,
    variants: pick(VARIANTS),
    contentionVariants: pick(CONTENTION_VARIANTS),
    topologyVariants: pick(TOPOLOGY_VARIANTS),
    scaleVariants: pick(SCALE_VARIANTS),
    semaphoreVariants: pick(SEMAPHORE_VARIANTS),
    command,
  };
}

/** Steps the progress bar counts: one per variant per measurement. */
function plannedSteps(args: Args): number {
  const { variants, contentionVariants, topologyVariants, scaleVariants, semaphoreVariants } = args;
  const perVariant = 1 + WAITER_COUNTS.length + WORKER_COUNTS.length + 1 + 1 + 1;
  return (
    1 +
    variants.length * perVariant -
    variants.filter((v) => v.polls).length + // no memory step (Variant.polls)
    contentionVariants.length * WORKER_COUNTS.length +
    fairnessVariants(args).length * FAIRNESS_SHAPES.length +
    variants.filter((v) => v.signalsLoss).length +
    topologyVariants.length * MANY_SERVERS_STEPS +
    scaleSteps(args, scaleVariants) +
    semaphoreSteps(semaphoreVariants)
  );
}

/** The mode's fairness variants that this run includes, in the order of the tables. */
function fairnessVariants(args: Args): readonly Variant[] {
  return args.variants.filter((v) => args.mode.fairnessVariants.includes(v.id));
}

async function run(
  args: Args,
  url: string,
  server: string,
  interrupted: AbortSignal,
): Promise<Results> {
  const startedAt = new Date();
  const admin = await connectIoredis(url);
  const progress = progressBar(plannedSteps(args));
  try {
    const redis = await serverVersion(admin);
    let mark = performance.now();
    const workers = await startWorkers(PROCESSES, 'w');
    try {
      const ctx: Context = {
        url,
        admin,
        target: url,
        lockServers: [admin],
        workers,
        mode: args.mode,
        progress,
        interrupted,
      };
      const phaseSeconds: Record<string, number> = {};
      const lap = (phase: string) => {
        phaseSeconds[phase] = Math.round((performance.now() - mark) / 100) / 10;
        mark = performance.now();
      };
      lap('startup');
      const ping = await measurePing(ctx);
      const partial = new Map<string, Partial<VariantResult> & { samples?: number[] }>();
      for (const v of args.variants) {
        const pair = await pairHandoff(ctx, v);
        progress.step(`handoff ${v.id}`);
        const waiters: Record<string, VariantResult['handoff']['pair']> = {};
        for (const count of WAITER_COUNTS) {
          waiters[count] = (await chainHandoff(ctx, v, count)).summary;
          progress.step(`${count} waiters ${v.id}`);
        }
        partial.set(v.id, {
          handoff: { pair: pair.summary, callsPerHandoff: pair.callsPerHandoff, waiters },
          handoffCdf: cdfPoints(pair.samples),
        });
      }
      lap('handoff');
      for (const v of args.variants) {
        const throughput = [];
        for (const count of WORKER_COUNTS) {
          throughput.push(await measureThroughput(ctx, v, count));
          progress.step(`throughput ${count} ${v.id}`);
        }
        const uncontended = await measureUncontended(ctx, v);
        progress.step(`uncontended ${v.id}`);
        Object.assign(partial.get(v.id) ?? {}, { throughput, uncontended });
      }
      const contentionOnly = new Map<string, VariantResult['throughput']>();
      for (const v of args.contentionVariants) {
        const throughput = [];
        for (const count of WORKER_COUNTS) {
          throughput.push(await measureThroughput(ctx, v, count));
          progress.step(`throughput ${count} ${v.id}`);
        }
        contentionOnly.set(v.id, throughput);
      }
      lap('throughput and uncontended');
      const fairness = await measureFairness(ctx, fairnessVariants(args));
      lap('fairness');
      const manyServers = await measureManyServers(ctx, args.topologyVariants);
      lap('many servers');
      const loss = new Map<string, VariantResult['lossDetection']>();
      for (const v of args.variants.filter((variant) => variant.signalsLoss)) {
        loss.set(v.id, await measureLoss(ctx, v));
        progress.step(`loss ${v.id}`);
      }
      lap('loss');
      const scale = await measureScale(ctx, args.scaleVariants);
      lap('scale');
      const semaphores = await measureSemaphores(ctx, args.semaphoreVariants);
      lap('semaphore');
      // Last, and side by side: both run on servers of their own, and count, not time.
      const [cost, memory] = await Promise.all([
        measureCost(ctx, args.variants),
        measureMemory(ctx, args.variants),
      ]);
      lap('cost and memory');
      const machine = describeMachine(redis);
      /** Which library, at which version and settings, a row of results is. */
      const identity = (v: Variant | SemaphoreVariant) => ({
        id: v.id,
        library: v.library,
        version: machine.versions[v.library] ?? '?',
        settings: v.settings,
      });
      const variants = args.variants.map((v): VariantResult => {
        const p = partial.get(v.id) as VariantResult;
        const fair = fairness.get(v.id);
        return {
          ...identity(v),
          handoff: p.handoff,
          throughput: p.throughput,
          uncontended: p.uncontended,
          cost: cost.get(v.id) as VariantResult['cost'],
          memory: memory.get(v.id) ?? null,
          lossDetection: loss.get(v.id) ?? null,
          ...(fair ? { fairness: fair } : {}),
          handoffCdf: p.handoffCdf,
        };
      });
      const contention = args.contentionVariants.map(
        (v): ContentionVariantResult => ({
          ...identity(v),
          throughput: contentionOnly.get(v.id) ?? [],
        }),
      );
      const topologies = manyServers.map(
        (r): TopologyResult => ({
          ...identity(r.variant),
          servers: r.servers,
          handoff: { pair: r.pair },
          throughput: r.throughput,
        }),
      );
      const scaleRows = scale.map(
        (r): ScaleVariantResult => ({ ...identity(r.variant), runs: r.runs }),
      );
      const semaphore = semaphores.map(
        (r): SemaphoreVariantResult => ({
          ...identity(r.variant),
          handoff: r.handoff,
          throughput: r.throughput,
          cost: r.cost,
        }),
      );
      const base = {
        command: args.command,
        mode: args.mode.name,
        startedAt: startedAt.toISOString(),
        durationSeconds: Math.round((Date.now() - startedAt.getTime()) / 1000),
        phaseSeconds,
        server,
        machine,
        ping,
        variants,
        contention,
        topologies,
        scale: scaleRows,
        semaphore,
      };
      return { ...base, targets: computeTargets(base) };
    } finally {
      await Promise.all(workers.map((w) => w.stop()));
    }
  } finally {
    progress.stop();
    await closeIoredis(admin);
  }
}

async function main(): Promise<void> {
  const args = parse();
  // Aborted by SIGINT or SIGTERM: the run then fails like any other, so the finally blocks
  // still stop the workers and the redis-server (a signal's default action would skip them).
  const interrupted = new AbortController();
  // Every concurrent phase waits on it: many listeners at once are expected, not a leak.
  setMaxListeners(0, interrupted.signal);
  for (const name of ['SIGINT', 'SIGTERM'] as const) {
    process.once(name, () => interrupted.abort(new Error(`interrupted by ${name}`)));
  }
  const given = process.env.REDIS_URL || undefined;
  let results: Results;
  if (given !== undefined) {
    if (args.topologyVariants.length > 0) {
      console.log(
        'REDIS_URL holds the main tables and the counters; the "many servers" rows still run on throwaway redis-servers on loopback, started for them',
      );
    }
    results = await run(args, given, redact(given), interrupted.signal);
  } else {
    const server = await startRedisServer();
    try {
      results = await run(
        args,
        server.url,
        'throwaway redis-server on loopback',
        interrupted.signal,
      );
    } finally {
      await server.stop();
    }
  }
  const report = renderReport(results);
  console.log(report);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(`${RESULTS_DIR}${args.name}.json`, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(`${RESULTS_DIR}${args.name}.md`, `${report}\n`);
  for (const [file, svg] of Object.entries(await renderCharts(results))) {
    writeFileSync(`${RESULTS_DIR}${args.name}-${file}`, svg);
  }
  console.log(`\nwrote bench/results/${args.name}.json, .md and -*.svg`);
  const lost = results.targets.filter(
    (t) => (t.target.includes('lost updates') || t.target.includes('over limit')) && !t.met,
  );
  // The many-servers rows are no targets, but two holders at once there is as loud a finding.
  const lostOnMany = (results.topologies ?? []).flatMap((r) =>
    r.throughput
      .filter((t) => t.lostUpdates !== 0)
      .map((t) => `${r.id} (${r.servers}), ${t.workers} workers: ${t.lostUpdates}`),
  );
  if (lost.length > 0 || lostOnMany.length > 0) {
    // A lock that lets two holders in is a finding, not a benchmark failure: say it loudly.
    console.log(
      `lost updates or holders over a limit: ${[...lost.map((t) => t.target), ...lostOnMany].join('; ')}`,
    );
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : error);
  process.exitCode = 1;
  // A phase that failed can leave work behind (a concurrent phase's connection to a server
  // already stopped, which ioredis retries for ever): a failed run must end, not hang CI.
  setTimeout(() => process.exit(1), 5000).unref();
});
