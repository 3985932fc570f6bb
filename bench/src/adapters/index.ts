/** Every library variant, in the order of the tables. */

import { semaphoreDefault, semaphoreFast } from './redis-semaphore.js';
import { redlockDefault, redlockFast } from './redlock.js';
import { sesameRedlock } from './sesame-redlock.js';
import { tracklockM1, tracklockM2, tracklockM2Direct } from './tracklock.js';
import type { Variant } from './types.js';

export const VARIANTS: readonly Variant[] = [
  tracklockM1,
  tracklockM2,
  tracklockM2Direct,
  redlockDefault,
  redlockFast,
  sesameRedlock,
  semaphoreDefault,
  semaphoreFast,
];

export function variantById(id: string): Variant {
  const variant = VARIANTS.find((v) => v.id === id);
  if (!variant) throw new Error(`unknown variant '${id}'`);
  return variant;
}
