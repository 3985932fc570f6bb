import type { SemaphoreNames } from '../shared/keys.js';
import { defineScript, type Given } from './lua.js';
import { NEXT_TOKEN, QUEUE } from './scripts.js';
import type { QueueState } from './store.js';

// The scripts of semaphores and read-write locks (docs/semaphores.md). Keys are
// `semaphoreNames` (src/shared/keys.ts): a semaphore's limit in `meta`; one member `value#i`
// per permit in `holders` (a rw lock: one per reader, and its writer's in `writers`), scored
// by its expiry on the server's clock; each holder's own key `owns .. value` holding its
// permits and expiring with them; and the mutex's queue (QUEUE), whose head alone is woken
// (its wake key written) when it fits.

/** What a request takes: a semaphore's permits (`'1'`, `'2'`…), or a rw lock's `'r'` or `'w'`. */
export type Spec = string;

/** What an acquisition found: admitted, busy, or a semaphore of another limit. */
export type SemaphoreAcquired =
  | { readonly status: 'held'; readonly token: bigint; readonly woken: readonly string[] }
  /**
   * `earliestMs`: when the earliest holder expires if it does not extend (server ms from now);
   * `place`: the waiter's place in the queue (none for a try, which never queues).
   */
  | {
      readonly status: 'busy';
      readonly earliestMs: number;
      readonly place: QueueState | undefined;
      readonly woken: readonly string[];
    }
  | StoredLimit;

/** Another locker's semaphore of this name has another limit: nothing was written. */
export interface StoredLimit {
  readonly status: 'limit';
  readonly stored: number;
}

/**
 * What an extension found: still held (and extended), lost, or another limit stored; and the
 * waiters it woke (see `Woken`).
 */
export type SemaphoreExtended =
  | { readonly status: 'extended' | 'lost'; readonly woken: readonly string[] }
  | StoredLimit;

/**
 * The values of the waiters whose wake keys a script wrote (the caller's own excepted), and
 * `'+' + value` for a waiter it granted permits (wrote its handoff key): our own locker is not
 * told by a push (NOLOOP), so it tells those of them that are its own.
 */
export type Woken = readonly string[];

/** What a release found: whether we still held all our permits, and whom it woke. */
export interface SemaphoreReleased {
  readonly held: boolean;
  readonly woken: Woken;
}

/** What a check found: whether the holder still holds all its permits, and its own key's PTTL. */
export interface SemaphoreCheck {
  readonly held: boolean;
  readonly pttlMs: number;
}

const stored = (raw: unknown): StoredLimit | undefined => {
  const [status, limit] = raw as [unknown, unknown];
  return status === 'LIMIT' ? { status: 'limit', stored: Number(limit) } : undefined;
};

// Only a request's own keys are declared: Redis tracks the declared keys a script reads, and
// a holder must hear of its own key only, a waiter of its wake key only, not of every other
// holder's change to the shared keys (N holders would cost N² pushes per validity). The shared
// keys, in the own key's slot, come by name as arguments, as the mutex's queue does.
const OWN_KEYS = {
  own: 'one',
  ticket: 'optional',
  wake: 'optional',
  handoff: 'optional',
} as const;
const SHARED = {
  value: 'one',
  spec: 'one',
  meta: 'one',
  holders: 'one',
  writers: 'one',
  fence: 'one',
  queue: 'one',
  roles: 'one',
  tickets: 'one',
  wakes: 'one',
  handoffs: 'one',
  validityMs: 'one',
  limit: 'one', // '' for a rw lock
} as const;

/** The arguments every semaphore script begins with. */
export function sharedArgs(
  names: SemaphoreNames,
  value: string,
  spec: Spec,
  validityMs: number,
  limit: number | undefined,
): Given<typeof SHARED> {
  const { queue } = names;
  return {
    value,
    spec,
    meta: names.meta,
    holders: names.holders,
    writers: names.writers,
    fence: names.fence,
    queue: queue.queueKey,
    roles: queue.rolesKey,
    tickets: queue.tickets,
    wakes: queue.wakes,
    handoffs: queue.handoffs,
    validityMs: String(validityMs),
    limit: limit === undefined ? '' : String(limit),
  };
}

