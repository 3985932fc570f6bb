import { type KeyStore, type Outcome, settled } from '../redis/store.js';

/** A deletion by value, with the holder's token to raise the fence with (see KeyStore.delete). */
export interface Deletion {
  readonly keys: readonly string[];
  readonly value: string;
  readonly token?: bigint | undefined;
}

interface Leftover extends Deletion {
  readonly store: KeyStore;
  /** `performance.now()` after which the keys have expired anyway. */
  readonly until: number;
}

/**
 * Deletions by value that a server did not confirm, because its connection was down (a lock
 * lost to a dropped connection, a release or an attempt's give-back during an outage): sent
 * again each time a connection comes back, until the keys would have expired anyway. Without
 * this, where a client has no offline queue (nodes, cluster), such keys would keep a lock
 * taken for up to `keyValidityMs` after the servers were back.
 */
export class Leftovers {
  /** In order of `until` but for re-sent ones, so expired entries are trimmed from the front. */
  readonly #entries = new Set<Leftover>();
  readonly #validityMs: number;
  /** Counts reconnects: a deletion that fails across one is sent again at once. */
  #reconnects = 0;

  constructor(validityMs: number) {
    this.#validityMs = validityMs;
  }

  /**
   * Follow `deletion`, just `sent` to `store`: keep the keys it does not confirm. (Returns
   * when it has settled, for tests; callers need not wait.)
   */
  async track(
    store: KeyStore,
    deletion: Deletion,
    sent: Promise<readonly Outcome<boolean>[]>,
    until = performance.now() + this.#validityMs,
  ): Promise<void> {
    const sentAfter = this.#reconnects;
    // With several servers a deletion settles on the majority: a slow server's answer comes
    // later, and only a failure there leaves the key behind.
    const outcomes = await Promise.all((await sent).map(settled));
    const keys = deletion.keys.filter((_, i) => outcomes[i]?.status === 'rejected');
    const now = performance.now();
    this.#trim(now);
    if (keys.length === 0 || now >= until) return;
    const entry = { ...deletion, store, keys, until };
    // A connection came back while this deletion was out: its retry could not see it.
    if (this.#reconnects !== sentAfter) this.#send(entry);
    else this.#entries.add(entry);
  }

  /** A connection came back: send every deletion again. */
  retry(): void {
    this.#reconnects++;
    const now = performance.now();
    for (const entry of this.#entries) {
      this.#entries.delete(entry);
      if (now < entry.until) this.#send(entry);
    }
  }

  /** How many deletions wait for a reconnect. */
  get size(): number {
    return this.#entries.size;
  }

  #send({ store, until, ...deletion }: Leftover): void {
    const { keys, value, token } = deletion;
    void this.track(store, deletion, store.delete(keys, value, token), until);
  }

  /** Forget the entries whose keys have expired, from the oldest on. */
  #trim(now: number): void {
    for (const entry of this.#entries) {
      if (now < entry.until) return;
      this.#entries.delete(entry);
    }
  }
}
