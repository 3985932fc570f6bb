import { defineScript, type SendTo } from './lua.js';
import type { KeyState, QueueState } from './store.js';

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
export const NEXT_TOKEN = `
local clock
local function server_time()
  clock = clock or redis.call('TIME')
  return clock
end
-- The server's time in ms, read once per script and only when needed.
local function now_ms()
  local now = server_time()
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
local function next_token(fence, validity)
  local now = server_time()
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
 * The queue of a name's waiters, one entry per locker (its ticket's value), in arrival order:
 * a sorted set scored by the server's time at arrival (or just after the last entry). Only the
 * first two listen: the head to the lock's keys (it alone tries to take them, and a release
 * hands them to it), the deputy to the head's ticket (which vanishes when the head is gone). The others listen only to their
 * own wake key, which is written once, when they become one of the two: so an extension wakes
 * at most the head, and a release one waiter, however many wait.
 * `roles` is a hash: each listener's role, and RUN, the handoffs in a row. A listener's ticket
 * key holds its deadline on the server's clock (negative while the promoter's, until the waiter
 * renews it itself) and expires with it: a listener whose ticket is gone is dropped (`bury`),
 * so a waiter that died costs the queue at most one ticket validity. The per-waiter keys are
 * `tickets .. value`, `wakes .. value` and `handoffs .. value`.
 */
export const QUEUE = `
local RUN = '#run'
local queue, roles, tickets, wakes, handoffs
local function drop(v)
  redis.call('ZREM', queue, v)
  redis.call('DEL', tickets .. v, wakes .. v, handoffs .. v)
  -- The last one out takes the roles (and the run of handoffs) with it.
  if redis.call('EXISTS', queue) == 0 then
    redis.call('DEL', roles)
  else
    redis.call('HDEL', roles, v, '#' .. v)
  end
end
-- The first two entries listen. One that was promoted (it has a role) and whose ticket is
-- gone is dropped; then the first two get their roles, and each newly promoted one a ticket
-- (unless it has one) and its wake key. Returns the first two.
local function promote(validity)
  for _ = 1, 16 do
    local front = redis.call('ZRANGE', queue, 0, 1)
    if #front == 0 then return front end
    local had = redis.call('HMGET', roles, unpack(front))
    local gone = false
    for i, v in ipairs(front) do
      if had[i] and redis.call('EXISTS', tickets .. v) == 0 then
        drop(v)
        gone = true
      end
    end
    if not gone then
      for i, v in ipairs(front) do
        local role = i == 1 and 'head' or 'deputy'
        if had[i] ~= role then
          redis.call('HSET', roles, v, role)
          if not had[i] and redis.call('EXISTS', tickets .. v) == 0 then
            redis.call('SET', tickets .. v, -(now_ms() + validity), 'PX', validity)
          end
          redis.call('SET', wakes .. v, role, 'PX', validity)
        end
      end
      return front
    end
  end
  return redis.call('ZRANGE', queue, 0, 1)
end
local function join(v, validity)
  -- Scored after the last entry even within one millisecond: equal scores would sort by
  -- value, not by arrival, and a deputy pushed back that way would keep its role.
  if not redis.call('ZSCORE', queue, v) then
    local last = tonumber(redis.call('ZRANGE', queue, -1, -1, 'WITHSCORES')[2]) or 0
    redis.call('ZADD', queue, math.max(now_ms(), last + 1), v)
  end
  promote(validity)
  return redis.call('ZRANK', queue, v)
end
-- A listener's ticket holds its deadline and vanishes with it (a waiter that is gone): renewed
-- once a quarter of it has passed, so that the deputy, which watches the head's, is woken that
-- often and no more. Returns 1 when it renewed it.
local function renew(ticket, role, validity)
  if role == 'queued' then return 0 end
  local deadline = tonumber(redis.call('GET', ticket)) or 0
  if deadline - now_ms() >= 0.75 * validity then return 0 end
  redis.call('SET', ticket, now_ms() + validity, 'PX', validity)
  return 1
