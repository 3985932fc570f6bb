import { type RedisProcess, startRedisProcess } from '../../src/testing/local.js';

// The server process and its pieces live in src/testing (tracklock/testing's `startRedis` runs
// on them); what is only for these tests (TLS, a fixed port, the PID) is added here.
export { freePort, freePorts } from '../../src/testing/free-port.js';
export { spawnUntil } from '../../src/testing/spawn.js';

/** A throwaway `redis-server` child process (see `RedisProcess`), and its URL. */
export interface RedisServer extends RedisProcess {
  readonly url: string;
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
  const server = await startRedisProcess({
    port: options.port,
    listen: tls
      ? (port) =>
          ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.certFile]
            .concat(['--tls-key-file', tls.keyFile, '--tls-ca-cert-file', tls.caFile])
            .concat(['--tls-auth-clients', 'no'])
      : undefined,
    args: options.args,
    timeoutMs: options.timeoutMs ?? 10_000,
  });
  // Onto the process object itself: its `pid` and `running` are getters.
  return Object.assign(server, { url: `${tls ? 'rediss' : 'redis'}://127.0.0.1:${server.port}` });
}
