import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient } from '@redis/client';
import { poll, removeOnExit } from './redis-cluster.js';
import { freePorts, type RedisServer, spawnUntil, startRedisServer } from './redis-server.js';

export interface RedisSentinelOptions {
  /** The master's name the sentinels monitor. Default 'locks'. */
  name?: string | undefined;
  /** `sentinel down-after-milliseconds`. Default 1000. */
  downAfterMs?: number | undefined;
  /** Bound on the whole start, and the default bound of `failover`. Default 20 s. */
  timeoutMs?: number | undefined;
}

/**
 * A primary, one replica of it and 3 sentinels (quorum 2), each a child process on a free
 * loopback port, stopped by PID. The sentinels know the replica and each other from their
 * config files (`known-replica`, `known-sentinel`), so a failover can start as soon as the
 * primary is down, not after 10 s of INFO and 2 s of hellos.
 */
export interface RedisSentinelSet {
  readonly name: string;
  /** The primary at start. */
  readonly primary: RedisServer;
  /** Its replica at start. */
  readonly replica: RedisServer;
  /** For node-redis' `createSentinel({ sentinelRootNodes })`. */
  readonly sentinelRootNodes: { host: string; port: number }[];
  /** The port of the master that the first sentinel that answers names now. */
  masterPort(): Promise<number>;
  /**
   * Wait until every running sentinel names a master other than `from`, and that server says
   * it is a master. Bounded by `timeoutMs`.
   */
  failedOver(from: number, timeoutMs?: number | undefined): Promise<number>;
  /** Stop every process and remove the config files. */
  stop(): Promise<void>;
}

const COMMAND_TIMEOUT_MS = 1_000;

export async function startRedisSentinel(
  options: RedisSentinelOptions = {},
): Promise<RedisSentinelSet> {
  const name = options.name ?? 'locks';
  const downAfterMs = options.downAfterMs ?? 1000;
  const timeoutMs = options.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  const dir = await mkdtemp(join(tmpdir(), 'tracklock-sentinel-'));
  removeOnExit(dir);
  const servers: RedisServer[] = [];
  const sentinels: Sentinel[] = [];
  const stop = async () => {
    await Promise.allSettled([
      ...servers.map((server) => server.stop()),
      ...sentinels.map((sentinel) => sentinel.stop()),
    ]);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // A replica syncs at once (no diskless-sync delay) and pings its master every second.
    // A replica keeps the primary's snapshot in its working directory: the temp one, not the
    // repository.
    const replicationArgs = [
      ...['--repl-diskless-sync-delay', '0', '--repl-ping-replica-period', '1'],
      ...['--dir', dir],
    ];
    const primary = await startRedisServer({ args: replicationArgs, timeoutMs: left(deadline) });
    servers.push(primary);
    const replica = await startRedisServer({
      args: [...replicationArgs, '--replicaof', '127.0.0.1', String(primary.port)],
      timeoutMs: left(deadline),
    });
    servers.push(replica);
    await poll(deadline, 'the replica to sync', async () =>
      /master_link_status:up/.test(String(await ask(replica.port, ['INFO', 'replication']))),
    );
    const ports = await freePorts(3);
    const ids = ports.map(() => randomBytes(20).toString('hex'));
    const started = await Promise.allSettled(
      ports.map(async (port, i) => {
        const file = join(dir, `sentinel-${port}.conf`);
        const others = ports.flatMap((other, j) =>
          j === i ? [] : [`sentinel known-sentinel ${name} 127.0.0.1 ${other} ${ids[j]}`],
        );
        await writeFile(
          file,
          [
            `port ${port}`,
            'bind 127.0.0.1',
            `dir ${dir}`,
            `sentinel myid ${ids[i]}`,
            `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
            `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
            `sentinel failover-timeout ${name} ${3 * downAfterMs}`,
            `sentinel parallel-syncs ${name} 1`,
            `sentinel known-replica ${name} 127.0.0.1 ${replica.port}`,
            ...others,
            '',
          ].join('\n'),
        );
        return startSentinel(file, port, left(deadline));
      }),
    );
    for (const result of started) if (result.status === 'fulfilled') sentinels.push(result.value);
    const failed = started.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    // Every sentinel sees the replica up, so that a failover can promote it.
    await poll(deadline, 'the sentinels to see the replica', async () => {
      const views = await Promise.all(
        ports.map((port) => ask(port, ['SENTINEL', 'REPLICAS', name])),
      );
      // One entry per replica (node-redis maps its fields): "slave" alone, not s_down.
      return views.every((view) =>
        (view as Record<string, string>[]).some((replica) => replica.flags === 'slave'),
      );
    });
    const masterPort = async () => {
      const errors: unknown[] = [];
      for (const sentinel of sentinels) {
        if (!sentinel.running) continue;
        try {
          const reply = await ask(sentinel.port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name]);
          return Number((reply as string[])[1]);
        } catch (error) {
          errors.push(error);
        }
      }
      throw new AggregateError(errors, 'no sentinel answers');
    };
    return {
      name,
      primary,
      replica,
      sentinelRootNodes: ports.map((port) => ({ host: '127.0.0.1', port })),
      masterPort,
      failedOver: async (from, failoverTimeoutMs = timeoutMs) => {
        let master = from;
        await poll(Date.now() + failoverTimeoutMs, `a failover from ${from}`, async () => {
          const named = await Promise.all(
            sentinels
              .filter((sentinel) => sentinel.running)
              .map(async (sentinel) => {
                const reply = await ask(sentinel.port, [
                  'SENTINEL',
                  'GET-MASTER-ADDR-BY-NAME',
                  name,
                ]);
                return Number((reply as string[])[1]);
              }),
          );
          master = named[0] ?? from;
          if (master === from || named.some((port) => port !== master)) return false;
          const role = await ask(master, ['ROLE']);
          return Array.isArray(role) && role[0] === 'master';
        });
        return master;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

interface Sentinel {
  readonly port: number;
  readonly running: boolean;
  stop(): Promise<void>;
}

/** `redis-server <file> --sentinel`, resolved once it monitors the master. */
async function startSentinel(file: string, port: number, timeoutMs: number): Promise<Sentinel> {
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  // The config file must come first; the sentinel rewrites it, hence one file each.
  const { child, exited } = await spawnUntil(
    bin,
    [file, '--sentinel'],
    '+monitor master',
    timeoutMs,
    {
      label: 'sentinel',
      notRun: (error) => error,
      exited: (code, output) =>
        new Error(`sentinel on port ${port} exited with ${code}:\n${output}`),
    },
  );
  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    port,
    get running() {
      return running();
    },
    stop: async () => {
      if (!running()) return;
      child.ref();
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** `args` on the server at `port`, over a connection of its own, bounded. */
async function ask(port: number, args: string[]): Promise<unknown> {
  const client = createClient({
    socket: {
      host: '127.0.0.1',
      port,
      connectTimeout: COMMAND_TIMEOUT_MS,
      reconnectStrategy: false,
    },
  });
  client.on('error', () => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      client.connect().then(() => client.sendCommand(args)),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${args.join(' ')} on ${port} timed out`)),
          COMMAND_TIMEOUT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (client.isOpen) client.destroy();
  }
}

function left(deadline: number): number {
  return Math.max(1, deadline - Date.now());
}
