import { RedisClient, type RedisClientOptions, SocketTimeoutError } from '@redis/client';
import { LockError } from '../shared/errors.js';
import { fenceKey, parseKey } from '../shared/keys.js';
import { describeAddress, type ResolvedOptions } from '../shared/options.js';
import { settleWithin } from '../shared/timing.js';
import { LockCommands } from './commands.js';
import {
  type Connection,
  type ConnectionEvents,
  cannotServe,
  checkServer,
  connectError,
  pollingReason,
  type Wakeups,
  withinConnectTimeout,
} from './connect.js';
import { InvalidationRouter } from './tracking.js';

/**
 * node-redis builds a class with every command on it for each new set of client options (some
 * 20 ms of CPU each) and caches only the last set: with a different URL per node, every node
 * paid it again, one after another. Build the class once per protocol, as node-redis' cluster
 * client does, and give each connection its own options.
 */
const pushClients = () => RedisClient.factory({ RESP: 3 });
type Client = ReturnType<ReturnType<typeof pushClients>>;
type Factory = (options: RedisClientOptions) => Client;
const factories: Record<Wakeups, () => Factory> = {
  push: pushClients as () => Factory,
  // The same client, speaking RESP2: what a caller of sendCommand sees does not differ.
  poll: () => RedisClient.factory({ RESP: 2 }) as unknown as Factory,
};
const newClients: { [mode in Wakeups]?: Factory } = {};

type ReconnectStrategy = (retries: number, cause: Error) => false | Error | number;

/**
 * One Redis server, over one connection: RESP3 tracking what it reads (`push`), or, where the
 * server refuses that or the options say so, RESP2 without tracking (`poll`).
 */
export class ServerConnection implements Connection {
  /** The lock's commands on this server's keys. */
  readonly ops: LockCommands;
  #client: Client;
  /** How this server tells of changed keys: it changes once, from push to poll, if refused. */
  #mode: Wakeups;
  readonly #options: ResolvedOptions;
  readonly #events: ConnectionEvents;
  #closed = false;
  /** The client options' reconnect strategy, as node-redis would apply it. */
  readonly #reconnectIn: ReconnectStrategy;
  /** Reached 'ready' once: from then on node-redis reconnects by itself. */
  #wasReady = false;
  /** `ready` rejected: the server cannot serve locks, trying again will not change that. */
  #failed = false;
  /** Passed the checks at connect. */
  #checked = false;
  /** The pause before the next attempt of the first connect. */
  #retry: NodeJS.Timeout | undefined;
  /** Where the server is, for error messages. */
  readonly address: string;
  /**
   * Resolves once the server has answered the handshake and passed the checks; rejects when it
   * cannot serve locks (as the `tracking` option asks) or failed a check. Until then the client
   * keeps trying in the background.
   */
  readonly ready: Promise<void>;
  /** The client's last error, to say why a connection did not come up in time. */
  lastError: Error | undefined;

