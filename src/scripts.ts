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
 * invalidation ever comes. A key that already holds our value (a waiter reuses its value with
 * direct handoff) gets this attempt's expiry: the client counts from this attempt's send time.
 * KEYS: the lock's keys, then, with direct handoff, its queue and the caller's ticket and
 * handoff keys.
 * ARGV: value, expiry, 'PXAT' | 'PX', 'NX' | '' (force), number of lock keys, and with direct
 * handoff the majority and the validity in ms. When the attempt falls short of the majority the
 * caller joins the queue (in order of first arrival), renews its ticket key, which holds the
 * ticket's deadline on the server's clock, and reads its handoff key, so that it hears when a
 * release hands it the keys; when it succeeds it leaves the queue.
 * Returns, per key, its value after the attempt (false when absent) and its PTTL.
 */
export const ACQUIRE = script(`
local n = tonumber(ARGV[5])
local replies = {}
local ours = 0
for i = 1, n do
  local key = KEYS[i]
  local set
  if ARGV[4] == 'NX' then
    set = redis.call('SET', key, ARGV[1], 'NX', ARGV[3], ARGV[2])
  else
    set = redis.call('SET', key, ARGV[1], ARGV[3], ARGV[2])
  end
  local value = redis.call('GET', key)
  if value == ARGV[1] then
    ours = ours + 1
    if not set then
      redis.call(ARGV[3] == 'PXAT' and 'PEXPIREAT' or 'PEXPIRE', key, ARGV[2])
    end
  end
  replies[2 * i - 1] = value
  replies[2 * i] = redis.call('PTTL', key)
end
if #KEYS > n then
  local queue, ticket, handoff = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3]
  local validity = tonumber(ARGV[7])
  if ours >= tonumber(ARGV[6]) then
    redis.call('ZREM', queue, ARGV[1])
    redis.call('DEL', ticket, handoff)
  else
    -- Give back what fell short here, not in a later command: a release may hand us the keys
    -- in between, and a later delete by our value would take them from under us.
    for i = 1, n do
      if replies[2 * i - 1] == ARGV[1] then redis.call('DEL', KEYS[i]) end
    end
    local now = redis.call('TIME')
    local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    -- NX: a waiter keeps its place in the queue from its first attempt on.
    redis.call('ZADD', queue, 'NX', ms, ARGV[1])
    redis.call('PEXPIRE', queue, 2 * validity)
    -- The ticket holds its deadline and vanishes with it (a waiter that is gone).
    redis.call('SET', ticket, ms + validity, 'PX', validity)
    redis.call('GET', handoff)
  end
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
 * KEYS: the lock's keys. ARGV: value. Returns, per key, 1 when deleted, 0 when not ours.
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

/**
 * Release with direct handoff: leave the queue and drop our ticket and handoff keys (a waiter
 * giving up, or a holder that was handed the lock), and if every one of the
 * lock's keys is still ours, give them all to the first queued waiter whose ticket has at least
 * ARGV[5] ms left, until its ticket's deadline: its handoff key is written first, so the
 * invalidation that tells it arrives before the keys' own. Otherwise delete what is ours.
 * KEYS: all the lock's keys (never a subset: "all ours" must mean all), then the queue.
 * ARGV: value, number of lock keys, the ticket key prefix, the handoff key prefix, the least
 * remaining validity in ms a ticket must have.
 * Returns, per key, 1 when deleted or handed on, 0 when not ours.
 */
export const RELEASE = script(`
local n = tonumber(ARGV[2])
local queue = KEYS[n + 1]
local replies = {}
redis.call('ZREM', queue, ARGV[1])
redis.call('DEL', ARGV[3] .. ARGV[1], ARGV[4] .. ARGV[1])
local all = true
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then all = false end
end
if all then
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  -- The first waiter in the queue whose ticket has enough time left; each one looked at leaves.
  for _ = 1, redis.call('ZCARD', queue) do
    local next = redis.call('ZRANGE', queue, 0, 0)[1]
    redis.call('ZREM', queue, next)
    local deadline = tonumber(redis.call('GET', ARGV[3] .. next))
    if deadline and deadline - ms >= tonumber(ARGV[5]) then
      local ttl = deadline - ms
      redis.call('DEL', ARGV[3] .. next)
      redis.call('SET', ARGV[4] .. next, 'handed', 'PX', ttl)
      for i = 1, n do
        redis.call('SET', KEYS[i], next, 'PX', ttl)
        replies[i] = 1
      end
      return replies
    end
  end
end
for i = 1, n do
  replies[i] = 0
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    replies[i] = redis.call('DEL', KEYS[i])
  end
end
return replies
`);
