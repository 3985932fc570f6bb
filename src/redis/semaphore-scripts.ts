import { defineScript } from './lua.js';
import { NEXT_TOKEN } from './scripts.js';

// The semaphore's scripts (docs/design/semaphores.md, step 2: no queue yet, and nothing calls
// them yet). Keys are `semaphoreNames` (src/shared/keys.ts): the limit in `meta`, one member
// `value#i` per permit in `holders` scored by its expiry on the server's clock, and each
// holder's own key `owns .. value` holding its permits, expiring with them.

/** What an acquisition found: admitted, short of permits, or a semaphore of another limit. */
export type SemaphoreAcquired =
  | { readonly status: 'held'; readonly token: bigint }
  /**
   * `needed`: how many more permits must free before this request fits; `earliestMs`: when the
   * earliest holder expires if it does not extend (server ms from now).
   */
  | { readonly status: 'busy'; readonly needed: number; readonly earliestMs: number }
  | StoredLimit;

/** Another locker's semaphore of this name has another limit: nothing was written. */
export interface StoredLimit {
  readonly status: 'limit';
  readonly stored: number;
}

/** What an extension found: still held (and extended), lost, or another limit stored. */
export type SemaphoreExtended = { readonly status: 'extended' | 'lost' } | StoredLimit;

/** What a check found: whether the holder still holds all its permits, and its own key's PTTL. */
export interface SemaphoreCheck {
  readonly held: boolean;
  readonly pttlMs: number;
}

const stored = (raw: unknown): StoredLimit | undefined => {
  const [status, limit] = raw as [unknown, unknown];
  return status === 'LIMIT' ? { status: 'limit', stored: Number(limit) } : undefined;
};

// Only the holder's own key is declared: Redis tracks the declared keys a script reads, and a
// holder must hear of its own key only, not of every other holder's change to the shared keys
// (N holders would cost N² pushes per validity). The shared keys, in the own key's slot, come
// by name as arguments, as the mutex's queue does.
const HOLDER_KEYS = { own: 'one' } as const;
const SHARED = {
  value: 'one',
  permits: 'one',
  meta: 'one',
  holders: 'one',
  vacancy: 'one',
} as const;
const HOLDER_ARGS = { ...SHARED, limit: 'one', validityMs: 'one' } as const;

/**
 * Shared by every semaphore script: the keys and arguments by name (every script's arguments
 * begin with `SHARED`), and the steps they share. Times are the server's (`now_ms`), never a
 * client's: scores and the own key's PXAT are compared by the server only, so clients' clocks
 * need not agree.
 */
const SEM = `${NEXT_TOKEN}
local own = KEYS[1]
local value, k, meta, holders, vacancy = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local function member(i) return value .. '#' .. (i - 1) end
-- The limit stored by the first holder, when it differs from ours: checked before any write,
-- so that a locker with another limit changes nothing (two limits would admit the larger).
local function other_limit(limit)
  local found = redis.call('HGET', meta, 'limit')
  if found and found ~= limit then return {'LIMIT', found} end
end
-- Removes expired permits, and their holders' own keys, before anything is counted: a holder
-- that crashed costs its permits at most one validity. Returns how many permits it freed.
local function cleanup()
  local gone = redis.call('ZRANGEBYSCORE', holders, '-inf', now_ms())
  if #gone == 0 then return 0 end
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', now_ms())
  -- Their own keys share ours up to our value (\`owns .. value\`), in our slot.
  local owns = string.sub(own, 1, #own - #value)
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
-- Whether we hold all k permits: our own key says k and every member is there, unexpired
-- (check runs without cleanup).
local function holds()
  if tonumber(redis.call('GET', own)) ~= k then return false end
  for i = 1, k do
    local score = tonumber(redis.call('ZSCORE', holders, member(i)))
    if not score or score <= now_ms() then return false end
  end
  return true
end
-- Our k members and own key, until now + validity. The GET after the SET keeps the own key in
-- this connection's tracking table (a write drops it there, even for NOLOOP): loss by push.
local function hold(validity)
  local expiry = now_ms() + validity
  local scored = {}
  for i = 1, k do
    scored[2 * i - 1] = expiry
    scored[2 * i] = member(i)
  end
  redis.call('ZADD', holders, unpack(scored))
  redis.call('SET', own, k, 'PXAT', expiry)
  redis.call('GET', own)
end
-- The limit lives exactly as long as the holders (the queue's life joins in with the queue):
-- an idle semaphore leaves no keys, and a new limit is taken once every holder is gone.
local function keep(limit)
  local latest = redis.call('ZRANGE', holders, -1, -1, 'WITHSCORES')[2]
  if not latest then
    redis.call('DEL', meta)
    return
  end
  if limit then redis.call('HSET', meta, 'limit', limit) end
  redis.call('PEXPIREAT', holders, latest)
  redis.call('PEXPIREAT', meta, latest)
end
-- Freed permits are written to the vacancy key, which waiters read (step 4 writes it only
-- when the queue's head fits). It lives as long as a fence key.
local function wake(freed, validity)
  if freed > 0 then
    redis.call('INCR', vacancy)
    redis.call('PEXPIRE', vacancy, 10 * validity)
  end
end
-- Removes whatever is left of ours (a lost or releasing holder). Returns the permits freed.
local function remove()
  local members = {}
  for i = 1, k do members[i] = member(i) end
  redis.call('DEL', own)
  return redis.call('ZREM', holders, unpack(members))
end`;