/**
 * Shared by every script: the keys and arguments by name, and the steps they share. Times are
 * the server's (`now_ms`), never a client's: scores and the own key's PXAT are compared by the
 * server only, so clients' clocks need not agree.
 */
const SEM = `${NEXT_TOKEN}${QUEUE}
local own, my_ticket, my_wake, my_handoff = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local value, spec, meta, holders, writers, fence = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
queue, roles, tickets, wakes, handoffs = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local validity, cap = tonumber(ARGV[12]), tonumber(ARGV[13])
-- Every own key shares ours up to our value (\`owns .. value\`), in our slot.
local owns = string.sub(own, 1, #own - #value)
-- What a request of spec s takes: a set of holders, and permits in it.
local function takes(s)
  if s == 'w' then return writers, 1 end
  if s == 'r' then return holders, 1 end
  return holders, tonumber(s)
end
local mine, k = takes(spec)
-- Whom this script wakes, to be told to our own locker: a wake key we write is never pushed
-- back to us (NOLOOP), and a locker has many waiters of one semaphore. A wake key is written
-- only for the queue's first two when their role changes (promote), and for a head that fits
-- (wake_head): so the first two whose role differs from the script's start, and those heads.
local function front()
  local first = redis.call('ZRANGE', queue, 0, 1)
  local role = {}
  if #first > 0 then
    local had = redis.call('HMGET', roles, unpack(first))
    for i, v in ipairs(first) do role[v] = had[i] or false end
  end
  return first, role
end
local _, started = front()
local fitted, granted = {}, {}
-- The values woken, and each one granted permits as '+' .. value (see wake_head).
local function woken()
  local first, role = front()
  local list, seen = {}, {}
  for _, v in ipairs(first) do
    if v ~= value and role[v] ~= (started[v] or false) then
      seen[v] = true
      list[#list + 1] = v
    end
  end
  for _, v in ipairs(fitted) do
    if v ~= value and not seen[v] and role[v] ~= nil then
      seen[v] = true
      list[#list + 1] = v
    end
  end
  for _, v in ipairs(granted) do list[#list + 1] = '+' .. v end
  return list
end
-- A waiter's request in the roles hash: its spec, and the token it reserved as the head with
-- its own validity (its ticket's length: lockers of one semaphore may differ in it).
local function request_of(v)
  local field = redis.call('HGET', roles, '#' .. v)
  if not field then return nil end
  local s, t, l = string.match(field, '^(%S+) ?(%S*) ?(%S*)$')
  return s, t ~= '' and t or nil, tonumber(l)
end
local function member(i) return value .. '#' .. (i - 1) end
-- The limit stored by the first holder, when it differs from ours: checked before any write,
-- so that a locker with another limit changes nothing (two limits would admit the larger).
local function other_limit()
  if not cap then return nil end
  local found = redis.call('HGET', meta, 'limit')
  if found and tonumber(found) ~= cap then return {'LIMIT', found} end
end
-- Whether a request of spec s fits now: a reader while no writer holds, a writer while nobody
-- does, k permits while k are free.
local function fits(s)
  if s == 'r' then return redis.call('ZCARD', writers) == 0 end
  local held = redis.call('ZCARD', holders) + redis.call('ZCARD', writers)
  if s == 'w' then return held == 0 end
  return held + tonumber(s) <= (cap or tonumber(redis.call('HGET', meta, 'limit')) or 0)
end
-- Removes a set's expired members, and their holders' own keys; returns how many it removed.
local function expire(set)
  local gone = redis.call('ZRANGEBYSCORE', set, '-inf', now_ms())
  if #gone == 0 then return 0 end
  redis.call('ZREMRANGEBYSCORE', set, '-inf', now_ms())
  local seen = {}
  for _, m in ipairs(gone) do
    local v = string.match(m, '^(.*)#%d+$')
    if v and not seen[v] then
      seen[v] = true
      redis.call('DEL', owns .. v)
    end
  end
  return #gone
end
-- Before anything is counted: a holder that crashed costs its permits at most one validity.
local function cleanup() return expire(holders) + expire(writers) end
-- Whether we hold all k permits: our own key says k and every member is there, unexpired
-- (check runs without cleanup).
local function holds()
  if tonumber(redis.call('GET', own)) ~= k then return false end
  for i = 1, k do
    local score = tonumber(redis.call('ZSCORE', mine, member(i)))
    if not score or score <= now_ms() then return false end
  end
  return true
end
-- v's members for spec s and its own key, until expiry (server ms).
local function put(v, s, expiry)
  local set, n = takes(s)
  local scored = {}
  for i = 1, n do
    scored[2 * i - 1] = expiry
    scored[2 * i] = v .. '#' .. (i - 1)
  end
  redis.call('ZADD', set, unpack(scored))
  -- SET then PEXPIREAT, not SET … PXAT: that needs Redis 6.2, and a locker with
  -- fallbackSetPx runs on 6.0 (the scripts read the server's clock, so either is exact).
  redis.call('SET', owns .. v, n)
  redis.call('PEXPIREAT', owns .. v, expiry)
end
-- Our k members and own key, until now + validity. The GET after the SET keeps the own key in
-- this connection's tracking table (a write drops it there, even for NOLOOP): loss by push.
local function hold()
  put(value, spec, now_ms() + validity)
  redis.call('GET', own)
end
local function latest(set) return tonumber(redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')[2]) end
-- The sets and the limit live as long as their last holder: an idle semaphore leaves no keys
-- (but the fence, and the queue while it lives), and a new limit is taken once every holder
-- of the old one is gone.
local function keep()
  local readers, writer = latest(holders), latest(writers)
  if readers then redis.call('PEXPIREAT', holders, readers) end
  if writer then redis.call('PEXPIREAT', writers, writer) end
  local last = math.max(readers or 0, writer or 0)
  -- The limit also lives while waiters of it queue, so that a locker with another limit is
  -- refused rather than queued behind them.
  local waiting = redis.call('PTTL', queue)
  if waiting > 0 then last = math.max(last, now_ms() + waiting) end
  if last == 0 then
    redis.call('DEL', meta)
  elseif cap then
    -- Never over another's: a give-back of a call refused for its limit comes here too.
    redis.call('HSETNX', meta, 'limit', cap)
    redis.call('PEXPIREAT', meta, last)
  end
end
-- When the queue's head fits, hand it the permits in this script (a grant) or wake it (write
-- its wake key, which it alone reads): so a release wakes at most one waiter, and an extension
-- none, however many wait. Promoting first buries a head that is gone. A grant, as the mutex's
-- handoff, needs the token the head reserved at its last attempt to be still the last drawn
-- (so the greatest: the head, told by a push alone, knows it already) and at least a quarter
-- of its ticket left (a live head renews it sooner; a quarter of the head's validity, not the
-- caller's); the permits last until the ticket's deadline, and its handoff key, written last,
-- tells it. One grant per script (a second head
-- has no token reserved): the next head is woken if it fits too.
local function wake_head()
  if redis.call('EXISTS', queue) == 0 then return end
  local head = promote(validity)[1]
  if not head then return end
  local needs, reserved, length = request_of(head)
  if not (needs and fits(needs)) then return end
  local deadline = tonumber(redis.call('GET', tickets .. head)) or 0
  if #granted == 0 and reserved and reserved == redis.call('GET', fence)
    and deadline - now_ms() >= (length or validity) / 4 then
    drop(head)
    put(head, needs, deadline)
    redis.call('SET', handoffs .. head, reserved)
    redis.call('PEXPIREAT', handoffs .. head, deadline)
    granted[1] = head
    keep()
    return wake_head()
  end
  redis.call('SET', wakes .. head, 'fit', 'PX', validity)
  fitted[#fitted + 1] = head
end
-- Removes whatever is left of ours (a lost or releasing holder). Returns the permits freed.
local function remove()
  local members = {}
  for i = 1, k do members[i] = member(i) end
  redis.call('DEL', own)
  return redis.call('ZREM', mine, unpack(members))
end
-- When the earliest holder expires if it does not extend, in ms from now (or a validity).
local function earliest()
  local first = math.huge
  for _, set in ipairs({holders, writers}) do
    local score = tonumber(redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')[2])
    if score and score < first then first = score end
  end
  if first == math.huge then return validity end
  return math.max(0, first - now_ms())
end`;

