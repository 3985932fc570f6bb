/**
 * The resource the workers guard: a counter in a Redis server of its own (never the lock's),
 * written by read-modify-write, with every step logged in the store's own order and time.
 * With `fenced`, a write carrying a smaller token than one already accepted is refused, as a
 * resource that checks fencing tokens would. For a semaphore or a read-write lock the store
 * counts the holders instead (`enter`): who is inside, in what role, from its enter to its
 * exit or abort.
 */
import { createClient } from '@redis/client';

type Client = ReturnType<typeof createClient>;

const PREFIX = 'checker';

/** One step of one worker, as the store saw it. */
export interface Step {
  /** The store's clock, in µs. */
  readonly at: number;
  readonly worker: number;
  readonly kind: 'enter' | 'read' | 'write' | 'stale' | 'refused' | 'exit' | 'abort' | 'crowded';
  /**
   * 'enter': the token (a counted lock's: the role, a space, the token); 'write' / 'stale': the value ('stale': the write was interleaved,
   * another write since this one's read); 'crowded': who was inside when this worker entered,
   * logged just before its 'enter' (a semaphore past its limit, a read beside a writer, a
   * write beside anyone); 'abort': why.
   */
  readonly detail: string;
}

/**
 * How a worker holds a counted lock: one of a semaphore's permits, or a read-write lock's
 * read or write side.
 */
export type Role = 'permit' | 'read' | 'write';

// Every script appends `at|worker|kind|detail` to the log.
const LOG = `
local function log(kind, detail)
  local t = redis.call('TIME')
  redis.call('RPUSH', KEYS[1], t[1] .. string.format('%06d', t[2]) .. '|' .. ARGV[1] .. '|' .. kind .. '|' .. detail)
end`;

/**
 * KEYS: log, holders. ARGV: worker, kind, detail. An 'exit' or 'abort' ends the worker's stay
 * among the holders of a counted lock (none for a mutex).
 */
const NOTE = `${LOG}
if ARGV[2] == 'exit' or ARGV[2] == 'abort' then redis.call('HDEL', KEYS[2], ARGV[1]) end
log(ARGV[2], ARGV[3])
return 1`;

/**
 * KEYS: log, holders (a hash: worker → role). ARGV: worker, role, limit (a semaphore's, as the
 * checker enforces it), token ('' for none). Counts who is inside before this worker joins
 * them, logs 'crowded' when it breaks the lock's rule, then 'enter'. Returns 1 crowded, 0 not.
 */
const ENTER = `${LOG}
local inside = redis.call('HGETALL', KEYS[2])
local permits, readers, writers = 0, 0, 0
for i = 2, #inside, 2 do
  if inside[i] == 'read' then readers = readers + 1
  elseif inside[i] == 'write' then writers = writers + 1
  else permits = permits + 1 end
end
local role = ARGV[2]
local crowded = false
if role == 'permit' then
  crowded = permits + 1 > tonumber(ARGV[3])
elseif role == 'read' then
  crowded = writers > 0
else
  crowded = readers + writers > 0
end
if crowded then
  log('crowded', role .. ' beside ' .. permits .. ' permits, ' .. readers .. ' readers, ' .. writers .. ' writers')
end
redis.call('HSET', KEYS[2], ARGV[1], role)
log('enter', role .. ' ' .. ARGV[4])
return crowded and 1 or 0`;

/**
 * KEYS: log, counter, writes, highest token. ARGV: worker, token ('' for none), fenced.
 * Returns {counter, writes so far}, or false when fenced and the token is stale. A fenced read
 * raises the highest token: from then on an older holder can no longer write.
 */
const READ = `${LOG}
if ARGV[3] == '1' and ARGV[2] ~= '' then
  local highest = redis.call('GET', KEYS[4])
  if highest and tonumber(highest) > tonumber(ARGV[2]) then
    log('refused', ARGV[2])
    return false
  end
  redis.call('SET', KEYS[4], ARGV[2])
end
local counter = tonumber(redis.call('GET', KEYS[2]) or '0')
local writes = tonumber(redis.call('GET', KEYS[3]) or '0')
log('read', counter)
return {counter, writes}`;

