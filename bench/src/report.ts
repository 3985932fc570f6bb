/**
 * The tables, as Markdown: printed at the end of a run, written beside the JSON, and pasted
 * into bench/README.md from a published run.
 */
import type {
  ContentionVariantResult,
  Results,
  ScaleVariantResult,
  SemaphoreVariantResult,
  Target,
  TopologyResult,
  VariantResult,
} from './results.js';
import type { Summary } from './stats.js';
import { isPolling, PUSH_ID } from './targets.js';

const ms = (n: number | undefined) =>
  n === undefined ? '–' : n < 10 ? n.toFixed(3) : n.toFixed(1);
const int = (n: number) => Math.round(n).toLocaleString('en-US');

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** What the end of a tracklock id says, in a row's name; the settings column has the rest. */
const TRACKLOCK_SUFFIXES: readonly [string, string][] = [
  ['-race', ' race'],
  ['-local-inf', ' localHandoffs ∞'],
  ['-poll', ' poll'],
  ['-poll10', ' poll 10 ms'],
  // Results of 0.2 (issue13-baseline.json): the directHandoff option, ignored since 0.3.
  ['-direct', ' direct'],
];

/** A row's name: the library, its version, and what sets the row apart from its neighbours. */
function name(v: { id: string; library: string; version: string }): string {
  if (v.id.startsWith('bare-')) return `bare push lock, ${v.library} ${v.version}`;
  const base = `${v.library} ${v.version}`;
  if (v.library !== 'tracklock') {
    return `${base}${v.id.endsWith('fast') || v.id.endsWith('1ms') ? ' (fast)' : ''}`;
  }
  const majority = /-m(\d+)/.exec(v.id)?.[1];
  const suffix = TRACKLOCK_SUFFIXES.find(([end]) => v.id.endsWith(end))?.[1] ?? '';
  return `${base}${majority ? ` M=${majority}` : ''}${suffix}`;
}

/** A many-servers row: the rest (keyMajority, servers) is in its own columns. */
function topologyName(r: TopologyResult): string {
  return `${r.library} ${r.version}${r.id.includes('-fast') ? ' (fast)' : ''}`;
}

/** The "many servers" table, or nothing for a run without it (older results files too). */
function manyServers(topologies: readonly TopologyResult[] | undefined): string[] {
  if (!topologies?.length) return [];
  return [
    '',
    '**Many servers**: the same handoff (one waiter) and contention runs with the locks on several throwaway servers on loopback; the counter stays on the main server, and calls per acquisition are summed over every server that holds keys.',
    '',
    table(
      [
        'library',
        'settings',
        'servers',
        'handoff p50 / p99',
        'acq/s, 1 / 4 / 16 workers',
        'lost updates',
        'calls per acq, 16 workers',
      ],
      topologies.map((r) => [
        topologyName(r),
        r.settings,
        r.servers,
        p50p99(r.handoff.pair),
        r.throughput.map((t) => int(t.acquisitionsPerSecond)).join(' / '),
        r.throughput.map((t) => String(t.lostUpdates)).join(' / '),
        String(r.throughput.at(-1)?.callsPerAcquisition ?? '–'),
      ]),
    ),
  ];
}

/** The fairness table, or nothing for a run without it (smoke leaves most variants out). */
function fairness(variants: readonly VariantResult[]): string[] {
  const rows = variants.flatMap((v) => (v.fairness ?? []).map((f) => ({ v, f })));
  if (rows.length === 0) return [];
  return [
    '',
    `**Fairness**: the contention loop on one name for ${rows[0]?.f.durationMs} ms per row; each acquisition's wait from the acquire call to its resolving (those resolving after the end included), and how many acquisitions each process got.`,
    '',
    table(
      [
        'library',
        'processes × loops',
        'acq/s',
        'per process, least / most (ratio)',
        'wait p50 / p99 / worst',
        'hold p50',
        'lost updates',
      ],
      rows.map(({ v, f }) => [
        name(v),
        `${f.processes} × ${f.loopsPerProcess}`,
        int(f.acquisitionsPerSecond),
        `${int(Math.min(...f.perProcess))} / ${int(Math.max(...f.perProcess))} (${f.leastToMost.toFixed(2)})`,
        f.wait ? `${ms(f.wait.p50)} / ${ms(f.wait.p99)} / ${ms(f.wait.max)}` : '–',
        ms(f.hold?.p50),
        String(f.lostUpdates),
      ]),
    ),
  ];
}

