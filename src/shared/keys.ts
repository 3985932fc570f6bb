/**
 * Key layout, shared with Go's rueidislock: lock `name` is the keys
 * `${prefix}:0:${name}` … `${prefix}:${count - 1}:${name}`.
 */
export function keyNames(prefix: string, name: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => lockKey(prefix, i, name));
}

/** Key `index` of lock `name`. */
export function lockKey(prefix: string, index: number, name: string): string {
  return `${prefix}:${index}:${name}`;
}

/**
 * The waiters queued for `name` (a sorted set, see QUEUE in scripts.ts). Not a number where Go
 * puts the key index, so it never collides with a lock key.
 */
export function queueKey(prefix: string, name: string): string {
  return `${prefix}:q:${name}`;
}

/** The roles of `name`'s queued waiters (head, deputy) and its run of handoffs: a hash. */
export function rolesKey(prefix: string, name: string): string {
  return `${prefix}:r:${name}`;
}

/** A listening waiter's ticket: its deadline, expiring with it. */
export function ticketKey(prefix: string, ticket: string): string {
  return `${prefix}:t:${ticket}`;
}

/** The key written once to wake a queued waiter: it has become the head or the deputy. */
export function wakeKey(prefix: string, ticket: string): string {
  return `${prefix}:w:${ticket}`;
}

/**
 * The key only a release writes, to tell the waiter of `ticket` it holds the lock now. The
 * waiter only reads it while it is the head, so its own renewals (echoed back without NOLOOP)
 * do not change it; once written it expires with the handoff, and a waiter that refused that
 * handoff stops listening to it (see Ticket.deaf).
 */
export function handoffKey(prefix: string, ticket: string): string {
  return `${prefix}:h:${ticket}`;
}

/**
 * The keys of a name's queue (see QUEUE in scripts.ts): its sorted set, its roles hash, and the
 * prefixes of each waiter's ticket, wake and handoff keys (the prefix, then the waiter's value).
 */
export interface QueueNames {
  readonly queueKey: string;
  readonly rolesKey: string;
  readonly tickets: string;
  readonly wakes: string;
  readonly handoffs: string;
}

/** The queue of lock `name` on one server. */
export function queueNames(prefix: string, name: string): QueueNames {
  return {
    queueKey: queueKey(prefix, name),
    rolesKey: rolesKey(prefix, name),
    tickets: ticketKey(prefix, ''),
    wakes: wakeKey(prefix, ''),
    handoffs: handoffKey(prefix, ''),
  };
}

/**
 * The queue of a lock whose keys are on several servers: beside its key 0, on that key's
 * server, and in a cluster in its slot (key 0 is the hashtag of every one of these keys, as in
 * `slotFenceKey`), so that one script reads the queue and tries key 0 together.
 */
export function besideQueueNames(key0: string): QueueNames {
  const tag = `{${key0}}`;
  return {
    queueKey: `${tag}:q`,
    rolesKey: `${tag}:r`,
    tickets: `${tag}:t:`,
    wakes: `${tag}:w:`,
    handoffs: `${tag}:h:`,
  };
}

/**
 * Where the fencing token of lock `name` is kept on each server that holds its keys: not a
 * number where Go puts the key index, so it never collides with a lock key.
 */
export function fenceKey(prefix: string, name: string): string {
  return `${prefix}:f:${name}`;
}

/**
 * In a cluster each key has a fence of its own, in the key's slot (the key itself is its
 * hashtag), so that one script can draw the token with the key.
 */
export function slotFenceKey(key: string): string {
  return `{${key}}:f`;
}

/**
 * The longest lock name, in bytes of UTF-8 (what goes on the wire): 64 KiB. Redis would take
 * keys up to 512 MB, but the name travels in every key of the lock (`2M-1` of them, plus its
 * fence key) with every acquisition, extension and release, sits in the server's tracking
 * table once per key and comes back in every invalidation push: a longer name is almost
 * certainly a mistake (a document passed where its id was meant) that would cost that much.
 */
