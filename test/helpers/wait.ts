/**
 * Bounded waits for the tests. Wait for a state with `until`; `sleep` only for a time that
 * matters itself (a window in which something must NOT happen, or a schedule of faults).
 */

/** The options of one bounded call: `{ signal }` that aborts after `ms` (default 5 s). */
export const bound = (ms = 5000) => ({ signal: AbortSignal.timeout(ms) });

/**
 * Resolve when `predicate` holds, polling every 5 ms; reject, naming the predicate, when
 * `signal` aborts. The default bound is generous: the tests run on a loaded 2-core machine.
 */
export async function until(
  predicate: () => boolean | Promise<boolean>,
  signal: AbortSignal = AbortSignal.timeout(10_000),
): Promise<void> {
  while (!(await predicate())) {
    if (signal.aborted) {
      throw new Error(`not true within the bound: ${predicate}`, { cause: signal.reason });
    }
    await sleep(5);
  }
}

/** Resolve with the signal's abort reason; reject if it has not aborted within `ms`. */
export function abortedWithin(signal: AbortSignal, ms: number): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`signal did not abort within ${ms} ms`)), ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve(signal.reason);
      },
      { once: true },
    );
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `promise`, and whether it has resolved yet: for a test that checks a wait is still on. */
export function watched<T>(promise: Promise<T>): {
  readonly promise: Promise<T>;
  resolved(): boolean;
} {
  let resolved = false;
  return {
    promise: promise.then((value) => {
      resolved = true;
      return value;
    }),
    resolved: () => resolved,
  };
}