/** The "scale" table, or nothing for a run without it. */
function scaleTable(scale: readonly ScaleVariantResult[] | undefined): string[] {
  if (!scale?.length) return [];
  const n = (value: number | null) => (value === null ? '–' : int(value));
  return [
    '',
    "**Scale**: W waiters, each its own connection, over four processes, on one name held by a fifth, on a server of the phase's own; server calls (scripts' inner calls included) while W wait, and per handoff (release → a waiter has it, the one that let go queues again); wake-ups: the waiters' acquire scripts per extension (one per wake-up; a queued deputy's PTTL after its attempt is in the calls, not here).",
    '',
    table(
      [
        'library',
        'settings',
        'W',
        'calls/s while W wait',
        'per extension',
        'wake-ups per extension',
        'calls per handoff',
        'handoff p50 / p99',
        'Redis CPU per handoff',
      ],
      scale.flatMap((r) =>
        r.runs.map((run) => [
          name(r),
          r.settings,
          int(run.waiters),
          ...(run.skipped
            ? [`skipped: ${run.skipped}`, '', '', '', '', '']
            : [
                int(run.callsPerSecond),
                n(run.callsPerExtension),
                run.wakeUpsPerExtension === null ? '–' : String(run.wakeUpsPerExtension),
                n(run.callsPerHandoff),
                p50p99(run.handoff),
                run.cpuMsPerHandoff === null ? '–' : `${ms(run.cpuMsPerHandoff)} ms`,
              ]),
        ]),
      ),
    ),
  ];
}

/** The semaphore tables (issue 16), or nothing for a run without them. */
function semaphoreTables(rows: readonly SemaphoreVariantResult[] | undefined): string[] {
  if (!rows?.length) return [];
  const handoff = (r: SemaphoreVariantResult, limit: number) =>
    r.handoff.find((h) => h.limit === limit);
  const perRun = (
    r: SemaphoreVariantResult,
    f: (run: SemaphoreVariantResult['cost']['runs'][number]) => number,
  ) => r.cost.runs.map((run) => int(f(run))).join(' / ');
  const waiters = rows[0]?.cost.runs.map((run) => run.waiters).join(' / ') ?? '';
  const limit = rows[0]?.cost.limit;
  return [
    '',
    `**Semaphores** (issue 16): handoff, every permit held and one waiter in another process: the longest holder releases → the waiter's acquire resolves (calls per handoff as in the handoff table); the contention loop on ${limit} permits with a count of the holders inside (INCR after the acquire, DECR before the release) in place of the counter; over limit: acquisitions that counted more than ${limit} inside.`,
    '',
    table(
      [
        'library',
        'settings',
        'handoff p50 / p99, limit 1',
        'limit 4',
        'calls per handoff, limit 1 / 4',
        `acq/s, 1 / 4 / 16 workers, limit ${limit}`,
        'over limit',
        'most inside',
        'calls per acq, 16 workers',
      ],
      rows.map((r) => [
        name(r),
        r.settings,
        p50p99(handoff(r, 1)?.summary),
        p50p99(handoff(r, 4)?.summary),
        r.handoff
          .map((h) => (h.callsPerHandoff === null ? '–' : String(h.callsPerHandoff)))
          .join(' / '),
        r.throughput.map((t) => int(t.acquisitionsPerSecond)).join(' / '),
        r.throughput.map((t) => String(t.overLimit ?? '–')).join(' / '),
        String(Math.max(...r.throughput.map((t) => t.mostInside ?? 0))),
        String(r.throughput.at(-1)?.callsPerAcquisition ?? '–'),
      ]),
    ),
    '',
    `**Semaphore cost**: on a server of its own, ${limit} clients hold all ${limit} permits while ${waiters} more wait; every call the server ran (scripts' inner calls included), the script calls among them, and the server's CPU time, per second, over ${rows[0]?.cost.runs[0]?.windowMs} ms windows.`,
    '',
    table(
      [
        'library',
        `calls/s, ${waiters} waiting`,
        `calls/s, ${rows[0]?.cost.runs.at(-1)?.waiters} ÷ ${rows[0]?.cost.runs[0]?.waiters} waiting`,
        `scripts/s, ${waiters} waiting`,
        `Redis CPU ms/s, ${waiters} waiting`,
        'waiters stuck at the end',
      ],
      rows.map((r) => {
        const first = r.cost.runs[0]?.callsPerSecond;
        const last = r.cost.runs.at(-1)?.callsPerSecond;
        return [
          name(r),
          perRun(r, (run) => run.callsPerSecond),
          first && last !== undefined ? `${(last / first).toFixed(2)}×` : '–',
          perRun(r, (run) => run.scriptsPerSecond),
          r.cost.runs.map((run) => run.cpuMsPerSecond.toFixed(1)).join(' / '),
          String(r.cost.stuck),
        ];
      }),
    ),
  ];
}

