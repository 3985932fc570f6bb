/**
 * Every library variant, in the order of the tables: the main tables on one server, and the
 * "many servers" table, kept apart so its rows never change the main ones. The bare push locks
 * stand right after tracklock (pushing, then polling: issue 14): the floor its own idea reaches
 * on a plain client.
 */

import { bareIoredis } from './bare-ioredis.js';
import { bareNodeRedis } from './bare-node-redis.js';
import {
  semaphoreDefault,
  semaphoreFast,
  semaphoreSemDefault,
  semaphoreSemFast,
} from './redis-semaphore.js';
import { redlockDefault, redlockFast, redlockFastNodes3, redlockNodes3 } from './redlock.js';
import { sesameRedlock } from './sesame-redlock.js';
import {
  tracklockCluster3,
  tracklockM1,
  tracklockM2,
  tracklockM2LocalInf,
  tracklockM2Poll,
  tracklockM2Poll10,
  tracklockM2Race,
  tracklockM2Traced,
  tracklockNodes3,
  tracklockScale,
  tracklockScaleRace,
  tracklockSemaphore,
} from './tracklock.js';
import type { SemaphoreVariant, Variant } from './types.js';

export const VARIANTS: readonly Variant[] = [
  tracklockM1,
  tracklockM2,
  tracklockM2Traced,
  tracklockM2Race,
  tracklockM2Poll,
  tracklockM2Poll10,
  bareNodeRedis,
  bareIoredis,
  redlockDefault,
  redlockFast,
  sesameRedlock,
  semaphoreDefault,
  semaphoreFast,
];

/** Each declares its `topology`: the coordinator starts those servers and passes them. */
export const TOPOLOGY_VARIANTS: readonly Variant[] = [
  tracklockNodes3,
  tracklockCluster3,
  redlockNodes3,
  redlockFastNodes3,
];

/**
 * Rows of the contention table only (1, 4 and 16 workers), the other phases left out: a
 * setting whose point is throughput under contention.
 */
export const CONTENTION_VARIANTS: readonly Variant[] = [tracklockM2LocalInf];

/**
 * The scale table: tracklock at issue 13's settings, queueing (its default) and racing (0.2's
 * behaviour), and the pollers whose waiting the table compares with it (10 ms, a rate users
 * pick for latency; redlock's 200 ms default would take a fifth of a second per handoff round).
 */
export const SCALE_VARIANTS: readonly Variant[] = [
  tracklockScale,
  tracklockScaleRace,
  semaphoreDefault,
  redlockFast,
];

/**
 * The semaphore tables (issue 16): tracklock's semaphore against redis-semaphore's `Semaphore`
 * at its default polling and at its fastest. `--only semaphore` picks them all.
 */
export const SEMAPHORE_VARIANTS: readonly SemaphoreVariant[] = [
  tracklockSemaphore,
  semaphoreSemDefault,
  semaphoreSemFast,
];

/** The `--only` word for every semaphore row. */
export const SEMAPHORE_GROUP = 'semaphore';

/** Every variant of every table, each id once. */
export const ALL_VARIANTS: readonly Variant[] = [
  ...new Map(
    [...VARIANTS, ...CONTENTION_VARIANTS, ...TOPOLOGY_VARIANTS, ...SCALE_VARIANTS].map((v) => [
      v.id,
      v,
    ]),
  ).values(),
];

export function variantById(id: string): Variant {
  const variant = ALL_VARIANTS.find((v) => v.id === id);
  if (!variant) throw new Error(`unknown variant '${id}'`);
  return variant;
}

export function semaphoreVariantById(id: string): SemaphoreVariant {
  const variant = SEMAPHORE_VARIANTS.find((v) => v.id === id);
  if (!variant) throw new Error(`unknown semaphore variant '${id}'`);
  return variant;
}
