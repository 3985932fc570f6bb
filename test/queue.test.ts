import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createLocker,
  type Lock,
  type Locker,
  type LockerOptions,
  type WaitOptions,
} from '../src/index.js';
import { exited, forkHelper, message } from './helpers/child.js';
import { type Client, calls, connect, keysOf } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { abortedWithin, sleep, until, watched } from './helpers/wait.js';

// The queue (issue 13): waiters of several lockers on one server, served in arrival order, at a
// cost that does not grow with their number. Each test counts commands, kills, stops or
// flushes, so each gets a server of its own.
const test = suite<{ server: RedisServer; admin: Client; lockers: Locker[] }>('queue');

test.before.each(async (ctx) => {
  ctx.server = await startRedisServer();
  ctx.admin = await connect(ctx.server.url);
  ctx.lockers = [];
});

test.after.each(async (ctx) => {
  await Promise.all(ctx.lockers.map((locker) => locker.close()));
  ctx.admin.destroy();
  await ctx.server.stop();
});

type Ctx = { server: RedisServer; admin: Client; lockers: Locker[] };

/**
 * A wait bounded by `ms` that, once the lock is held, does not limit how long (unlike a
 * signal: `AbortSignal.timeout` would end a held lock while a slow child process starts).
 */
const waitUpTo = (ms = 10_000): WaitOptions => ({ waitTimeoutMs: ms });

/**
 * `promise`, marked as handled: a test that fails before awaiting it must not leave a rejection
 * (its locker's close) unhandled, which would end the whole run.
 */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/** `watched(promise)`, its rejection handled (see `handled`). */
function watching<T>(promise: Promise<T>): ReturnType<typeof watched<T>> {
  const watch = watched(promise);
  handled(watch.promise);
  return watch;
}

/** A locker of its own on the test's server, closed after the test. */
async function locker(ctx: Ctx, options: LockerOptions = {}): Promise<Locker> {
  const created = await createLocker({ url: ctx.server.url, ...options });
  ctx.lockers.push(created);
  return created;
}

// Key names, spelled out here rather than taken from src/, so that the tests check the layout.
const queueOf = (name: string) => `rueidislock:q:${name}`;
const rolesOf = (name: string) => `rueidislock:r:${name}`;
const ticketOf = (value: string) => `rueidislock:t:${value}`;

/** The queue's entries (waiters' values), first first. */
const entries = (admin: Client, name: string) => admin.zRange(queueOf(name), 0, -1);

/**
 * Start `locker`'s wait for `name` and return it with the value it queued under: the entry that
 * was not in the queue before. Waits until it is queued.
 */
async function enqueue(
  admin: Client,
  locker: Locker,
  name: string,
  options: WaitOptions = waitUpTo(60_000),
) {
  const before = new Set(await entries(admin, name));
  const waiting = handled(locker.withContext(name, options));
  let value: string | undefined;
  await until(async () => {
    value = (await entries(admin, name)).find((entry) => !before.has(entry));
    return value !== undefined;
  });
  return { waiting, value: value as string };
}

/** Every command's calls on the server so far (INFO commandstats), by command. */
async function commandCalls(admin: Client): Promise<Map<string, number>> {
  const info = String(await admin.sendCommand(['INFO', 'commandstats']));
  const counts = new Map<string, number>();
  for (const [, command, calls] of info.matchAll(/cmdstat_(\S+?):calls=(\d+)/g)) {
    counts.set(command as string, Number(calls));
  }
  return counts;
}

/** The calls made between two `commandCalls`, the test's own INFO left out. */
function callsBetween(before: Map<string, number>, after: Map<string, number>) {
  const delta = new Map<string, number>();
  for (const [command, calls] of after) {
    if (command === 'info') continue;
    const made = calls - (before.get(command) ?? 0);
    if (made > 0) delta.set(command, made);
  }
  return delta;
}

