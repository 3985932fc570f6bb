import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { killOnExit } from './reaper.js';

/** A throwaway `redis-server` child process on a free loopback port, stopped by PID. */
export interface RedisServer {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  /** SIGSTOP: the server stops answering but keeps its sockets open. */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
  /** SIGKILL and wait for the exit. */
  stop(): Promise<void>;
}

/** Ask the kernel for a free port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/**
 * Start `redis-server` (from PATH, or REDIS_SERVER_BIN) with no persistence on a free port and
 * resolve once it accepts connections. Bounded: rejects after `timeoutMs`.
 */
export async function startRedisServer(
  extraArgs: string[] = [],
  timeoutMs = 10_000,
): Promise<RedisServer> {
  const port = await freePort();
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  const child: ChildProcess = spawn(
    bin,
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      ...extraArgs,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`redis-server did not start in ${timeoutMs} ms:\n${output}`)),
      timeoutMs,
    );
    const check = () => {
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        child.stdout?.off('data', check);
        resolve();
      }
    };
    child.stdout?.on('data', check);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(
        new Error(
          `could not run ${bin}: ${error.message} (install redis-server or set REDIS_SERVER_BIN)`,
        ),
      );
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}:\n${output}`));
    });
  });
  try {
    await ready;
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  const pid = child.pid as number;
  const exited = once(child, 'exit');
  // Do not let a forgotten server keep the test process alive, nor outlive it.
  child.unref();
  child.stdout?.destroy();
  child.stderr?.destroy();
  killOnExit(child);
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid,
    pause: () => child.kill('SIGSTOP'),
    resume: () => child.kill('SIGCONT'),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.ref(); // keep the loop alive until the exit is seen
      child.kill('SIGCONT');
      child.kill('SIGKILL');
      await exited;
    },
  };
}
