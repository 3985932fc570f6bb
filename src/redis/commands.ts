import type { ResolvedOptions } from '../shared/options.js';
import { within } from '../shared/timing.js';
import { type Given, type Layout, runScript, type Script, type Send } from './lua.js';
import { SCRIPTS } from './scripts.js';
import {
  type CallCounts,
  type ExpiryMode,
  expiryArgs,
  type KeyCheck,
  type KeyOps,
  type KeyState,
  type Outcome,
  type QueueKeys,
  type Take,
  type Turn,
} from './store.js';

/**
 * A release hands the keys to the queue's head at most this many times in a row; the next one
 * deletes them, so that a waiter outside the queue (a Go rueidislock) gets a fair race.
 */
export const MAX_HANDOFF_RUN = 8;

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
   * A lock's keys are on several servers, this one holding some of them (and, for key 0, the
   * queue): a script here cannot see the majority, so the queue's scripts run `apart` (see
   * SCRIPTS), and the fence is raised to the holder's token when extending and deleting, so
   * that its token reaches every server.
   */
  readonly #spread: boolean;
  /**
   * In a cluster: when a script on the keys and their fence together gets TRYAGAIN (a slot
   * migrating), run it again on the keys alone, with the fence in a command of its own.
   */
  readonly #apartOnTryAgain: boolean;
  readonly #timeoutMs: number;
  readonly #expiry: ExpiryMode;
  readonly #majority: number;
  /**
   * The head is handed the lock only with at least this much of its ticket left: a live head
   * renews its ticket once a quarter of it has passed (each extension of the holder wakes it),
   * so an older one is most likely a waiter that is gone.
   */
  readonly #minTicketMs: number;
  /** How long a name's queue lives after its last listener's attempt. */
  readonly #queueLifeMs: number;
  /** The locker's count of requests, by kind. */
  readonly #calls: CallCounts;

  constructor(
    send: Send,
    fenceKey: FenceKey,
    fence: 'in-script' | 'raised' | 'raised, apart on TRYAGAIN',
    options: ResolvedOptions,
    calls: CallCounts,
  ) {
    this.#calls = calls;
    // A client that is closed may throw rather than reject: make every failure a rejection.
    this.#send = async (args, firstKey) => send(args, firstKey);
    this.#fenceKey = fenceKey;
    this.#spread = fence !== 'in-script';
    this.#apartOnTryAgain = fence === 'raised, apart on TRYAGAIN';
    this.#timeoutMs = options.commandTimeoutMs;
    this.#expiry = { relative: options.fallbackSetPx, validityMs: options.keyValidityMs };
    this.#majority = options.keyMajority;
    this.#minTicketMs = Math.floor(options.keyValidityMs / 4);
    this.#queueLifeMs = 2 * options.backstopMs;
  }

  acquire(
    keys: readonly string[],
    value: string,
    take: Take,
    queue?: QueueKeys,
    turn?: Turn,
  ): Promise<Outcome<KeyState>[]> {
    this.#calls.acquire++;
    const [expiry, unit] = expiryArgs(this.#expiry, 'set');
    const validityMs = String(this.#expiry.validityMs);
    const args = {
      value,
      expiry,
      unit,
      condition: take === 'free' ? 'NX' : take === 'force' ? '' : 'FROM',
      from: typeof take === 'object' ? take.from : '',
      keyCount: String(keys.length),
      majority: String(this.#majority),
      validityMs,
    };
    const fence = this.#fenceKey(keys);
    const own = queue && {
      ticket: queue.tickets + value,
      wake: queue.wakes + value,
      handoff: queue.handoffs + value,
    };
    const queueArgs = queue && {
      queue: queue.queueKey,
      roles: queue.rolesKey,
      tickets: queue.tickets,
      wakes: queue.wakes,
      handoffs: queue.handoffs,
      lifeMs: String(this.#queueLifeMs),
      apart: this.#spread ? (turn === 'queue' ? 'queue' : 'try') : undefined,
    };
    const together = () =>
      this.#run(SCRIPTS.acquire, { keys, fence, ...own }, { ...args, ...queueArgs });
    // Apart, the queue is left out: so a queued waiter's attempt fails here (a waiter in line
    // must touch no key), and it races while the slot migrates.
    const states = this.#apartIfNeeded(
      'acquire',
      together,
      // The key's script then its fence's, on one connection: they run in that order. A draw
      // that fails leaves the key's outcome unknown, as if it had.
      queue && turn !== 'race'
        ? undefined
        : async () => {
            this.#calls.other++; // the draw
            const [keyed, token] = await Promise.all([
              this.#run(SCRIPTS.acquire, { keys }, args),
              this.#run(SCRIPTS.draw, { fence }, { validityMs }),
            ]);
            return keyed.map((state) => ({ ...state, token }));
          },
    );
    return perKey(keys, states, (states, i) => states[i] as KeyState);
  }

  extend(keys: readonly string[], value: string, token?: bigint): Promise<Outcome<boolean>[]> {
    this.#calls.extend++;
    const [expiry, command] = expiryArgs(this.#expiry, 'expire');
    const raise = this.#raising(keys, token);
    const flags = this.#apartIfNeeded(
      'extend',
      () =>
        this.#run(
          SCRIPTS.extend,
          { keys, ...raise?.keys },
          { value, expiry, command, ...raise?.args },
        ),
      () => {
        this.#raise(raise);
        return this.#run(SCRIPTS.extend, { keys }, { value, expiry, command });
      },
    );
    return perKey(keys, flags, (flags, i) => flags[i] === true);
  }

  check(keys: readonly string[], value: string): Promise<Outcome<KeyCheck>[]> {
    this.#calls.check++;
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

  watch(key: string, _beside?: string): Promise<void> {
    this.#calls.check++;
    return this.#bounded(this.#send(['PTTL', key], key)).then(() => undefined);
  }

  delete(keys: readonly string[], value: string, token?: bigint): Promise<Outcome<boolean>[]> {
    if (keys.length === 0) return Promise.resolve([]);
    this.#calls.release++;
    const raise = this.#raising(keys, token);
    const flags = this.#apartIfNeeded(
      'release',
      () => this.#run(SCRIPTS.delete, { keys, ...raise?.keys }, { value, ...raise?.args }),
      () => {
        this.#raise(raise); // before the keys go: the next holder must draw more
        return this.#run(SCRIPTS.delete, { keys }, { value });
      },
    );
    return perKey(keys, flags, (flags, i) => flags[i] === true);
  }

  release(
    keys: readonly string[],
    value: string,
    queue?: QueueKeys,
    token?: bigint,
  ): Promise<Outcome<boolean>[]> {
    if (queue === undefined) return this.delete(keys, value, token);
    const flags = this.#release(keys, value, queue, token);
    return perKey(keys, flags, (flags, i) => flags[i] === true);
  }

  async leave(keys: readonly string[], value: string, queue: QueueKeys): Promise<void> {
    await this.#release([], value, queue, undefined, this.#fenceKey(keys));
  }

  script<K extends Layout, A extends Layout, R>(
    script: Script<K, A, R>,
    keys: Given<K>,
    args: Given<A>,
    kind: keyof CallCounts,
  ): Promise<R> {
    this.#calls[kind]++;
    return this.#run(script, keys, args);
  }

  /** The release script on `keys` (none: only leave the queue; `fence` then routes it). */
  #release(
    keys: readonly string[],
    value: string,
    queue: QueueKeys,
    token: bigint | undefined,
    fence = this.#fenceKey(keys),
  ): Promise<boolean[]> {
    this.#calls.release++;
    return this.#run(
      SCRIPTS.release,
      { keys, fence },
      {
        value,
        keyCount: String(keys.length),
        queue: queue.queueKey,
        roles: queue.rolesKey,
        tickets: queue.tickets,
        wakes: queue.wakes,
        handoffs: queue.handoffs,
        minTicketMs: String(this.#minTicketMs),
        maxRun: String(MAX_HANDOFF_RUN),
        validityMs: String(this.#expiry.validityMs),
        apart: this.#spread ? '1' : undefined,
        token: this.#spread && token !== undefined ? String(token) : undefined,
      },
    );
  }

  /** The fence key and the arguments that raise it to `token`, when there is one to raise. */
  #raising(keys: readonly string[], token: bigint | undefined): Raise | undefined {
    if (!this.#spread || token === undefined) return undefined;
    return {
      keys: { fence: this.#fenceKey(keys) },
      args: { token: String(token), validityMs: String(this.#expiry.validityMs) },
    };
  }

  /**
   * `together` (the keys and their fence in one script); in a cluster, on TRYAGAIN, `apart`:
   * while a slot migrates, a script on two keys the importing master lacks is refused, but
   * one on a single key follows ASK. Apart, the two are not atomic: only then can a forced
   * takeover slip between a key's script and its fence's (see docs/fencing.md). The key's
   * script sent again counts as another call of its `kind`.
   */
  #apartIfNeeded<T>(
    kind: keyof CallCounts,
    together: () => Promise<T>,
    apart: (() => Promise<T>) | undefined,
  ): Promise<T> {
    if (!this.#apartOnTryAgain || apart === undefined) return together();
    return together().catch((error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('TRYAGAIN')) throw error;
      this.#calls[kind]++;
      return apart();
    });
  }

  /** Raise the fence in a command of its own (see `#raising`), best effort. */
  #raise(raise: Raise | undefined): void {
    if (raise === undefined) return;
    this.#calls.other++;
    this.#run(SCRIPTS.raise, raise.keys, raise.args).catch(() => {});
  }

  /** One script call (see `runScript`), bounded by commandTimeoutMs. */
  #run<K extends Layout, A extends Layout, R>(
    script: Script<K, A, R>,
    keys: Given<K>,
    args: Given<A>,
  ): Promise<R> {
    return this.#bounded(runScript(this.#send, script, keys, args));
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

/** The fence key and the arguments that raise it to the holder's token. */
interface Raise {
  readonly keys: { readonly fence: string };
  readonly args: { readonly token: string; readonly validityMs: string };
}

/** One reply for several keys, as one outcome per key. */
export async function perKey<R, T>(
  keys: readonly string[],
  reply: Promise<R>,
  pick: (reply: R, index: number) => T,
): Promise<Outcome<T>[]> {
  try {
    const replies = await reply;
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
