import { createHash } from 'node:crypto';

/** A Lua script, sent by SHA1 first and by body when the server has not seen it. */
export interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/**
 * Take one key: the same SET (NX) PXAT|PX and GET that Go's rueidislock pipelines, in one call.
 * The GET registers the key in this connection's tracking table even when the SET found it
 * taken, so a waiter hears when the holder lets go. PTTL tells a waiter when the key expires
 * if no invalidation ever comes.
 * ARGV: value, expiry, 'PXAT' | 'PX', 'NX' | '' (force).
 * Returns { current value or false, PTTL }.
 */
export const ACQUIRE = script(`
if ARGV[4] == 'NX' then
  redis.call('SET', KEYS[1], ARGV[1], 'NX', ARGV[3], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1], ARGV[3], ARGV[2])
end
return { redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]) }
`);

/**
 * Extend one key if it is still ours. The GET after the write matters: Redis drops a key from
 * the tracking table when it is written, even for a NOLOOP connection that is not told, so
 * without re-reading it we would not hear when someone else deletes it later.
 * ARGV: value, expiry, 'PEXPIREAT' | 'PEXPIRE'. Returns 1 when extended, 0 when not ours.
 */
export const EXTEND = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call(ARGV[3], KEYS[1], ARGV[2])
  redis.call('GET', KEYS[1])
  return 1
end
return 0
`);

/**
 * Delete one key only if it is still ours, so a slow release never deletes the next holder's
 * key. Returns 1 when deleted, 0 when not ours.
 */
export const DELETE = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`);
