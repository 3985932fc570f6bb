/** The README's pictures: Vega-Lite specs rendered to SVG by Vega, headless. */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { Results } from './results.js';

async function toSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

function label(id: string): string {
  return id;
}

/** Handoff latency CDF per library, on a log scale: the pollers are two orders slower. */
export function handoffCdfSpec(results: Results): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Handoff latency: release in one process → acquire resolves in another',
      subtitle: `one waiter; ${results.machine.cpus}, Redis ${results.machine.redis}, loopback; PING p50 ${results.ping.ping?.p50} ms`,
    },
    width: 560,
    height: 300,
    background: 'white',
    data: {
      values: results.variants.flatMap((v) =>
        v.handoffCdf.map((point) => ({ library: label(v.id), ...point })),
      ),
    },
    mark: { type: 'line', interpolate: 'step-after' },
    encoding: {
      x: {
        field: 'ms',
        type: 'quantitative',
        scale: { type: 'log' },
        title: 'handoff latency (ms, log scale)',
      },
      y: { field: 'p', type: 'quantitative', title: 'fraction of handoffs', axis: { format: '%' } },
      color: { field: 'library', type: 'nominal', sort: results.variants.map((v) => label(v.id)) },
    },
  };
}

/** Contention throughput by worker count, the contention-only rows included. */
export function throughputSpec(results: Results): TopLevelSpec {
  const rows = [...results.variants, ...(results.contention ?? [])];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'Acquisitions per second on one contended lock (acquire → GET/SET → release)',
    width: 160,
    height: 240,
    background: 'white',
    data: {
      values: rows.flatMap((v) =>
        v.throughput.map((t) => ({
          library: label(v.id),
          workers: `${t.workers} worker${t.workers === 1 ? '' : 's'}`,
          rate: t.acquisitionsPerSecond,
        })),
      ),
    },
    mark: 'bar',
    encoding: {
      column: {
        field: 'workers',
        type: 'ordinal',
        title: null,
        sort: ['1 worker', '4 workers', '16 workers'],
      },
      x: {
        field: 'library',
        type: 'nominal',
        axis: null,
        sort: rows.map((v) => label(v.id)),
      },
      y: { field: 'rate', type: 'quantitative', title: 'acquisitions/s' },
      color: { field: 'library', type: 'nominal', sort: rows.map((v) => label(v.id)) },
    },
  };
}

/** What W waiters cost, log-log: calls while they wait, calls and time per handoff. */
export function scaleSpec(results: Results): TopLevelSpec {
  const rows = results.scale ?? [];
  const metrics = ['server calls/s while W wait', 'server calls per handoff', 'handoff p50 (ms)'];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Cost of W waiters on one name',
      subtitle: `each waiter its own connection, four processes; ${results.machine.cpus}, Redis ${results.machine.redis}`,
    },
    background: 'white',
    data: {
      values: rows.flatMap((r) =>
        r.runs
          .filter((run) => !run.skipped)
          .flatMap((run) =>
            [run.callsPerSecond, run.callsPerHandoff, run.handoff?.p50 ?? null].flatMap(
              (value, i) =>
                value === null || value <= 0
                  ? []
                  : [{ library: label(r.id), waiters: run.waiters, metric: metrics[i], value }],
            ),
          ),
      ),
    },
    facet: { column: { field: 'metric', type: 'nominal', title: null, sort: metrics } },
    spec: {
      width: 200,
      height: 220,
      mark: { type: 'line', point: true },
      encoding: {
        x: {
          field: 'waiters',
          type: 'quantitative',
          scale: { type: 'log' },
          title: 'waiters W (log scale)',
        },
        y: { field: 'value', type: 'quantitative', scale: { type: 'log' }, title: null },
        color: { field: 'library', type: 'nominal', sort: rows.map((r) => label(r.id)) },
      },
    },
    resolve: { scale: { y: 'independent' } },
  };
}

export async function renderCharts(results: Results): Promise<Record<string, string>> {
  // No main rows (--only semaphore, say): no main charts.
  const main = results.variants.length > 0;
  return {
    ...(main ? { 'handoff-cdf.svg': await toSvg(handoffCdfSpec(results)) } : {}),
    ...(main ? { 'throughput.svg': await toSvg(throughputSpec(results)) } : {}),
    ...(results.scale?.length ? { 'scale.svg': await toSvg(scaleSpec(results)) } : {}),
  };
}
