import { delay } from 'abort-controller-x';

/**
 * Wait for `work` to settle, or for `ms` to pass, whichever comes first; never rejects, and
 * leaves no timer behind. For shutdown steps that must be bounded but whose failure changes
 * nothing (the next step destroys what did not close).
 */
export async function settleWithin(work: Promise<unknown>, ms: number): Promise<void> {
  const stop = new AbortController();
  await Promise.race([work.catch(() => {}), delay(stop.signal, ms).catch(() => {})]);
  stop.abort();
}