/**
 * The server's calls over `periods` whole extension periods of a holder of 3 keys: from just
 * after one extension (its PEXPIREAT per key, which nothing else sends while the lock is held)
 * to just after the `periods`-th one after it. Scripts (EVALSHA) apart from every other call,
 * those run inside scripts included.
 */
async function callsPerExtension(admin: Client, periods: number) {
  const pexpireats = async () => (await commandCalls(admin)).get('pexpireat') ?? 0;
  const seen = await pexpireats();
  let start = await commandCalls(admin);
  await until(async () => {
    start = await commandCalls(admin);
    return (start.get('pexpireat') ?? 0) > seen;
  });
  const from = start.get('pexpireat') ?? 0;
  const startedAt = performance.now();
  let end = start;
  await until(async () => {
    end = await commandCalls(admin);
    return (end.get('pexpireat') ?? 0) >= from + 3 * periods;
  }, AbortSignal.timeout(30_000));
  const windowMs = performance.now() - startedAt;
  const made = callsBetween(start, end);
  const extensions = (made.get('pexpireat') ?? 0) / 3;
  const scripts = made.get('evalsha') ?? 0;
  let inner = 0;
  for (const [command, calls] of made) if (command !== 'evalsha') inner += calls;
  return { extensions, scripts, inner, windowMs, made };
}
type Cost = Awaited<ReturnType<typeof callsPerExtension>>;

/** What the server still keeps of a waiter's `value` (queue entry, roles, its own keys). */
async function traces(admin: Client, name: string, value: string): Promise<string[]> {
  const found: string[] = [];
  if ((await admin.zScore(queueOf(name), value)) !== null) found.push('queue entry');
  for (const field of [value, `#${value}`]) {
    if (await admin.hExists(rolesOf(name), field)) found.push(`roles field ${field}`);
  }
  for (const kind of ['t', 'w', 'h']) {
    const key = `rueidislock:${kind}:${value}`;
    if ((await admin.exists(key)) === 1) found.push(key);
  }
  return found;
}

/** The roles of the queue's listeners, `#` fields (tokens, the run of handoffs) left out. */
async function listeners(admin: Client, name: string): Promise<Record<string, string>> {
  const roles = await admin.hGetAll(rolesOf(name));
  return Object.fromEntries(Object.entries(roles).filter(([field]) => !field.startsWith('#')));
}

/** Every key of the queue's own (queue, roles, tickets, wake and handoff keys). */
const queueKeys = (admin: Client) => admin.keys('rueidislock:[qrtwh]:*');

