import { handoffKey, ticketKey } from '../shared/keys.js';
import type { ResolvedOptions } from '../shared/options.js';
import { within } from '../shared/timing.js';
import { ACQUIRE, DELETE, DRAW, EXTEND, RAISE, RELEASE, type Script } from './scripts.js';
import {
  type ExpiryMode,
  expiryArgs,
  type KeyCheck,
  type KeyOps,
  type KeyState,
  type Outcome,
  type Queue,
} from './store.js';

/**
 * Sends one command to the server that holds `firstKey` (every key of a call lives on one
 * server, in one cluster slot) and resolves with its reply.
 */
export type Send = (args: string[], firstKey: string) => Promise<unknown>;

/** Where the fencing token of a call's keys is kept: a key in their slot, on their server. */
export type FenceKey = (keys: readonly string[]) => string;

/**
 * The lock's commands on keys that live together on one server: each operation is one script
 * call (or one MGET) for all the keys it is given, bounded by `commandTimeoutMs`. A server's
 * connection owns one; a `SplitStore` spreads each lock's keys over several, one call per group.
 */
export class LockCommands implements KeyOps {
  readonly #send: Send;
  readonly #fenceKey: FenceKey;
  /**
   * Raise the fence to the holder's token when extending and deleting: only where a lock's
   * keys are on several servers, so that its token reaches all of them.
   */
  readonly #raiseFence: boolean;
  /**
   * In a cluster: when a script on the keys and their fence together gets TRYAGAIN (a slot
   * migrating), run it again on the keys alone, with the fence in a command of its own.
   */
  readonly #apartOnTryAgain: boolean;
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

  constructor(
    send: Send,
    fenceKey: FenceKey,
    fence: 'in-script' | 'raised' | 'raised, apart on TRYAGAIN',
    options: ResolvedOptions,
  ) {
    // A client that is closed may throw rather than reject: make every failure a rejection.
    this.#send = async (args, firstKey) => send(args, firstKey);
    this.#fenceKey = fenceKey;
    this.#raiseFence = fence !== 'in-script';
    this.#apartOnTryAgain = fence === 'raised, apart on TRYAGAIN';
    this.#timeoutMs = options.commandTimeoutMs;
    this.#expiry = { relative: options.fallbackSetPx, validityMs: options.keyValidityMs };
    this.#majority = options.keyMajority;
    this.#ticketPrefix = ticketKey(options.keyPrefix, '');
    this.#handoffPrefix = handoffKey(options.keyPrefix, '');
    this.#minTicketMs = Math.floor(options.keyValidityMs / 4);
  }

