import { createClient } from '@redis/client';
import { delay } from 'abort-controller-x';
import { LockError } from './errors.js';
import { handoffKey, ticketKey } from './keys.js';
import type { ResolvedOptions } from './options.js';
import { ACQUIRE, DELETE, EXTEND, RELEASE, type Script } from './scripts.js';
import {
  type ExpiryMode,
  expiryArgs,
  type KeyState,
  type KeyStore,
  type Outcome,
  type Queue,
} from './store.js';
import { settleWithin } from './timing.js';
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
export class ServerStore implements KeyStore {
  readonly #client: Client;
  readonly #timeoutMs: number;
  readonly #expiry: ExpiryMode;

  readonly #majority: number;
  readonly #ticketPrefix: string;
  readonly #handoffPrefix: string;
  /**
   * A ticket is handed the lock only with at least this much of its validity left: a live
   * waiter renews its ticket at every attempt (each extension of the holder wakes it), so an
   * older one is most likely a waiter that is gone.
   */
  readonly #minTicketMs: number;

  private constructor(client: Client, options: ResolvedOptions) {
    this.#client = client;
    this.#timeoutMs = options.commandTimeoutMs;
    this.#expiry = { relative: options.fallbackSetPx, validityMs: options.keyValidityMs };
    this.#majority = options.keyMajority;
    this.#ticketPrefix = ticketKey(options.keyPrefix, '');
    this.#handoffPrefix = handoffKey(options.keyPrefix, '');
    this.#minTicketMs = Math.floor(options.keyValidityMs / 4);
  }

  /** Connect, check the server can run what the options ask for, and start routing pushes. */
  static async connect(options: ResolvedOptions, events: StoreEvents): Promise<ServerStore> {
    const router = new InvalidationRouter(options.noLoopTracking, events.invalidated);
    const client: Client = createClient({ ...options.client, RESP: 3, clientSideCache: router });
    const stop = new AbortController();
    let lastError: Error | undefined;
    // node-redis retries a failed handshake for ever; a refused HELLO will not get better.
    const refused = new Promise<never>((_, reject) => {
      stop.signal.addEventListener('abort', () => reject(stop.signal.reason));
    });
    const onError = (error: Error) => {
      lastError = error;
      if (isRespRefusal(error)) stop.abort(error);
      events.error(error);
    };
    client.on('error', onError);
    const timedOut = delay(stop.signal, options.connectTimeoutMs).then(() => {
      throw lastError ?? new TimeoutError(options.connectTimeoutMs);
    });
    const ready = client.connect().then(() => checkServer(client, options));
    for (const promise of [refused, timedOut, ready]) promise.catch(() => {}); // losers of the race
    try {
      await Promise.race([ready, refused, timedOut]);
    } catch (error) {
      client.off('error', onError);
      if (client.isOpen) client.destroy();
      throw connectError(error, options.connectTimeoutMs);
    } finally {
      stop.abort();
    }
    // Invalidations sent while the connection was down are lost, and the new connection tracks
    // nothing yet: every waiter must retry and every held key be read again.
    client.on('ready', () => events.invalidated(null));
    return new ServerStore(client, options);
  }