/**
 * How far each tracklock row is from the bare push lock on node-redis, its own idea on its own
 * client with nothing else (bare-push-lock.ts), or nothing when the run left either out.
 */
function floor(variants: readonly VariantResult[]): string[] {
  const bare = variants.find((v) => v.id === 'bare-node-redis')?.handoff.pair;
  const tracklock = variants.filter((v) => v.library === 'tracklock' && v.handoff.pair);
  if (!bare || tracklock.length === 0) return [];
  const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  const rows = tracklock.map((v) => {
    const s = v.handoff.pair as Summary;
    return `${name(v)} ${ratio(s.p50, bare.p50)} / ${ratio(s.p99, bare.p99)}`;
  });
  return [
    '',
    `Against the floor, the bare push lock on node-redis (p50 ${ms(bare.p50)}, p99 ${ms(bare.p99)}), handoff p50 / p99: ${rows.join('; ')}.`,
  ];
}

/**
 * Issue 14's figures in one line: tracklock at M=2 pushing against the same polling, or
 * nothing when the run left either out.
 */
function polling(variants: readonly VariantResult[]): string[] {
  const push = variants.find((v) => v.id === PUSH_ID);
  const polls = variants.filter((v) => isPolling(v.id));
  if (!push || polls.length === 0) return [];
  const figures = (v: VariantResult) => {
    const idle = v.cost.idle?.find((i) => i.locks === 1);
    return [
      `${name(v)}: handoff p50 / p99 ${p50p99(v.handoff.pair)}`,
      `loss detected ${p50p99(v.lossDetection)}`,
      `calls per acquire + release ${v.cost.cycle.callsPerCycle}`,
      `idle calls/s of a held lock ${idle ? idle.callsPerSecond.toFixed(2) : '–'}`,
    ].join(', ');
  };
  return ['', `**Polling against push** (issue 14): ${[push, ...polls].map(figures).join('; ')}.`];
}

function p50p99(s: Summary | null | undefined): string {
  return s ? `${ms(s.p50)} / ${ms(s.p99)}` : '–';
}

/** The main handoff table, or nothing when --only left every main row out. */
function handoffTable(variants: readonly VariantResult[]): string[] {
  if (variants.length === 0) return [];
  return [
    '',
    "**Handoff**: release in one process → the blocking acquire resolves in another; calls per handoff: server calls (scripts' inner calls included) per round, the waiter's first attempt and its polling in the pause before the release (2–22 ms) included.",
    '',
    table(
      [
        'library',
        'settings',
        'n',
        'p50',
        'p90',
        'p99',
        'max',
        'calls per handoff',
        '10 waiters p50 / p99',
        '100 waiters p50 / p99',
      ],
      variants.map((v) => {
        const s = v.handoff.pair;
        return [
          name(v),
          v.settings,
          String(s?.n ?? 0),
          ms(s?.p50),
          ms(s?.p90),
          ms(s?.p99),
          ms(s?.max),
          v.handoff.callsPerHandoff == null ? '–' : String(v.handoff.callsPerHandoff),
          p50p99(v.handoff.waiters['10']),
          p50p99(v.handoff.waiters['100']),
        ];
      }),
    ),
  ];
}

/** The contention table, or nothing when --only left out every row of it. */
function contentionTable(results: Results): string[] {
  if (results.variants.length === 0 && !results.contention?.length) return [];
  return [
    '',
    '**Contention** (acquire → GET/SET a counter → release, one name) and **uncontended** acquire + release on fresh names.',
    '',
    table(
      [
        'library',
        'acq/s, 1 / 4 / 16 workers',
        'lost updates',
        'calls per acq, 16 workers',
        'uncontended p50 / p99',
        'cycles/s',
      ],
      [
        ...results.variants.map((v) => [
          ...contended(v),
          p50p99(v.uncontended.latency),
          int(v.uncontended.cyclesPerSecond),
        ]),
        // Measured in no other phase: no uncontended columns.
        ...(results.contention ?? []).map((v) => [...contended(v), '–', '–']),
      ],
    ),
  ];
}

