import { createClient, type RedisClientOptions } from '@redis/client';
import {
  besideQueueNames,
  checkName,
  fenceKey,
  lockKey,
  type QueueNames,
  queueNames,
} from '../shared/keys.js';
import { describeAddress, type LockerOptions } from '../shared/options.js';
import { resolveOptions } from '../shared/resolve-options.js';
import { within } from '../shared/timing.js';

export type PlainClient = ReturnType<typeof createClient>;

/** One server's share of a lock's keys, and a plain client (no tracking, no scripts) to it. */
export interface Place {
  /** `host:port`, without credentials. */
  readonly server: string;
  readonly client: PlainClient;
  /** The lock's keys on this server, with their index in the lock (what the locker counts). */
  readonly keys: readonly { readonly key: string; readonly index: number }[];
  readonly fence: string;
  readonly queue: QueueNames;
  /**
   * `request` (a command of `client`), rejected when it has no reply within `--command-timeout`:
   * a frozen server (SIGSTOP, a full disk) accepts the connection and never answers.
   */
  within<T>(request: Promise<T>): Promise<T>;
}

/** Where lock `name`'s keys are, and the lock's size. */
export interface Places {
  readonly places: readonly Place[];
  readonly keyCount: number;
  readonly keyMajority: number;
  close(): Promise<void>;
}

/**
 * Connect to the servers of lock `name`'s keys, as the locker would place them: one server,
 * or `nodes` (node j holds keys 0 … k-1, the lock's keys j, j+n, …; see src/redis/nodes.ts).
 * A cluster, sentinels and groups are not read here (yet): they need their own clients.
 */
export async function openPlaces(name: string, options: LockerOptions): Promise<Places> {
  checkName(name);
  const resolved = resolveOptions(options);
  const { keyPrefix: prefix, keyCount, topology } = resolved;
  let servers: readonly RedisClientOptions[];
  if (topology.kind === 'server') servers = [resolved.client];
  else if (topology.kind === 'nodes') servers = topology.nodes;
  else {
    throw new TypeError(
      `status and release read one server (--url) or --node servers, not a ${topology.kind}`,
    );
  }
  const n = servers.length;
  const clients = servers.map((client) =>
    createClient({
      ...client,
      // A server that is down fails the command rather than keeping it waiting for ever.
      disableOfflineQueue: true,
      socket: {
        ...client.socket,
        reconnectStrategy: false,
        connectTimeout: resolved.connectTimeoutMs,
      },
    } as RedisClientOptions),
  );
  const close = async () => {
    for (const client of clients) client.destroy();
  };
  const server = (j: number) => describeAddress(servers[j] as RedisClientOptions);
  try {
    await Promise.all(
      clients.map((client, j) => {
        client.on('error', () => {});
        // connectTimeout bounds the TCP connection; a frozen server accepts it and then never
        // answers the client's handshake.
        const flag = `--connect-timeout (${resolved.connectTimeoutMs} ms)`;
        return within(client.connect(), resolved.connectTimeoutMs, () =>
          noAnswer(`${server(j)}: ${flag}`),
        );
      }),
    );
  } catch (error) {
    await close();
    throw error;
  }
  const places = clients.map((client, j) => ({
    server: server(j),
    client,
    within: <T>(request: Promise<T>) =>
      within(request, resolved.commandTimeoutMs, () =>
        noAnswer(`${server(j)}: --command-timeout (${resolved.commandTimeoutMs} ms)`),
      ),
    keys: Array.from({ length: keyCount / n }, (_, i) => ({
      key: lockKey(prefix, i, name),
      index: i * n + j,
    })),
    fence: fenceKey(prefix, name),
    queue: n === 1 ? queueNames(prefix, name) : besideQueueNames(lockKey(prefix, 0, name)),
  }));
  return { places, keyCount, keyMajority: resolved.keyMajority, close };
}

/** The error of a request `where` did not answer in time (`where`: the server and the bound). */
function noAnswer(where: string): Error {
  return new Error(`no answer from ${where} ran out`);
}
