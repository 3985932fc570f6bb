import type { Given, Layout, Script } from './lua.js';
import {
  type CallCounts,
  type KeyCheck,
  type KeyOps,
  type KeyState,
  type Outcome,
  type QueueKeys,
  type Settled,
  settled,
  type Take,
  type Turn,
} from './store.js';

/**
 * Where one key lives: the operations of the server that holds it, the group of keys that go
 * to it in one call (a node, or in a cluster the key itself), and the key's name there.
 */
export type Place = (key: string) => {
  readonly ops: KeyOps;
  readonly group: unknown;
  readonly key: string;
};

/**
 * A lock's keys spread over several servers. Each operation goes out at once to every server
 * concerned, one call per group, and the outcomes come back in the caller's key order. An
 * acquisition, and a deletion, settle as soon as the majority is decided: a frozen server
 * cannot hold them up, and its keys' outcomes are `pending` (the caller gives them back by
 * value, or follows them).
 * A name's queue lives on key 0's server, beside it (see `Turn`): its part of a call goes there.
 * Every call is bounded by `commandTimeoutMs` on its own.
 */
export class SplitStore implements KeyOps {
  readonly #place: Place;
  readonly #majority: number;
  readonly #keyCount: number;

  constructor(place: Place, majority: number) {
    this.#place = place;
    this.#majority = majority;
    this.#keyCount = 2 * majority - 1;
  }

