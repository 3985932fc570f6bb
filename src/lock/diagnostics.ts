import { channel, tracingChannel } from 'node:diagnostics_channel';
import { LockError, type LockErrorCode, LockLostError, type Loss } from '../shared/errors.js';
import type { Lock } from './handle.js';

/**
 * What tracklock publishes through `node:diagnostics_channel`, as node-redis, ioredis and
 * undici do: subscribe by name, and nothing of ours needs importing. Every message is built
 * only when someone subscribes (`hasSubscribers`): unsubscribed, the cost is one property read
 * per event.
 */
export const CHANNELS = {
  /** A `TracingChannel`: one acquisition (`withContext`, `tryWithContext`, `forceWithContext`). */
  acquire: 'tracklock:acquire',
  /** A `TracingChannel`: one `release()` (the first call on a lock; later ones are no-ops). */
  release: 'tracklock:release',
  /** A lock ended without `release()`: lost, capped, aborted by its caller, or closed. */
  lost: 'tracklock:lock:lost',
  /** An extension of a held lock's keys answered. */
  extend: 'tracklock:lock:extend',
  /** An invalidation reached the locker: a key changed (`null`: anything may have). */
  invalidation: 'tracklock:invalidation',
  /** A server's connection is ready (at connect and each reconnect), and how it is followed. */
  server: 'tracklock:server',
} as const;

/** How an acquisition takes the lock: the method called. */
export type AcquireMode = 'wait' | 'try' | 'force';

/**
 * How an acquisition ended: `acquired`; `busy` (`tryWithContext` found it held); `timeout`
 * (`waitTimeoutMs` ran out); `aborted` (the caller's signal, whatever its reason); `closed`
 * (the locker); `unavailable` (Redis failed or refused the attempts); `error` (anything else,
 * such as a bad name or option).
 */
export type AcquireOutcome =
  | 'acquired'
  | 'busy'
  | 'timeout'
  | 'aborted'
  | 'closed'
  | 'unavailable'
  | 'error';

/**
 * The context object of `tracklock:acquire`: the same object at every event of one call.
 * `name` and `mode` are set at `start`; `attempts` and `contended` as the call goes; the rest
 * once it settles, before `error` and `asyncEnd`, where Node adds `error` or `result` (the
 * `Lock`).
 */
export interface AcquireMessage {
  readonly name: string;
  readonly mode: AcquireMode;
  /**
   * Acquire scripts this call sent (one pipeline to the servers each): 0 for a lock passed on
   * by a holder of this locker, or when the call ended before its first attempt.
   */
  readonly attempts: number;
  /**
   * The lock was held by another owner when the call came: an attempt found it busy, or a
   * holder handed it over or passed it on (a queued waiter handed the lock makes one attempt,
   * so `attempts` alone does not tell). A force does not learn whether it displaced a holder.
   */
  readonly contended: boolean;
  /** ms from the call to its end: the wait for the lock (or until giving up). */
  readonly waitMs: number;
  readonly outcome: AcquireOutcome | undefined;
  /** The fencing token of the lock acquired, when it has one. */
  readonly token: bigint | undefined;
  /** Set by Node at `asyncEnd` when the call resolved. */
  readonly result?: Lock;
  /** Set by Node at `error`. */
  readonly error?: unknown;
}

/**
 * How a release ended: `released` (Redis confirmed the deletion, or the handoff), `not-held`
 * (the lock had already ended, or its keys were no longer ours: `release()` resolved `false`),
 * `unconfirmed` (`ReleaseUnconfirmedError`).
 */
export type ReleaseOutcome = 'released' | 'not-held' | 'unconfirmed';

/**
 * The context object of `tracklock:release`. `name`, `token`, `held` and `heldMs` are set at
 * `start`; `outcome` and `durationMs` before `asyncEnd` (and `error`).
 */
