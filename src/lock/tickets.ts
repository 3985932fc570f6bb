import { randomUUID } from 'node:crypto';
import type { QueueKeys, Turn } from '../redis/store.js';
import type { HeldLock, HoldTerms } from './lock.js';

/**
 * The active waiter's place in a name's queue on the server. Its value is the waiter's for
 * every attempt, so that a release can write it into the keys, until an attempt goes
 * unanswered: then the waiter deletes by that value (which may undo a handoff in flight) and
 * goes on under a new one, deaf to the old one's handoff.
 */
export interface Ticket {
  readonly name: string;
  readonly value: string;
  readonly queue: QueueKeys;
  /** The caller's terms, which a handed lock is held on like any other. */
  readonly terms: HoldTerms;
  /**
   * The send time of the attempt that last renewed the ticket on the server (its deadline
   * counts from the server's time then, which is later): the safe bound of a handoff to it.
   */
  registeredAt: number | undefined;
  /** The fencing token a handoff gives it, as its last answered attempt drew it. */
  reserved: bigint | undefined;
  /**
   * An attempt is in flight: a handoff heard now (`heard`) is judged once its reply is read,
   * since the reply may have come first on the connection, with a newer token.
   */
  inFlight: boolean;
  heard: boolean;
  /** Attempts sent under this value. */
  tries: number;
  /** The lock a release handed over, once one has. */
  handed: HeldLock | undefined;
  /**
   * Set once a handoff was refused (heard too late): its handoff key then lingers until it
   * expires, and that expiry must not read as a handoff. The waiter takes later handoffs to
   * this value by its own attempts, which the keys' invalidations wake.
   */
  deaf: boolean;
  /** Where the lock's keys are on several servers: what its next attempt asks. */
  turn: Turn;
  /**
   * The queue's server has taken it in (where the keys are on several servers): it leaves
   * once it holds the lock, since the script that queued it could not see the majority.
   */
  queued: boolean;
}

/** What a pushed key means to a waiter: a handoff to it, its wake key, or the head it watches. */
export type Heard = { readonly ticket: Ticket; readonly kind: 'handoff' | 'wake' | 'head' };

/**
 * The tickets of one locker's waiters, by value, and by the exact keys whose invalidation
 * concerns them (their handoff and wake keys, and for a deputy the ticket key of the head it
 * watches): a queue's keys are named after the lock's key 0 where its keys are on several
 * servers, so no one prefix tells them.
 */
export class Tickets {
  readonly #byValue = new Map<string, Ticket>();
  readonly #byKey = new Map<string, Heard>();
  readonly #watching = new Map<Ticket, string>();

  issue(name: string, queue: QueueKeys, terms: HoldTerms): Ticket {
    const ticket: Ticket = {
      name,
      value: randomUUID(),
      queue,
      terms,
      registeredAt: undefined,
      reserved: undefined,
      inFlight: false,
      heard: false,
      tries: 0,
      handed: undefined,
      deaf: false,
      turn: 'all',
      queued: false,
    };
    this.#byValue.set(ticket.value, ticket);
    this.#byKey.set(queue.handoffs + ticket.value, { ticket, kind: 'handoff' });
    this.#byKey.set(queue.wakes + ticket.value, { ticket, kind: 'wake' });
    return ticket;
  }

  /** The ticket under a fresh value; a handoff to the old one will not be heard. */
  renew(old: Ticket): Ticket {
    this.retire(old);
    return this.issue(old.name, old.queue, old.terms);
  }

  get(value: string): Ticket | undefined {
    return this.#byValue.get(value);
  }

  /** Every ticket. */
  all(): IterableIterator<Ticket> {
    return this.#byValue.values();
  }

  /** `ticket` (the deputy) watches the ticket of the head `head`; `undefined`: none. */
  watch(ticket: Ticket, head: string | undefined): void {
    const key = head === undefined ? undefined : ticket.queue.tickets + head;
    const old = this.#watching.get(ticket);
    if (old === key) return;
    if (old !== undefined) {
      this.#byKey.delete(old);
      this.#watching.delete(ticket);
    }
    if (key === undefined) return;
    this.#byKey.set(key, { ticket, kind: 'head' });
    this.#watching.set(ticket, key);
  }

  /** Whose key `key` is, if it is a waiter's. */
  heard(key: string): Heard | undefined {
    return this.#byKey.get(key);
  }

  retire(ticket: Ticket): void {
    this.watch(ticket, undefined);
    this.#byValue.delete(ticket.value);
    this.#byKey.delete(ticket.queue.handoffs + ticket.value);
    this.#byKey.delete(ticket.queue.wakes + ticket.value);
  }
}
