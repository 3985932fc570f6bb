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
  withinConnectTimeout,
} from './connect.js';
import { InvalidationRouter } from './tracking.js';

/**
 * node-redis builds a class with every command on it for each new set of client options (some
 * 20 ms of CPU each) and caches only the last set: with a different URL per node, every node
 * paid it again, one after another. Build the class once, as node-redis' cluster client does,
 * and give each connection its own options.
 */
const clientFactory = () => RedisClient.factory({ RESP: 3 });
let newClient: ReturnType<typeof clientFactory> | undefined;
type Client = ReturnType<NonNullable<typeof newClient>>;

type ReconnectStrategy = (retries: number, cause: Error) => false | Error | number;

/** One Redis server, over one RESP3 connection that tracks what it reads. */
export class ServerConnection implements Connection {
  /** The lock's commands on this server's keys. */
  readonly ops: LockCommands;
  readonly #client: Client;
  #closed = false;
  /** The client options' reconnect strategy, as node-redis would apply it. */
  readonly #reconnectIn: ReconnectStrategy;
  /** Reached 'ready' once: from then on node-redis reconnects by itself. */
  #wasReady = false;
  /** `ready` rejected: the server cannot serve locks, trying again will not change that. */
  #failed = false;
  /** The pause before the next attempt of the first connect. */
  #retry: NodeJS.Timeout | undefined;
  /** Where the server is, for error messages. */
  readonly address: string;
  /**
   * Resolves once the server has answered the handshake and passed the checks; rejects when it
   * refused RESP3 or failed a check. Until then the client keeps trying in the background.
   */
  readonly ready: Promise<void>;
  /** The client's last error, to say why a connection did not come up in time. */
  lastError: Error | undefined;

  private constructor(
    client: Client,
    options: ResolvedOptions,
    events: ConnectionEvents,
    oneOfSeveral: boolean,
  ) {
    const prefix = options.keyPrefix;
    this.ops = new LockCommands(
      (args) => client.sendCommand(args),
      (keys) => fenceKey(prefix, parseKey(prefix, keys[0] as string)?.name ?? ''),
      oneOfSeveral ? 'raised' : 'in-script',
      options,
    );
    this.#client = client;
    this.#reconnectIn = reconnectStrategy(options.client);
    this.address = describeAddress(options.client);
    this.ready = new Promise<void>((resolve, reject) => {
      let checked = false;
      const fail = (error: unknown) => {
        this.#failed = true;
        clearTimeout(this.#retry);
        reject(error);
      };
      let up = false;
      client.on('error', (error: Error) => {
        // Once failed, keep the error that says why (a protocol error is followed by the
        // hang-up it provokes).
        if (!this.#failed) this.lastError = error;
        if (up && !client.isReady) {
          up = false;
          events.dropped(() => true);
        }
        // node-redis retries a failed handshake for ever; a server that answered that it
        // cannot serve us will not change its mind. Let go of it now: no socket stays open.
        if (!checked && !this.#failed && cannotServe(error) !== undefined) {
          fail(error);
          client.destroy();
        }
      });
      client.on('ready', () => {
        up = true;
        this.#wasReady = true;
        if (checked) {
          // Invalidations sent while the connection was down are lost, and the new connection
          // tracks nothing yet: every waiter must retry and every held key be read again.
          events.invalidated(null);
          return;
        }
        checkServer((args) => client.sendCommand(args), options, this.address).then(
          () => {
            checked = true;
            resolve();
          },
          // A server that cannot serve locks is final; a connection lost mid-check is not:
          // the next 'ready' checks again.
          (error: unknown) => {
            if (error instanceof LockError) fail(error);
            else this.lastError = error instanceof Error ? error : new Error(String(error));
          },
        );
      });
      this.#connect(0, fail);
    });
    this.ready.catch(() => {}); // whoever awaits it reports it
  }

  /**
   * One attempt of the first connect. node-redis gives up after each failed one (see `start`),
   * and the pause before the next is this timer, which `destroy()` clears: node-redis' own
   * pause cannot be cancelled, and kept a process alive for up to 2.2 s after it gave up.
   */
  #connect(attempt: number, fail: (error: unknown) => void): void {
    this.#client.connect().catch((error: unknown) => {
      if (this.#closed || this.#failed || this.#wasReady) return;
      const cause = error instanceof Error ? error : new Error(String(error));
      let retryIn: false | Error | number;
      try {
        retryIn = this.#reconnectIn(attempt, cause);
      } catch (thrown) {
        retryIn = thrown instanceof Error ? thrown : new Error(String(thrown));
      }
      // The client options' strategy said to stop: the connection will not come.
      if (retryIn === false) fail(cause);
      else if (retryIn instanceof Error) fail(retryIn);
      else this.#retry = setTimeout(() => this.#connect(attempt + 1, fail), retryIn);
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
    const router = new InvalidationRouter(options.noLoopTracking, events.invalidated);
    let reconnectIn: ReconnectStrategy = () => false;
    const clientOptions: RedisClientOptions = {
      ...options.client,
      RESP: 3,
      clientSideCache: router,
      socket: { ...options.client.socket, reconnectStrategy: (...args) => reconnectIn(...args) },
    };
    newClient ??= clientFactory();
    const server = new ServerConnection(newClient(clientOptions), options, events, oneOfSeveral);
    // Until the first 'ready', node-redis gives up after each failed attempt: the connection
    // times the next (see #connect).
    reconnectIn = (retries, cause) =>
      server.#wasReady ? server.#reconnectIn(retries, cause) : false;
    return server;
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
    this.#client.destroy();
    this.#client.removeAllListeners();
  }
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
