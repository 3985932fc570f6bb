import { ErrorReply } from '@redis/client';
import { LockError } from '../shared/errors.js';
import type { ResolvedOptions } from '../shared/options.js';
import { within } from '../shared/timing.js';
import { readInfo, warnOfEviction } from './eviction.js';
import type { SendTo } from './lua.js';
import { loadScripts } from './scripts.js';
import type { KeyOps, StoreEvents } from './store.js';
import { warnOnce } from './warnings.js';

/**
 * How a server tells the locker that a key changed: by invalidation pushes, or not at all
 * (the locker polls).
 */
export type Wakeups = 'push' | 'poll';

/**
 * One topology's connection (ServerConnection, NodesConnection, ClusterConnection): it owns
 * its node-redis client(s), and the operations on the keys they reach: one server's
 * `LockCommands`, or a `SplitStore` that spreads each lock's keys over several.
 */
export interface Connection {
  readonly ops: KeyOps;
  /** Close the client(s), waiting at most `timeoutMs` for pending replies. */
  close(timeoutMs: number): Promise<void>;
}

/**
 * What a connection reports. It does not know the `KeyStore` built on it: topology.ts adds
 * that when it passes `dropped` on to the lock logic (see StoreEvents).
 */
export interface ConnectionEvents
  extends Pick<StoreEvents, 'invalidated' | 'polling' | 'serving' | 'retired' | 'calls'> {
  /** A connection dropped: the keys `served` accepts may be gone. */
  dropped(served: (key: string) => boolean): void;
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

/**
 * Why a server that answered cannot serve locks as asked, if its answer says so: it refuses
 * `CLIENT TRACKING` (an ACL without `client|tracking`, a renamed CLIENT, a server or proxy
 * without it), it refuses `HELLO 3` (RESP2 only: before 6.0, a renamed HELLO, many proxies),
 * it refuses the credentials, TLS does not trust its certificate, or it does not speak RESP
 * at all (node-redis cannot parse what it sent: an HTTP server, a TLS port spoken to in plain
 * text). Retrying cannot help any of these; polling (see `tracking`) helps the first two.
 */
export function cannotServe(
  error: unknown,
): 'tracking' | 'resp3' | 'credentials' | 'protocol' | 'certificate' | undefined {
  if (!(error instanceof Error)) return undefined;
  const { message } = error;
  if (UNTRUSTED.test(String((error as { code?: unknown }).code))) return 'certificate';
  // NOPERM for 'client|tracking', an unknown TRACKING subcommand, a renamed CLIENT.
  if (/tracking/i.test(message)) return 'tracking';
  if (error instanceof ErrorReply && /^(WRONGPASS|NOAUTH|NOPERM)\b/.test(message)) {
    return 'credentials';
  }
  if (/HELLO|NOPROTO/i.test(message)) return 'resp3';
  if (/^Unknown RESP type/.test(message)) return 'protocol';
  return undefined;
}

/**
 * Whether Redis refused a command for the user's ACL: sent by us (NOPERM), or called by a
 * script (Redis 7.0 words it otherwise). Retrying cannot help until someone changes the ACL.
 */
export function refusedByAcl(error: unknown): boolean {
  return (
    error instanceof Error &&
    /NOPERM|user executing the script can't run this command/.test(error.message)
  );
}

/** The way out when a server refuses pushes, for the errors. */
const POLLING = "tracking: 'auto' (the default) or 'off' to poll instead";

/**
 * Node's codes (OpenSSL's verify errors, and the name check) for a server certificate that TLS
 * does not trust: not signed by a trusted CA, expired, issued for another name. Not ERR_SSL_*
 * alerts (a server that wants a client certificate says so with one).
 */
const UNTRUSTED = /^(?!ERR_SSL_)(.*CERT.*|UNABLE_TO_.*|INVALID_CA|HOSTNAME_MISMATCH)$/;

/** Say what a failed connect means for the user. */
export function connectError(error: unknown, timeoutMs: number, address: string): unknown {
  if (error instanceof LockError) return error;
  const message = error instanceof Error ? error.message : String(error);
  switch (cannotServe(error)) {
    case 'tracking':
      return new LockError(
        'ERR_CONNECT',
        `the Redis server at ${address} refused CLIENT TRACKING (${message}), which tracking: 'on' needs for invalidation pushes: allow the user +client|tracking, or pass ${POLLING}`,
        { cause: error },
      );
    case 'resp3':
      return new LockError(
        'ERR_SERVER_VERSION',
        `the Redis server at ${address} refused RESP3 (${message}), which tracking: 'on' needs for invalidation pushes (Redis 6.0 or later): pass ${POLLING}`,
        { cause: error },
      );
    case 'credentials':
      return new LockError(
        'ERR_CONNECT',
        `the Redis server at ${address} refused the credentials (${message}): check the username and password (in the URL or the client options) and the user's ACL`,
        { cause: error },
      );
    case 'certificate':
      return new LockError(
        'ERR_CONNECT',
        `the TLS certificate of the server at ${address} is not trusted (${message}): check the CA (socket.ca) and the name it was issued for (socket.servername)`,
        { cause: error },
      );
    case 'protocol':
      return new LockError(
        'ERR_CONNECT',
        `the server at ${address} does not speak the Redis protocol (${message}): is it a Redis server, and does it want TLS (rediss://)?`,
        { cause: error },
      );
    default:
      return new LockError(
        'ERR_CONNECT',
        `could not connect to Redis at ${address} within connectTimeoutMs (${timeoutMs} ms): ${message}`,
        { cause: error },
      );
  }
}

/**
 * Why a server that refused pushes in the handshake (`error`) can still serve locks by
 * polling, or `undefined` when polling would not help either.
 */
export function pollingReason(error: unknown, address: string): string | undefined {
  const why = cannotServe(error);
  if (why !== 'tracking' && why !== 'resp3') return undefined;
  const message = error instanceof Error ? error.message : String(error);
  const refused = why === 'tracking' ? 'CLIENT TRACKING' : 'RESP3 (HELLO 3)';
  return `the Redis server at ${address} refused ${refused} (${message}): tracklock polls it instead of waiting for invalidation pushes (waiters retry within pollIntervalMs, holders read their keys every checkIntervalMs); pass tracking: 'off' to poll without this warning, or 'on' to refuse such a server`;
}

/**
 * The errors of a client that retries its handshake by itself (node-redis' cluster and
 * sentinel clients): `lastError` keeps one that says why over the hang-up that follows it, and
 * `refused` rejects at the first answer saying the server cannot serve us (`cannotServe`),
 * which ends the wait for connectTimeoutMs at once.
 */
export class Refusals {
  lastError: Error | undefined;
  readonly refused: Promise<never>;
  #refuse: (error: Error) => void = () => {};

  constructor() {
    this.refused = new Promise<never>((_, reject) => {
      this.#refuse = reject;
    });
    this.refused.catch(() => {}); // whoever races it reports it
  }

  /** An error the client reported (node-redis reports some as strings). */
  heard(error: unknown): void {
    const reported = error instanceof Error ? error : new Error(String(error));
    if (!this.lastError || !cannotServe(this.lastError)) this.lastError = reported;
    if (cannotServe(reported)) this.#refuse(reported);
  }
}

/**
 * Connect a topology's client(s) with pushes (`push`: RESP3 and tracking), unless the options
 * say `tracking: 'off'`; with `'auto'`, when the server refuses pushes (a `LockError` whose
 * cause `pollingReason` reads), tell `events.polling` and connect again without them, in what
 * is left of connectTimeoutMs.
 */
export async function pushOrPoll<T>(
  options: ResolvedOptions,
  address: string,
  events: Pick<ConnectionEvents, 'polling'>,
  connect: (options: ResolvedOptions, push: boolean) => Promise<T>,
): Promise<T> {
  const started = performance.now();
  const push = options.tracking !== 'off';
  try {
    return await connect(options, push);
  } catch (error) {
    const cause = error instanceof LockError ? error.cause : undefined;
    const reason = pollingReason(cause, address);
    if (!push || options.tracking !== 'auto' || reason === undefined) throw error;
    events.polling(reason);
    const spent = Math.round(performance.now() - started);
    return connect(
      { ...options, connectTimeoutMs: Math.max(1, options.connectTimeoutMs - spent) },
      false,
    );
  }
}

/**
 * Load the scripts, warn of clock skew and eviction, and refuse a server without what the
 * options need: too old, or whose ACL refuses the user a command tracklock sends (final: a
 * wait for connectTimeoutMs would not change the ACL).
 */
export async function checkServer(send: SendTo, options: ResolvedOptions, address: string) {
  try {
    await checkServerOnce(send, options, address);
  } catch (error) {
    if (!refusedByAcl(error)) throw error;
    throw new LockError(
      'ERR_CONNECT',
      `the Redis server at ${address} refused the user a command tracklock needs (${(error as Error).message}): give the user the commands of the smallest ACL in docs/compatibility.md`,
      { cause: error },
    );
  }
}

async function checkServerOnce(send: SendTo, options: ResolvedOptions, address: string) {
  // All in one round trip: node-redis pipelines what is sent together.
  const [, , info] = await Promise.all([
    loadScripts(send),
    options.fallbackSetPx ? undefined : warnOfClockSkew(send, options, address),
    readInfo(send, 'server'),
    warnOfEviction(send, options, address),
  ]);
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
async function warnOfClockSkew(
  send: SendTo,
  options: ResolvedOptions,
  address: string,
): Promise<void> {
  const { marginMs } = options;
  const before = Date.now();
  const [seconds, micros] = (await send(['TIME'])) as [string, string];
  const after = Date.now();
  const skewMs = Number(seconds) * 1000 + Number(micros) / 1000 - (before + after) / 2;
  if (Math.abs(skewMs) > marginMs + (after - before) / 2) {
    warnOnce(
      options,
      'TRACKLOCK_CLOCK_SKEW',
      `this machine's clock is ${Math.round(Math.abs(skewMs))} ms ${skewMs > 0 ? 'behind' : 'ahead of'} the Redis server's at ${address}, more than the lock's drift margin (${marginMs} ms): absolute expiries (PXAT) will be off by as much; synchronise the clocks or pass fallbackSetPx: true`,
    );
  }
}
