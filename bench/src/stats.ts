/** Latency summaries from an HDR histogram: exact enough at every percentile, any count. */
import * as hdr from 'hdr-histogram-js';

export interface Summary {
  readonly n: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly mean: number;
  /** Samples below zero: two processes' clocks disagreed (or, in a handoff, an overlap). */
  readonly negative: number;
}

/** Histogram resolution: 1 µs, 3 significant digits, up to an hour. */
const MICROS = 1000;

/** Summarise samples given in ms; null for no samples. */
export function summarize(samplesMs: readonly number[]): Summary | null {
  if (samplesMs.length === 0) return null;
  const histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
  });
  let negative = 0;
  for (const ms of samplesMs) {
    if (ms < 0) negative++;
    histogram.recordValue(Math.max(1, Math.round(ms * MICROS)));
  }
  const at = (p: number) => round3(histogram.getValueAtPercentile(p) / MICROS);
  const summary: Summary = {
    n: samplesMs.length,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    max: round3(histogram.maxValue / MICROS),
    mean: round3(histogram.mean / MICROS),
    negative,
  };
  histogram.destroy();
  return summary;
}

/** Microseconds are the most a JS timer pair across processes can claim. */
export function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** At most `points` points of the empirical CDF of `samples`, for a chart. */
export function cdfPoints(samples: readonly number[], points = 200): { ms: number; p: number }[] {
  const sorted = [...samples].sort((a, b) => a - b);
  if (sorted.length === 0) return [];
  const step = Math.max(1, Math.floor(sorted.length / points));
  const out: { ms: number; p: number }[] = [];
  for (let i = 0; i < sorted.length; i += step) {
    out.push({ ms: round3(Math.max(sorted[i] ?? 0, 0.001)), p: (i + 1) / sorted.length });
  }
  const last = sorted[sorted.length - 1] ?? 0;
  out.push({ ms: round3(Math.max(last, 0.001)), p: 1 });
  return out;
}