test('what W waiters cost the server per extension does not grow with W, and only two listen', async (ctx) => {
  // A holder extends 4 times a validity. Per extension the design allows: the holder's extend
  // script; the head's attempt, which the extension's invalidations wake (the three keys' pushes
  // come in one write, so one attempt); and the deputy's attempt and read of the head's ticket,
  // woken when the head renews it (once a quarter validity has passed: at most once per
  // extension). The other waiters sleep on their wake keys and send nothing.
  const validity = 1000;
  const interval = 250;
  const options = { keyValidityMs: validity, extendIntervalMs: interval };
  const periods = 8;
  const costs = new Map<number, Cost>();
  for (const w of [2, 8]) {
    const name = `cost-${w}`;
    const holder = await locker(ctx, options);
    const held = await holder.withContext(name, waitUpTo());
    const queued: string[] = [];
    for (let i = 0; i < w; i++) {
      const { value } = await enqueue(ctx.admin, await locker(ctx, options), name);
      queued.push(value);
    }
    // Steady state: the head and the deputy have each renewed their ticket themselves (a
    // positive deadline; a promoter's is negative).
    const [head, deputy] = queued as [string, string];
    await until(async () => {
      const tickets = await ctx.admin.mGet([ticketOf(head), ticketOf(deputy)]);
      return tickets.every((ticket) => ticket !== null && Number(ticket) > 0);
    });
    assert.equal(await entries(ctx.admin, name), queued, 'the queue, in arrival order');
    assert.equal(await listeners(ctx.admin, name), { [head]: 'head', [deputy]: 'deputy' });
    for (const sleeper of queued.slice(2)) {
      assert.is(await ctx.admin.exists(ticketOf(sleeper)), 0, `sleeper ${sleeper} has a ticket`);
    }
    const cost = await callsPerExtension(ctx.admin, periods);
    costs.set(w, cost);
    const { extensions, scripts, windowMs } = cost;
    // The window starts just after an extension: the deputy's attempt woken by the one before
    // may still fall in it. On a loaded machine an extension may come late: the head then
    // also attempts on its own timer (half a validity after its last attempt), and may wake the
    // deputy: at most one such pair per interval the extensions were late by, in all. And a
    // deputy that also looks by itself at least twice a validity, so that its own ticket never
    // runs out first (see the test of a killed head), adds at most one attempt per half validity.
    const lateMs = Math.max(0, windowMs - extensions * interval);
    const allowed =
      3 * extensions + 1 + 2 * Math.ceil(lateMs / interval) + Math.ceil(windowMs / (validity / 2));
    assert.ok(scripts <= allowed, `W = ${w}: ${scripts} scripts in ${extensions} extensions`);
    // Nothing the holder sent since the roles were read made a sleeper listen.
    assert.equal(await listeners(ctx.admin, name), { [head]: 'head', [deputy]: 'deputy' });
    assert.not.ok(held.signal.aborted, 'the holder lost its lock');
    await Promise.all(ctx.lockers.splice(0).map((done) => done.close()));
  }
  const [two, eight] = [costs.get(2), costs.get(8)] as [Cost, Cost];
  const perExtension = (c: Cost) => c.scripts / c.extensions;
  const perScript = (c: Cost) => c.inner / c.scripts;
  // The same listeners at W = 2 and 8: what may differ is whether the deputy was woken at an
  // extension (the head renews at most once per extension, at least every other one), and one
  // more deputy attempt across the window's edge.
  assert.ok(
    perExtension(eight) <= perExtension(two) + 1 + 1 / eight.extensions,
    `scripts per extension: ${perExtension(two)} at W = 2, ${perExtension(eight)} at W = 8`,
  );
  // No script's work inside grows with W (each reads only the first two entries). What may
  // differ: the deputy's read of the head's ticket, outside its script, and the mix of the three
  // kinds of scripts (the head's attempt does more than the deputy's, and the holder's
  // extension less), which late extensions shift.
  assert.ok(
    perScript(eight) <= perScript(two) + 2,
    `calls per script: ${perScript(two)} at W = 2, ${perScript(eight)} at W = 8 (${[...eight.made]})`,
  );
});