export interface ReleaseMessage {
  readonly name: string;
  readonly token: bigint | undefined;
  /**
   * The lock was still held, as far as the locker knew, when `release()` was called. When it
   * was not, its end was published on `tracklock:lock:lost` already.
   */
  readonly held: boolean;
  /** ms from when the lock was taken to `release()` (or to its earlier end). */
  readonly heldMs: number;
  readonly outcome: ReleaseOutcome | undefined;
  /** ms the release took: until Redis confirmed (or did not) the deletion. */
  readonly durationMs: number;
  /** Set by Node at `asyncEnd`: what `release()` resolved to. */
  readonly result?: boolean;
  /** Set by Node at `error`. */
  readonly error?: unknown;
}

/**
 * Why a lock ended without `release()`: `aborted` (the caller's signal, whose reason is
 * `error`, whatever it is: another lock's release, say); else for `LockLostError`, its loss
 * (`changed`, `expired`, `disconnected`); for another `LockError`, its code (`ERR_MAX_HOLD`,
 * `ERR_LOCKER_CLOSED`).
 */
export type EndReason = Loss | LockErrorCode | 'aborted';

/** A message of `tracklock:lock:lost`. */
export interface LostMessage {
  readonly name: string;
  readonly token: bigint | undefined;
  readonly reason: EndReason;
  /** ms from when the lock was taken to its end. */
  readonly heldMs: number;
  /** The reason the lock's signal aborted with. */
  readonly error: unknown;
}

/** A message of `tracklock:lock:extend`. */
export interface ExtendMessage {
  readonly name: string;
  /** Keys the extension asked to extend. */
  readonly keys: number;
  /**
   * Of those, the keys Redis confirmed extended by then (the others were no longer ours, not
   * answered, or, with several servers, on a slow one whose answer comes after the majority).
   */
  readonly extended: number;
  /** ms from sending the extension to its answer. */
  readonly durationMs: number;
}

/** A message of `tracklock:invalidation`. */
export interface InvalidationMessage {
  /**
   * The key that changed, as the lock logic names it (`rueidislock:1:name`); `null` when
   * anything may have changed: a flush, or a connection back after a drop.
   */
  readonly key: string | null;
}

