import { randomUUID } from 'node:crypto';
import { createClient } from '@redis/client';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, DEFAULTS, type LockError, type Locker } from '../src/index.js';
import { MAX_HANDOFF_RUN } from '../src/redis/commands.js';
import { type Client, calls, connect, keysOf } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { bound, sleep, until, watched } from './helpers/wait.js';

// A Go rueidislock on the same keys, played command for command as its lock.go sends them: per
// key, in key order, `SET key value NX PXAT deadline` and `GET key` pipelined together; each
// held key extended by `extend` and let go by `delkey`, both by value. Nothing of tracklock's
// own (scripts, fence key, queue) is involved on the Go side. Its keys expire 30 s out, so
// anything that happens within a test's bound was told by a push, not an expiry.
const EXTEND = `if redis.call("GET",KEYS[1]) == ARGV[1] then return redis.call("PEXPIREAT",KEYS[1],ARGV[2]) else return 0 end`;
const DELKEY = `if redis.call("GET",KEYS[1]) == ARGV[1] then return redis.call("DEL",KEYS[1]) else return 0 end`;
const GO_VALIDITY_MS = 30_000;

const test = suite<{ server: RedisServer; admin: Client; locker: Locker; go: Go }>('go-protocol');

test.before.each(async (ctx) => {
  ctx.server = await startRedisServer();
  ctx.admin = await connect(ctx.server.url);
  ctx.locker = await createLocker({ url: ctx.server.url, keyValidityMs: GO_VALIDITY_MS });
  ctx.go = await goClient(ctx.server.url);
});

test.after.each(async (ctx) => {
  ctx.go.client.destroy();
  await ctx.locker.close();
  ctx.admin.destroy();
  await ctx.server.stop();
});

/** A Go locker's connection: RESP3 with tracking on, as rueidis makes it. */
async function goClient(url: string) {
  const invalidated = new Set<string>();
  const client = createClient({ url, RESP: 3, emitInvalidate: true });
  client.on('error', () => {});
  client.on('invalidate', (key: Buffer | string | null) => {
    if (key !== null) invalidated.add(key.toString());
  });
  await client.connect();
  return { client, invalidated };
}
type Go = Awaited<ReturnType<typeof goClient>>;
type GoClient = Go['client'];

/** Go's acquire of one key: SET NX PXAT and GET in one pipeline; true when the key is ours. */
async function goAcquire(client: GoClient, key: string, value: string): Promise<boolean> {
  const deadline = String(Date.now() + GO_VALIDITY_MS);
  const [set] = await Promise.all([
    client.sendCommand(['SET', key, value, 'NX', 'PXAT', deadline]),
    client.sendCommand(['GET', key]),
  ]);
  return set !== null;
}

/** Go's try: its keys in order, until a majority of three is ours or lost. */
async function goTry(client: GoClient, name: string, value: string): Promise<number> {
  let ours = 0;
  for (const key of keysOf(name)) if (await goAcquire(client, key, value)) ours++;
  return ours;
}

async function goScript(client: GoClient, script: string, key: string, ...args: string[]) {
  return Number(await client.sendCommand(['EVAL', script, '1', key, ...args]));
}

test('a tracklock waiter wakes by push when a Go holder lets go, and takes the lock', async ({
  admin,
  locker,
  go,
}) => {
  assert.is(await goTry(go.client, 'shared', 'go-holder'), 3);
  const refused = await locker.tryWithContext('shared').catch((error: LockError) => error);
  assert.is((refused as LockError).code, 'ERR_NOT_LOCKED');
  const before = await calls(admin, 'evalsha');
  const waiting = watched(locker.withContext('shared', bound(10_000)));
  await until(async () => (await calls(admin, 'evalsha')) > before); // it found the lock taken
  for (const key of keysOf('shared')) {
    assert.is(await goScript(go.client, DELKEY, key, 'go-holder'), 1);
  }
  const lock = await waiting.promise;
  // A majority is the waiter's; the last key Go deleted may still be free (a retake at the
  // next extension takes it).
  const values = await admin.mGet(keysOf('shared'));
  assert.not.ok(values.includes('go-holder'), String(values));
  assert.ok(values.filter((value) => value !== null).length >= 2, String(values));
  assert.is(await lock.release(), true);
});

test('a Go waiter hears a tracklock release by push, and takes every key', async ({
  admin,
  locker,
  go,
}) => {
  const lock = await locker.withContext('shared', bound(10_000));
  // Go's attempt fails on every key, and its GET makes the server track each for it.
  assert.is(await goTry(go.client, 'shared', 'go-waiter'), 0);
  assert.is(await lock.release(), true);
  await until(async () => go.invalidated.size === 3);
  assert.is(await goTry(go.client, 'shared', 'go-waiter'), 3);
  assert.equal(await admin.mGet(keysOf('shared')), ['go-waiter', 'go-waiter', 'go-waiter']);
});

