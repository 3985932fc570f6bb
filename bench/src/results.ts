/** The shape of bench/results/*.json: everything a table, a chart or a target is made from. */
import type { Machine } from './machine.js';
import type { ModeName } from './modes.js';
import type { CostResult } from './phases/cost.js';
import type { FairnessResult } from './phases/fairness.js';
import type { PingResult } from './phases/ping.js';
import type { ScaleRun } from './phases/scale.js';
import type { SemaphoreCost, SemaphoreHandoff } from './phases/semaphore.js';
import type { ThroughputResult } from './phases/throughput.js';
import type { UncontendedResult } from './phases/uncontended.js';
import type { MemoryResult } from './protocol.js';
import type { Summary } from './stats.js';

export interface VariantResult {
  readonly id: string;
  readonly library: string;
  readonly version: string;
  readonly settings: string;
  readonly handoff: {
    /** One waiter in another process. */
    readonly pair: Summary | null;
    /** Server calls per counted pair round (see PairHandoffResult); absent from older runs. */
    readonly callsPerHandoff?: number | null;
    /** Waiters spread over four processes, by count. */
    readonly waiters: Record<string, Summary | null>;
  };
  readonly throughput: ThroughputResult[];
  readonly uncontended: UncontendedResult;
  readonly cost: CostResult;
  /** null: not measured (a polling lock: Variant.polls). */
  readonly memory: MemoryResult | null;
  /** null: the library has no signal for a lost lock. */
  readonly lossDetection: Summary | null;
  /**
   * 4 processes × 4 loops and 8 × 1; absent for a variant the mode leaves out of that phase,
   * and from runs made before it.
   */
  readonly fairness?: FairnessResult[];
  /** The pair handoff's empirical CDF, for the chart. */
  readonly handoffCdf: { ms: number; p: number }[];
}

/** A row of the "many servers" table: a variant whose locks live on several servers. */
export interface TopologyResult {
  readonly id: string;
  readonly library: string;
  readonly version: string;
  readonly settings: string;
  /** Where the locks lived, e.g. '3 independent servers' or 'cluster, 3 masters'. */
  readonly servers: string;
  /** One waiter in another process, as the main table's pair handoff. */
  readonly handoff: { readonly pair: Summary | null };
  /** Calls per acquisition counted on every server that holds keys, the counter's left out. */
  readonly throughput: ThroughputResult[];
}

/** A row of the contention table that no other phase measures (CONTENTION_VARIANTS). */
export interface ContentionVariantResult {
  readonly id: string;
  readonly library: string;
  readonly version: string;
  readonly settings: string;
  readonly throughput: ThroughputResult[];
}

/** A row group of the "scale" table: one library at W = 1, 10, 100 (, 1,000) waiters. */
export interface ScaleVariantResult {
  readonly id: string;
  readonly library: string;
  readonly version: string;
  readonly settings: string;
  readonly runs: ScaleRun[];
}

/** A row of the semaphore tables (issue 16). */
export interface SemaphoreVariantResult {
  readonly id: string;
  readonly library: string;
  readonly version: string;
  readonly settings: string;
  /** Limit 1 and limit 4, every permit held and one waiter. */
  readonly handoff: SemaphoreHandoff[];
  /** The contention loop at limit 4, by worker count; overLimit and mostInside set. */
  readonly throughput: ThroughputResult[];
  readonly cost: SemaphoreCost;
}

export interface Target {
  readonly target: string;
  readonly value: number;
  readonly limit: number;
  readonly met: boolean;
  /**
   * Set for issue 13's targets: the target in a few words with its value, bound and limit
   * ("handoff p50 against bare-node-redis's (ms): 0.61 ≤ 0.45"), for the report's line of them.
   */
  readonly issue13?: string;
}

export interface Results {
  readonly command: string;
  readonly mode: ModeName;
  readonly startedAt: string;
  readonly durationSeconds: number;
  /** Where the time went, for keeping the modes within their budgets. */
  readonly phaseSeconds: Record<string, number>;
  readonly server: string;
  readonly machine: Machine;
  readonly ping: PingResult;
  readonly variants: VariantResult[];
  /** Contention rows only (CONTENTION_VARIANTS); absent from older runs. */
  readonly contention?: ContentionVariantResult[];
  /** Absent from runs made before the "many servers" phase; empty when --only left it out. */
  readonly topologies?: TopologyResult[];
  /** Absent from runs made before the "scale" phase; empty when --only left it out. */
  readonly scale?: ScaleVariantResult[];
  /** Absent from runs made before the semaphore phase; empty when --only left it out. */
  readonly semaphore?: SemaphoreVariantResult[];
  readonly targets: Target[];
}
