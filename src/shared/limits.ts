/**
 * The most permits a semaphore may have: one acquisition adds one member per permit to the
 * holders' sorted set in one script, which Redis cannot interrupt; this bounds that work.
 */
export const MAX_SEMAPHORE_LIMIT = 65_536;

/** A semaphore's `limit`: a whole number of permits, 1 … {@link MAX_SEMAPHORE_LIMIT}. */
export function checkLimit(limit: unknown): asserts limit is number {
  if (typeof limit !== 'number') {
    throw new TypeError(`limit must be a number of permits, got ${typeof limit}`);
  }
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_SEMAPHORE_LIMIT) {
    throw new RangeError(
      `limit must be a whole number of permits from 1 to ${MAX_SEMAPHORE_LIMIT}, got ${limit}`,
    );
  }
}

/** The permits one call takes: a whole number, 1 … the semaphore's `limit`. */
export function checkPermits(permits: unknown, limit: number): asserts permits is number {
  if (typeof permits !== 'number') {
    throw new TypeError(`permits must be a number, got ${typeof permits}`);
  }
  if (!Number.isInteger(permits) || permits < 1 || permits > limit) {
    throw new RangeError(
      `permits must be a whole number from 1 to the semaphore's limit (${limit}), got ${permits}`,
    );
  }
}