/** The semaphore's scripts, each declared once (not loaded at connect until a caller exists). */
export const SEMAPHORE_SCRIPTS = {
  /**
   * Admit `permits` more holders' permits, or say how many are missing. The count and the
   * admission are one script, so two lockers never both see the last free permit. Each
   * admission draws a fencing token from `fence` (see NEXT_TOKEN): greater than every earlier
   * one of this semaphore.
   */
  acquire: defineScript(
    'semaphore-acquire',
    { keys: HOLDER_KEYS, args: { ...HOLDER_ARGS, fence: 'one' }, reply: acquired },
    `${SEM}
local limit, validity, fence = ARGV[6], tonumber(ARGV[7]), ARGV[8]
local mismatch = other_limit(limit)
if mismatch then return mismatch end
wake(cleanup(), validity)
local used = redis.call('ZCARD', holders)
if used + k > tonumber(limit) then
  local earliest = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')[2]
  return {'BUSY', used + k - tonumber(limit), (tonumber(earliest) or now_ms()) - now_ms()}
end
hold(validity)
keep(limit)
return {'HELD', next_token(fence, validity)}
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
      keys: HOLDER_KEYS,
      args: HOLDER_ARGS,
      reply: (raw): SemaphoreExtended =>
        stored(raw) ?? { status: (raw as unknown[])[0] === 1 ? 'extended' : 'lost' },
    },
    `${SEM}
local limit, validity = ARGV[6], tonumber(ARGV[7])
local mismatch = other_limit(limit)
if mismatch then return mismatch end
local freed = cleanup()
local held = holds()
if held then
  hold(validity)
else
  freed = freed + remove()
end
keep(held and limit)
wake(freed, validity)
return {held and 1 or 0}
`,
  ),

  /**
   * Let go of our permits: true when we still held all of them, false when they were already
   * lost (what is left of ours is removed either way). Freed permits write the vacancy key.
   */
  release: defineScript(
    'semaphore-release',
    {
      keys: HOLDER_KEYS,
      args: { ...SHARED, validityMs: 'one' },
      reply: (raw): boolean => raw === 1,
    },
    `${SEM}
local validity = tonumber(ARGV[6])
local freed = cleanup()
local held = holds()
freed = freed + remove()
keep(false)
wake(freed, validity)
return held and 1 or 0
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
      keys: HOLDER_KEYS,
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
  if (replies[0] === 'HELD') return { status: 'held', token: BigInt(replies[1] as string) };
  if (replies[0] === 'BUSY') {
    return { status: 'busy', needed: Number(replies[1]), earliestMs: Number(replies[2]) };
  }
  return stored(raw) as StoredLimit;
}