/** The semaphore's scripts, each declared once (sent by body the first time a server sees it). */
export const SEMAPHORE_SCRIPTS = {
  /**
   * Admit the request, or queue it. The count and the admission are one script, so two
   * lockers never both see the last free permit. Fair: while the queue is not empty only its
   * head is admitted, and newcomers join behind it even when permits are free, so a request
   * for 2 permits is not starved by requests for 1, nor a writer by readers. A `try` never
   * queues. Each admission draws a fencing token from `fence` (see NEXT_TOKEN): greater than
   * every earlier one of this semaphore. A queued waiter's reply gives its place, as the
   * mutex's (`QueueState`), and it renews its ticket as the mutex's listeners do.
   */
  acquire: defineScript(
    'semaphore-acquire',
    {
      keys: OWN_KEYS,
      args: { ...SHARED, lifeMs: 'one', mode: 'one' },
      reply: acquired,
    },
    `${SEM}
local life, try = ARGV[14], ARGV[15] == 'try'
local mismatch = other_limit()
if mismatch then return mismatch end
local freed = cleanup()
-- Granted before this attempt ran (a release handed us the permits): ours, with this
-- attempt's expiry and the token the grant gave.
if holds() then
  hold()
  local token = redis.call('GET', handoffs .. value) or next_token(fence, validity)
  redis.call('DEL', handoffs .. value)
  if redis.call('ZSCORE', queue, value) then drop(value) end
  keep()
  if freed > 0 then wake_head() end
  return {'HELD', token, woken()}
end
local queued = redis.call('EXISTS', queue) == 1
local rank, joined
if queued then
  promote(validity)
  rank = redis.call('ZRANK', queue, value)
  queued = redis.call('EXISTS', queue) == 1
end
-- Arrivals wait behind the queue (a try gives up); the head, or anyone when nobody waits, is
-- admitted when it fits.
if queued and not rank and not try then
  rank = join(value, validity)
  redis.call('HSET', roles, '#' .. value, spec)
  joined = true
end
-- Admits us: our members and own key, a token, out of the queue (in_queue); then the next
-- head may fit too (more free permits, readers behind a reader).
local function admit(in_queue, wake_next)
  hold()
  local token = next_token(fence, validity)
  if in_queue then drop(value) end
  keep()
  if wake_next then wake_head() end
  return {'HELD', token, woken()}
end
if (rank == 0 or not queued) and fits(spec) then return admit(rank, rank or freed > 0) end
if freed > 0 then
  wake_head()
  -- Its grant may have made us the head, and we may fit: admitted now, as the head is (our
  -- own script's write of our wake key is never pushed to us: answered busy, we would sleep
  -- until our next timed look).
  if #granted > 0 and redis.call('ZRANK', queue, value) == 0 and fits(spec) then
    return admit(true, true)
  end
end
if try then return {'BUSY', earliest(), false, false, false, false, false, false, woken()} end
if not rank then
  rank = join(value, validity)
  redis.call('HSET', roles, '#' .. value, spec)
  joined = true
end
local role = redis.call('HGET', roles, value) or 'queued'
local renewed = renew(my_ticket, role, validity)
redis.call('GET', my_wake)
-- Not holding, so a handoff key of ours is a grant gone (expired, its permits removed): its
-- later expiry must not read as a grant.
redis.call('DEL', my_handoff)
local watching, watch_ms, reserved = false, -2, false
if role == 'head' then
  -- The token a grant will give the head, drawn now so that the head knows it: still good
  -- while no other token was drawn since (the fence holds it), else drawn again.
  redis.call('GET', my_handoff)
  local _, had = request_of(value)
  reserved = had
  if reserved ~= redis.call('GET', fence) then
    reserved = next_token(fence, validity)
    redis.call('HSET', roles, '#' .. value, spec .. ' ' .. reserved .. ' ' .. validity)
  end
elseif role == 'deputy' then
  watching = redis.call('ZRANGE', queue, 0, 0)[1]
  watch_ms = redis.call('PTTL', tickets .. watching)
elseif role == 'queued' then
  watch_ms = unanswered_ms()
end
if renewed == 1 or joined then
  redis.call('PEXPIRE', queue, life)
  redis.call('PEXPIRE', roles, life)
  keep()
end
return {'BUSY', earliest(), role, renewed, watching, watch_ms, rank, joined and 1 or 0, woken(),
  reserved}
`,
  ),

  /**
   * Extend a holder that still has all its permits. One that lost any (expired, removed from
   * outside, its own key deleted) is never admitted again here, even with room free
   * (redis-semaphore#175: a refresh that re-took an expired permit let two holders believe
   * they held it): what is left of it is removed, and it is told it is lost.
   */
  extend: defineScript(
    'semaphore-extend',
    {
      keys: OWN_KEYS,
      args: SHARED,
      reply: (raw): SemaphoreExtended =>
        stored(raw) ?? {
          status: (raw as unknown[])[0] === 1 ? 'extended' : 'lost',
          woken: wokenOf((raw as unknown[])[1]),
        },
    },
    `${SEM}
local mismatch = other_limit()
if mismatch then return mismatch end
local freed = cleanup()
local held = holds()
if held then
  hold()
else
  freed = freed + remove()
end
keep()
if freed > 0 then wake_head() end
return {held and 1 or 0, woken()}
`,
  ),

  /**
   * Let go of our permits, and of our place in the queue (a holder, or a waiter giving up):
   * true when we still held all of them, false when they were already lost (what is left of
   * ours is removed either way). Freed permits, or a head gone, wake the (next) head if it fits.
   */
  release: defineScript(
    'semaphore-release',
    {
      keys: OWN_KEYS,
      args: SHARED,
      reply: (raw): SemaphoreReleased => {
        const [held, woken] = raw as [unknown, unknown];
        return { held: held === 1, woken: wokenOf(woken) };
      },
    },
    `${SEM}
local freed = cleanup()
local held = holds()
freed = freed + remove()
local rank = redis.call('ZRANK', queue, value)
if rank then
  drop(value)
else
  redis.call('DEL', tickets .. value, wakes .. value, handoffs .. value)
end
keep()
if freed > 0 or rank then wake_head() end
return {held and 1 or 0, woken()}
`,
  ),

  /**
   * Whether a holder still holds all its permits, read-only: what a holder runs when its own
   * key changes or its poll timer fires. It writes nothing (an expired member counts as gone
   * without being removed), so no holder's check ever wakes another. The GET of the own key
   * keeps it tracked.
   */
  check: defineScript(
    'semaphore-check',
    {
      keys: OWN_KEYS,
      args: SHARED,
      reply: (raw): SemaphoreCheck => {
        const [held, pttl] = raw as [number, number];
        return { held: held === 1, pttlMs: Number(pttl) };
      },
    },
    `${SEM}
return {holds() and 1 or 0, redis.call('PTTL', own)}
`,
  ),
};

function acquired(raw: unknown): SemaphoreAcquired {
  const replies = raw as unknown[];
  if (replies[0] === 'HELD') {
    return { status: 'held', token: BigInt(replies[1] as string), woken: wokenOf(replies[2]) };
  }
  if (replies[0] !== 'BUSY') return stored(raw) as StoredLimit;
  const [, earliestMs, role, renewed, watching, watchMs, rank, joined, woken, reserved] = replies;
  const place: QueueState | undefined =
    typeof role === 'string'
      ? {
          role: role as QueueState['role'],
          renewed: renewed === 1,
          watching: typeof watching === 'string' ? watching : undefined,
          watchMs: Number(watchMs),
          token: typeof reserved === 'string' ? BigInt(reserved) : undefined,
          joined: joined === 1,
          rank: Number(rank),
        }
      : undefined;
  return { status: 'busy', earliestMs: Number(earliestMs), place, woken: wokenOf(woken) };
}

function wokenOf(raw: unknown): Woken {
  return Array.isArray(raw) ? raw.map(String) : [];
}