test('Go holding a majority keeps tracklock out, and tracklock gives back the key it took', async ({
  admin,
  locker,
  go,
}) => {
  const [first, second] = keysOf('split');
  assert.ok(await goAcquire(go.client, first as string, 'go-holder'));
  assert.ok(await goAcquire(go.client, second as string, 'go-holder'));
  const refused = await locker.tryWithContext('split').catch((error: LockError) => error);
  assert.is((refused as LockError).code, 'ERR_NOT_LOCKED');
  // The third key, taken by the attempt, is deleted by value behind it; Go's stay.
  await until(async () => (await admin.get(keysOf('split')[2] as string)) === null);
  assert.equal((await admin.mGet(keysOf('split'))).slice(0, 2), ['go-holder', 'go-holder']);
});

test('Go extensions and deletions by another value leave a tracklock holder alone', async ({
  admin,
  locker,
  go,
}) => {
  const lock = await locker.withContext('kept', bound(10_000));
  const values = await admin.mGet(keysOf('kept'));
  for (const key of keysOf('kept')) {
    const later = String(Date.now() + 100);
    assert.is(await goScript(go.client, EXTEND, key, 'go-value', later), 0);
    assert.is(await goScript(go.client, DELKEY, key, 'go-value'), 0);
  }
  assert.equal(await admin.mGet(keysOf('kept')), values);
  assert.not.ok(lock.signal.aborted, String(lock.signal.reason));
  assert.is(await lock.release(), true);
});

/** Keys the server expired so far (INFO stats). */
async function expiredKeys(admin: Client): Promise<number> {
  const stats = String(await admin.sendCommand(['INFO', 'stats']));
  return Number(/expired_keys:(\d+)/.exec(stats)?.[1]);
}

test("a Go holder's release wakes the queue's head by push, which takes the lock without waiting for an expiry", async ({
  admin,
  locker,
  go,
}) => {
  assert.is(await goTry(go.client, 'pushed', 'go-holder'), 3);
  const waiting = watched(locker.withContext('pushed', { waitTimeoutMs: 10_000 }));
  waiting.promise.catch(() => {}); // awaited below; a failure before must not end the run
  await until(async () => (await admin.zCard('rueidislock:q:pushed')) === 1);
  const [head] = (await admin.zRange('rueidislock:q:pushed', 0, -1)) as [string];
  assert.is(await admin.hGet('rueidislock:r:pushed', head), 'head');
  // Its attempt found the keys held for 30 s, and it sleeps up to half a validity (15 s).
  const scripts = await calls(admin, 'evalsha');
  const expired = await expiredKeys(admin);
  for (const key of keysOf('pushed')) {
    assert.is(await goScript(go.client, DELKEY, key, 'go-holder'), 1);
  }
  const lock = await waiting.promise;
  // Each attempt was woken by one of the three deletions' pushes (Go's delkey is an EVAL, not
  // an EVALSHA), and no key expired meanwhile.
  const attempts = (await calls(admin, 'evalsha')) - scripts;
  assert.ok(attempts >= 1 && attempts <= 3, `${attempts} attempts for 3 deletions`);
  assert.is(await expiredKeys(admin), expired, 'a key expired');
  const values = await admin.mGet(keysOf('pushed'));
  assert.ok(values.filter((value) => value === head).length >= 2, String(values));
  assert.is(await lock.release(), true);
});

/**
 * A Go rueidislock waiting for `name`, played as lock.go's WithContext does it: each try draws
 * a value and takes the keys in order, each by SET NX PXAT and GET pipelined, until a majority
 * is its own or has failed (after a majority it takes the rest too); each key's step first
 * drains that key's pending invalidation. A try that failed deletes by value (delkey) what it
 * took, then waits for an invalidation of any of the keys that came after its step (or
 * ExtendInterval), and tries again.
 */
class GoWaiter {
  readonly #client: GoClient;
  readonly #keys: string[];
  /** Keys invalidated since they were last tried (rueidislock's per-key channel). */
  readonly #pending = new Set<string>();
  #wake: (() => void) | undefined;
  tries = 0;

