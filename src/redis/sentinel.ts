import { setTimeout as sleep } from 'node:timers/promises';
import { createSentinel, type RedisSentinelOptions } from '@redis/client';
import { LockError } from '../shared/errors.js';
import { fenceKey, parseKey } from '../shared/keys.js';
import type { ResolvedOptions } from '../shared/options.js';
import { settleWithin } from '../shared/timing.js';
import { LockCommands } from './commands.js';
import {
  type Connection,
  type ConnectionEvents,
  cannotServe,
  checkServer,
  connectError,
  pushOrPoll,
  Refusals,
  refusedByAcl,
  withinConnectTimeout,
} from './connect.js';
import type { CallCounts } from './store.js';
import { InvalidationRouter, trackingOptions } from './tracking.js';

/** The pause between connects while no primary answers. */
const RETRY_MS = 200;

/**
 * A primary found through Redis Sentinel, with node-redis' sentinel client: it asks the
 * sentinels which server is the primary and connects to it, and on a failover (the sentinels'
 * `switch-master`, or a command sent while it has no primary) asks again and connects to the
 * new one. The commands go on that connection (see Primary). All of a lock's keys are on that
 * one primary.
 *
 * The lock logic hears of the primary's connection as of one server's: it dropped (every key
 * may be gone: a held lock is lost at once), and it is back (on the same server or on a new
 * one: nothing is tracked, everything may have changed, every waiter retries).
 */
export class SentinelConnection implements Connection {
  /** The lock's commands, on the primary's keys. */
  readonly ops: LockCommands;
  readonly #sentinel: Sentinel;

  private constructor(
    sentinel: Sentinel,
    primary: Primary,
    options: ResolvedOptions,
    calls: CallCounts,
  ) {
    const prefix = options.keyPrefix;
    this.ops = new LockCommands(
      (args) => primary.send(args),
      (keys) => fenceKey(prefix, parseKey(prefix, keys[0] as string)?.name ?? ''),
      'in-script',
      options,
      calls,
    );
    this.#sentinel = sentinel;
  }

  /**
   * Connect through the sentinels within connectTimeoutMs, or close and reject; with
   * tracking 'auto', over RESP2 without tracking (the locker polls) when the primary refuses
   * pushes.
   */
  static connect(
    options: ResolvedOptions,
    sentinelOptions: RedisSentinelOptions,
    events: ConnectionEvents,
  ): Promise<SentinelConnection> {
    return pushOrPoll(options, describeRoots(sentinelOptions), events, (resolved, push) =>
      SentinelConnection.#retrying(resolved, sentinelOptions, events, push),
    );
  }

