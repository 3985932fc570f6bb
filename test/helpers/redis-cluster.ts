import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { createClient } from '@redis/client';
import { freePorts, type RedisServer, type ServerTls, startRedisServer } from './redis-server.js';

const execFileAsync = promisify(execFile);

export interface RedisClusterOptions {
  /** At least 3 (`redis-cli --cluster create` refuses fewer). Default 3. */
  masters?: number | undefined;
  /** Default 0. */
  replicasPerMaster?: number | undefined;
  /** Bound on the whole start, and the default bound of `failover` and `settle`. Default 30 s. */
  timeoutMs?: number | undefined;
  /** Every connection over TLS: clients', the cluster bus and replication (see RedisServer). */
  tls?: ServerTls | undefined;
  /** Appended to every node's args (ACL users, say). The helper itself connects as `default`. */
  args?: string[] | undefined;
}

/** A throwaway Redis Cluster of `redis-server` child processes, each a `RedisServer`. */
export interface RedisCluster {
  /** For node-redis `createCluster({ rootNodes })`: every node. */
  readonly rootNodes: { url: string }[];
  /** Every node, masters and replicas, in start order (which are masters is up to the cluster). */
  readonly servers: RedisServer[];
  /** The node serving the slot of `key` now, as the cluster itself sees it. */
  masterFor(key: string): Promise<RedisServer>;
  /** A replica of `master` (the first one listed by the cluster), if it has any. */
  replicaOf(master: RedisServer): Promise<RedisServer | undefined>;
  /**
   * `CLUSTER FAILOVER [FORCE|TAKEOVER]` on `replica` (plain needs its master up; FORCE or
   * TAKEOVER when it is down), then wait until the replica is a master and every running node
   * agrees on the slot map (`settle`). Bounded by `timeoutMs`.
   */
  failover(
    replica: RedisServer,
    mode?: 'force' | 'takeover' | undefined,
    timeoutMs?: number | undefined,
  ): Promise<void>;
  /**
   * Wait until every running node says `cluster_state:ok`, replicas have their replication link
   * up, and all running nodes return the same `CLUSTER SLOTS`, covering all 16384 slots with
   * exactly the running nodes. For instance after a node's `restart()` or `stop()`. Bounded.
   */
  settle(timeoutMs?: number | undefined): Promise<void>;
  /** Stop every server and remove the cluster config files. */
  stop(): Promise<void>;
}

const SLOTS = 16384;
const POLL_MS = 50;
/** Bound on one command to one node: a paused node must not hang a poll. */
const COMMAND_TIMEOUT_MS = 1_000;

