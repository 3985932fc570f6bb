import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './free-port.js';
import { type Spawned, spawnUntil } from './spawn.js';
import { stoppable } from './stoppable.js';

/**
 * A `redis-server` child process on a loopback port, stopped by PID. `restart()` runs a new
 * process on the same port and args; `pid`, `pause`, `resume` and `stop` then refer to it.
 */
export interface RedisProcess {
  readonly port: number;
  /** PID of the current process: it changes on `restart()`. */
  readonly pid: number;
  /** Whether the current process has not exited yet (it may be paused). */
  readonly running: boolean;
  /** SIGSTOP: the server stops answering but keeps its sockets open. */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
  /**
   * SIGKILL and wait for the exit. Nothing is kept: the server runs without persistence. During
   * a `restart()`, waits for it and kills the new process (that restart then rejects).
   */
  stop(): Promise<void>;
  /**
   * Stop (if running) and start a new process on the same port with the same args, resolved once
   * it accepts connections: a crash and restart, or a start again after `stop()`. Data is lost; a
   * cluster node keeps its cluster-config-file, so it rejoins as the same node.
   */
  restart(): Promise<void>;
}

export interface RedisProcessOptions {
  /** Listen on this port; default a free one picked by the kernel. */
  readonly port?: number | undefined;
  /** How the server listens on `port`; default `--port <port>`. */
  readonly listen?: ((port: number) => string[]) | undefined;
  /** Appended to the defaults (`--bind 127.0.0.1`, no RDB, no AOF). */
  readonly args?: readonly string[] | undefined;
  /** Bound on each start (and restart), retries included. */
  readonly timeoutMs: number;
}

/**
 * Start `redis-server` (from PATH, or REDIS_SERVER_BIN) with no persistence on a free port (or
 * `options.port`) and resolve once it accepts connections. Bounded: rejects after `timeoutMs`.
 */
export async function startRedisProcess(options: RedisProcessOptions): Promise<RedisProcess> {
  const args: Args = [
    options.listen ?? ((port) => ['--port', String(port)]),
    [...(options.args ?? [])],
  ];
  const started = await launch(options.port, args, options.timeoutMs);
  const { port } = started;
  let current = started.process;
  const running = () => current.child.exitCode === null && current.child.signalCode === null;
  const kill = async () => {
    if (!running()) return;
    const { child, exited } = current;
    child.ref(); // keep the loop alive until the exit is seen
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
    // Its handle is freed in the loop's close phase, after the 'exit' event: a caller that
    // counts handles once stop() resolves must find none.
    await sleep(0);
  };
  const { restart, stop } = stoppable(async () => {
    await kill();
    current = (await launch(port, args, options.timeoutMs)).process;
  }, kill);
  return {
    port,
    get pid() {
      return current.child.pid as number;
    },
    get running() {
      return running();
    },
    pause: () => {
      current.child.kill('SIGSTOP');
    },
    resume: () => {
      current.child.kill('SIGCONT');
    },
    stop,
    restart,
  };
}

class AddressInUse extends Error {}

/** How the server listens on a port, and the rest of its args. */
type Args = [listen: (port: number) => string[], extra: readonly string[]];

/**
 * Spawn until one process is ready. A port in use (a race with another process, or a killed
 * server's port not yet released) is retried: on a new free port when none was asked for, else
 * on the same port after a short delay. All of it within `timeoutMs`.
 */
async function launch(
  wanted: number | undefined,
  args: Args,
  timeoutMs: number,
): Promise<{ port: number; process: Spawned }> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 1; ; attempt++) {
    const port = wanted ?? (await freePort());
    try {
      return { port, process: await spawnOnce(port, args, deadline - Date.now()) };
    } catch (error) {
      if (!(error instanceof AddressInUse) || attempt >= 20 || Date.now() + 100 >= deadline) {
        throw error;
      }
      await sleep(100);
    }
  }
}

function spawnOnce(port: number, [listen, extraArgs]: Args, timeoutMs: number): Promise<Spawned> {
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  return spawnUntil(
    bin,
    [...listen(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs],
    'Ready to accept connections',
    timeoutMs,
    {
      label: 'redis-server',
      notRun: (error) =>
        error.code === 'ENOENT'
          ? new Error(
              `${bin} was not found${bin.includes('/') ? '' : ' on PATH'}: install Redis (for example \`apt install redis-server\` or \`brew install redis\`), set REDIS_SERVER_BIN to its redis-server, or set REDIS_URL to a server to use`,
              { cause: error },
            )
          : new Error(`could not run ${bin}: ${error.message}`, { cause: error }),
      exited: (code, output) => {
        const message = `redis-server on port ${port} exited with ${code}:\n${output}`;
        return output.includes('Address already in use')
          ? new AddressInUse(message)
          : new Error(message);
      },
    },
  );
}
