import { addAbortListener } from 'node:events';

/**
 * Listening to signals that are not ours. A caller may share one signal among any number of
 * calls (a shutdown signal): a listener per call would pass Node's limit of 10 per
 * EventTarget and print a "possible memory leak" warning. So one listener per signal serves
 * every call, and is removed when the last call unhooks.
 */
interface Fanout {
  readonly listeners: Set<() => void>;
  /** The one listener on the signal; disposing it takes it off. */
  readonly listening: Disposable;
}

const fanouts = new WeakMap<AbortSignal, Fanout>();

/** Call `listener` once `signal` aborts (at once if it has); returns the unhook. */
export function onAbort(signal: AbortSignal, listener: () => void): () => void {
  if (signal.aborted) {
    listener();
    return () => {};
  }
  let fanout = fanouts.get(signal);
  if (!fanout) {
    const listeners = new Set<() => void>();
    const fire = () => {
      fanouts.delete(signal);
      for (const each of [...listeners]) {
        // One unhooked by an earlier one is not called; one that throws does not stop the
        // others (as with listeners of their own), and its error is still uncaught.
        if (!listeners.has(each)) continue;
        try {
          each();
        } catch (error) {
          process.nextTick(() => {
            throw error;
          });
        }
      }
    };
    // addAbortListener, not addEventListener: a listener of the caller's own that calls
    // stopImmediatePropagation() on the abort event cannot keep it from us.
    fanout = { listeners, listening: addAbortListener(signal, fire) };
    fanouts.set(signal, fanout);
  }
  const { listeners, listening } = fanout;
  const own = () => listener(); // a listener of its own, so that one added twice unhooks apart
  listeners.add(own);
  return () => {
    if (!listeners.delete(own) || listeners.size > 0) return;
    listening[Symbol.dispose]();
    if (fanouts.get(signal)?.listeners === listeners) fanouts.delete(signal);
  };
}

/**
 * One signal that aborts when any input does, with that input's reason; dispose to unhook.
 *
 * Not `AbortSignal.any`, which cannot be unhooked: each call enters the signal it returns in
 * every input's set of dependants, and on a long-lived input that set grew by one entry per
 * call without shrinking (nodejs/node#55351, "AbortSignal.any() leaks when any of the
 * provided signal is long-lived", seen on Node 22.9). The locker's `#closing` signal is an
 * input of every acquisition for the locker's whole life. Here `dispose` takes the link off
 * at once, and `onAbort` keeps one listener per input however many links share it.
 */
export function linkSignals(signals: readonly (AbortSignal | undefined)[]): {
  signal: AbortSignal;
  dispose: () => void;
} {
  const controller = new AbortController();
  const unhooks = signals
    .filter((signal) => signal !== undefined)
    .map((input) => onAbort(input, () => controller.abort(input.reason)));
  return {
    signal: controller.signal,
    dispose: () => {
      for (const unhook of unhooks) unhook();
    },
  };
}
