import { dockerEngine, startContainer } from './container.js';
import { startRedisProcess } from './local.js';

/**
 * Where the server of {@link startRedis} comes from: the one at `REDIS_URL` (`'env'`), a
 * container through testcontainers (`'container'`), or a `redis-server` child process
 * (`'local'`).
 */
export type RedisSource = 'env' | 'container' | 'local';

export interface StartRedisOptions {
  /**
   * Where the server comes from. `'env'`: the server at `REDIS_URL`, used as it is and never
   * stopped, paused nor restarted. `'container'`: a `redis:7-alpine` container (needs a Docker
   * engine and the `testcontainers` package). `'local'`: `redis-server` from PATH (or
   * `REDIS_SERVER_BIN`) as a child process on a free port of 127.0.0.1.
   * @default `'env'` when REDIS_URL is set, else `'container'` when a Docker engine answers,
   *   else `'local'`
   */
  readonly source?: RedisSource | undefined;
  /**
   * Extra `redis-server` arguments, after the defaults (no RDB, no AOF), e.g.
   * `['--maxmemory', '10mb']`. Refused with the `'env'` source: they cannot apply to a server
   * started elsewhere.
   * @default []
   */
  readonly args?: readonly string[] | undefined;
  /**
   * How long the server may take to accept connections, on start and on each restart. Pulling
   * a container's image comes before and is not counted.
   * @default 10000
   */
  readonly startTimeoutMs?: number | undefined;
}

/**
 * A Redis for tests. Stop it when done (`stop()`, or `await using`): a server this started then
 * leaves no process, handle nor listener behind.
 */
export interface TestRedis extends AsyncDisposable {
  /** `redis://host:port` of the server; the same after `restart()`. */
  readonly url: string;
  /** Where the server came from. */
  readonly source: RedisSource;
  /**
   * Freeze the server: it keeps its connections but answers nothing until `resume()` (SIGSTOP
   * of the process; `docker pause` of a container). Rejects for the `'env'` source.
   */
  pause(): Promise<void>;
  /** Let a paused server run again (SIGCONT; `docker unpause`). Rejects for `'env'`. */
  resume(): Promise<void>;
  /**
   * Crash the server and start it again on the same port, resolved once it accepts
   * connections: every key is lost, every connection dropped. Rejects for `'env'`, after
   * `stop()`, and when `stop()` is called before it is done.
   */
  restart(): Promise<void>;
  /**
   * Kill the server and wait until it is gone (during a `restart()`, the restarted one). For
   * `'env'`, nothing: the server is not ours.
   */
  stop(): Promise<void>;
}

/** What a source gives: the controls of its server. */
export type ServerControls = Omit<TestRedis, 'source' | typeof Symbol.asyncDispose>;

const SOURCES: readonly RedisSource[] = ['env', 'container', 'local'];
const DEFAULT_START_TIMEOUT_MS = 10_000;

/**
 * A Redis server for a test: the one at `REDIS_URL` when set, else a container when a Docker
 * engine answers, else a `redis-server` child process on a free port (see `options.source`).
 * Resolves once the server accepts connections; rejects, saying what is missing, when the
 * source cannot give one.
 */
export async function startRedis(options: StartRedisOptions = {}): Promise<TestRedis> {
  const { source, args = [], startTimeoutMs = DEFAULT_START_TIMEOUT_MS } = options;
  if (source !== undefined && !SOURCES.includes(source)) {
    throw new TypeError(`source must be 'env', 'container' or 'local', not ${String(source)}`);
  }
  if (!Array.isArray(args) || !args.every((arg) => typeof arg === 'string')) {
    throw new TypeError('args must be an array of strings');
  }
  if (typeof startTimeoutMs !== 'number' || !(startTimeoutMs > 0 && startTimeoutMs < Infinity)) {
    throw new RangeError(`startTimeoutMs must be a positive number of ms, not ${startTimeoutMs}`);
  }
  const chosen =
    source ??
    (process.env.REDIS_URL ? 'env' : (await dockerEngine()) === undefined ? 'container' : 'local');
  const controls = stoppedForGood(await sourced(chosen, args, startTimeoutMs));
  return { ...controls, source: chosen, [Symbol.asyncDispose]: controls.stop };
}

/**
 * Once `stop()` has been called, `restart()` rejects: it would start a server that nothing
 * stops (a test body still running after its after-hook, or after `await using`).
 */
function stoppedForGood(controls: ServerControls): ServerControls {
  let stopped = false;
  return {
    ...controls,
    restart: async () => {
      if (stopped) {
        throw new Error(
          'restart() after stop(): this server is stopped for good; startRedis() again',
        );
      }
      await controls.restart();
    },
    stop: async () => {
      stopped = true;
      await controls.stop();
    },
  };
}

async function sourced(
  source: RedisSource,
  args: readonly string[],
  startTimeoutMs: number,
): Promise<ServerControls> {
  if (source === 'env') return fromEnv(args);
  if (source === 'container') {
    const why = await dockerEngine();
    if (why !== undefined) {
      throw new Error(`the 'container' source needs a Docker engine, and none answered: ${why}`);
    }
    return startContainer(args, startTimeoutMs);
  }
  const server = await startRedisProcess({ args, timeoutMs: startTimeoutMs });
  return {
    url: `redis://127.0.0.1:${server.port}`,
    pause: async () => server.pause(),
    resume: async () => server.resume(),
    restart: () => server.restart(),
    stop: () => server.stop(),
  };
}

/** The server at REDIS_URL: not ours, so it is never stopped, frozen nor crashed. */
function fromEnv(args: readonly string[]): ServerControls {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error("the 'env' source needs REDIS_URL to be set");
  if (args.length > 0) {
    throw new TypeError(
      "args cannot apply to the server at REDIS_URL, which startRedis did not start: pass source: 'local' or 'container' to start one with them",
    );
  }
  const notOurs = (operation: string) => async () => {
    throw new Error(
      `${operation}() needs a server that startRedis started, and this one is the server at REDIS_URL: pass { source: 'local' } (or 'container') to start one of its own`,
    );
  };
  return {
    url,
    pause: notOurs('pause'),
    resume: notOurs('resume'),
    restart: notOurs('restart'),
    stop: async () => {},
  };
}
