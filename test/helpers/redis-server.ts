import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { killOnExit } from './reaper.js';

/**
 * A throwaway `redis-server` child process on a loopback port, stopped by PID. `restart()` runs
 * a new process on the same port and args; `pid`, `pause`, `resume` and `stop` then refer to it.
 */
export interface RedisServer {
  readonly url: string;
  readonly port: number;
  /** PID of the current process: it changes on `restart()`. */
  readonly pid: number;
  /** Whether the current process has not exited yet (it may be paused). */
  readonly running: boolean;
  /** SIGSTOP: the server stops answering but keeps its sockets open. */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
  /** SIGKILL and wait for the exit. Nothing is kept: the server runs without persistence. */
  stop(): Promise<void>;
  /**
   * Stop (if running) and start a new process on the same port with the same args, resolved once
   * it accepts connections: a crash and restart. Data is lost; a cluster node keeps its
   * cluster-config-file, so it rejoins as the same node.
   */
  restart(): Promise<void>;
}

export interface RedisServerOptions {
  /** Listen on this port; default a free one picked by the kernel. */
  port?: number | undefined;
  /** Appended to the defaults (`--port`, `--bind 127.0.0.1`, no RDB, no AOF). */
  args?: string[] | undefined;
  /** Bound on each start (and restart), retries included. Default 10 s. */
  timeoutMs?: number | undefined;
  /**
   * Listen with TLS only (`--port 0`, `--tls-port`), with this certificate; clients are not
   * asked for one. `url` is then `rediss://`.
   */
  tls?: ServerTls | undefined;
}

/** The files of a TLS server (see tls.ts `makeCertificates`). */
export interface ServerTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
}

/** Ask the kernel for a free port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port as number;
}

/** `count` distinct free ports on 127.0.0.1, held open together so none is handed out twice. */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(
      servers.map((server) =>
        server.listening ? new Promise((resolve) => server.close(resolve)) : undefined,
      ),
    );
  }
}

/**
 * Start `redis-server` (from PATH, or REDIS_SERVER_BIN) with no persistence on a free port (or
 * `options.port`) and resolve once it accepts connections. Bounded: rejects after `timeoutMs`.
 */
export function startRedisServer(extraArgs?: string[], timeoutMs?: number): Promise<RedisServer>;
export function startRedisServer(options: RedisServerOptions): Promise<RedisServer>;
export async function startRedisServer(
  argsOrOptions: string[] | RedisServerOptions = [],
  timeoutMs = 10_000,
): Promise<RedisServer> {
  const options: RedisServerOptions = Array.isArray(argsOrOptions)
    ? { args: argsOrOptions, timeoutMs }
    : argsOrOptions;
  const { tls } = options;
  const extraArgs = options.args ?? [];
  const listen = (port: number) =>
    tls
      ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.certFile]
          .concat(['--tls-key-file', tls.keyFile, '--tls-ca-cert-file', tls.caFile])
          .concat(['--tls-auth-clients', 'no'])
      : ['--port', String(port)];
  const timeout = options.timeoutMs ?? 10_000;
  const started = await launch(options.port, [listen, extraArgs], timeout);
  const { port } = started;
  let current = started.process;

  const stop = async () => {
    const { child, exited } = current;
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.ref(); // keep the loop alive until the exit is seen
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await exited;
  };
  return {
    url: `${tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    port,
    get pid() {
      return current.child.pid as number;
    },
    get running() {
      return current.child.exitCode === null && current.child.signalCode === null;
    },
    pause: () => {
      current.child.kill('SIGSTOP');
    },
    resume: () => {
      current.child.kill('SIGCONT');
    },
    stop,
    restart: async () => {
      await stop();
      current = (await launch(port, [listen, extraArgs], timeout)).process;
    },
  };
}

interface Process {
  child: ChildProcess;
  exited: Promise<unknown>;
}

class AddressInUse extends Error {}

/** How the server listens on a port, and the rest of its args. */
type Args = [listen: (port: number) => string[], extra: string[]];

/**
 * Spawn until one process is ready. A port in use (a race with another process, or a killed
 * server's port not yet released) is retried: on a new free port when none was asked for, else
 * on the same port after a short delay. All of it within `timeoutMs`.
 */
async function launch(
  wanted: number | undefined,
  args: Args,
  timeoutMs: number,
): Promise<{ port: number; process: Process }> {
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

async function spawnOnce(
  port: number,
  [listen, extraArgs]: Args,
  timeoutMs: number,
): Promise<Process> {
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  return spawnUntil(
    bin,
    [...listen(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs],
    'Ready to accept connections',
    timeoutMs,
    {
      label: 'redis-server',
      notRun: (error) =>
        new Error(
          `could not run ${bin}: ${error.message} (install redis-server or set REDIS_SERVER_BIN)`,
        ),
      exited: (code, output) => {
        const message = `redis-server on port ${port} exited with ${code}:\n${output}`;
        return output.includes('Address already in use')
          ? new AddressInUse(message)
          : new Error(message);
      },
    },
  );
}

/**
 * Spawn `bin` with `args` and resolve once its stdout shows `readyText`; reject (killing it)
 * after `timeoutMs`, or with `errors`' error when it cannot run or exits first. The child does
 * not outlive the test process, nor keep it alive.
 */
export async function spawnUntil(
  bin: string,
  args: readonly string[],
  readyText: string,
  timeoutMs: number,
  errors: {
    readonly label: string;
    readonly notRun: (error: Error) => Error;
    readonly exited: (code: number | null, output: string) => Error;
  },
): Promise<Process> {
  const child: ChildProcess = spawn(bin, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Do not let the process outlive the test process, even if it dies while this waits.
  killOnExit(child);
  const exited = once(child, 'exit');
  exited.catch(() => {}); // 'error' instead of 'exit' when the binary is missing: handled below
  let output = '';
  const collect = (chunk: string) => {
    output += chunk;
  };
  child.stdout?.setEncoding('utf8').on('data', collect);
  child.stderr?.setEncoding('utf8').on('data', collect);
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${errors.label} did not start in ${timeoutMs} ms:\n${output}`)),
      Math.max(0, timeoutMs),
    );
    const check = () => {
      if (output.includes(readyText)) {
        clearTimeout(timer);
        child.stdout?.off('data', check);
        resolve();
      }
    };
    child.stdout?.on('data', check);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(errors.notRun(error));
    });
    // 'close', not 'exit': by then all of the output has been read.
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(errors.exited(code, output));
    });
  });
  try {
    await ready;
  } catch (error) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      child.kill('SIGKILL');
      await exited;
    }
    throw error;
  }
  // Do not let a forgotten process keep the test process alive.
  child.unref();
  child.stdout?.destroy();
  child.stderr?.destroy();
  return { child, exited };
}
