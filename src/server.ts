import { createClient } from '@redis/client';
import { LockCommands } from './commands.js';
import { LockError } from './errors.js';
import { fenceKey, parseKey } from './keys.js';
import { describeAddress, type ResolvedOptions } from './options.js';
import { ACQUIRE, DELETE, DRAW, EXTEND, RAISE } from './scripts.js';
import type { KeyStore } from './store.js';
import { settleWithin, within } from './timing.js';
import { InvalidationRouter } from './tracking.js';

type Client = ReturnType<typeof createClient>;

/** Events a store reports to the locker. */
export interface StoreEvents {
  /** A tracked key changed (or `null`: anything may have changed, e.g. after a reconnect). */
  invalidated(key: string | null): void;
  /** The client reported an error (it reconnects by itself). */
  error(error: Error): void;
}

/** Every key on one Redis server, over one RESP3 connection that tracks what it reads. */
export class ServerStore extends LockCommands implements KeyStore {
  readonly #client: Client;
  #closed = false;
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
    events: StoreEvents,
    oneOfSeveral: boolean,
  ) {
    const prefix = options.keyPrefix;
    super(
      (args) => client.sendCommand(args),
      (keys) => fenceKey(prefix, parseKey(prefix, keys[0] as string)?.name ?? ''),
      oneOfSeveral ? 'raised' : 'in-script',
      options,
    );
    this.#client = client;
    this.address = describeAddress(options.client);
    this.ready = new Promise<void>((resolve, reject) => {
      let checked = false;
      client.on('error', (error: Error) => {
        this.lastError = error;
        // node-redis retries a failed handshake for ever; a refused HELLO will not get better.
        if (isRespRefusal(error)) reject(error);
        events.error(error);
      });
      client.on('ready', () => {
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
            if (error instanceof LockError) reject(error);
            else this.lastError = error instanceof Error ? error : new Error(String(error));
          },
        );
      });
      // Rejects only when the client gave up for good, or was closed (then nobody is waiting).
      client.connect().catch((error: unknown) => {
        if (!this.#closed) reject(error);
      });
    });
    this.ready.catch(() => {}); // whoever awaits it reports it
  }

  /**
   * Start connecting to one server and keep trying in the background (`oneOfSeveral`: a node
   * of several, whose holders spread their fencing tokens to it); `ready` tells when it
   * can be used. Commands sent before then fail or wait, as the client options say.
   */
  static start(options: ResolvedOptions, events: StoreEvents, oneOfSeveral: boolean): ServerStore {
    const router = new InvalidationRouter(options.noLoopTracking, events.invalidated);
    const client: Client = createClient({ ...options.client, RESP: 3, clientSideCache: router });
    return new ServerStore(client, options, events, oneOfSeveral);
  }

  /** Connected, and through the handshake. */
  get up(): boolean {
    return this.#client.isReady;
  }

  /** Connect to the one server within connectTimeoutMs, or close and reject. */
  static async connect(options: ResolvedOptions, events: StoreEvents): Promise<ServerStore> {
    const store = ServerStore.start(options, events, false);
    try {
      await withinConnectTimeout(store.ready, options.connectTimeoutMs, () => store.lastError);
    } catch (error) {
      store.destroy();
      throw connectError(error, options.connectTimeoutMs, store.address);
    }
    return store;
  }

  async close(timeoutMs: number): Promise<void> {
    if (this.#client.isOpen) await settleWithin(this.#client.close(), timeoutMs);
    this.destroy();
  }

  /** Close the connection now, dropping pending replies. */
  destroy(): void {
    this.#closed = true;
    // Whatever isOpen says: close() clears it at once, yet keeps the socket until Redis answers
    // what is pending, and a frozen Redis never does. (destroy() is idempotent.)
    this.#client.destroy();
    this.#client.removeAllListeners();
  }
}

/**
 * `ready`, or a rejection with the connection's last error (or a timeout) after `ms`. Leaves
 * no timer behind.
 */
export async function withinConnectTimeout(
  ready: Promise<unknown>,
  ms: number,
  lastError: () => Error | undefined,
): Promise<void> {
  await within(ready, ms, () => lastError() ?? new Error('no answer'));
}

/** A server older than 6.0 refuses HELLO 3. */
function isRespRefusal(error: unknown): boolean {
  return error instanceof Error && /HELLO|NOPROTO|unknown command/i.test(error.message);
}

/** Say what a failed connect means for the user. */
export function connectError(error: unknown, timeoutMs: number, address: string): unknown {
  if (error instanceof LockError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (isRespRefusal(error)) {
    return new LockError(
      'ERR_SERVER_VERSION',
      `the Redis server at ${address} refused RESP3 (${message}): tracklock needs Redis 6.0 or later for invalidation pushes`,
      { cause: error },
    );
  }
  return new LockError(
    'ERR_CONNECT',
    `could not connect to Redis at ${address} within connectTimeoutMs (${timeoutMs} ms): ${message}`,
    { cause: error },
  );
}

/** Commands to one server, for the checks at connect. */
type SendTo = (args: string[]) => Promise<unknown>;

/** Load the scripts, warn of clock skew, and refuse a server without what the options need. */
export async function checkServer(send: SendTo, options: ResolvedOptions, address: string) {
  // Load the scripts up front, so the first EVALSHA of each does not bounce off NOSCRIPT.
  const scripts = [ACQUIRE, EXTEND, DELETE, DRAW, RAISE];
  await Promise.all(scripts.map((s) => send(['SCRIPT', 'LOAD', s.source])));
  if (!options.fallbackSetPx) await warnOfClockSkew(send, options.marginMs, address);
  const info = String(await send(['INFO', 'server']));
  const version = /redis_version:(\d+)\.(\d+)\.(\d+)/.exec(info);
  if (!version) return; // a Redis-compatible server that does not say; let commands speak
  const [major, minor] = [Number(version[1]), Number(version[2])];
  if (!options.fallbackSetPx && (major < 6 || (major === 6 && minor < 2))) {
    throw new LockError(
      'ERR_SERVER_VERSION',
      `Redis ${version[0].slice('redis_version:'.length)} at ${address} has no SET … PXAT (added in 6.2): pass fallbackSetPx: true`,
    );
  }
}

/**
 * PXAT takes the client's wall clock to the server: warn when the two differ by more than the
 * lock's drift margin (measured with TIME, give or take half a round trip).
 */
async function warnOfClockSkew(send: SendTo, marginMs: number, address: string): Promise<void> {
  const before = Date.now();
  const [seconds, micros] = (await send(['TIME'])) as [string, string];
  const after = Date.now();
  const skewMs = Number(seconds) * 1000 + Number(micros) / 1000 - (before + after) / 2;
  if (Math.abs(skewMs) > marginMs + (after - before) / 2) {
    process.emitWarning(
      `this machine's clock is ${Math.round(Math.abs(skewMs))} ms ${skewMs > 0 ? 'behind' : 'ahead of'} the Redis server's at ${address}, more than the lock's drift margin (${marginMs} ms): absolute expiries (PXAT) will be off by as much; synchronise the clocks or pass fallbackSetPx: true`,
      { code: 'TRACKLOCK_CLOCK_SKEW' },
    );
  }
}