  private constructor(options: ResolvedOptions, events: ConnectionEvents, oneOfSeveral: boolean) {
    const prefix = options.keyPrefix;
    this.ops = new LockCommands(
      (args) => this.#client.sendCommand(args),
      (keys) => fenceKey(prefix, parseKey(prefix, keys[0] as string)?.name ?? ''),
      oneOfSeveral ? 'raised' : 'in-script',
      options,
      events.calls,
    );
    this.#options = options;
    this.#events = events;
    this.#reconnectIn = reconnectStrategy(options.client);
    this.address = describeAddress(options.client);
    this.#mode = options.tracking === 'off' ? 'poll' : 'push';
    this.#client = this.#newClient();
    let resolveReady = () => {};
    this.ready = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      this.#fail = (error: unknown) => {
        this.#failed = true;
        clearTimeout(this.#retry);
        reject(error);
      };
    });
    this.ready.catch(() => {}); // whoever awaits it reports it
    this.#use(this.#client, resolveReady);
  }

  /** Reject `ready` for good. */
  #fail: (error: unknown) => void = () => {};

  /** A client for the current mode; its reconnect strategy defers to ours (see #connect). */
  #newClient(): Client {
    const push = this.#mode === 'push';
    const options = this.#options;
    const clientOptions = {
      ...options.client,
      RESP: push ? 3 : 2,
      socket: {
        ...options.client.socket,
        // Until the first 'ready', node-redis gives up after each failed attempt: the
        // connection times the next (see #connect).
        reconnectStrategy: (retries: number, cause: Error) =>
          this.#wasReady ? this.#reconnectIn(retries, cause) : false,
      },
      clientSideCache: push
        ? new InvalidationRouter(options.noLoopTracking, this.#events.invalidated)
        : undefined,
    } as RedisClientOptions;
    newClients[this.#mode] ??= factories[this.#mode]();
    return (newClients[this.#mode] as Factory)(clientOptions);
  }

  /** Follow `client` through its handshake, checks, drops and reconnects. */
  #use(client: Client, resolve: () => void): void {
    const events = this.#events;
    let up = false;
    client.on('error', (error: Error) => {
      if (client !== this.#client) return;
      // Once failed, keep the error that says why (a protocol error is followed by the
      // hang-up it provokes).
      if (!this.#failed) this.lastError = error;
      if (up && !client.isReady) {
        up = false;
        events.dropped(() => true);
      }
      if (this.#failed) return;
      // Refused pushes: with tracking 'auto', poll over a new connection instead, at connect
      // or at a reconnect (the server's rules changed, or a failover reached another).
      const reason =
        this.#mode === 'push' && this.#options.tracking === 'auto'
          ? pollingReason(error, this.address)
          : undefined;
      if (reason !== undefined) {
        this.#mode = 'poll';
        forget(client);
        this.#client = this.#newClient();
        events.polling(reason);
        this.#use(this.#client, resolve);
        return;
      }
      // node-redis retries a failed handshake for ever; a server that answered that it
      // cannot serve us will not change its mind. Let go of it now: no socket stays open.
      if (!this.#checked && cannotServe(error) !== undefined) {
        this.#fail(error);
        forget(client);
      }
    });
    client.on('ready', () => {
      up = true;
      this.#wasReady = true;
      if (this.#checked) {
        events.serving(this.address, this.#mode, true);
        // Invalidations sent while the connection was down are lost, and the new connection
        // tracks nothing yet: every waiter must retry and every held key be read again.
        events.invalidated(null);
        return;
      }
      checkServer((args) => client.sendCommand(args), this.#options, this.address).then(
        () => {
          this.#checked = true;
          events.serving(this.address, this.#mode, false);
          resolve();
        },
        // A server that cannot serve locks is final; a connection lost mid-check is not:
        // the next 'ready' checks again.
        (error: unknown) => {
          if (error instanceof LockError) this.#fail(error);
          else this.lastError = error instanceof Error ? error : new Error(String(error));
        },
      );
    });
    this.#connect(client, 0);
  }

  /**
   * One attempt of the first connect. node-redis gives up after each failed one (see
   * #newClient), and the pause before the next is this timer, which `destroy()` clears:
   * node-redis' own pause cannot be cancelled, and kept a process alive for up to 2.2 s after
   * it gave up.
   */
  #connect(client: Client, attempt: number): void {
    client.connect().catch((error: unknown) => {
      if (this.#closed || this.#failed || this.#wasReady || client !== this.#client) return;
      const cause = error instanceof Error ? error : new Error(String(error));
      let retryIn: false | Error | number;
      try {
        retryIn = this.#reconnectIn(attempt, cause);
      } catch (thrown) {
        retryIn = thrown instanceof Error ? thrown : new Error(String(thrown));
      }
      // The client options' strategy said to stop: the connection will not come.
      if (retryIn === false) this.#fail(cause);
      else if (retryIn instanceof Error) this.#fail(retryIn);
      else this.#retry = setTimeout(() => this.#connect(client, attempt + 1), retryIn);
    });
  }

  /**
   * Start connecting to one server and keep trying in the background (`oneOfSeveral`: a node
   * of several, whose holders spread their fencing tokens to it); `ready` tells when it
   * can be used. Commands sent before then fail or wait, as the client options say.
   */
  static start(
    options: ResolvedOptions,
    events: ConnectionEvents,
    oneOfSeveral: boolean,
  ): ServerConnection {
    return new ServerConnection(options, events, oneOfSeveral);
  }

  /** Connected, and through the handshake. */
  get up(): boolean {
    return this.#client.isReady;
  }

  /** Connect to the one server within connectTimeoutMs, or close and reject. */
  static async connect(
    options: ResolvedOptions,
    events: ConnectionEvents,
  ): Promise<ServerConnection> {
    const server = ServerConnection.start(options, events, false);
    try {
      await withinConnectTimeout(server.ready, options.connectTimeoutMs, () => server.lastError);
    } catch (error) {
      server.destroy();
      throw connectError(error, options.connectTimeoutMs, server.address);
    }
    return server;
  }

  async close(timeoutMs: number): Promise<void> {
    if (this.#client.isOpen) await settleWithin(this.#client.close(), timeoutMs);
    this.destroy();
  }

  /** Close the connection now, dropping pending replies. */
  destroy(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
    // Whatever isOpen says: close() clears it at once, yet keeps the socket until Redis answers
    // what is pending, and a frozen Redis never does. (destroy() is idempotent.)
    forget(this.#client);
  }
}

/** Close a client now and stop hearing from it. */
function forget(client: Client): void {
  client.destroy();
  client.removeAllListeners();
  // A late socket error must not go unhandled.
  client.on('error', () => {});
}

/**
 * The client options' `socket.reconnectStrategy` as node-redis applies it: a number of ms, or
 * `false`, or a function; by default an exponential pause (50 ms doubling to 2 s, plus up to
 * 200 ms of jitter), and no reconnect after a socket timeout.
 */
function reconnectStrategy(client: RedisClientOptions): ReconnectStrategy {
  const strategy = (client.socket as { reconnectStrategy?: unknown } | undefined)
    ?.reconnectStrategy as false | number | ReconnectStrategy | undefined;
  if (strategy === false || typeof strategy === 'number') return () => strategy;
  if (strategy) return strategy;
  return (retries, cause) =>
    cause instanceof SocketTimeoutError
      ? false
      : Math.min(2 ** retries * 50, 2000) + Math.floor(Math.random() * 200);
}
