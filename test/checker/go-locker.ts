/**
 * A Go rueidislock in a checker worker: `rueidislock/lock.go` played command for command, with
 * `KeyMajority: 2`, `KeyPrefix: 'rueidislock'`, `ExtendInterval` its default (half the
 * validity), `TryNextAfter` its default (20 ms) and `NoLoopTracking: true`, as
 * docs/rueidislock.md asks of Go services that share locks with tracklock.
 *
 * What it does, as lock.go does it:
 * * `try`: a fresh 24-byte random value and `deadline = now + validity`; the keys in order, each
 *   `SET key value NX PXAT deadline` and `GET key` in one pipeline bounded by TryNextAfter,
 *   until a majority is ours or has failed; once a key is refused the later keys are not tried
 *   (counted as refused). The keys past the decision are tried in the background. The lock is
 *   held if the decision came within the validity and fewer than a majority failed.
 * * each key then has a monitor: a held key is extended every interval (`PEXPIREAT` to the
 *   previous deadline plus an interval, by value) and at once when its invalidation arrives;
 *   when the lock's context ends, or an extension fails, the key is deleted by value (unless it
 *   was never ours). Once a majority of monitors have ended, the context is cancelled: a lost
 *   lock, or the release.
 * * `WithContext`: after a failed try, once every monitor has ended, it waits for the interval
 *   or an invalidation of one of the name's keys it read, whichever comes first, and tries again.
 * * invalidations: the push of key `p:i:name` wakes the gate of `name`, key `i`, one pending
 *   wake each (a buffered channel of one); a `null` one (a flush) wakes all of them.
 *
 * The scripts go out with `EVAL` (rueidis sends `EVALSHA`, then `EVAL` on `NOSCRIPT`: the same
 * script). Reconnects are not modelled (the row that uses this has no fault).
 */
import { randomBytes } from 'node:crypto';
import { createClient } from '@redis/client';

const EXTEND = `if redis.call("GET",KEYS[1]) == ARGV[1] then return redis.call("PEXPIREAT",KEYS[1],ARGV[2]) else return 0 end`;
const DELKEY = `if redis.call("GET",KEYS[1]) == ARGV[1] then return redis.call("DEL",KEYS[1]) else return 0 end`;
const PREFIX = 'rueidislock';
const MAJORITY = 2;
const TOTAL = MAJORITY * 2 - 1;
const TRY_NEXT_AFTER_MS = 20;

/** ErrNotLocked: the key is someone else's. Any other failure is an Error. */
const NOT_LOCKED = 'not locked';
type Outcome = undefined | typeof NOT_LOCKED | Error;

/** What a context's cancellation reads as in the checker's log. */
class ContextCanceled extends Error {
  readonly code = 'GO_CONTEXT_CANCELED';
}

/** rueidis' connection: RESP3, invalidations pushed on it. */
const goClient = (url: string) => createClient({ url, RESP: 3, emitInvalidate: true });
type Client = ReturnType<typeof goClient>;

/** A name's gate: one pending wake per key (Go's `csc` channels, buffered one). */
interface Gate {
  readonly pending: boolean[];
  readonly listeners: Set<() => void>;
}

export interface GoHeld {
  readonly signal: AbortSignal;
  /** Cancel the context and wait until every key's monitor has deleted its key. */
  release(): Promise<void>;
}

export class GoLocker {
  readonly #client: Client;
  readonly #validityMs: number;
  readonly #intervalMs: number;
  readonly #gates = new Map<string, Gate>();

  private constructor(client: Client, validityMs: number) {
    this.#client = client;
    this.#validityMs = validityMs;
    this.#intervalMs = validityMs / 2;
    client.on('invalidate', (key: Buffer | string | null) =>
      this.#invalidated(key === null ? null : key.toString()),
    );
  }

  static async connect(url: string, validityMs: number): Promise<GoLocker> {
    // rueidis: RESP3, client-side caching, CLIENT TRACKING ON OPTOUT NOLOOP on every connection.
    const client = goClient(url);
    client.on('error', () => {});
    client.on('ready', () => {
      client.sendCommand(['CLIENT', 'TRACKING', 'ON', 'OPTOUT', 'NOLOOP']).catch(() => {});
    });
    await client.connect();
    await client.sendCommand(['CLIENT', 'TRACKING', 'ON', 'OPTOUT', 'NOLOOP']);
    return new GoLocker(client, validityMs);
  }

