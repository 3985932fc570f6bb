/** How much each mode measures: its sizes decide how long a run takes. */
export type ModeName = 'smoke' | 'default' | 'full';

export interface Mode {
  readonly name: ModeName;
  readonly pingSamples: number;
  /** PINGs each after an idle pause like a handoff round's: what each leg of a handoff pays. */
  readonly idlePingSamples: number;
  /** Two-process handoff: rounds per variant, and a time cap for the slow pollers. */
  readonly handoffRounds: number;
  readonly handoffMaxMs: number;
  readonly handoffWarmupRounds: number;
  /** Many-waiter handoff: time per variant and waiter count. */
  readonly multiMs: number;
  readonly throughputMs: number;
  readonly uncontendedMs: number;
  /** Idle cost: whole extension periods counted (0: a fixed short window, smoke only). */
  readonly idlePeriods: number;
  readonly memoryCount: number;
  /** How long the waiters wait before the heap is read: all have made their first attempt. */
  readonly memorySettleMs: number;
  readonly lossRounds: number;
  /** Scale: waiter counts; extension periods in the counting window; handoff rounds and their cap. */
  readonly scaleWaiters: readonly number[];
  readonly scalePeriods: number;
  readonly scaleRounds: number;
  readonly scaleMaxMs: number;
  /** Fairness: time per variant and shape (4 processes × 4 loops, 8 × 1), and which variants. */
  readonly fairnessMs: number;
  readonly fairnessVariants: readonly string[];
  /**
   * Semaphore cost: whole extension periods of tracklock's (extendIntervalMs) per window, with 1
   * and with 16 waiters (0: a fixed short window, smoke only). Its handoff rounds and
   * throughput runs take the mutex phases' sizes.
   */
  readonly semaphoreCostPeriods: number;
}

/**
 * tracklock's defaults (waiters queue) and its racing waiters (0.2's behaviour) against the
 * pollers at their default and fastest.
 */
const FAIRNESS_VARIANTS = [
  'tracklock-m2',
  'tracklock-m2-race',
  'redlock-fast',
  'redis-semaphore',
  'redis-semaphore-1ms',
];

export const MODES: Record<ModeName, Mode> = {
  smoke: {
    name: 'smoke',
    pingSamples: 300,
    idlePingSamples: 20,
    handoffRounds: 30,
    handoffMaxMs: 800,
    handoffWarmupRounds: 5,
    multiMs: 250,
    throughputMs: 200,
    uncontendedMs: 200,
    idlePeriods: 0,
    memoryCount: 1000,
    memorySettleMs: 300,
    lossRounds: 5,
    scaleWaiters: [1, 10],
    scalePeriods: 2,
    scaleRounds: 8,
    scaleMaxMs: 1000,
    fairnessMs: 1000,
    fairnessVariants: ['tracklock-m2', 'tracklock-m2-race', 'redis-semaphore'],
    semaphoreCostPeriods: 0,
  },
  default: {
    name: 'default',
    pingSamples: 2000,
    idlePingSamples: 100,
    handoffRounds: 120,
    handoffMaxMs: 2000,
    handoffWarmupRounds: 20,
    multiMs: 600,
    throughputMs: 500,
    uncontendedMs: 300,
    idlePeriods: 1,
    memoryCount: 10_000,
    memorySettleMs: 500,
    lossRounds: 30,
    scaleWaiters: [1, 10, 100],
    scalePeriods: 4,
    scaleRounds: 30,
    scaleMaxMs: 2500,
    fairnessMs: 2000,
    fairnessVariants: FAIRNESS_VARIANTS,
    semaphoreCostPeriods: 1,
  },
  full: {
    name: 'full',
    pingSamples: 10_000,
    idlePingSamples: 300,
    handoffRounds: 1000,
    handoffMaxMs: 20_000,
    handoffWarmupRounds: 50,
    multiMs: 4000,
    throughputMs: 4000,
    uncontendedMs: 2000,
    idlePeriods: 3,
    memoryCount: 10_000,
    memorySettleMs: 1000,
    lossRounds: 200,
    scaleWaiters: [1, 10, 100, 1000],
    scalePeriods: 8,
    scaleRounds: 200,
    scaleMaxMs: 15_000,
    fairnessMs: 5000,
    fairnessVariants: FAIRNESS_VARIANTS,
    semaphoreCostPeriods: 3,
  },
};

/** A smoke run's fixed idle window, shorter than any extension period: it only exercises. */
export const SMOKE_IDLE_WINDOW_MS = 2000;
/** A smoke run's fixed semaphore cost window: it only exercises. */
export const SMOKE_SEMAPHORE_WINDOW_MS = 500;