/**
 * Start `masters * (1 + replicasPerMaster)` cluster-enabled `redis-server`s, join them with
 * `redis-cli --cluster create` (REDIS_CLI_BIN or PATH) and wait until the slot map is stable
 * (`settle`), so a client connecting right after gets the final map. Bounded by `timeoutMs`;
 * whatever was started is stopped when it fails.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const masters = options.masters ?? 3;
  const replicasPerMaster = options.replicasPerMaster ?? 0;
  const { tls } = options;
  const timeoutMs = options.timeoutMs ?? 30_000;
  if (!Number.isInteger(masters) || masters < 3) throw new Error('a cluster needs 3+ masters');
  if (!Number.isInteger(replicasPerMaster) || replicasPerMaster < 0) {
    throw new Error('replicasPerMaster must be an integer >= 0');
  }
  const deadline = Date.now() + timeoutMs;
  const count = masters * (1 + replicasPerMaster);
  const dir = await mkdtemp(join(tmpdir(), 'tracklock-cluster-'));
  removeOnExit(dir);
  const servers: RedisServer[] = [];
  const nodes = new Nodes(tls && { tls: true, ca: readFileSync(tls.caFile, 'utf8') });
  const stop = async () => {
    nodes.close();
    await Promise.allSettled(servers.map((server) => server.stop()));
    await rm(dir, { recursive: true, force: true });
    dirs.delete(dir);
  };
  try {
    // The cluster bus listens on its own port: the default, port + 10000, can be past 65535
    // for ports from the ephemeral range, or taken. So both come from the kernel.
    const ports = await freePorts(2 * count);
    const started = await Promise.allSettled(
      Array.from({ length: count }, (_, i) => {
        const port = ports[2 * i] as number;
        return startRedisServer({
          port,
          args: [
            '--dir',
            dir,
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            '--cluster-port',
            String(ports[2 * i + 1]),
            '--cluster-node-timeout',
            '1000',
            // A replica syncs at once (not after 5 s waiting for others to share a diskless
            // sync), and its offset leaves 0 within 1 s, not 10: CLUSTER SLOTS hides
            // replicas at offset 0 until the master's first replication PING.
            '--repl-diskless-sync-delay',
            '0',
            '--repl-ping-replica-period',
            '1',
            ...(tls ? ['--tls-cluster', 'yes', '--tls-replication', 'yes'] : []),
            ...(options.args ?? []),
          ],
          tls,
          // Also the bound of each later restart().
          timeoutMs: Math.min(10_000, remaining(deadline)),
        });
      }),
    );
    for (const result of started) if (result.status === 'fulfilled') servers.push(result.value);
    const failed = started.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;

    const cli = process.env.REDIS_CLI_BIN ?? 'redis-cli';
    const args = tls ? ['--tls', '--cacert', tls.caFile] : [];
    args.push('--cluster', 'create', ...servers.map((server) => `127.0.0.1:${server.port}`));
    args.push('--cluster-replicas', String(replicasPerMaster), '--cluster-yes');
    try {
      await execFileAsync(cli, args, { timeout: remaining(deadline), killSignal: 'SIGKILL' });
    } catch (error) {
      const { stdout, stderr, killed, message } = error as Error & {
        stdout?: string;
        stderr?: string;
        killed?: boolean;
      };
      const why = killed ? `timed out after ${timeoutMs} ms in all` : message;
      throw new Error(`${cli} --cluster create failed: ${why}\n${stdout ?? ''}${stderr ?? ''}`);
    }
    await settle(nodes, servers, remaining(deadline));
  } catch (error) {
    await stop();
    throw error;
  }

  const byPort = (port: number) => servers.find((server) => server.port === port);
  return {
    rootNodes: servers.map((server) => ({ url: server.url })),
    servers,
    masterFor: async (key) => {
      const { node, map } = await anyMap(nodes, servers);
      const slot = Number(await nodes.send(node, ['CLUSTER', 'KEYSLOT', key]));
      const range = map.find(([start, end]) => start <= slot && slot <= end);
      const server = range && byPort(range[2]);
      if (!server) throw new Error(`no known node serves slot ${slot} of ${key}`);
      return server;
    },
    replicaOf: async (master) => {
      const { map } = await anyMap(nodes, servers);
      const range = map.find((entry) => entry[2] === master.port);
      const replica = range?.[3];
      return replica === undefined ? undefined : byPort(replica);
    },
    failover: async (replica, mode, failoverTimeoutMs = timeoutMs) => {
      const until = Date.now() + failoverTimeoutMs;
      const command = ['CLUSTER', 'FAILOVER'];
      if (mode) command.push(mode.toUpperCase());
      const reply = await nodes.send(replica, command);
      if (reply !== 'OK') throw new Error(`CLUSTER FAILOVER on ${replica.port}: ${reply}`);
      await poll(until, `${replica.port} to become a master`, async () => {
        const role = await nodes.send(replica, ['ROLE']);
        return Array.isArray(role) && role[0] === 'master';
      });
      await settle(nodes, servers, remaining(until), (map) =>
        map.some((range) => range[2] === replica.port),
      );
    },
    settle: (settleTimeoutMs = timeoutMs) => settle(nodes, servers, settleTimeoutMs),
    stop,
  };
}

/** One `CLUSTER SLOTS` entry, as ports: [start, end, master, ...replicas]. */
type Range = [number, number, number, ...number[]];

/** The socket options of a TLS connection to a node. */
interface NodeTls {
  readonly tls: true;
  readonly ca: string;
}

/** A connection to one node, for the helper's own questions: no reconnection, bounded connect. */
function nodeClient(url: string, tls: NodeTls | undefined) {
  const client = createClient({
    url,
    socket: { connectTimeout: COMMAND_TIMEOUT_MS, reconnectStrategy: false, ...tls },
  });
  client.on('error', () => {});
  return client;
}

/** Connections to the nodes for the helper's own questions, one per server, made on demand. */
class Nodes {
  #clients = new Map<RedisServer, Promise<ReturnType<typeof nodeClient>>>();
  #closed = false;
  readonly #tls: NodeTls | undefined;

  constructor(tls: NodeTls | undefined) {
    this.#tls = tls;
  }