  acquire(
    keys: readonly string[],
    value: string,
    force: boolean,
    queue?: Queue,
  ): Promise<Outcome<KeyState>[]> {
    const [at, unit] = expiryArgs(this.#expiry, 'set');
    const args = [value, at, unit, force ? '' : 'NX', String(keys.length)];
    const reply = queue
      ? this.#run(
          ACQUIRE,
          [...keys, queue.queueKey, queue.ticketKey, queue.handoffKey],
          [...args, String(this.#majority), String(this.#expiry.validityMs)],
        )
      : this.#run(ACQUIRE, keys, args);
    return perKey(keys, reply, (replies, i) => ({
      value: (replies[2 * i] as string | null) ?? null,
      pttlMs: Number(replies[2 * i + 1]),
    }));
  }

  extend(keys: readonly string[], value: string): Promise<Outcome<boolean>[]> {
    const [at, command] = expiryArgs(this.#expiry, 'expire');
    const reply = this.#run(EXTEND, keys, [value, at, command]);
    return perKey(keys, reply, (replies, i) => replies[i] === 1);
  }

  check(keys: readonly string[], value: string): Promise<Outcome<boolean>[]> {
    // MGET is a read: it also puts the keys back in this connection's tracking table.
    const reply = this.#bounded(this.#client.sendCommand(['MGET', ...keys]));
    return perKey(keys, reply, (replies, i) => replies[i] === value);
  }

  delete(keys: readonly string[], value: string): Promise<Outcome<boolean>[]> {
    if (keys.length === 0) return Promise.resolve([]);
    return perKey(keys, this.#run(DELETE, keys, [value]), (replies, i) => replies[i] === 1);
  }

  release(keys: readonly string[], value: string, queueKey?: string): Promise<Outcome<boolean>[]> {
    if (queueKey === undefined) return this.delete(keys, value);
    const args = [
      value,
      String(keys.length),
      this.#ticketPrefix,
      this.#handoffPrefix,
      String(this.#minTicketMs),
    ];
    const reply = this.#run(RELEASE, [...keys, queueKey], args);
    return perKey(keys, reply, (replies, i) => replies[i] === 1);
  }

  async close(timeoutMs: number): Promise<void> {
    if (!this.#client.isOpen) return;
    await settleWithin(this.#client.close(), timeoutMs);
    if (this.#client.isOpen) this.#client.destroy();
    this.#client.removeAllListeners();
  }

  /** EVALSHA, and EVAL when the server lost its script cache (restart, SCRIPT FLUSH). */
  #run(script: Script, keys: readonly string[], args: string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args];
    return this.#bounded(
      this.#client.sendCommand(['EVALSHA', script.sha, ...tail]).catch((error: unknown) => {
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
        return this.#client.sendCommand(['EVAL', script.source, ...tail]);
      }),
    );
  }

  /**
   * Give up on a request Redis has not answered after commandTimeoutMs: its outcome is then
   * unknown. (node-redis' own `timeout` bounds only the wait to be written, not the wait for
   * a frozen server's reply, and costs a timer and an abort signal per command.) A request
   * given up on while disconnected stays in node-redis' queue and runs after the reconnect:
   * harmless, since every value is per attempt and every write compares it first.
   */
  async #bounded<T>(request: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(this.#timeoutMs)), this.#timeoutMs);
    });
    try {
      return await Promise.race([request, timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** One reply for several keys, as one outcome per key. */
async function perKey<T>(
  keys: readonly string[],
  reply: Promise<unknown>,
  pick: (replies: unknown[], index: number) => T,
): Promise<Outcome<T>[]> {
  try {
    const replies = (await reply) as unknown[];
    return keys.map((_, i) => ({ status: 'fulfilled', value: pick(replies, i) }));
  } catch (reason) {
    return keys.map(() => ({ status: 'rejected', reason }));
  }
}

/** A request Redis did not answer within commandTimeoutMs: its outcome is unknown. */
export class TimeoutError extends Error {
  constructor(ms: number) {
    super(`Redis did not answer within commandTimeoutMs (${ms} ms)`);
    this.name = 'TimeoutError';
  }
}

/** A server older than 6.0 refuses HELLO 3. */
function isRespRefusal(error: unknown): boolean {
  return error instanceof Error && /HELLO|NOPROTO|unknown command/i.test(error.message);
}

/** Say what a failed connect means for the user. */
function connectError(error: unknown, timeoutMs: number): unknown {
  if (error instanceof LockError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (isRespRefusal(error)) {
    return new LockError(
      'ERR_SERVER_VERSION',
      `the Redis server refused RESP3 (${message}): tracklock needs Redis 6.0 or later for invalidation pushes`,
      { cause: error },
    );
  }
  return new LockError(
    'ERR_CONNECT',
    `could not connect to Redis within connectTimeoutMs (${timeoutMs} ms): ${message}`,
    { cause: error },
  );
}

async function checkServer(client: Client, options: ResolvedOptions) {
  // Load the scripts up front, so the first EVALSHA of each does not bounce off NOSCRIPT.
  await Promise.all(
    [ACQUIRE, EXTEND, DELETE].map((s) => client.sendCommand(['SCRIPT', 'LOAD', s.source])),
  );
  if (!options.fallbackSetPx) await warnOfClockSkew(client, options.marginMs);
  const info = String(await client.sendCommand(['INFO', 'server']));
  const version = /redis_version:(\d+)\.(\d+)\.(\d+)/.exec(info);
  if (!version) return; // a Redis-compatible server that does not say; let commands speak
  const [major, minor] = [Number(version[1]), Number(version[2])];
  if (!options.fallbackSetPx && (major < 6 || (major === 6 && minor < 2))) {
    throw new LockError(
      'ERR_SERVER_VERSION',
      `Redis ${version[0].slice('redis_version:'.length)} has no SET … PXAT (added in 6.2): pass fallbackSetPx: true`,
    );
  }
}

/**
 * PXAT takes the client's wall clock to the server: warn when the two differ by more than the
 * lock's drift margin (measured with TIME, give or take half a round trip).
 */
async function warnOfClockSkew(client: Client, marginMs: number): Promise<void> {
  const before = Date.now();
  const [seconds, micros] = (await client.sendCommand(['TIME'])) as [string, string];
  const after = Date.now();
  const skewMs = Number(seconds) * 1000 + Number(micros) / 1000 - (before + after) / 2;
  if (Math.abs(skewMs) > marginMs + (after - before) / 2) {
    process.emitWarning(
      `this machine's clock is ${Math.round(Math.abs(skewMs))} ms ${skewMs > 0 ? 'behind' : 'ahead of'} the Redis server's, more than the lock's drift margin (${marginMs} ms): absolute expiries (PXAT) will be off by as much; synchronise the clocks or pass fallbackSetPx: true`,
      { code: 'TRACKLOCK_CLOCK_SKEW' },
    );
  }
}
