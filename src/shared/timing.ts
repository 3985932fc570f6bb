/** setTimeout's largest delay; a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `work`, or a rejection with `timedOut()` once `ms` have passed; leaves no timer behind. A
 * plain timer, not an abort signal: it bounds every Redis request.
 */
export async function within<T>(work: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Wait for `work` to settle, or for `ms` to pass, whichever comes first; never rejects, and
 * leaves no timer behind. For shutdown steps that must be bounded but whose failure changes
 * nothing (the next step destroys what did not close).
 */
export async function settleWithin(work: Promise<unknown>, ms: number): Promise<void> {
  await within(work, ms, () => new Error(`did not settle within ${ms} ms`)).catch(() => {});
}