/** The cost table, or nothing when --only left every main row out. */
function costTable(variants: readonly VariantResult[]): string[] {
  if (variants.length === 0) return [];
  return [
    '',
    "**Cost**: requests a client sends (a script counts once) and, in brackets, all calls the server runs, scripts' inner calls included; client heap per held lock and per waiter.",
    '',
    table(
      [
        'library',
        'per acquire + release',
        'idle, 1 lock, /s',
        'idle, 1,000 locks, /s per lock',
        'heap per held lock',
        'per waiter',
        'loss detected p50 / p99',
      ],
      variants.map((v) => {
        const idle = v.cost.idle;
        const at = (locks: number, perLock: boolean) => {
          const found = idle?.find((i) => i.locks === locks);
          if (!found) return idle ? 'not measured' : 'none: expires after its TTL';
          const requests = perLock ? found.requestsPerSecondPerLock : found.requestsPerSecond;
          const calls = perLock ? found.callsPerSecond / found.locks : found.callsPerSecond;
          return `${requests.toFixed(2)} (${calls.toFixed(2)})`;
        };
        return [
          name(v),
          `${v.cost.cycle.requestsPerCycle} (${v.cost.cycle.callsPerCycle})`,
          at(1, false),
          at(1000, true),
          v.memory ? `${int(v.memory.heapPerHeldBytes)} B` : 'not measured',
          v.memory ? `${int(v.memory.heapPerWaiterBytes)} B` : 'not measured',
          v.lossDetection ? p50p99(v.lossDetection) : 'no loss signal',
        ];
      }),
    ),
  ];
}

export function renderReport(results: Results): string {
  const { ping, idlePing } = results.ping;
  const m = results.machine;
  const memoryCount = results.variants.find((v) => v.memory)?.memory?.count.toLocaleString('en-US');
  const out: string[] = [];
  out.push(
    `Mode ${results.mode}, ${results.durationSeconds} s; ${results.server}, Redis ${m.redis}; Node ${m.node}; ${m.cpus}; ${m.os}`,
    '',
    `PING p50 ${ms(ping?.p50)} ms, p99 ${ms(ping?.p99)} ms (${ping?.n} sequential); after a 5 ms pause p50 ${ms(idlePing?.p50)} ms. All times in ms.`,
    ...handoffTable(results.variants),
    ...floor(results.variants),
    ...contentionTable(results),
    ...contentionSettings(results.contention),
    ...fairness(results.variants),
    ...manyServers(results.topologies),
    ...scaleTable(results.scale),
    ...semaphoreTables(results.semaphore),
    ...costTable(results.variants),
    // No main rows at all when --only named only many-servers ones.
    ...(memoryCount === undefined
      ? []
      : ['', `Memory at ${memoryCount} locks and ${memoryCount} waiters.`]),
    ...polling(results.variants),
    '',
    '**Targets**',
    '',
    table(
      ['target', 'measured', 'limit', ''],
      results.targets.map((t) => [
        t.target,
        String(t.value),
        String(t.limit),
        t.met ? 'met' : '**missed**',
      ]),
    ),
    ...issue13Line(results.targets),
  );
  return out.join('\n');
}

/** A contention row's name, and its acquisitions/s, lost updates and calls per acquisition. */
function contended(v: VariantResult | ContentionVariantResult): string[] {
  return [
    name(v),
    v.throughput.map((t) => int(t.acquisitionsPerSecond)).join(' / '),
    v.throughput.map((t) => String(t.lostUpdates)).join(' / '),
    String(v.throughput.at(-1)?.callsPerAcquisition ?? '–'),
  ];
}

/** The contention-only rows' settings, which no other table shows. */
function contentionSettings(rows: readonly ContentionVariantResult[] | undefined): string[] {
  if (!rows?.length) return [];
  return ['', `Contention only: ${rows.map((r) => `${name(r)}: ${r.settings}`).join('; ')}.`];
}

/** Issue 13's targets in one line, each with its measured value and limit. */
function issue13Line(targets: readonly Target[]): string[] {
  const items = targets.flatMap((t) =>
    t.issue13 === undefined ? [] : [`${t.issue13} ${t.met ? 'met' : '**missed**'}`],
  );
  if (items.length === 0) return [];
  return [
    '',
    `**Issue 13** (tracklock-m2 at its defaults; scale: tracklock-scale): ${items.join('; ')}.`,
  ];
}