  /** `WithContext`: wait for the lock until `parent` aborts (then reject with its reason). */
  async withContext(name: string, parent: AbortSignal): Promise<GoHeld> {
    const gate: Gate = {
      pending: Array.from({ length: TOTAL }, () => false),
      listeners: new Set(),
    };
    this.#gates.set(name, gate);
    let held: GoHeld | undefined;
    try {
      // Bounded by `parent`: every pass either holds, or waits at most an interval after its
      // monitors end, which ends with `parent`.
      while (!parent.aborted) {
        const attempt = await this.#try(name, gate, parent);
        if (attempt.held) {
          held = attempt.held;
          const done = attempt.done;
          const release = held.release;
          return {
            signal: held.signal,
            release: async () => {
              await release();
              await done;
              this.#gates.delete(name);
            },
          };
        }
        await attempt.done;
        if (attempt.failures() >= MAJORITY) await this.#waitForWake(gate, parent);
      }
      throw parent.reason;
    } finally {
      if (!held) this.#gates.delete(name);
    }
  }

  close(): void {
    this.#client.destroy();
  }

  async #try(name: string, gate: Gate, parent: AbortSignal) {
    const context = new AbortController();
    const cancel = (reason: unknown) => {
      if (!context.signal.aborted) context.abort(reason);
    };
    const onParent = () => cancel(parent.reason);
    parent.addEventListener('abort', onParent, { once: true });
    if (parent.aborted) onParent();
    const value = randomBytes(24);
    const deadline = Date.now() + this.#validityMs;
    let cancelTimerFired = false;
    const cancelTimer = setTimeout(() => {
      cancelTimerFired = true;
      cancel(new ContextCanceled('acquisition outlasted the validity'));
    }, this.#validityMs);
    let released = 0;
    let acquired = 0;
    let failures = 0;
    let markDone!: () => void;
    const done = new Promise<void>((resolve) => {
      markDone = resolve;
    }).finally(() => parent.removeEventListener('abort', onParent));

    const keyOf = (i: number) => `${PREFIX}:${i}:${name}`;
    const monitoring = async (outcome: Outcome, i: number, keyDeadline: number) => {
      let err = outcome;
      if (err === undefined) {
        let timerAt = Date.now() + this.#intervalMs;
        while (err === undefined) {
          const event = await this.#next(gate, i, timerAt, context.signal);
          if (event === 'context') {
            err = new ContextCanceled('context canceled');
          } else if (event === 'timer') {
            keyDeadline += this.#intervalMs;
            err = await this.#script(EXTEND, keyOf(i), value, keyDeadline, context.signal);
            if (err === undefined) timerAt = Date.now() + this.#intervalMs;
          } else {
            err = await this.#script(EXTEND, keyOf(i), value, keyDeadline, context.signal);
          }
        }
      }
      if (err !== NOT_LOCKED) {
        await this.#script(DELKEY, keyOf(i), value, keyDeadline, undefined);
      }
      released++;
      if (released >= MAJORITY) {
        cancel(new ContextCanceled('a majority of keys let go'));
        if (released === TOTAL) markDone();
      }
    };

    const acquire = async (previous: Outcome, i: number): Promise<Outcome> => {
      gate.pending[i] = false;
      let err = previous;
      if (err !== NOT_LOCKED)
        err = await this.#acquireKey(keyOf(i), value, deadline, context.signal);
      void monitoring(err, i, deadline);
      return err;
    };

    let err: Outcome;
    let i = 0;
    for (let a = 0, f = 0; a < MAJORITY && f < MAJORITY; i++) {
      err = await acquire(err, i);
      if (err === undefined) a = ++acquired;
      else f = ++failures;
    }
    if (i !== TOTAL) {
      void (async () => {
        for (; i < TOTAL; i++) err = await acquire(err, i);
      })();
    }
    clearTimeout(cancelTimer);
    const failuresNow = () => failures;
    if (!cancelTimerFired && failures < MAJORITY) {
      const held: GoHeld = {
        signal: context.signal,
        release: async () => {
          cancel(new ContextCanceled('released'));
          await done;
        },
      };
      return { held, done, failures: failuresNow };
    }
    // WithContext cancels the context of a failed try: its monitors delete what was taken.
    cancel(new ContextCanceled('try failed'));
    return { held: undefined, done, failures: failuresNow };
  }

