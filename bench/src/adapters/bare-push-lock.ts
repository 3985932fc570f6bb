/**
 * The bare push lock: the least a lock woken by invalidation pushes needs, written on a plain
 * client, so that every run shows how far tracklock is from the protocol's floor on the same
 * client. One key per lock, no extension, no loss signal, no abort:
 *
 *   acquire  MULTI; SET key token NX PX validity; GET key; PTTL key; EXEC
 *            (the GET puts the key in the connection's tracking table even when the SET
 *            fails, atomically with it: no release can fall between the failed attempt and
 *            the tracking, so no wake-up is lost); on failure wait for an invalidation of the
 *            key, or, as a bounded fallback, until its PTTL has run out; then again
 *   release  if GET key == token then DEL key (a script), whose invalidation wakes the waiters
 *
 * bare-node-redis.ts and bare-ioredis.ts give it the commands and the invalidations.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Held, LockClient } from './types.js';

/** tracklock's default key validity: a held lock expires this long after it was taken. */
export const BARE_VALIDITY_MS = 5000;

/** The release's compare-and-delete: a holder whose key expired and was taken deletes nothing. */
const RELEASE_SCRIPT = `local token = ARGV[1]
if redis.call('GET', KEYS[1]) == token then
  return redis.call('DEL', KEYS[1])
end
return 0`;
const RELEASE_SHA = createHash('sha1').update(RELEASE_SCRIPT).digest('hex');

/** The release on any client that sends a raw command: by SHA, by body if the server lost it. */
export async function releaseWith(
  send: (args: string[]) => Promise<unknown>,
  key: string,
  token: string,
): Promise<void> {
  try {
    await send(['EVALSHA', RELEASE_SHA, '1', key, token]);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
    await send(['EVAL', RELEASE_SCRIPT, '1', key, token]);
  }
}

/** One attempt's outcome: whether the SET took the key, and the key's PTTL after it. */
export interface Attempt {
  readonly acquired: boolean;
  /** ms left on the holder's key; -1 no expiry, -2 no key (as PTTL answers). */
  readonly pttlMs: number;
}

/** What a client gives the lock: the two round trips, and a way to close. */
export interface BareCommands {
  /** MULTI: SET key token NX PX validity, GET key, PTTL key; EXEC. */
  attempt(key: string, token: string): Promise<Attempt>;
  /** The compare-and-delete script. */
  release(key: string, token: string): Promise<void>;
  close(): Promise<void>;
}

/** The waiters of one key in this client. */
interface Waiting {
  /** Bumped by every invalidation of the key: a waiter compares it across its attempt. */
  generation: number;
  /** Acquires in progress on the key; the entry goes when the last one ends. */
  acquires: number;
  readonly wake: Set<() => void>;
}

/** The waiting side, fed by the client's invalidations. */
export class BarePushLock {
  readonly #waiting = new Map<string, Waiting>();
  readonly #namespace: string;
  #commands: BareCommands | undefined;
  #closed = false;

  constructor(namespace: string) {
    this.#namespace = namespace;
  }

  /** The commands, once the client is connected (its invalidations may come before). */
  use(commands: BareCommands): void {
    this.#commands = commands;
  }

  /** An invalidation push for `key`; `null`: a flush or a new connection, all may have changed. */
  invalidated(key: string | null): void {
    const entries = key === null ? [...this.#waiting.values()] : [this.#waiting.get(key)];
    for (const entry of entries) {
      if (!entry) continue;
      entry.generation++;
      for (const wake of [...entry.wake]) wake();
    }
  }

  client(): LockClient {
    return {
      acquire: (name) => this.#acquire(`${this.#namespace}:${name}`),
      close: () => this.#close(),
    };
  }

  async #acquire(key: string): Promise<Held> {
    const commands = this.#commands;
    if (!commands || this.#closed) throw new Error('bare push lock: client closed');
    const token = randomBytes(16).toString('hex');
    const entry = this.#enter(key);
    try {
      for (;;) {
        // Taken before the attempt is sent: an invalidation read while its reply is on the way
        // (on the same connection just after it, or on ioredis' subscriber before it) counts.
        const seen = entry.generation;
        const { acquired, pttlMs } = await commands.attempt(key, token);
        if (acquired) return { release: () => commands.release(key, token) };
        if (entry.generation === seen) await this.#wait(entry, pttlMs);
        if (this.#closed) throw new Error('bare push lock: client closed');
      }
    } finally {
      this.#leave(key, entry);
    }
  }

  /** Until an invalidation, or the holder's key has expired (the fallback, should one be lost). */
  #wait(entry: Waiting, pttlMs: number): Promise<void> {
    const fallbackMs = pttlMs >= 0 ? pttlMs + 1 : pttlMs === -2 ? 0 : BARE_VALIDITY_MS;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        entry.wake.delete(done);
        resolve();
      };
      const timer = setTimeout(done, fallbackMs);
      entry.wake.add(done);
    });
  }

  #enter(key: string): Waiting {
    let entry = this.#waiting.get(key);
    if (!entry) {
      entry = { generation: 0, acquires: 0, wake: new Set() };
      this.#waiting.set(key, entry);
    }
    entry.acquires++;
    return entry;
  }

  #leave(key: string, entry: Waiting): void {
    if (--entry.acquires === 0) this.#waiting.delete(key);
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.invalidated(null); // every waiter wakes, sees closed and rejects
    await this.#commands?.close();
  }
}