  acquire(
    keys: readonly string[],
    value: string,
    force: boolean,
    queue?: Queue,
  ): Promise<Outcome<KeyState>[]> {
    const [at, unit] = expiryArgs(this.#expiry, 'set');
    const args = [
      value,
      at,
      unit,
      force ? '' : 'NX',
      String(keys.length),
      String(this.#majority),
      String(this.#expiry.validityMs),
    ];
    const fence = this.#fenceKey(keys);
    const queued = queue ? [queue.queueKey, queue.ticketKey, queue.handoffKey] : [];
    const replies = this.#apartIfNeeded(
      () => this.#run(ACQUIRE, [...keys, fence, ...queued], args),
      // The key's script then its fence's, on one connection: they run in that order. A draw
      // that fails leaves the key's outcome unknown, as if it had.
      async () => {
        const [keyed, token] = await Promise.all([
          this.#run(ACQUIRE, keys, args),
          this.#run(DRAW, [fence], [String(this.#expiry.validityMs)]),
        ]);
        return [...(keyed as unknown[]).slice(0, 2 * keys.length), token];
      },
    );
    return perKey(keys, replies, (replies, i) => {
      const token = replies[2 * keys.length];
      return {
        value: (replies[2 * i] as string | null) ?? null,
        pttlMs: Number(replies[2 * i + 1]),
        token: typeof token === 'string' ? BigInt(token) : undefined,
      };
    });
  }

  extend(keys: readonly string[], value: string, token?: bigint): Promise<Outcome<boolean>[]> {
    const [at, command] = expiryArgs(this.#expiry, 'expire');
    const [fenced, raise] = this.#withFence(keys, token);
    const reply = this.#apartIfNeeded(
      () => this.#run(EXTEND, fenced, [value, at, command, ...raise]),
      () => {
        this.#raise(keys, raise);
        return this.#run(EXTEND, keys, [value, at, command]);
      },
    );
    return perKey(keys, reply, (replies, i) => replies[i] === 1);
  }

  check(keys: readonly string[], value: string): Promise<Outcome<KeyCheck>[]> {
    // MGET is a read: it also puts the keys back in this connection's tracking table. The
    // PTTLs go out in the same write: someone may have shortened a key that is still ours.
    const first = keys[0] as string;
    const reply = this.#bounded(
      Promise.all([
        this.#send(['MGET', ...keys], first),
        ...keys.map((key) => this.#send(['PTTL', key], first)),
      ]),
    );
    return perKey(keys, reply, ([values, ...pttls], i) => ({
      ours: (values as unknown[])[i] === value,
      pttlMs: Number(pttls[i]),
    }));
  }

  delete(keys: readonly string[], value: string, token?: bigint): Promise<Outcome<boolean>[]> {
    if (keys.length === 0) return Promise.resolve([]);
    const [fenced, raise] = this.#withFence(keys, token);
    const reply = this.#apartIfNeeded(
      () => this.#run(DELETE, fenced, [value, ...raise]),
      () => {
        this.#raise(keys, raise); // before the keys go: the next holder must draw more
        return this.#run(DELETE, keys, [value]);
      },
    );
    return perKey(keys, reply, (replies, i) => replies[i] === 1);
  }

  release(
    keys: readonly string[],
    value: string,
    queueKey?: string,
    token?: bigint,
  ): Promise<Outcome<boolean>[]> {
    if (queueKey === undefined) return this.delete(keys, value, token);
    const args = [
      value,
      String(keys.length),
      this.#ticketPrefix,
      this.#handoffPrefix,
      String(this.#minTicketMs),
      String(this.#expiry.validityMs),
    ];
    const reply = this.#run(RELEASE, [...keys, queueKey, this.#fenceKey(keys)], args);
    return perKey(keys, reply, (replies, i) => replies[i] === 1);
  }

  /** The keys, and the fence key and the arguments that raise it, when there is one to raise. */
  #withFence(keys: readonly string[], token: bigint | undefined): [string[], string[]] {
    if (!this.#raiseFence || token === undefined) return [[...keys], []];
    return [
      [...keys, this.#fenceKey(keys)],
      [String(token), String(this.#expiry.validityMs)],
    ];
  }

  /**
   * `together` (the keys and their fence in one script); in a cluster, on TRYAGAIN, `apart`:
   * while a slot migrates, a script on two keys the importing master lacks is refused, but
   * one on a single key follows ASK. Apart, the two are not atomic: only then can a forced
   * takeover slip between a key's script and its fence's (see the README, Fencing tokens).
   */
  #apartIfNeeded(
    together: () => Promise<unknown>,
    apart: () => Promise<unknown>,
  ): Promise<unknown> {
    if (!this.#apartOnTryAgain) return together();
    return together().catch((error: unknown) => {
      if (error instanceof Error && error.message.startsWith('TRYAGAIN')) return apart();
      throw error;
    });
  }

  /** Raise the fence in a command of its own (with `raise`'s arguments), best effort. */
  #raise(keys: readonly string[], raise: string[]): void {
    if (raise.length === 0) return;
    this.#run(RAISE, [this.#fenceKey(keys)], raise).catch(() => {});
  }

  /** EVALSHA, and EVAL when the server lost its script cache (restart, SCRIPT FLUSH). */
  #run(script: Script, keys: readonly string[], args: string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args];
    const first = keys[0] as string;
    return this.#bounded(
      this.#send(['EVALSHA', script.sha, ...tail], first).catch((error: unknown) => {
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
        return this.#send(['EVAL', script.source, ...tail], first);
      }),
    );
  }

  /**
   * Give up on a request Redis has not answered after commandTimeoutMs: its outcome is then
   * unknown. (node-redis' own `timeout` bounds only the wait to be written, not the wait for
   * a frozen server's reply, and costs a timer and an abort signal per command.) A request
   * given up on while disconnected may stay in node-redis' queue and run after the reconnect:
   * harmless, since every value is per attempt and every write compares it first.
   */
  #bounded<T>(request: Promise<T>): Promise<T> {
    return within(request, this.#timeoutMs, () => new TimeoutError(this.#timeoutMs));
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
