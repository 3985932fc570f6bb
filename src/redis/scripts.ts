import { defineScript, type SendTo } from './lua.js';
import type { KeyState } from './store.js';

/** Per key, whether the script did it (1) or not (0). */
const flags = (raw: unknown): boolean[] => (raw as unknown[]).map((reply) => reply === 1);

/** A fencing token, when one was drawn. */
const token = (raw: unknown): bigint | undefined =>
  typeof raw === 'string' ? BigInt(raw) : undefined;

// Each script works on every key it is given, so one server takes all of a lock's keys in one
// call: one command to parse on each side instead of one per key.

/**
 * Fencing tokens. A name's fence key on a server holds the last token drawn there. The next is
 * the server's time in microseconds, or the last one plus 1 if that is not less: so tokens
 * grow even when the fence key is gone (it expires ten validities after it was last written,
 * so that idle names cost nothing, yet well after the keys of a holder that stopped
 * extending; a restart without persistence empties it), as long as the server's clock does
 * not step back. `raise_fence`, run with every extension and release where a lock's keys are
 * on several servers, leaves the holder's token here and keeps the fence alive, so that every
 * later holder, whose keys' servers overlap this holder's, draws more.
 */
const NEXT_TOKEN = `
local function next_token(fence, validity)
  local now = redis.call('TIME')
  local token = math.max((tonumber(redis.call('GET', fence)) or 0) + 1,
    tonumber(now[1]) * 1000000 + tonumber(now[2]))
  token = string.format('%.0f', token)
  redis.call('SET', fence, token, 'PX', 10 * tonumber(validity))
  return token
end
local function raise_fence(fence, token, validity)
  local highest = math.max(tonumber(redis.call('GET', fence)) or 0, tonumber(token))
  redis.call('SET', fence, string.format('%.0f', highest), 'PX', 10 * tonumber(validity))
end`;

/**
 * Every script, each declared once: `loadScripts` loads them all at connect, so none of them
 * is ever missed there.
 */