/** A message of `tracklock:server`. */
export interface ServerMessage {
  /** The server (`host:port`), as in error messages. */
  readonly address: string;
  /**
   * `push`: it sends invalidations; `poll`: the locker polls it (`tracking: 'off'`, or it
   * refused pushes: the `TRACKLOCK_POLLING` warning says why).
   */
  readonly mode: 'push' | 'poll';
  /** `false` at connect, `true` when the connection came back after a drop. */
  readonly reconnect: boolean;
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

const acquires = tracingChannel(CHANNELS.acquire);
const releases = tracingChannel(CHANNELS.release);
const lost = channel(CHANNELS.lost);
const extensions = channel(CHANNELS.extend);
const invalidations = channel(CHANNELS.invalidation);
const servers = channel(CHANNELS.server);

/** What an acquisition counts for its message while it runs. */
export interface AcquireTrace {
  attempts: number;
  contended: boolean;
}

/**
 * What can end an acquisition from outside: the caller's signal (`options.signal`, which may
 * be anything the caller passed) and the locker's closing.
 */
export interface AcquireStops {
  readonly caller: unknown;
  readonly closing: AbortSignal;
}

/** Someone listens to acquisitions: the caller then runs them through `traceAcquire`. */
export const tracingAcquires = (): boolean => acquires.hasSubscribers;

/** Run acquisition `run` on `tracklock:acquire`, filling its message as it goes. */
export function traceAcquire(
  name: string,
  mode: AcquireMode,
  stops: AcquireStops,
  run: (trace: AcquireTrace) => Promise<Lock>,
): Promise<Lock> {
  const startedAt = performance.now();
  const message: Writable<AcquireMessage> = {
    name,
    mode,
    attempts: 0,
    contended: false,
    waitMs: 0,
    outcome: undefined,
    token: undefined,
  };
  return acquires.tracePromise(async () => {
    try {
      const lock = await run(message);
      message.outcome = 'acquired';
      message.token = lock.token;
      return lock;
    } catch (error) {
      message.outcome = acquireOutcome(error, mode, stops);
      throw error;
    } finally {
      message.waitMs = performance.now() - startedAt;
    }
  }, message);
}

/**
 * An acquisition's rejection `error` as an outcome: told by what rejected it, not by its
 * class (a caller's signal may abort with any reason, a `LockError` included).
 */
function acquireOutcome(error: unknown, mode: AcquireMode, stops: AcquireStops): AcquireOutcome {
  const { caller, closing } = stops;
  if (caller instanceof AbortSignal && caller.aborted && error === caller.reason) return 'aborted';
  if (closing.aborted && error === closing.reason) return 'closed';
  if (!(error instanceof LockError)) return 'error';
  switch (error.code) {
    case 'ERR_NOT_LOCKED':
      return mode === 'wait' ? 'timeout' : 'busy';
    case 'ERR_LOCKER_CLOSED':
      return 'closed';
    case 'ERR_UNAVAILABLE':
      return 'unavailable';
    default:
      return 'error';
  }
}

/** Someone listens to releases: the caller then runs them through `traceRelease`. */
export const tracingReleases = (): boolean => releases.hasSubscribers;

/** Run `release` (of lock `name`) on `tracklock:release`. `held`/`heldMs`: see `ReleaseMessage`. */
export function traceRelease(
  name: string,
  token: bigint | undefined,
  held: boolean,
  heldMs: number,
  release: () => Promise<boolean>,
): Promise<boolean> {
  const startedAt = performance.now();
  const message: Writable<ReleaseMessage> = {
    name,
    token,
    held,
    heldMs,
    outcome: undefined,
    durationMs: 0,
  };
  return releases.tracePromise(async () => {
    try {
      const released = await release();
      message.outcome = released ? 'released' : 'not-held';
      return released;
    } catch (error) {
      message.outcome = 'unconfirmed';
      throw error;
    } finally {
      message.durationMs = performance.now() - startedAt;
    }
  }, message);
}

/** Someone listens to the ends of locks: a lock's end time is then worth reading. */
export const observingEnds = (): boolean => lost.hasSubscribers || releases.hasSubscribers;

/**
 * Lock `name` ended without `release()` (`byCaller`: its caller's signal ended it), with
 * `error` as its signal's reason, after being held from `takenAt` to `endedAt`
 * (`performance.now()` times; none read: now).
 */
export function publishLost(
  name: string,
  token: bigint | undefined,
  error: unknown,
  byCaller: boolean,
  takenAt: number,
  endedAt: number | undefined,
): void {
  if (!lost.hasSubscribers) return;
  const heldMs = (endedAt ?? performance.now()) - takenAt;
  const reason: EndReason = byCaller
    ? 'aborted'
    : error instanceof LockLostError
      ? error.loss
      : error instanceof LockError
        ? error.code
        : 'aborted';
  lost.publish({ name, token, reason, heldMs, error } satisfies LostMessage);
}

/**
 * An extension of `keys` keys of lock `name`, sent at `sentAt` (`performance.now()`), has
 * extended `extended` of them.
 */
export function publishExtend(name: string, keys: number, extended: number, sentAt: number): void {
  if (!extensions.hasSubscribers) return;
  const durationMs = performance.now() - sentAt;
  extensions.publish({ name, keys, extended, durationMs } satisfies ExtendMessage);
}

export function publishInvalidation(key: string | null): void {
  if (invalidations.hasSubscribers) invalidations.publish({ key } satisfies InvalidationMessage);
}

export function publishServer(address: string, mode: 'push' | 'poll', reconnect: boolean): void {
  if (servers.hasSubscribers) servers.publish({ address, mode, reconnect } satisfies ServerMessage);
}