  constructor(go: Go, name: string) {
    this.#client = go.client;
    this.#keys = keysOf(name);
    go.client.on('invalidate', (key: Buffer | string | null) => {
      for (const changed of key === null ? this.#keys : [key.toString()]) {
        if (this.#keys.includes(changed)) this.#pending.add(changed);
      }
      this.#wake?.();
    });
  }

  /** Wait until a majority of the keys is ours: the value and the keys taken. */
  async acquire(signal: AbortSignal): Promise<{ value: string; keys: string[] }> {
    const majority = (this.#keys.length + 1) / 2;
    for (;;) {
      signal.throwIfAborted();
      this.tries++;
      const value = randomUUID();
      const taken: string[] = [];
      let failed = 0;
      let next = 0;
      for (; next < this.#keys.length && taken.length < majority && failed < majority; next++) {
        const key = this.#keys[next] as string;
        this.#pending.delete(key);
        if (await goAcquire(this.#client, key, value)) taken.push(key);
        else failed++;
      }
      // The keys after the decision go through the same per-key step: after a majority they are
      // taken too; after a majority failed they are only drained, not tried.
      for (const key of this.#keys.slice(next)) {
        this.#pending.delete(key);
        if (taken.length >= majority && (await goAcquire(this.#client, key, value))) {
          taken.push(key);
        }
      }
      if (taken.length >= majority) return { value, keys: taken };
      for (const key of taken) await goScript(this.#client, DELKEY, key, value);
      if (this.#pending.size === 0) {
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            signal.removeEventListener('abort', done);
            this.#wake = undefined;
            resolve();
          };
          const timer = setTimeout(done, GO_VALIDITY_MS / 2); // ExtendInterval
          signal.addEventListener('abort', done);
          this.#wake = done;
        });
      }
    }
  }
}

test('a Go waiter is not starved by tracklock lockers passing and handing the lock among themselves', async ({
  server,
  go,
}) => {
  // The Go side tracks with NOLOOP, as docs/rueidislock.md asks.
  await go.client.sendCommand(['CLIENT', 'TRACKING', 'ON', 'NOLOOP']);
  const name = 'contended';
  const t1 = await createLocker({ url: server.url });
  const t2 = await createLocker({ url: server.url });
  const goWaiter = new GoWaiter(go, name);
  // A lock passes at most localHandoffs times in a row within t1 before a release goes to the
  // queue, and the queue's release deletes the keys instead of handing them over at least
  // every (MAX_HANDOFF_RUN + 1)th time in a run: so at least one release in
  // (localHandoffs + 1) * (MAX_HANDOFF_RUN + 1) gives the Go waiter a race for the keys. A fair
  // race is lost half the time: RACES of them in a row are all lost once in 2 ** RACES runs
  // (and once in 10 ** 5 runs were the Go waiter to win only one race in three).
  const RACES = 30;
  const limit = (DEFAULTS.localHandoffs + 1) * (MAX_HANDOFF_RUN + 1) * RACES;
  const stop = new AbortController();
  let releases = 0;
  let releasesBeforeGo: number | undefined;
  let holders = 0;
  let overlaps = 0;
  const hold = async () => {
    if (holders++ > 0) overlaps++;
    // Holds it a while: the queue's head renews its reserved token after each local pass
    // (whose new token makes the old one stale) before the next release, so that the queue's
    // handoffs stick and the Go waiter gets its race from MAX_HANDOFF_RUN's deletions.
    await sleep(5);
    holders--;
  };
  const loop = async (locker: Locker) => {
    while (releases < limit && !stop.signal.aborted) {
      const lock = await locker
        .withContext(name, { signal: stop.signal, waitTimeoutMs: 20_000 })
        .catch(() => undefined);
      if (!lock) return;
      await hold();
      releases++;
      await lock.release();
    }
    stop.abort();
  };
  const goLoop = async () => {
    const held = await goWaiter.acquire(stop.signal).catch(() => undefined);
    if (!held) return;
    releasesBeforeGo = releases;
    await hold();
    for (const key of held.keys) await goScript(go.client, DELKEY, key, held.value);
    stop.abort();
  };
  try {
    await Promise.all([loop(t1), loop(t1), loop(t2), goLoop()]);
  } finally {
    await Promise.all([t1.close(), t2.close()]);
  }
  assert.is(overlaps, 0, 'two holders');
  // KNOWN FAILURE, a bug in src/ (not in this test), reported with issue 13's tests: the race
  // a deleting release gives the Go waiter is not fair. On the deletion's invalidations the
  // queue's head takes every key in one script, while Go takes them one after another, a round
  // trip each, and needs keyMajority of them before the head's script runs: it gets key 0 at
  // best, the head the majority. Under steady contention the Go waiter then never gets the
  // lock: in 12 of 20 runs not in the 2430 releases here (about 30 deleting releases).
  assert.ok(
    releasesBeforeGo !== undefined,
    `the Go waiter never got the lock in ${releases} tracklock releases (${goWaiter.tries} tries)`,
  );
});

test.run();