test('waiters of several lockers are served in arrival order while the head and the deputy leave', async (ctx) => {
  const name = 'order';
  const holder = await locker(ctx);
  const held = await holder.withContext(name, waitUpTo());
  const quits = new Map<string, AbortController>();
  const waits = new Map<string, Promise<Lock>>();
  for (let i = 0; i < 6; i++) {
    const quit = new AbortController();
    const { waiting, value } = await enqueue(ctx.admin, await locker(ctx), name, {
      signal: quit.signal,
      waitTimeoutMs: 60_000,
    });
    quits.set(value, quit);
    waits.set(value, waiting);
  }
  const values = [...waits.keys()];
  const [b, c, d, e, f, g] = values as [string, string, string, string, string, string];
  assert.equal(await entries(ctx.admin, name), values, 'the queue, in arrival order');
  await until(async () => (await listeners(ctx.admin, name))[c] === 'deputy');
  assert.equal(await listeners(ctx.admin, name), { [b]: 'head', [c]: 'deputy' });

  /** `value` gives up; the queue becomes `queue`, with `roles`, and nothing of it is left. */
  const giveUp = async (value: string, queue: string[], roles: Record<string, string>) => {
    quits.get(value)?.abort(new Error('gave up'));
    const rejected = await (waits.get(value) as Promise<Lock>).then(
      () => undefined,
      (error: unknown) => error,
    );
    assert.instance(rejected, Error, `${value} got the lock instead of giving up`);
    // Its way out of the queue goes on after its call rejected, in one script that also
    // gives its role to the next in line.
    await until(async () => (await traces(ctx.admin, name, value)).length === 0);
    assert.equal(await entries(ctx.admin, name), queue);
    assert.equal(await listeners(ctx.admin, name), roles);
  };
  await giveUp(c, [b, d, e, f, g], { [b]: 'head', [d]: 'deputy' }); // the deputy
  await giveUp(b, [d, e, f, g], { [d]: 'head', [e]: 'deputy' }); // the head
  await giveUp(f, [d, e, g], { [d]: 'head', [e]: 'deputy' }); // one asleep in the middle
  assert.is(await ctx.admin.exists(ticketOf(g)), 0, 'the one asleep has a ticket');

  const served: string[] = [];
  const rest = [d, e, g].map((value) =>
    handled(
      (waits.get(value) as Promise<Lock>).then(async (lock) => {
        served.push(value);
        await lock.release(); // hands it to the next in the queue
      }),
    ),
  );
  await held.release();
  await Promise.all(rest);
  assert.equal(served, [d, e, g]);
  // The last one out took everything of the queue with it: only the fence key stays.
  assert.equal(await queueKeys(ctx.admin), []);
});

test('waiters arriving back to back, each as soon as the one before is queued, keep their arrival order', async (ctx) => {
  const [holder, ...waiting] = await Promise.all(Array.from({ length: 11 }, () => locker(ctx)));
  for (let round = 0; round < 10; round++) {
    const name = `back-to-back-${round}`;
    const held = await (holder as Locker).withContext(name, waitUpTo());
    const arrived: string[] = [];
    const served: Promise<unknown>[] = [];
    for (const next of waiting) {
      const before = new Set(await entries(ctx.admin, name));
      served.push(handled(next.withContext(name, waitUpTo(30_000)).then((lock) => lock.release())));
      // Looked for without a pause, so that the next one arrives right after.
      const deadline = performance.now() + 10_000;
      let queued: string | undefined;
      for (let looks = 0; queued === undefined && looks < 100_000; looks++) {
        if (performance.now() > deadline) break;
        queued = (await entries(ctx.admin, name)).find((entry) => !before.has(entry));
      }
      assert.ok(queued, 'a waiter was not queued within 10 s');
      arrived.push(queued as string);
    }
    assert.equal(await entries(ctx.admin, name), arrived, `round ${round}: not in arrival order`);
    assert.is(await held.release(), true);
    await Promise.all(served);
  }
});

/**
 * `name` held by a locker of `validity` in this process, a waiter process queued as its head,
 * then two waiters here (the deputy and a third), the head having renewed its ticket itself.
 */
async function behindAHead(ctx: Ctx, name: string, validity: number) {
  const options = { keyValidityMs: validity };
  const holder = await locker(ctx, options);
  const held = await holder.withContext(name, waitUpTo());
  const child = forkHelper('./queue-waiter.ts', [ctx.server.url, name, String(validity)]);
  await message(child, 'waiting', 30_000); // a loaded machine starts a process slowly
  await until(async () => (await entries(ctx.admin, name)).length === 1);
  const [head] = (await entries(ctx.admin, name)) as [string];
  const deputy = await enqueue(ctx.admin, await locker(ctx, options), name);
  const third = await enqueue(ctx.admin, await locker(ctx, options), name);
  assert.equal(await listeners(ctx.admin, name), { [head]: 'head', [deputy.value]: 'deputy' });
  await until(async () => Number(await ctx.admin.get(ticketOf(head))) > 0);
  return { held, child, head, deputy, third };
}

type Watched = ReturnType<typeof watched<Lock>>;

/**
 * The two waits' locks as they come, counting those that came while the other was held (a lock
 * is held from when its wait resolves until `release`).
 */