  acquire(
    keys: readonly string[],
    value: string,
    take: Take,
    queue?: QueueKeys,
    turn: Turn = 'all',
  ): Promise<Outcome<KeyState>[]> {
    const spare = keys.length - this.#majority;
    // A whole lock's attempt is decided by the majority; a holder retaking a few keys is not.
    const whole = keys.length === this.#keyCount;
    const beside = queue && this.#queueGroup(keys);
    if (beside && turn === 'queue') return this.#queueOnly(keys, beside, value, take, queue);
    return this.#fan(
      keys,
      (ops, some, group) =>
        group === beside
          ? ops.acquire(some, value, take, queue, turn)
          : ops.acquire(some, value, take),
      (outcomes) => {
        if (!whole) return false;
        // The queue's reply says whether the waiter may take the lock (its turn): wait for it,
        // unless the waiter races (that server failed it last time).
        if (beside && turn === 'all' && outcomes[0] === undefined) return false;
        let ours = 0;
        let others = 0;
        for (const outcome of outcomes) {
          if (outcome?.status !== 'fulfilled') continue;
          if (outcome.value.value === value) ours++;
          else others++;
        }
        return ours >= this.#majority || others > spare;
      },
    );
  }

  extend(keys: readonly string[], value: string, token?: bigint): Promise<Outcome<boolean>[]> {
    return this.#fan(
      keys,
      (ops, some) => ops.extend(some, value, token),
      (outcomes) => confirmed(outcomes) >= this.#majority,
    );
  }

  check(keys: readonly string[], value: string): Promise<Outcome<KeyCheck>[]> {
    return this.#fan(keys, (ops, some) => ops.check(some, value));
  }

  watch(key: string, beside = key): Promise<void> {
    const { ops, key: there } = this.#place(beside);
    return ops.watch(beside === key ? there : key);
  }

  delete(keys: readonly string[], value: string, token?: bigint): Promise<Outcome<boolean>[]> {
    return this.#fan(
      keys,
      (ops, some) => ops.delete(some, value, token),
      (outcomes) => confirmed(outcomes) >= this.#majority,
    );
  }

  /**
   * No key moves across servers: a release is a deletion everywhere, and on the queue's server
   * it also leaves the queue (see `Turn`).
   */
  release(
    keys: readonly string[],
    value: string,
    queue?: QueueKeys,
    token?: bigint,
  ): Promise<Outcome<boolean>[]> {
    const beside = queue && this.#queueGroup(keys);
    return this.#fan(
      keys,
      (ops, some, group) =>
        group === beside ? ops.release(some, value, queue, token) : ops.delete(some, value, token),
      (outcomes) => confirmed(outcomes) >= this.#majority,
    );
  }

  leave(keys: readonly string[], value: string, queue: QueueKeys): Promise<void> {
    const { ops, key } = this.#place(keys[0] as string);
    return ops.leave([key], value, queue);
  }

  /**
   * In a cluster, the server of the script's first key, which shares its slot with the others
   * (on independent nodes no script of one server could count a semaphore's holders: the
   * locker refuses semaphores there).
   */
  script<K extends Layout, A extends Layout, R>(
    script: Script<K, A, R>,
    keys: Given<K>,
    args: Given<A>,
    kind: keyof CallCounts,
  ): Promise<R> {
    const first = Object.values(keys)[0] as string;
    return this.#place(first).ops.script(script, keys, args, kind);
  }

  /** The group of key 0, whose server holds the queue. */
  #queueGroup(keys: readonly string[]): unknown {
    return this.#place(keys[0] as string).group;
  }

  /**
   * A waiter behind the head asks only the queue's server, and touches no key: the others'
   * keys are not read (`pttlMs` -3, as the script says of a key it did not read).
   */
  async #queueOnly(
    keys: readonly string[],
    beside: unknown,
    value: string,
    take: Take,
    queue: QueueKeys,
  ): Promise<Outcome<KeyState>[]> {
    const here = keys.filter((key) => this.#place(key).group === beside);
    const { ops } = this.#place(keys[0] as string);
    const outcomes = await ops.acquire(
      here.map((key) => this.#place(key).key),
      value,
      take,
      queue,
      'queue',
    );
    const first = outcomes[0] as Outcome<KeyState>;
    const unread: Outcome<KeyState> = {
      status: 'fulfilled',
      value: { value: null, pttlMs: -3, token: undefined },
    };
    return keys.map((key) =>
      this.#place(key).group === beside
        ? (outcomes[here.indexOf(key)] as Outcome<KeyState>)
        : first.status === 'fulfilled'
          ? unread
          : first,
    );
  }

  /** Call `call` once per group; settle when every group answered or `decided` says so. */
  #fan<T>(
    keys: readonly string[],
    call: (ops: KeyOps, keys: string[], group: unknown) => Promise<Outcome<T>[]>,
    decided: (outcomes: readonly (Outcome<T> | undefined)[]) => boolean = () => false,
  ): Promise<Outcome<T>[]> {
    const groups = new Map<unknown, { ops: KeyOps; indexes: number[]; keys: string[] }>();
    keys.forEach((logical, i) => {
      const { ops, group, key } = this.#place(logical);
      const entry = groups.get(group);
      if (entry) {
        entry.indexes.push(i);
        entry.keys.push(key);
      } else groups.set(group, { ops, indexes: [i], keys: [key] });
    });
    const outcomes: (Outcome<T> | undefined)[] = keys.map(() => undefined);
    const late: Promise<Settled<T>>[] = [];
    let waiting = groups.size;
    return new Promise((resolve) => {
      const settle = () =>
        resolve(
          outcomes.map(
            (outcome, i): Outcome<T> =>
              outcome ?? { status: 'pending', later: late[i] as Promise<Settled<T>> },
          ),
        );
      if (waiting === 0) settle();
      for (const [group, { ops, indexes, keys: some }] of groups) {
        const reply = call(ops, some, group);
        indexes.forEach((i, n) => {
          late[i] = reply.then((some) => settled(some[n] as Outcome<T>));
        });
        void reply.then((some) => {
          indexes.forEach((i, n) => {
            outcomes[i] = some[n];
          });
          waiting--;
          if (waiting === 0 || decided(outcomes)) settle();
        });
      }
    });
  }
}

function confirmed(outcomes: readonly (Outcome<boolean> | undefined)[]): number {
  return outcomes.filter((outcome) => outcome?.status === 'fulfilled' && outcome.value).length;
}
