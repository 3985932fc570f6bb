import { createHash } from 'node:crypto';

/** A Lua script, sent by SHA1 first and by body when the server has not seen it. */
export interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

// Each script works on every key it is given, so one server takes all of a lock's keys in one
// call: one command to parse on each side instead of one per key.

/**
 * Take keys: per key, the same SET (NX) PXAT|PX and GET that Go's rueidislock pipelines. The
 * GET registers the key in this connection's tracking table even when the SET found it taken,
 * so a waiter hears when the holder lets go. PTTL tells a waiter when the key expires if no
 * invalidation ever comes.
 * ARGV: value, expiry, 'PXAT' | 'PX', 'NX' | '' (force).
 * Returns, per key, its value after the attempt (false when absent) and its PTTL.
 */
export const ACQUIRE = script(`
local replies = {}
for i, key in ipairs(KEYS) do
  if ARGV[4] == 'NX' then
    redis.call('SET', key, ARGV[1], 'NX', ARGV[3], ARGV[2])
  else
    redis.call('SET', key, ARGV[1], ARGV[3], ARGV[2])
  end
  replies[2 * i - 1] = redis.call('GET', key)
  replies[2 * i] = redis.call('PTTL', key)
end
return replies
`);

/**
 * Extend the keys that are still ours. The GET after the write matters: Redis drops a key
 * from the tracking table when it is written, even for a NOLOOP connection that is not told,
 * so without re-reading it we would not hear when someone else deletes it later.
 * ARGV: value, expiry, 'PEXPIREAT' | 'PEXPIRE'. Returns, per key, 1 when extended, 0 when not
 * ours (or gone).
 */
export const EXTEND = script(`
local replies = {}
for i, key in ipairs(KEYS) do
  replies[i] = 0
  if redis.call('GET', key) == ARGV[1] then
    redis.call(ARGV[3], key, ARGV[2])
    -- Still there? An expiry time already past (client clock far behind) deletes the key.
    if redis.call('GET', key) == ARGV[1] then replies[i] = 1 end
  end
end
return replies
`);

/**
 * Delete the keys that are still ours, so a slow release never deletes the next holder's key.
 * Returns, per key, 1 when deleted, 0 when not ours.
 */
export const DELETE = script(`
local replies = {}
for i, key in ipairs(KEYS) do
  replies[i] = 0
  if redis.call('GET', key) == ARGV[1] then
    replies[i] = redis.call('DEL', key)
  end
end
return replies
`);