export const MAX_NAME_BYTES = 65_536;

/**
 * Names must be non-empty, well-formed strings: a lone UTF-16 surrogate would be encoded to
 * U+FFFD on the wire, and two different names would then share one set of keys. And at most
 * {@link MAX_NAME_BYTES} bytes of UTF-8.
 */
export function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name === '') {
    throw new TypeError(`lock name must be a non-empty string, got ${describe(name)}`);
  }
  if (!name.isWellFormed()) {
    throw new TypeError('lock name must be well-formed Unicode (it contains a lone surrogate)');
  }
  // A UTF-16 code unit is at most 3 bytes of UTF-8: only a long name needs counting.
  if (name.length * 3 > MAX_NAME_BYTES) {
    const bytes = Buffer.byteLength(name, 'utf8');
    if (bytes > MAX_NAME_BYTES) {
      throw new RangeError(
        `lock name must be at most ${MAX_NAME_BYTES} bytes (64 KiB) of UTF-8, got ${bytes}`,
      );
    }
  }
}

function describe(value: unknown): string {
  return typeof value === 'string' ? '""' : String(value);
}

/** `${prefix}:${i}:${name}` back into its parts, or undefined for a key that is not a lock's. */
export function parseKey(prefix: string, key: string): { index: number; name: string } | undefined {
  if (!key.startsWith(`${prefix}:`)) return undefined;
  const rest = key.slice(prefix.length + 1);
  const colon = rest.indexOf(':');
  const index = Number(rest.slice(0, colon));
  if (colon < 1 || !Number.isInteger(index)) return undefined;
  return { index, name: rest.slice(colon + 1) };
}

/**
 * The part of `key` Redis Cluster hashes when it is not the whole key: what lies between the
 * first `{` and the next `}`, when that is not empty. Keys with the same hashtag share a slot.
 */
export function hashtag(key: string): string | undefined {
  const open = key.indexOf('{');
  if (open < 0) return undefined;
  const close = key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : undefined;
}

/** The kinds of lock beside the mutex, by the letter or word their keys carry. */
export type SemaphoreKind = 's' | 'rw';

/**
 * The keys of semaphore (`'s'`) or read-write lock (`'rw'`) `name` (docs/semaphores.md): all
 * under the base `{${prefix}:${kind}:${name}}`, so that they share one cluster slot whatever
 * braces the name holds (the hashtag opens at the key's first byte and
 * closes inside that shared base), and never equal a mutex key (whose part after the prefix
 * is a number or a single letter, and whose own hashtagged keys begin `{${prefix}:<number>:`).
 * The per-holder and per-waiter prefixes end with `:`; a value after them has no `}`.
 */
export interface SemaphoreNames {
  /** A hash: the semaphore's `limit`. */
  readonly meta: string;
  /**
   * A sorted set: one member per permit held (a rw lock: per reader), scored by its expiry
   * (server ms).
   */
  readonly holders: string;
  /** A rw lock's writer, as `holders` (a semaphore's stays empty). */
  readonly writers: string;
  /** Prefix of a holder's own key, the one it reads to hear of its loss. */
  readonly owns: string;
  readonly fence: string;
  /** The queue of waiters, as the mutex's (`queueNames`). */
  readonly queue: QueueNames;
}

export function semaphoreNames(prefix: string, kind: SemaphoreKind, name: string): SemaphoreNames {
  const base = `{${prefix}:${kind}:${name}}`;
  return {
    meta: `${base}:m`,
    holders: `${base}:h`,
    writers: `${base}:hw`,
    owns: `${base}:o:`,
    fence: `${base}:f`,
    queue: {
      queueKey: `${base}:q`,
      rolesKey: `${base}:r`,
      tickets: `${base}:t:`,
      wakes: `${base}:w:`,
      handoffs: `${base}:x:`,
    },
  };
}