  /** `acquire`: SET NX PXAT and GET pipelined, bounded by TryNextAfter. */
  async #acquireKey(key: string, value: Buffer, deadline: number, context: AbortSignal) {
    const set = this.#client.sendCommand(['SET', key, value, 'NX', 'PXAT', String(deadline)]);
    const get = this.#client.sendCommand(['GET', key]);
    get.catch(() => {});
    try {
      const reply = await bounded(set, TRY_NEXT_AFTER_MS, context);
      return reply === null ? NOT_LOCKED : undefined;
    } catch (error) {
      return error as Error;
    }
  }

  /** `script`: 1 is success, 0 NOT_LOCKED; bounded by the key's deadline (and the context). */
  async #script(
    script: string,
    key: string,
    value: Buffer,
    deadline: number,
    context: AbortSignal | undefined,
  ): Promise<Outcome> {
    const reply = this.#client.sendCommand(['EVAL', script, '1', key, value, String(deadline)]);
    try {
      const result = Number(await bounded(reply, Math.max(0, deadline - Date.now()), context));
      return result === 1 ? undefined : NOT_LOCKED;
    } catch (error) {
      return error as Error;
    }
  }

  /** A held key's monitor: the context's end, its extension timer, or its key's invalidation. */
  #next(
    gate: Gate,
    i: number,
    timerAt: number,
    context: AbortSignal,
  ): Promise<'context' | 'timer' | 'invalidated'> {
    if (context.aborted) return Promise.resolve('context');
    if (gate.pending[i]) {
      gate.pending[i] = false;
      return Promise.resolve('invalidated');
    }
    return new Promise((resolve) => {
      const finish = (event: 'context' | 'timer' | 'invalidated') => {
        clearTimeout(timer);
        context.removeEventListener('abort', onAbort);
        gate.listeners.delete(onWake);
        resolve(event);
      };
      const onAbort = () => finish('context');
      const onWake = () => {
        if (!gate.pending[i]) return;
        gate.pending[i] = false;
        finish('invalidated');
      };
      const timer = setTimeout(() => finish('timer'), Math.max(0, timerAt - Date.now()));
      context.addEventListener('abort', onAbort, { once: true });
      gate.listeners.add(onWake);
    });
  }

  /** After a failed try: the interval, or any of the name's keys invalidated, or `parent`. */
  #waitForWake(gate: Gate, parent: AbortSignal): Promise<void> {
    const take = () => {
      const i = gate.pending.indexOf(true);
      if (i < 0) return false;
      gate.pending[i] = false;
      return true;
    };
    if (parent.aborted || take()) return Promise.resolve();
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        parent.removeEventListener('abort', finish);
        gate.listeners.delete(onWake);
        resolve();
      };
      const onWake = () => {
        if (take()) finish();
      };
      const timer = setTimeout(finish, this.#intervalMs);
      parent.addEventListener('abort', finish, { once: true });
      gate.listeners.add(onWake);
    });
  }

  /** `onInvalidations`: key `prefix:i:name` wakes gate `name`, key `i`; null wakes all. */
  #invalidated(key: string | null): void {
    const targets: Array<[Gate, number | undefined]> = [];
    if (key === null) {
      for (const gate of this.#gates.values()) targets.push([gate, undefined]);
    } else {
      const parts = key.split(':');
      if (parts.length < 3) return;
      const gate = this.#gates.get(parts.slice(2).join(':'));
      const index = Number(parts[1]);
      if (!gate || !Number.isInteger(index) || index < 0 || index >= TOTAL) return;
      targets.push([gate, index]);
    }
    for (const [gate, index] of targets) {
      if (index === undefined) gate.pending.fill(true);
      else gate.pending[index] = true;
      for (const listener of [...gate.listeners]) listener();
    }
  }
}

/** `work`, unless `ms` pass or `context` aborts first (then reject; `work` goes on unheard). */
async function bounded<T>(work: Promise<T>, ms: number, context: AbortSignal | undefined) {
  work.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('deadline exceeded')), ms);
    if (context) {
      onAbort = () => reject(new ContextCanceled('context canceled'));
      if (context.aborted) onAbort();
      else context.addEventListener('abort', onAbort, { once: true });
    }
  });
  try {
    return await Promise.race([work, stop]);
  } finally {
    clearTimeout(timer);
    if (onAbort) context?.removeEventListener('abort', onAbort);
  }
}
