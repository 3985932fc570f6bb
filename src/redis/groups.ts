import { createHash } from 'node:crypto';
import type { KeyStore, Placement } from './store.js';

/** One set of independent nodes, known by its id (its position in `groups`, or its own). */
export interface Group {
  readonly id: string;
  readonly store: KeyStore;
}

/**
 * Several independent sets of nodes, each lock name living on one of them: traffic scales out
 * over many servers. The set is chosen by rendezvous (highest random weight) hashing of the
 * name with each set's id, so every process agrees without talking, and adding a set moves
 * only the names the new set wins: about 1/n of them.
 */
export class Groups implements Placement {
  readonly #groups: readonly Group[];
  readonly #ids: readonly string[];

  constructor(groups: readonly Group[]) {
    this.#groups = groups;
    this.#ids = groups.map((group) => group.id);
  }

  storeFor(name: string): KeyStore {
    return (this.#groups[groupOf(name, this.#ids)] as Group).store;
  }

  checkName(): void {}

  async close(timeoutMs: number): Promise<void> {
    await Promise.all(this.#groups.map((group) => group.store.close(timeoutMs)));
  }
}

/** The index of the group, among `ids`, that lock `name` lives on. */
export function groupOf(name: string, ids: readonly string[]): number {
  let best = -1;
  let bestScore = -1;
  ids.forEach((id, i) => {
    const score = createHash('sha256').update(`${id}\n${name}`).digest().readUIntBE(0, 6);
    if (score > bestScore) {
      best = i;
      bestScore = score;
    }
  });
  return best;
}