function oneAtATime(first: Promise<Lock>, second: Promise<Lock>) {
  let holding = false;
  let overlaps = 0;
  const take = (lock: Lock) => {
    if (holding) overlaps++;
    holding = true;
    return lock;
  };
  return {
    locks: [watching(first.then(take)), watching(second.then(take))] as [Watched, Watched],
    overlaps: () => overlaps,
    release: async (lock: Lock) => {
      holding = false;
      assert.is(await lock.release(), true);
    },
  };
}

test('a head killed while queued is replaced by its deputy within about a validity', async (ctx) => {
  const validity = 1000;
  const name = 'dead-head';
  const { held, child, head, deputy, third } = await behindAHead(ctx, name, validity);
  try {
    child.kill('SIGKILL');
    await exited(child);
    const killedAt = performance.now();
    // The deputy hears the dead head's ticket expire (at most a validity after its last
    // renewal, before the kill), drops it and takes its place; the third becomes the deputy,
    // all in one script.
    await until(
      async () => !(await entries(ctx.admin, name)).includes(head),
      AbortSignal.timeout(10 * validity),
    );
    const tookOverMs = performance.now() - killedAt;
    // A validity more for a loaded machine; without its deputy, a waiter stuck behind a dead
    // head would wait for its backstop, 60 validities.
    assert.ok(tookOverMs < 2 * validity, `the deputy took over ${tookOverMs} ms after`);
    assert.equal(await traces(ctx.admin, name, head), [], 'the dead head is still there');
    const who = (value: string) =>
      value === deputy.value ? 'deputy' : value === third.value ? 'third' : value;
    assert.equal((await entries(ctx.admin, name)).map(who), ['deputy', 'third'], 'arrival order');
    assert.equal(await listeners(ctx.admin, name), {
      [deputy.value]: 'head',
      [third.value]: 'deputy',
    });
    const { locks, overlaps, release } = oneAtATime(deputy.waiting, third.waiting);
    const [next, last] = locks;
    assert.is(await held.release(), true);
    const lock = await next.promise;
    assert.not.ok(last.resolved(), 'the third waiter holds too');
    await release(lock);
    await release(await last.promise);
    assert.is(overlaps(), 0, 'two holders');
    assert.equal(await queueKeys(ctx.admin), []);
  } finally {
    child.kill('SIGKILL');
  }
});

test('a release right after the head was killed gets the lock to the next live waiter within about a validity', async (ctx) => {
  const validity = 1000;
  const name = 'dead-head-release';
  const { held, child, deputy, third } = await behindAHead(ctx, name, validity);
  try {
    child.kill('SIGKILL');
    await exited(child);
    const { locks, overlaps, release } = oneAtATime(deputy.waiting, third.waiting);
    const [next, last] = locks;
    const releasedAt = performance.now();
    // The release may hand the keys to the dead head: its ticket has not run out yet.
    assert.is(await held.release(), true);
    const lock = await next.promise;
    const waitedMs = performance.now() - releasedAt;
    // Handed to the dead head, the keys are its until its ticket's deadline: at most a
    // validity after its last renewal, before the kill. A validity more for a loaded machine.
    assert.ok(waitedMs < 2 * validity, `the deputy got the lock ${waitedMs} ms after release`);
    const values = await ctx.admin.mGet(keysOf(name));
    assert.ok(values.filter((v) => v === deputy.value).length >= 2, String(values));
    assert.not.ok(last.resolved(), 'the third waiter holds too');
    await release(lock);
    await release(await last.promise);
    assert.is(overlaps(), 0, 'two holders');
    assert.equal(await queueKeys(ctx.admin), [], 'something of the dead head is left');
  } finally {
    child.kill('SIGKILL');
  }
});