/**
 * KEYS: log, counter, writes, highest token. ARGV: worker, value, writes seen at the read,
 * token ('' for none), fenced ('1' / '0'). Returns 1 written, 0 refused (stale token).
 */
const WRITE = `${LOG}
local token = ARGV[4]
if ARGV[5] == '1' and token ~= '' then
  local highest = redis.call('GET', KEYS[4])
  if highest and tonumber(highest) > tonumber(token) then
    log('refused', token)
    return 0
  end
  redis.call('SET', KEYS[4], token)
end
local writes = tonumber(redis.call('GET', KEYS[3]) or '0')
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], writes + 1)
log(writes == tonumber(ARGV[3]) and 'write' or 'stale', ARGV[2])
return 1`;

export interface StoreClient {
  note(kind: 'enter' | 'exit' | 'abort', detail?: string): Promise<void>;
  /**
   * A counted lock's holder enters: whether it found the lock crowded (a violation). `limit`:
   * a semaphore's, as the checker enforces it.
   */
  enter(role: Role, limit: number, token: bigint | undefined): Promise<boolean>;
  /** The counter, or undefined when a fenced store refused the token. */
  read(token: bigint | undefined): Promise<{ counter: number; writes: number } | undefined>;
  /** Whether the write was accepted (a fenced store refuses a smaller token). */
  write(value: number, writesAtRead: number, token: bigint | undefined): Promise<boolean>;
  close(): Promise<void>;
}

/** A worker's connection to the store. */
export async function openStore(
  url: string,
  worker: number,
  fenced: boolean,
): Promise<StoreClient> {
  const client: Client = createClient({ url, RESP: 3, name: connectionName(worker) });
  client.on('error', () => {});
  await client.connect();
  const keys = [`${PREFIX}:log`, `${PREFIX}:counter`, `${PREFIX}:writes`, `${PREFIX}:token`];
  const run = (script: string, count: number, args: string[]) =>
    client.sendCommand(['EVAL', script, String(count), ...keys.slice(0, count), ...args]);
  const counted = (script: string, args: string[]) =>
    client.sendCommand(['EVAL', script, '2', `${PREFIX}:log`, HOLDERS, String(worker), ...args]);
  return {
    note: async (kind, detail = '') => {
      await counted(NOTE, [kind, detail]);
    },
    enter: async (role, limit, token) =>
      Number(
        await counted(ENTER, [role, String(limit), token === undefined ? '' : String(token)]),
      ) === 1,
    read: async (token) => {
      const reply = (await run(READ, 4, [
        String(worker),
        token === undefined ? '' : String(token),
        fenced ? '1' : '0',
      ])) as unknown as [number, number] | null;
      if (!reply) return undefined;
      return { counter: Number(reply[0]), writes: Number(reply[1]) };
    },
    write: async (value, writesAtRead, token) =>
      Number(
        await run(WRITE, 4, [
          String(worker),
          String(value),
          String(writesAtRead),
          token === undefined ? '' : String(token),
          fenced ? '1' : '0',
        ]),
      ) === 1,
    close: async () => {
      client.destroy();
    },
  };
}

/** The holders of a counted lock: worker → role. */
const HOLDERS = `${PREFIX}:holders`;

/** A worker's connection to the store goes by this name (CLIENT SETNAME). */
function connectionName(worker: number): string {
  return `${PREFIX}-worker-${worker}`;
}

/**
 * After `worker` was killed: wait until its connection to the store is gone (the server has
 * then run every command it had sent), and close the critical section it was in, if any, with
 * an 'abort' step ('killed'). Returns whether it was in one. Bounded by `timeoutMs`.
 */
