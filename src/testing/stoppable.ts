/** A server's `restart` and `stop`, ordered by {@link stoppable}. */
export interface Stoppable {
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `restart` and `stop` of one server such that, once `stop()` resolves, nothing of it runs. A
 * `stop()` during a `restart()` (an after-hook of a test that timed out mid-restart) would
 * otherwise stop the old server while the new one is still starting, and leave that one up:
 * instead it waits for the restart and stops what it started, and that restart rejects.
 */
export function stoppable(restart: () => Promise<void>, stop: () => Promise<void>): Stoppable {
  let restarting: Promise<unknown> = Promise.resolve();
  let stops = 0;
  return {
    restart: async () => {
      const stopsBefore = stops;
      const restarted = restart();
      restarting = Promise.all([restarting, restarted.catch(() => {})]);
      await restarted;
      if (stops !== stopsBefore) {
        throw new Error('stop() was called during restart(): the server it started is stopped');
      }
    },
    stop: async () => {
      stops++;
      await restarting; // as bounded as each restart is (by its start timeout)
      await stop();
    },
  };
}