  /** `args` on `server`, bounded by COMMAND_TIMEOUT_MS; a failed connection is made anew. */
  async send(server: RedisServer, args: string[]): Promise<unknown> {
    if (this.#closed) throw new Error('the cluster is stopped');
    let pending = this.#clients.get(server);
    if (!pending) {
      // unref: a forgotten cluster must not keep the test process alive (nor do its servers).
      pending = nodeClient(server.url, this.#tls)
        .connect()
        .then((connected) => {
          connected.unref();
          return connected;
        });
      pending.catch(() => {});
      this.#clients.set(server, pending);
    }
    const client = pending;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        client.then((connected) => connected.sendCommand(args)),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`${args.join(' ')} on ${server.port} timed out`)),
            COMMAND_TIMEOUT_MS,
          );
        }),
      ]);
    } catch (error) {
      if (this.#clients.get(server) === client) this.#clients.delete(server);
      client.then(
        (connected) => connected.destroy(),
        () => {},
      );
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.#closed = true;
    for (const client of this.#clients.values()) {
      client.then(
        (connected) => connected.destroy(),
        () => {},
      );
    }
    this.#clients.clear();
  }
}

/** The slot map of the first running node that answers. */
async function anyMap(
  nodes: Nodes,
  servers: RedisServer[],
): Promise<{ node: RedisServer; map: Range[] }> {
  const errors: unknown[] = [];
  for (const node of servers) {
    if (!node.running) continue;
    try {
      return { node, map: parseSlots(await nodes.send(node, ['CLUSTER', 'SLOTS'])) };
    } catch (error) {
      errors.push(error);
    }
  }
  throw new AggregateError(errors, 'no cluster node answers CLUSTER SLOTS');
}

/** See `RedisCluster.settle`; `also` is a further condition on the agreed map. */
async function settle(
  nodes: Nodes,
  servers: RedisServer[],
  timeoutMs: number,
  also: (map: Range[]) => boolean = () => true,
): Promise<void> {
  await poll(Date.now() + timeoutMs, 'a stable cluster', async () => {
    const running = servers.filter((server) => server.running);
    const views = await Promise.all(running.map((server) => view(nodes, server)));
    const first = views[0];
    if (!first || views.some((v) => !v.ok || v.signature !== first.signature)) return false;
    const covered = first.map.reduce((sum, [start, end]) => sum + end - start + 1, 0);
    const listed = new Set(first.map.flatMap(([, , ...ports]) => ports));
    const ports = new Set(running.map((server) => server.port));
    return (
      covered === SLOTS &&
      listed.size === ports.size &&
      [...listed].every((port) => ports.has(port)) &&
      also(first.map)
    );
  });
}

/** What one node says: whether it is ok (and, if a replica, linked) and its slot map. */
async function view(
  nodes: Nodes,
  server: RedisServer,
): Promise<{ ok: boolean; map: Range[]; signature: string }> {
  const [info, slots, role] = await Promise.all([
    nodes.send(server, ['CLUSTER', 'INFO']),
    nodes.send(server, ['CLUSTER', 'SLOTS']),
    nodes.send(server, ['ROLE']),
  ]);
  const map = parseSlots(slots);
  const linked = !Array.isArray(role) || role[0] !== 'slave' || role[3] === 'connected';
  return {
    ok: String(info).includes('cluster_state:ok') && linked,
    map,
    signature: JSON.stringify(map),
  };
}

/** `CLUSTER SLOTS` as sorted [start, end, masterPort, ...replicaPorts] (replicas sorted too). */
function parseSlots(reply: unknown): Range[] {
  if (!Array.isArray(reply)) throw new Error(`unexpected CLUSTER SLOTS reply: ${reply}`);
  return reply
    .map((entry: unknown[]) => {
      const [start, end, master, ...replicas] = entry as [number, number, ...unknown[][]];
      const port = (node: unknown[] | undefined) => Number(node?.[1]);
      const replicaPorts = replicas.map(port).sort((a, b) => a - b);
      return [Number(start), Number(end), port(master), ...replicaPorts] as Range;
    })
    .sort((a, b) => a[0] - b[0]);
}

/** Call `check` every POLL_MS until it is true; errors count as not yet. Bounded by `deadline`. */
export async function poll(
  deadline: number,
  what: string,
  check: () => Promise<boolean>,
): Promise<void> {
  let last: unknown;
  for (;;) {
    try {
      if (await check()) return;
      last = undefined;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      const cause = last instanceof Error ? `: ${last.message}` : '';
      throw new Error(`timed out waiting for ${what}${cause}`);
    }
    await sleep(POLL_MS);
  }
}

const dirs = new Set<string>();
let hooked = false;

/** Remove `dir` when this process exits, if `stop()` did not (the servers die with it too). */
export function removeOnExit(dir: string): void {
  if (!hooked) {
    process.once('exit', () => {
      for (const each of dirs) rmSync(each, { recursive: true, force: true });
    });
  }
  hooked = true;
  dirs.add(dir);
}

function remaining(deadline: number): number {
  return Math.max(1, deadline - Date.now());
}