export async function closeKilled(
  url: string,
  worker: number,
  timeoutMs: number,
): Promise<boolean> {
  const client: Client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  try {
    const name = connectionName(worker);
    const end = Date.now() + timeoutMs;
    for (;;) {
      const list = String(await client.sendCommand(['CLIENT', 'LIST', 'TYPE', 'normal']));
      if (!list.split('\n').some((line) => line.includes(` name=${name} `))) break;
      if (Date.now() > end) throw new Error(`worker ${worker}'s store connection outlived it`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const lines = (await client.lRange(`${PREFIX}:log`, 0, -1)) as string[];
    let last: string | undefined;
    for (const line of lines) {
      const [, who, kind] = line.split('|');
      if (Number(who) === worker) last = kind;
    }
    const inside = last !== undefined && !['exit', 'abort'].includes(last);
    if (inside) {
      await client.sendCommand([
        'EVAL',
        NOTE,
        '2',
        `${PREFIX}:log`,
        HOLDERS,
        String(worker),
        'abort',
        'killed',
      ]);
    }
    return inside;
  } finally {
    client.destroy();
  }
}

/** The coordinator's view: the whole log and the counter. */
export async function readStore(url: string): Promise<{ steps: Step[]; counter: number }> {
  const client: Client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  try {
    const lines = (await client.lRange(`${PREFIX}:log`, 0, -1)) as string[];
    const counter = Number((await client.get(`${PREFIX}:counter`)) ?? 0);
    const steps = lines.map((line): Step => {
      const [at, worker, kind, detail] = line.split('|');
      return {
        at: Number(at),
        worker: Number(worker),
        kind: kind as Step['kind'],
        detail: detail ?? '',
      };
    });
    return { steps, counter };
  } finally {
    client.destroy();
  }
}

/** The last step `worker` logged (among the log's last 500). */
export async function lastStepOf(url: string, worker: number): Promise<Step['kind'] | undefined> {
  const client: Client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  try {
    const lines = (await client.lRange(`${PREFIX}:log`, -500, -1)) as string[];
    for (let i = lines.length - 1; i >= 0; i--) {
      const [, who, kind] = (lines[i] as string).split('|');
      if (Number(who) === worker) return kind as Step['kind'];
    }
    return undefined;
  } finally {
    client.destroy();
  }
}

/** How many steps the log holds. */
export async function logLength(url: string): Promise<number> {
  const client: Client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  try {
    return await client.lLen(`${PREFIX}:log`);
  } finally {
    client.destroy();
  }
}

/**
 * Whether a worker other than `worker` logged a `kind` step (a write; for a counted lock, an
 * enter) after the log's first `since` steps.
 */
export async function wroteSince(
  url: string,
  since: number,
  worker: number,
  kind: Step['kind'] = 'write',
): Promise<boolean> {
  const client: Client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  try {
    const lines = (await client.lRange(`${PREFIX}:log`, since, -1)) as string[];
    return lines.some((line) => {
      const [, who, step] = line.split('|');
      return Number(who) !== worker && step === kind;
    });
  } finally {
    client.destroy();
  }
}

/**
 * One connection for a fault that looks at the log often (a connection per look is slow on
 * a loaded machine): `holder(kind)` is `currentHolder` on it.
 */
export async function watchStore(url: string) {
  const client: Client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  return {
    holder: async (kind: Step['kind']): Promise<number | undefined> => {
      const last = (await client.lRange(`${PREFIX}:log`, -1, -1))[0] as string | undefined;
      const [, worker, step] = last?.split('|') ?? [];
      return step === kind ? Number(worker) : undefined;
    },
    /** Whether `worker` is inside a critical section (by its last step among the last 200). */
    inSection: async (worker: number): Promise<boolean> => {
      const lines = (await client.lRange(`${PREFIX}:log`, -200, -1)) as string[];
      for (let i = lines.length - 1; i >= 0; i--) {
        const [, who, kind] = (lines[i] as string).split('|');
        if (Number(who) === worker) return kind !== 'exit' && kind !== 'abort';
      }
      return false;
    },
    close: () => client.destroy(),
  };
}

/** The worker whose last step, the log's last, is `kind` (for the holder-pause fault). */
export async function currentHolder(url: string, kind: Step['kind']): Promise<number | undefined> {
  const client: Client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  try {
    const last = (await client.lRange(`${PREFIX}:log`, -1, -1))[0] as string | undefined;
    if (!last) return undefined;
    const [, worker, step] = last.split('|');
    return step === kind ? Number(worker) : undefined;
  } finally {
    client.destroy();
  }
}
