import type { KeyStore, Outcome } from './store.js';

interface Leftover {
  readonly store: KeyStore;
  readonly keys: readonly string[];
  readonly value: string;
  /** `performance.now()` after which the keys have expired anyway. */
  readonly until: number;
}

/**
 * Keys an ended lock could not delete, because their server's connection was down (a lock
 * lost to a dropped connection, a release during an outage): they are deleted again, by
 * value, each time a connection comes back, until they would have expired anyway. Without
 * this, where a client has no offline queue (nodes, cluster), such a lock would stay taken
 * for up to `keyValidityMs` after the servers were back.
 */
export class Leftovers {
  readonly #entries = new Set<Leftover>();
  readonly #validityMs: number;

  constructor(validityMs: number) {
    this.#validityMs = validityMs;
  }

  /** A lock's deletion of `keys` came to `outcomes`: keep the keys it did not confirm. */
  note(
    store: KeyStore,
    keys: readonly string[],
    value: string,
    outcomes: readonly Outcome<boolean>[],
    until = performance.now() + this.#validityMs,
  ): void {
    const left = keys.filter((_, i) => outcomes[i]?.status === 'rejected');
    if (left.length > 0) this.#entries.add({ store, keys: left, value, until });
  }

  /** A connection came back: send the deletions again (and forget those past their expiry). */
  retry(): void {
    const now = performance.now();
    for (const entry of this.#entries) {
      this.#entries.delete(entry);
      if (now >= entry.until) continue;
      const { store, keys, value, until } = entry;
      void store
        .delete(keys, value)
        .then((outcomes) => this.note(store, keys, value, outcomes, until));
    }
  }
}