test('a head frozen when the lock is handed to it holds it until its ticket runs out, and once thawed does not believe it holds', async (ctx) => {
  const validity = 2000;
  const name = 'frozen-head';
  const options = { keyValidityMs: validity };
  const holder = await locker(ctx, options);
  const held = await holder.withContext(name, waitUpTo());
  const child = forkHelper('./queue-waiter.ts', [ctx.server.url, name, String(validity)]);
  /** What the frozen head said, and whether the next waiter held the lock when it arrived. */
  const said: { message: string; otherHolds: boolean }[] = [];
  let otherHolds = false;
  child.on('message', (m: unknown) => said.push({ message: String(m), otherHolds }));
  try {
    await message(child, 'waiting', 30_000); // a loaded machine starts a process slowly
    await until(async () => (await entries(ctx.admin, name)).length === 1);
    const [frozen] = (await entries(ctx.admin, name)) as [string];
    const next = await enqueue(ctx.admin, await locker(ctx, options), name);
    await until(async () => (await listeners(ctx.admin, name))[next.value] === 'deputy');
    // Freeze the head right after it renewed its ticket: the release hands it the keys.
    await until(async () => (await ctx.admin.pTTL(ticketOf(frozen))) > 0.75 * validity);
    child.kill('SIGSTOP');
    const got = watching(next.waiting);
    assert.is(await held.release(), true);
    const releasedAt = performance.now();
    assert.equal(await ctx.admin.mGet(keysOf(name)), [frozen, frozen, frozen], 'not handed');
    // The keys stay the frozen head's until its ticket runs out; nobody else holds meanwhile.
    await until(
      async () => {
        const before = got.resolved();
        const values = await ctx.admin.mGet(keysOf(name));
        if (values.includes(frozen)) assert.not.ok(before, 'the next waiter holds the keys too');
        return !values.includes(frozen);
      },
      AbortSignal.timeout(3 * validity),
    );
    const lock = await got.promise;
    otherHolds = true;
    // Its ticket had at most a validity left; half a validity more for a loaded machine.
    const waitedMs = performance.now() - releasedAt;
    assert.ok(waitedMs < 1.5 * validity, `the next waiter got the lock ${waitedMs} ms after`);
    assert.equal(await ctx.admin.mGet(keysOf(name)), [next.value, next.value, next.value]);

    // Thawed, the head hears of its handoff long after its ticket ran out. It must not believe
    // it holds: it refuses the handoff, attempts again (the keys are the other's) and queues
    // again under its value; or its wait ends with a lock whose signal has already aborted.
    child.kill('SIGCONT');
    const gotAborted = () => said.some(({ message }) => message === 'held:true');
    await until(async () => gotAborted() || (await entries(ctx.admin, name)).includes(frozen));
    child.send('ping');
    await message(child, 'pong');
    await sleep(validity / 4); // a window: it must not come to believe it holds in it
    assert.not.ok(lock.signal.aborted, String(lock.signal.reason));
    const believed = said.filter(({ message }) => message === 'held:false');
    assert.equal(believed, [], 'the thawed head believes it holds the lock another holds');
    // Still waiting, its turn comes once the other releases.
    const turn = gotAborted() ? undefined : message(child, 'held:');
    otherHolds = false;
    assert.is(await lock.release(), true);
    if (turn) {
      assert.is(await turn, 'held:false');
      child.send('release');
      assert.is(await message(child, 'released:'), 'released:true');
    }
    assert.ok(
      said.every(({ message, otherHolds }) => !(message === 'held:false' && otherHolds)),
      JSON.stringify(said),
    );
  } finally {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
});

test('after FLUSHALL with waiters queued, each still gets the lock once, one at a time', async (ctx) => {
  const name = 'flushed';
  const holder = await locker(ctx);
  const held = await holder.withContext(name, waitUpTo());
  const waiters: { waiting: Promise<Lock>; value: string }[] = [];
  for (let i = 0; i < 4; i++) {
    waiters.push(await enqueue(ctx.admin, await locker(ctx), name, waitUpTo(30_000)));
  }
  await until(async () => Object.keys(await listeners(ctx.admin, name)).length === 2);
  let holding = 0;
  let overlaps = 0;
  const served: string[] = [];
  const done = waiters.map(({ waiting, value }) =>
    handled(
      waiting.then(async (lock) => {
        if (holding > 0) overlaps++;
        holding++;
        served.push(value);
        await sleep(20); // holds it a while: the time is the point
        if (lock.signal.aborted) overlaps++;
        holding--;
        assert.is(await lock.release(), true);
      }),
    ),
  );
  await ctx.admin.flushAll();
  // The holder's keys are gone: it hears so from the flush.
  await abortedWithin(held.signal, 5000);
  await Promise.all(done);
  assert.is(overlaps, 0, 'two holders');
  assert.equal([...served].sort(), waiters.map(({ value }) => value).sort());
  assert.equal(await queueKeys(ctx.admin), []);
});

test('a release passes the lock to a waiter of the same locker in one script: new value, fresh expiry, greater token', async (ctx) => {
  const name = 'passed';
  const validity = 30_000; // no extension within the test: only the pass moves the expiry
  const own = await locker(ctx, { keyValidityMs: validity });
  const keys = keysOf(name);
  let lock = await own.withContext(name, waitUpTo());
  // Both wait at the locker's gate, behind its holder: nothing of theirs reaches the server.
  const waiting = [
    handled(own.withContext(name, waitUpTo(20_000))),
    handled(own.withContext(name, waitUpTo(20_000))),
  ];
  for (const next of waiting) {
    const [value] = await ctx.admin.mGet(keys);
    // The keys have aged, so that a fresh expiry shows.
    await until(async () => (await ctx.admin.pTTL(keys[0] as string)) < validity - 1000);
    const pttl = await ctx.admin.pTTL(keys[0] as string);
    const scripts = await calls(ctx.admin, 'evalsha');
    assert.is(await lock.release(), true);
    const passed = await next;
    assert.is((await calls(ctx.admin, 'evalsha')) - scripts, 1, 'not passed in one script');
    assert.ok(
      (passed.token as bigint) > (lock.token as bigint),
      `${passed.token} after ${lock.token}`,
    );
    const values = await ctx.admin.mGet(keys);
    assert.ok(values[0] && values[0] !== value, String(values));
    assert.equal(values, [values[0], values[0], values[0]]);
    const pttls = await Promise.all(keys.map((key) => ctx.admin.pTTL(key)));
    assert.ok(
      pttls.every((fresh) => fresh > pttl),
      `PTTL ${pttls} after ${pttl}`,
    );
    assert.not.ok(passed.signal.aborted);
    lock = passed;
  }
  assert.is(await lock.release(), true);
  assert.equal(await ctx.admin.mGet(keys), [null, null, null]);
});

/**
 * The order in which `name` is held when `own` (with `options`) holds it, three more of its
 * calls wait at its gate, and another locker waits in the server's queue: `own` and `own1`..
 * `own3`, `other`.
 */
async function servedOrder(ctx: Ctx, name: string, options: LockerOptions): Promise<string[]> {
  const own = await locker(ctx, options);
  const other = await locker(ctx);
  const order: string[] = [];
  const holdOnce = (who: string) => async (lock: Lock) => {
    order.push(who);
    assert.is(await lock.release(), true);
  };
  const first = await own.withContext(name, waitUpTo());
  order.push('own');
  const locals = [1, 2, 3].map((i) =>
    handled(own.withContext(name, waitUpTo(20_000)).then(holdOnce(`own${i}`))),
  );
  const { waiting } = await enqueue(ctx.admin, other, name, waitUpTo(20_000));
  const others = handled(waiting.then(holdOnce('other')));
  assert.is(await first.release(), true);
  await Promise.all([...locals, others]);
  return order;
}

test('after localHandoffs passes in a row, a release goes to the queue: another locker waits that many holds at most', async (ctx) => {
  const order = await servedOrder(ctx, 'fair', { localHandoffs: 2 });
  assert.equal(order, ['own', 'own1', 'own2', 'other', 'own3']);
});

test('localHandoffs: 0 never passes a lock: the release goes to the queue', async (ctx) => {
  const order = await servedOrder(ctx, 'unpassed', { localHandoffs: 0 });
  assert.equal(order, ['own', 'other', 'own1', 'own2', 'own3']);
});

test('localHandoffs that is not a whole number from 0 (or Infinity) is refused, naming it', async (ctx) => {
  for (const [bad, kind] of [
    [-1, RangeError],
    [1.5, RangeError],
    ['8', TypeError],
  ] as const) {
    const options = { url: ctx.server.url, localHandoffs: bad as number };
    const error = await createLocker(options).then(
      async (created) => {
        await created.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    assert.instance(error, kind, `localHandoffs: ${JSON.stringify(bad)}`);
    assert.match((error as Error).message, 'localHandoffs');
  }
});

test('queue: false restores racing: every waiting locker wakes at each extension, and nothing is queued', async (ctx) => {
  const options = { keyValidityMs: 1000, extendIntervalMs: 250, queue: false };
  const periods = 8;
  const costs = new Map<number, Cost>();
  for (const w of [2, 8]) {
    const name = `racing-${w}`;
    const holder = await locker(ctx, options);
    const held = await holder.withContext(name, waitUpTo());
    const scripts = await calls(ctx.admin, 'evalsha');
    for (let i = 0; i < w; i++) {
      (await locker(ctx, options)).withContext(name, waitUpTo(30_000)).catch(() => {});
    }
    await until(async () => (await calls(ctx.admin, 'evalsha')) >= scripts + w); // all tried
    const cost = await callsPerExtension(ctx.admin, periods);
    costs.set(w, cost);
    // Each of the W waiters listens to the keys: every extension wakes each of them once (the
    // window's first extension came just before it starts).
    const { extensions } = cost;
    assert.ok(
      cost.scripts >= extensions + w * (extensions - 1),
      `W = ${w}: ${cost.scripts} scripts in ${extensions} extensions`,
    );
    assert.not.ok(held.signal.aborted, 'the holder lost its lock');
    await Promise.all(ctx.lockers.splice(0).map((done) => done.close()));
  }
  const [two, eight] = [costs.get(2), costs.get(8)] as [Cost, Cost];
  // Where the queue allows one script more per extension at W = 8 than at W = 2, racing costs
  // one more per waiter.
  assert.ok(
    eight.scripts / eight.extensions > two.scripts / two.extensions + 1 + 1 / eight.extensions,
  );
  // Nothing of the queue was ever written.
  const ever = await commandCalls(ctx.admin);
  for (const command of ['zadd', 'hset', 'hincrby'])
    assert.is(ever.get(command), undefined, command);
  assert.equal(await queueKeys(ctx.admin), []);
});

test('directHandoff: true is deprecated with a warning, and the queue works as by default', async (ctx) => {
  const warnings: (Error & { code?: string })[] = [];
  const listener = (warning: Error & { code?: string }) => {
    if (warning.code === 'TRACKLOCK_DIRECT_HANDOFF') warnings.push(warning);
  };
  process.on('warning', listener);
  try {
    const a = await locker(ctx, { directHandoff: true });
    const b = await locker(ctx, { directHandoff: true });
    // Emitted on the next tick of each createLocker.
    await until(() => warnings.length === 2);
    assert.is(warnings[0]?.name, 'DeprecationWarning');
    assert.match(String(warnings[0]?.message), 'directHandoff');
    const held = await a.withContext('deprecated', waitUpTo());
    const { waiting } = await enqueue(ctx.admin, b, 'deprecated', waitUpTo());
    const scripts = await calls(ctx.admin, 'evalsha');
    assert.is(await held.release(), true);
    const handed = await waiting;
    // Handed over by the release, as by default: b sent nothing to take it.
    assert.is((await calls(ctx.admin, 'evalsha')) - scripts, 1);
    assert.is(await handed.release(), true);
  } finally {
    process.off('warning', listener);
  }
});

test.run();
