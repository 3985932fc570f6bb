import { NotLockedError } from '../shared/errors.js';
import { checkDuration } from '../shared/resolve-options.js';
import { linkSignals } from '../shared/signals.js';

/** What one acquisition listens to; `dispose` clears the timer and unhooks the inputs. */
export interface AcquisitionSignals {
  /** Aborts when the locker closes or the caller's signal aborts: stops everything. */
  readonly signal: AbortSignal;
  /** Aborts as `signal` does, and also when `waitTimeoutMs` runs out: stops the waiting. */
  readonly waiting: AbortSignal;
  dispose(): void;
}

/**
 * Check the caller's `signal` and `waitTimeoutMs`, and start listening. Only the sleeps between
 * attempts listen to the timeout: an attempt in flight completes, and the held lock listens to
 * the parent alone.
 */
export function listen(
  closing: AbortSignal,
  name: string,
  parent: AbortSignal | undefined,
  waitTimeoutMs: number | undefined,
): AcquisitionSignals {
  if (parent !== undefined && !(parent instanceof AbortSignal)) {
    throw new TypeError('options.signal must be an AbortSignal');
  }
  if (waitTimeoutMs !== undefined) checkDuration('waitTimeoutMs', waitTimeoutMs, 0);
  const waitTimeout = new AbortController();
  const timer =
    waitTimeoutMs === undefined
      ? undefined
      : setTimeout(() => waitTimeout.abort(new NotLockedError(name, waitTimeoutMs)), waitTimeoutMs);
  const stop = linkSignals([closing, parent]);
  const stopWaiting = linkSignals([stop.signal, waitTimeout.signal]);
  return {
    signal: stop.signal,
    waiting: stopWaiting.signal,
    dispose: () => {
      clearTimeout(timer);
      stop.dispose();
      stopWaiting.dispose();
    },
  };
}