end
-- For a waiter behind the first two: listeners promoted but not yet answering may be gone
-- (crashed while queued, behind other dead ones): the shortest PTTL of their tickets (-2 when
-- none), so that it looks again when they run out and the queue is mended then.
local function unanswered_ms()
  local shortest = -2
  for _, v in ipairs(redis.call('ZRANGE', queue, 0, 1)) do
    if (tonumber(redis.call('GET', tickets .. v)) or 0) < 0 then
      local left = redis.call('PTTL', tickets .. v)
      if left >= 0 and (shortest < 0 or left < shortest) then shortest = left end
    end
  end
  return shortest
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
   * invalidation ever comes. A key that already holds our value (a waiter handed the keys)
   * gets this attempt's expiry: the client counts from this attempt's send time.
   * `condition` is 'NX', '' to force, or 'FROM' to take only keys that hold `from` (a holder
   * passing its lock to a waiter of its own process).
   * When any key here is ours, the attempt also draws a fencing token from the name's fence key
   * (see NEXT_TOKEN) unless it is drawn apart (see `draw`).
   * With the queue (see QUEUE), a waiter behind the head does not touch the keys at all: it
   * joins the queue (or stays in it), renews its ticket if it listens, and reads the keys that
   * wake it. One that falls short gives back what it took, in this script.
   * `apart` says the lock's keys are on several servers, this one holding the queue: the script
   * cannot see the majority, so it neither leaves the queue nor gives anything back (the client
   * does both), and nobody is handed keys (no handoff key, no reserved token). A newcomer that
   * took the keys here on an empty queue stays out of it (it most likely holds the lock);
   * otherwise it joins. 'queue': a waiter behind the head, which touches no key even once it is
   * the head (it then tries every server at once); 'try': it tries the keys by its place.
   * The reply gives, per key, its value after the attempt (null when absent or not read) and its
   * PTTL (-3 when not read), the token (undefined when no key here is ours, or no fence key was
   * given), and with the queue the waiter's place (see `QueueState`).
   */
  acquire: defineScript(
    'acquire',
    {
      // The waiter's own keys are declared: Redis tracks only the declared keys a script reads.
      // The queue's are not, so that its changes are not pushed to every waiter that read it.
      keys: {
        keys: 'list',
        fence: 'optional',
        ticket: 'optional',
        wake: 'optional',
        handoff: 'optional',
      },
      args: {
        value: 'one',
        expiry: 'one',
        unit: 'one', // 'PXAT' | 'PX'
        condition: 'one',
        from: 'one',
        keyCount: 'one',
        majority: 'one',
        validityMs: 'one',
        queue: 'optional',
        roles: 'optional',
        tickets: 'optional',
        wakes: 'optional',
        handoffs: 'optional',
        lifeMs: 'optional',
        apart: 'optional', // 'try' | 'queue'
      },
      reply: (raw, { keys }): KeyState[] => {
        const replies = raw as unknown[];
        const n = keys.length;
        const drawn = token(replies[2 * n]);
        const role = replies[2 * n + 1];
        const queue: QueueState | undefined =
          typeof role === 'string'
            ? {
                role: role as QueueState['role'],
                renewed: replies[2 * n + 2] === 1,
                watching: (replies[2 * n + 3] as string | null) ?? undefined,
                watchMs: Number(replies[2 * n + 4] ?? -2),
                token: token(replies[2 * n + 5]),
                joined: replies[2 * n + 6] === 1,
                rank: Number(replies[2 * n + 7]),
              }
            : undefined;
        return keys.map((_, i) => ({
          value: (replies[2 * i] as string | null) ?? null,
          pttlMs: Number(replies[2 * i + 1]),
          token: drawn,
          queue,
        }));
      },
    },
    `${NEXT_TOKEN}${QUEUE}
local value, expiry, unit, condition, from = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local n, majority, validity = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
queue, roles, tickets, wakes, handoffs = ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local life, apart = ARGV[14], ARGV[15]
local fenced = #KEYS > n
local fence, my_ticket, my_wake, my_handoff = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4]
local rank, joined, handed
if queue then
  local queued = redis.call('EXISTS', queue) == 1
  if queued then
    -- A head that is gone makes way for the deputy (which this may be).
    promote(validity)
    rank = redis.call('ZRANK', queue, value)
  end
  joined = not rank
  -- A release handed us the keys (and dropped us from the queue) before this attempt: a
  -- waiter that heard of it too late takes them here, with this attempt's expiry.
  handed = not rank and my_handoff and redis.call('EXISTS', my_handoff) == 1
  if handed then
    condition, from = 'FROM', value
  -- Behind others already queued: join them without touching the keys (a handoff to us
  -- before this attempt left its handoff key, with the keys' expiry: see handed above).
  elseif not rank and condition == 'NX' and (queued or apart == 'queue') then
    rank = join(value, validity)
  end
end
local tried = (not rank or rank == 0 or condition ~= 'NX') and apart ~= 'queue'
local replies = {}
local ours = 0
for i = 1, n do
  local key = KEYS[i]
  if tried then
    local set
    if condition == 'NX' then
      set = redis.call('SET', key, value, 'NX', unit, expiry)
    elseif condition == 'FROM' then
      set = redis.call('GET', key) == from and redis.call('SET', key, value, unit, expiry)
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
  else
    replies[2 * i - 1] = false
    replies[2 * i] = -3
  end
end
replies[2 * n + 1] = ours > 0 and fenced and next_token(fence, validity)
if queue then
  if apart then
    if not rank and ours == 0 then rank = join(value, validity) end
    if not rank then return replies end
  else
    if ours >= majority then
      if rank or handed then
        drop(value)
        promote(validity)
      end
      return replies
    end
    -- Give back what fell short here, not in a later command: a release may hand us the keys
    -- in between, and a later delete by our value would take them from under us.
    for i = 1, n do
      if replies[2 * i - 1] == value then redis.call('DEL', KEYS[i]) end
    end
    -- A handoff that did not stick must not let this waiter jump the queue later.
    if handed then redis.call('DEL', my_handoff) end
    if not rank then rank = join(value, validity) end
  end
  local role = redis.call('HGET', roles, value) or 'queued'
  local renewed = renew(my_ticket, role, validity)
  redis.call('GET', my_wake)
  local watching, watch_ms, reserved = false, -2, false
  if role == 'head' and apart then
    -- Where no handoff comes, the head listens to the lock's keys only.
  elseif role == 'head' then
    redis.call('GET', my_handoff)
    -- The token a handoff will give the head, drawn now so that the head knows it: still
    -- good while no other token was drawn since (the fence holds it), else drawn again.
    reserved = redis.call('HGET', roles, '#' .. value)
    if fenced and reserved ~= redis.call('GET', fence) then
      reserved = next_token(fence, validity)
      redis.call('HSET', roles, '#' .. value, reserved)
    end
  elseif role == 'deputy' then
    -- The deputy reads the head's ticket itself (see QueueState.watching): not declared here.
    watching = redis.call('ZRANGE', queue, 0, 0)[1]
    watch_ms = redis.call('PTTL', tickets .. watching)
  else
    watch_ms = unanswered_ms()
  end
  -- The queue lives on while its listeners renew their tickets (or new waiters join).
  if renewed == 1 or joined then
    redis.call('PEXPIRE', queue, life)
    redis.call('PEXPIRE', roles, life)
  end
  replies[2 * n + 2] = role
  replies[2 * n + 3] = renewed
  replies[2 * n + 4] = watching
  replies[2 * n + 5] = watch_ms
  replies[2 * n + 6] = reserved
  replies[2 * n + 7] = joined and 1 or 0
  replies[2 * n + 8] = rank
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
   * Let go with the queue (see QUEUE): leave it (a waiter giving up, or a holder that was
   * handed the lock), and if every one of the lock's keys is still ours, give them all to the
   * head of the queue, until its ticket's deadline, when its ticket has at least `minTicketMs`
   * left and fewer than `maxRun` handoffs came in a row: its handoff key is written first, so
   * the invalidation that tells it arrives before the keys' own. The head's fencing token is
   * the one its last attempt drew for it (see `acquire`), if no other was drawn since: the
   * waiter, told by an invalidation only, knows it already. Otherwise delete what is ours
   * (also every `maxRun`+1st release in an unbroken run of handoffs, so that a waiter outside
   * the queue, such as a Go rueidislock, gets a fair race), and the head, which listens to the
   * keys, takes them by its own attempt.
   * `keys` are all the lock's keys (never a subset: "all ours" must mean all), except with
   * `apart`: the lock's keys are on several servers, this one holding the queue and some of
   * them, so nothing is handed on (the release is the plain delete, the fence raised first to
   * the holder's `token` as `delete` does, and the head takes the keys by its attempt); with
   * no keys at all, a waiter only leaves the queue (`fence` then only routes the call).
   * Per key, true when deleted or handed on, false when not ours.
   */
  release: defineScript(
    'release',
    {
      keys: { keys: 'list', fence: 'one' },
      args: {
        value: 'one',
        keyCount: 'one',
        queue: 'one',
        roles: 'one',
        tickets: 'one',
        wakes: 'one',
        handoffs: 'one',
        minTicketMs: 'one',
        maxRun: 'one',
        validityMs: 'one',
        apart: 'optional', // '1'
        token: 'optional',
      },
      reply: flags,
    },
    `${NEXT_TOKEN}${QUEUE}
local value, n = ARGV[1], tonumber(ARGV[2])
queue, roles, tickets, wakes, handoffs = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local min_ticket_ms, max_run, validity = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local apart, token = ARGV[11], ARGV[12]
local fence = KEYS[n + 1]
local queued = redis.call('EXISTS', queue) == 1
if queued then
  drop(value)
else
  -- A holder handed the lock keeps its handoff key until now; an empty queue, no roles.
  redis.call('DEL', tickets .. value, wakes .. value, handoffs .. value, roles)
end
local all = n > 0 and not apart
for i = 1, n do
  if redis.call('GET', KEYS[i]) ~= value then all = false end
end
local replies = {}
if all and queued then
  local head = promote(validity)[1]
  local run = tonumber(redis.call('HGET', roles, RUN)) or 0
  -- A negative deadline is one its promoter set: the waiter has not answered yet.
  local deadline = head and tonumber(redis.call('GET', tickets .. head)) or 0
  -- The head's token, drawn at its last attempt, must be the last one drawn: the greatest.
  local reserved = head and redis.call('HGET', roles, '#' .. head)
  if deadline - now_ms() >= min_ticket_ms and run < max_run
    and reserved and reserved == redis.call('GET', fence) then
    local ttl = deadline - now_ms()
    drop(head)
    redis.call('SET', handoffs .. head, reserved, 'PX', ttl)
    for i = 1, n do
      redis.call('SET', KEYS[i], head, 'PX', ttl)
      replies[i] = 1
    end
    -- Counted on: the head's drop took the roles hash with it if it was the last in line
    -- (then it lives as long as a fence key, in case nobody releases again).
    redis.call('HSET', roles, RUN, run + 1)
    if redis.call('EXISTS', queue) == 0 then redis.call('PEXPIRE', roles, 10 * validity) end
    promote(validity)
    return replies
  end
  redis.call('HDEL', roles, RUN)
end
for i = 1, n do
  local key = KEYS[i]
  replies[i] = 0
  if redis.call('GET', key) == value then
    if token then raise_fence(fence, token, validity) end
    replies[i] = redis.call('DEL', key)
  end
end
if queued then promote(validity) end
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
