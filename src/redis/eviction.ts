import { ErrorReply } from '@redis/client';
import type { ResolvedOptions } from '../shared/options.js';
import type { SendTo } from './lua.js';
import { warnOnce } from './warnings.js';

/**
 * Warn (once per locker) when the server may evict keys to make room: a Redis shared with a
 * cache often runs so. `volatile-*` policies evict keys with a TTL first, and every lock key
 * has one; `allkeys-*` ones evict any key, lock keys too. An evicted key is a lock lost as
 * suddenly as an outside `DEL`: a waiter may take it one round trip before the holder hears.
 * INFO memory, not CONFIG GET: managed services that refuse CONFIG answer INFO.
 */
export async function warnOfEviction(
  send: SendTo,
  options: ResolvedOptions,
  address: string,
): Promise<void> {
  const info = await readInfo(send, 'memory');
  const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  if (policy === undefined || policy === 'noeviction') return;
  const which = policy.startsWith('volatile-')
    ? 'keys with a TTL go first, and every lock key has one'
    : 'any key may go, lock keys too';
  warnOnce(
    options,
    'TRACKLOCK_EVICTION',
    `the Redis server at ${address} evicts keys when it runs out of memory (maxmemory-policy ${policy}: ${which}): an evicted lock key is a lock lost at once, which another process may take before the holder hears of it; set maxmemory-policy noeviction, or keep locks on a Redis of their own`,
  );
}

/**
 * One section of INFO; empty when the server refuses INFO (an ACL without it, a command
 * renamed away): that is an answer, not a failed connection, and what INFO would have told is
 * then left unchecked.
 */
export function readInfo(send: SendTo, section: string): Promise<string> {
  return send(['INFO', section]).then(String, (error: unknown) => {
    if (error instanceof ErrorReply) return '';
    throw error;
  });
}
