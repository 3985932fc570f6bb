import { randomUUID } from 'node:crypto';
import type { HeldLock } from './lock.js';

/**
 * With direct handoff, the active waiter's place in a name's queue on the server. Its value
 * is the waiter's for every attempt, so that a release can write it into the keys, until an
 * attempt goes unanswered: then the waiter deletes by that value (which may undo a handoff in
 * flight) and goes on under a new one, deaf to the old one's handoff.
 */
export interface Ticket {
  readonly name: string;
  readonly value: string;
  readonly queueKey: string;
  /** The caller's signal, which the handed lock listens to like any other. */
  readonly parent: AbortSignal | undefined;
  /** The send time of the oldest registration the server may still be using: the safe bound. */
  registeredAt: number | undefined;
  /** The lock a release handed over, once one has. */
  handed: HeldLock | undefined;
  /**
   * Set once a handoff was refused (heard too late): its handoff key then lingers until it
   * expires, and that expiry must not read as a handoff. The waiter takes later handoffs to
   * this value by its own attempts, which the keys' invalidations wake.
   */
  deaf: boolean;
}

/** The tickets of one locker's waiters, by value: what a handoff key's invalidation names. */
export class Tickets {
  readonly #byValue = new Map<string, Ticket>();

  issue(name: string, queueKey: string, parent: AbortSignal | undefined): Ticket {
    const ticket: Ticket = {
      name,
      value: randomUUID(),
      queueKey,
      parent,
      registeredAt: undefined,
      handed: undefined,
      deaf: false,
    };
    this.#byValue.set(ticket.value, ticket);
    return ticket;
  }

  /** The ticket under a fresh value; a handoff to the old one will not be heard. */
  renew(old: Ticket): Ticket {
    this.#byValue.delete(old.value);
    return this.issue(old.name, old.queueKey, old.parent);
  }

  get(value: string): Ticket | undefined {
    return this.#byValue.get(value);
  }

  retire(ticket: Ticket): void {
    this.#byValue.delete(ticket.value);
  }
}