  /**
   * Connect, again and again within connectTimeoutMs while no primary answers (it is down and
   * the sentinels have not promoted another yet, or they are starting): node-redis gives up at
   * once then (see `maxCommandRediscovers`). An answer that says it cannot serve us is final.
   */
  static async #retrying(
    options: ResolvedOptions,
    sentinelOptions: RedisSentinelOptions,
    events: ConnectionEvents,
    track: boolean,
  ): Promise<SentinelConnection> {
    const deadline = performance.now() + options.connectTimeoutMs;
    for (;;) {
      const left = Math.max(1, Math.round(deadline - performance.now()));
      try {
        const within = { ...options, connectTimeoutMs: left };
        return await SentinelConnection.#connect(within, sentinelOptions, events, track);
      } catch (error) {
        const final =
          !(error instanceof LockError) ||
          error.code !== 'ERR_CONNECT' ||
          cannotServe(error.cause) !== undefined ||
          refusedByAcl(error.cause);
        if (final || performance.now() + RETRY_MS >= deadline) throw error;
        await sleep(RETRY_MS);
      }
    }
  }

  /** `track`: the primary's connection tracks what it reads (RESP3 and the router). */
  static async #connect(
    options: ResolvedOptions,
    sentinelOptions: RedisSentinelOptions,
    events: ConnectionEvents,
    track: boolean,
  ): Promise<SentinelConnection> {
    const sentinel = newSentinel(
      sentinelOptions,
      track ? new InvalidationRouter(options.noLoopTracking, events.invalidated) : undefined,
    );
    // What the sentinels' clients report (the primary's own errors come as the connect's
    // rejection: see sentinelConnectError).
    const refusals = new Refusals();
    sentinel.on('error', (error: unknown) => refusals.heard(error));
    const primary = new Primary(sentinel, events, track ? 'push' : 'poll');
    sentinel.on('topology-change', (change: { type: string }) => {
      // node-redis has destroyed the connections to the primary it knew, without an error:
      // the keys are on another server now (or the same, reconnected). What it connects to
      // next tracks nothing yet.
      if (change.type === 'MASTER_CHANGE') primary.lost();
    });
    // Each time node-redis is connected to a primary again (after a MASTER_CHANGE): follow
    // that connection's drops and reconnects.
    sentinel.on('ready', () => primary.find());
    const address = () => describeRoots(sentinelOptions);
    const ready = (async () => {
      await sentinel.connect();
      const at = primaryAt(sentinel) ?? address();
      await sentinel._execute(false, async (client) => primary.follow(client));
      await checkServer((args) => primary.send(args), options, at);
      primary.serving();
    })();
    ready.catch(() => {}); // the race reports it
    try {
      await withinConnectTimeout(
        Promise.race([ready, refusals.refused]),
        options.connectTimeoutMs,
        () => refusals.lastError,
      );
    } catch (error) {
      // A connect cut short by the timeout may still be opening a socket: let it finish
      // failing (bounded), so that nothing is left open once createLocker has rejected.
      await settleWithin(Promise.allSettled([sentinel.destroy(), ready]), options.commandTimeoutMs);
      sentinel.removeAllListeners();
      throw sentinelConnectError(error, refusals.lastError, options.connectTimeoutMs, address());
    }
    return new SentinelConnection(sentinel, primary, options, events.calls);
  }

  async close(timeoutMs: number): Promise<void> {
    // close() waits until every pending reply came, and a frozen primary sends none: destroy
    // when time is up.
    if (this.#sentinel.isOpen) await settleWithin(this.#sentinel.close(), timeoutMs);
    if (this.#sentinel.isOpen) await settleWithin(this.#sentinel.destroy(), timeoutMs);
    this.#sentinel.removeAllListeners();
  }
}

/**
 * node-redis' connection to the primary, used directly. Through the sentinel client, a command
 * sent while it looks for the primary waits until it has found it, and one whose connection
 * died is sent again there: seconds later, after commands sent since. An acquisition the lock
 * logic gave up on would then take the keys behind its back, and a give-back by the waiter's
 * value, held up that way, deleted the keys of the waiter's next attempt, which believed it
 * held the lock (seen in the failover tests). On the connection itself, a command is answered
 * in the order sent, or fails; with no primary it fails at once.
 *
 * And what the lock logic is told of it: the sentinel client does not pass on the drops and
 * reconnects of that connection (only errors, and only when asked to), so this listens to
 * the connection itself, and follows the next one after a failover.
 */
class Primary {
  readonly #sentinel: Sentinel;
  readonly #events: ConnectionEvents;
  readonly #followed = new WeakSet<object>();
  /** The connection to the primary node-redis last made; none from a failover until the next. */
  #client: NodeClient | undefined;
  /** Connected, and the lock logic told so. */
  #up = false;
  /** Asking node-redis for its connection to the primary. */
  #finding = false;
  readonly #mode: 'push' | 'poll';
  /** Where the lock logic was last told the primary is: once set, coming back is a reconnect. */
  #servedAt: string | undefined;

  constructor(sentinel: Sentinel, events: ConnectionEvents, mode: 'push' | 'poll') {
    this.#sentinel = sentinel;
    this.#events = events;
    this.#mode = mode;
  }

  /**
   * The primary passed the checks at connect (or came back later): tell where it is, and that
   * the one before no longer serves when a failover moved it.
   */
  serving(): void {
    const at = primaryAt(this.#sentinel) ?? 'the primary';
    const before = this.#servedAt;
    if (before !== undefined && before !== at) this.#events.retired(before);
    this.#events.serving(at, this.#mode, before !== undefined);
    this.#servedAt = at;
  }

  send(args: string[]): Promise<unknown> {
    if (this.#client) return this.#client.sendCommand(args);
    // Also asks node-redis to look for the primary, if it has given up.
    this.find();
    return Promise.reject(
      new Error('no connection to the primary: the sentinels are being asked which server it is'),
    );
  }

  /** The keys may be gone (a failover): every held lock is lost, every queued waiter races. */
  lost(): void {
    this.#client = undefined;
    this.#drop();
  }

  #drop(): void {
    if (!this.#up) return;
    this.#up = false;
    this.#events.dropped(() => true);
  }

  /** Connected again: nothing is tracked, and what changed meanwhile was not heard. */
  #back(): void {
    if (this.#up) return;
    this.#up = true;
    if (this.#servedAt !== undefined) this.serving();
    this.#events.invalidated(null);
  }

  /** Follow node-redis' connection to the primary, once it has one. */
  find(): void {
    if (this.#finding) return;
    this.#finding = true;
    this.#sentinel
      ._execute(false, async (client) => this.follow(client))
      .catch(() => {})
      .finally(() => {
        this.#finding = false;
      });
  }

  /** Listen to node-redis' connection to the primary (once each), and send on it. */
  follow(client: NodeClient): void {
    this.#client = client;
    if (!this.#followed.has(client)) {
      this.#followed.add(client);
      client.on('error', () => {
        if (this.#client === client && !client.isReady) this.#drop();
      });
      // Reconnected to the same server by itself.
      client.on('ready', () => {
        if (this.#client === client) this.#back();
      });
    }
    if (client.isReady) this.#back();
  }
}

/** What this needs of node-redis' client of the primary. */
interface NodeClient {
  on(event: 'error' | 'ready', listener: () => void): unknown;
  sendCommand(args: string[]): Promise<unknown>;
  readonly isReady: boolean;
}

function newSentinel(sentinel: RedisSentinelOptions, router: InvalidationRouter | undefined) {
  return createSentinel({
    ...sentinel,
    // Every command goes to the primary, on one connection: the one that reads a key is the
    // one that hears when it changes.
    replicaPoolSize: 0,
    masterPoolSize: 1,
    // node-redis looks for the primary again up to this many times, 1 s apart, on a timer that
    // close() cannot clear. Once is enough: the sentinels' notifications (+sdown,
    // switch-master…) and the locker's next command (see Primary.send) make it look again.
    maxCommandRediscovers: 0,
    ...trackingOptions(router),
  });
}

type Sentinel = ReturnType<typeof newSentinel>;

/** The primary node-redis knows of (`host:port`), if any. */
function primaryAt(sentinel: Sentinel): string | undefined {
  const master = sentinel.getMasterNode();
  return master && `${master.host}:${master.port}`;
}

function sentinelConnectError(
  error: unknown,
  lastError: Error | undefined,
  timeoutMs: number,
  roots: string,
): unknown {
  if (error instanceof LockError) return error;
  // The primary's refusal comes as the connect's rejection (node-redis passes its clients'
  // errors on as events only when asked to), or, from a sentinel, as an event.
  if (cannotServe(error)) return connectError(error, timeoutMs, roots);
  if (lastError && cannotServe(lastError)) return connectError(lastError, timeoutMs, roots);
  const cause = lastError ?? error;
  const message = cause instanceof Error ? cause.message : String(cause);
  return new LockError(
    'ERR_CONNECT',
    `could not reach the primary through the sentinels (${roots}) within connectTimeoutMs (${timeoutMs} ms): ${message}`,
    { cause },
  );
}

function describeRoots(sentinel: RedisSentinelOptions): string {
  const roots = sentinel.sentinelRootNodes.map((node) => `${node.host}:${node.port}`).join(', ');
  return `${roots}, master "${sentinel.name}"`;
}