export const SCRIPTS = {
  /**
   * Take keys: per key, the same SET (NX) PXAT|PX and GET that Go's rueidislock pipelines. The
   * GET registers the key in this connection's tracking table even when the SET found it taken,
   * so a waiter hears when the holder lets go. PTTL tells a waiter when the key expires if no
   * invalidation ever comes. A key that already holds our value (a waiter reuses its value with
   * direct handoff) gets this attempt's expiry: the client counts from this attempt's send time.
   * When any key here is ours, the attempt also draws a fencing token from the name's fence key
   * (see NEXT_TOKEN) unless it is drawn apart (see `draw`).
   * `condition` is 'NX', or '' to force. With direct handoff (`queue`, `ticket`, `handoff`),
   * when the attempt falls short of the majority the caller joins the queue (in order of first
   * arrival), renews its ticket key, which holds the ticket's deadline on the server's clock,
   * and reads its handoff key, so that it hears when a release hands it the keys; when it
   * succeeds it leaves the queue.
   * The reply gives, per key, its value after the attempt (null when absent) and its PTTL, and
   * the token (undefined when no key here is ours, or no fence key was given).
   */
  acquire: defineScript(
    'acquire',
    {
      keys: {
        keys: 'list',
        fence: 'optional',
        queue: 'optional',
        ticket: 'optional',
        handoff: 'optional',
      },
      args: {
        value: 'one',
        expiry: 'one',
        unit: 'one', // 'PXAT' | 'PX'
        condition: 'one',
        keyCount: 'one',
        majority: 'one',
        validityMs: 'one',
      },
      reply: (raw, { keys }): KeyState[] => {
        const replies = raw as unknown[];
        const drawn = token(replies[2 * keys.length]);
        return keys.map((_, i) => ({
          value: (replies[2 * i] as string | null) ?? null,
          pttlMs: Number(replies[2 * i + 1]),
          token: drawn,
        }));
      },
    },
    `${NEXT_TOKEN}
local value, expiry, unit, condition = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n, majority, validity = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local fenced = #KEYS > n
local fence, queue, ticket, handoff = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4]
local replies = {}
local ours = 0
for i = 1, n do
  local key = KEYS[i]
  local set
  if condition == 'NX' then
    set = redis.call('SET', key, value, 'NX', unit, expiry)
  else
    set = redis.call('SET', key, value, unit, expiry)
  end
  local current = redis.call('GET', key)
  if current == value then
    ours = ours + 1
    if not set then
      redis.call(unit == 'PXAT' and 'PEXPIREAT' or 'PEXPIRE', key, expiry)
    end
  end
  replies[2 * i - 1] = current
  replies[2 * i] = redis.call('PTTL', key)
end
replies[2 * n + 1] = ours > 0 and fenced and next_token(fence, validity)
if queue then
  if ours >= majority then
    redis.call('ZREM', queue, value)
    redis.call('DEL', ticket, handoff)
  else
    -- Give back what fell short here, not in a later command: a release may hand us the keys
    -- in between, and a later delete by our value would take them from under us.
    for i = 1, n do
      if replies[2 * i - 1] == value then redis.call('DEL', KEYS[i]) end
    end
    local now = redis.call('TIME')
    local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    -- NX: a waiter keeps its place in the queue from its first attempt on.
    redis.call('ZADD', queue, 'NX', ms, value)
    redis.call('PEXPIRE', queue, 2 * validity)
    -- The ticket holds its deadline and vanishes with it (a waiter that is gone).
    redis.call('SET', ticket, ms + validity, 'PX', validity)
    redis.call('GET', handoff)
  end
end
return replies
`,
  ),

  /**
   * Extend the keys that are still ours. The GET after the write matters: Redis drops a key
   * from the tracking table when it is written, even for a NOLOOP connection that is not told,
   * so without re-reading it we would not hear when someone else deletes it later.
   * `command` is 'PEXPIREAT' | 'PEXPIRE'; the holder's `token` and `validityMs` (and `fence`)
   * come when its fence is to be raised here. Per key, true when extended, false when not ours
   * (or gone).
   */
  extend: defineScript(
    'extend',
    {
      keys: { keys: 'list', fence: 'optional' },
      args: {
        value: 'one',
        expiry: 'one',
        command: 'one',
        token: 'optional',
        validityMs: 'optional',
      },
      reply: flags,
    },
    `${NEXT_TOKEN}
local value, expiry, command = ARGV[1], ARGV[2], ARGV[3]
local token, validity = ARGV[4], ARGV[5]
local n = token and #KEYS - 1 or #KEYS
local fence = KEYS[n + 1]
local replies = {}
local ours = false
for i = 1, n do
  local key = KEYS[i]
  replies[i] = 0
  if redis.call('GET', key) == value then
    redis.call(command, key, expiry)
    -- Still there? An expiry time already past (client clock far behind) deletes the key.
    if redis.call('GET', key) == value then
      replies[i] = 1
      ours = true
    end
  end
end
if ours and token then raise_fence(fence, token, validity) end
return replies
`,
  ),

  /**
   * Delete the keys that are still ours, so a slow release never deletes the next holder's key.
   * The holder's `token` and `validityMs` (and `fence`) come when its fence is to be raised
   * here (before the keys go: the next holder must draw more). Per key, true when deleted,
   * false when not ours.
   */
  delete: defineScript(
    'delete',
    {
      keys: { keys: 'list', fence: 'optional' },
      args: { value: 'one', token: 'optional', validityMs: 'optional' },
      reply: flags,
    },
    `${NEXT_TOKEN}
local value, token, validity = ARGV[1], ARGV[2], ARGV[3]
local n = token and #KEYS - 1 or #KEYS
local fence = KEYS[n + 1]
local replies = {}
for i = 1, n do
  local key = KEYS[i]
  replies[i] = 0
  if redis.call('GET', key) == value then
    if token then raise_fence(fence, token, validity) end
    replies[i] = redis.call('DEL', key)
  end
end
return replies
`,
  ),

  /**
   * Release with direct handoff: leave the queue and drop our ticket and handoff keys (a waiter
   * giving up, or a holder that was handed the lock), and if every one of the
   * lock's keys is still ours, give them all to the first queued waiter whose ticket has at least
   * `minTicketMs` left, until its ticket's deadline: its handoff key is written first, so the
   * invalidation that tells it arrives before the keys' own. Otherwise delete what is ours.
   * The handoff draws the next fencing token (the waiter, told by an invalidation only, does not
   * learn it; later holders draw more).
   * `keys` are all the lock's keys (never a subset: "all ours" must mean all).
   * Per key, true when deleted or handed on, false when not ours.
   */
  release: defineScript(
    'release',
    {
      keys: { keys: 'list', queue: 'one', fence: 'one' },
      args: {
        value: 'one',
        keyCount: 'one',
        ticketPrefix: 'one',
        handoffPrefix: 'one',
        minTicketMs: 'one',
        validityMs: 'one',
      },
      reply: flags,
    },
    `${NEXT_TOKEN}
local value, n = ARGV[1], tonumber(ARGV[2])
local ticket_prefix, handoff_prefix = ARGV[3], ARGV[4]
local min_ticket_ms, validity = tonumber(ARGV[5]), ARGV[6]
local queue, fence = KEYS[n + 1], KEYS[n + 2]
local replies = {}
redis.call('ZREM', queue, value)
redis.call('DEL', ticket_prefix .. value, handoff_prefix .. value)
local all = true
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= value then all = false end
end
if all then
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  -- The first waiter in the queue whose ticket has enough time left; each one looked at leaves.
  for _ = 1, redis.call('ZCARD', queue) do
    local next = redis.call('ZRANGE', queue, 0, 0)[1]
    redis.call('ZREM', queue, next)
    local deadline = tonumber(redis.call('GET', ticket_prefix .. next))
    if deadline and deadline - ms >= min_ticket_ms then
      local ttl = deadline - ms
      redis.call('DEL', ticket_prefix .. next)
      redis.call('SET', handoff_prefix .. next, next_token(fence, validity), 'PX', ttl)
      for i = 1, n do
        redis.call('SET', KEYS[i], next, 'PX', ttl)
        replies[i] = 1
      end
      return replies
    end
  end
end
for i = 1, n do
  local key = KEYS[i]
  replies[i] = 0
  if redis.call('GET', key) == value then
    replies[i] = redis.call('DEL', key)
  end
end
return replies
`,
  ),

  /**
   * Draw the next fencing token, apart from the keys: in a cluster, while a slot migrates, a
   * script on a key and its fence key together gets TRYAGAIN on the importing master, but a
   * script on one key follows ASK. Sent right behind the key's own script on the same
   * connection, it runs right after it.
   */
  draw: defineScript(
    'draw',
    { keys: { fence: 'one' }, args: { validityMs: 'one' }, reply: token },
    `${NEXT_TOKEN}
local fence, validity = KEYS[1], ARGV[1]
return next_token(fence, validity)
`,
  ),

  /** Raise a fence to the holder's token, apart from the keys (see `draw`). */
  raise: defineScript(
    'raise',
    { keys: { fence: 'one' }, args: { token: 'one', validityMs: 'one' }, reply: () => undefined },
    `${NEXT_TOKEN}
local fence, token, validity = KEYS[1], ARGV[1], ARGV[2]
raise_fence(fence, token, validity)
return 1
`,
  ),
};

/**
 * Load every script of the registry on one server, so that the first EVALSHA of each does not
 * bounce off NOSCRIPT.
 */
export function loadScripts(send: SendTo): Promise<unknown> {
  return Promise.all(Object.values(SCRIPTS).map((s) => send(['SCRIPT', 'LOAD', s.source])));
}
