import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createLocker,
  type Lock,
  LockError,
  type LockerOptions,
  LockLostError,
  UnavailableError,
} from '../src/index.js';
import { aclArgs, smallestAcl, withUser } from './helpers/acl.js';
import { type Client, connect, stillHeldAgainst } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { abortedWithin, bound, until, watched } from './helpers/wait.js';

// Lockers under exactly the ACL of docs/compatibility.md, through everything a lock does.
// Nothing may be refused (ACL LOG stays empty), and on one server every command the ACL
// allows is called (none is there for nothing).

interface Setup {
  readonly servers: readonly RedisServer[];
  /** As `default`, given every key again: the test's own look at the queue. */
  readonly admins: readonly Client[];
  readonly options: LockerOptions;
  /** How many waiters are queued for `name`. */
  queued(name: string): Promise<number>;
}

const KINDS = [
  {
    label: 'one server',
    count: 1,
    options: ([url]: string[]) => ({ url: url as string }),
    queueKey: (name: string) => `rueidislock:q:${name}`,
  },
  {
    label: '3 nodes',
    count: 3,
    options: (urls: string[]) => ({ nodes: urls }),
    // Beside key 0, which node 0 holds.
    queueKey: (name: string) => `{rueidislock:0:${name}}:q`,
  },
];

/** Every command's calls so far (INFO commandstats), by the ACL's name for it. */
async function commandCalls(admin: Client): Promise<Map<string, number>> {
  const info = String(await admin.sendCommand(['INFO', 'commandstats']));
  return new Map(
    [...info.matchAll(/^cmdstat_(\S+):calls=(\d+)/gm)].map(([, name, calls]) => [
      name as string,
      Number(calls),
    ]),
  );
}

/**
 * What one lock goes through: taken and extended, three waiters queued behind it and handed it
 * in turn (fencing tokens growing), forced from the last, and released once the server has
 * lost its scripts.
 */
async function exercise(setup: Setup): Promise<void> {
  const name = 'acl';
  const lockers = await Promise.all(
    [0, 1, 2, 3].map(() => createLocker({ ...setup.options, keyValidityMs: 1000 })),
  );
  const [owner, ...waiters] = lockers as [(typeof lockers)[0], ...typeof lockers];
  try {
    const first = await owner.withContext(name, bound(10_000));
    await stillHeldAgainst(first, waiters[0] as (typeof lockers)[0], 4); // 1.2 s: extended
    const waiting = [];
    for (const [i, waiter] of waiters.entries()) {
      const wait = watched(waiter.withContext(name, bound(30_000)));
      wait.promise.catch(() => {}); // awaited below, unless the test fails first
      waiting.push(wait);
      await until(async () => (await setup.queued(name)) === i + 1);
    }
    let held: Lock = first;
    for (const [i, next] of waiting.entries()) {
      assert.is(await held.release(), true);
      const lock = await next.promise;
      assert.ok(
        waiting.slice(i + 1).every((later) => !later.resolved()),
        'served out of turn',
      );
      assert.ok((lock.token as bigint) > (held.token as bigint), 'fencing token did not grow');
      held = lock;
    }
    const forced = await owner.forceWithContext(name, bound(10_000));
    assert.instance(await abortedWithin(held.signal, 5_000), LockLostError);
    assert.ok((forced.token as bigint) > (held.token as bigint), 'forced token did not grow');
    // The next script bounces off NOSCRIPT and is sent whole (EVAL).
    await Promise.all(setup.admins.map((admin) => admin.sendCommand(['SCRIPT', 'FLUSH'])));
    assert.is(await forced.release(), true);
  } finally {
    await Promise.all(lockers.map((locker) => locker.close()));
  }
}

/**
 * Pushing, and polling (`tracking: 'off'`) under the same ACL without `client|tracking`, as the
 * doc says; polling speaks RESP2, so it sends no HELLO either.
 */
const MODES = [
  { label: '', tracking: 'auto', without: [] },
  { label: ', polling', tracking: 'off', without: ['client|tracking', 'hello'] },
] as const;

for (const kind of KINDS)
  for (const mode of MODES) {
    const test = suite<{ setup: Setup }>(`the smallest ACL: ${kind.label}${mode.label}`);

    test.before(async (ctx) => {
      const denied = mode.without.map((command) => `-${command}`);
      const servers = await Promise.all(
        Array.from({ length: kind.count }, () => startRedisServer(aclArgs(denied))),
      );
      const admins = await Promise.all(servers.map((server) => connect(server.url)));
      await Promise.all(
        admins.map((admin) => admin.sendCommand(['ACL', 'SETUSER', 'default', 'allkeys'])),
      );
      ctx.setup = {
        servers,
        admins,
        options: {
          ...kind.options(servers.map((server) => withUser(server.url))),
          tracking: mode.tracking,
        },
        queued: (name) => (admins[0] as Client).zCard(kind.queueKey(name)),
      };
    });

    test.after(async ({ setup }) => {
      for (const admin of setup?.admins ?? []) admin.destroy();
      await Promise.all((setup?.servers ?? []).map((server) => server.stop()));
    });

    test('a lock goes through acquire, wait, queue, handoff, extension, force and release; nothing is refused', async ({
      setup,
    }) => {
      const before = await commandCalls(setup.admins[0] as Client);
      await exercise(setup);
      const after = await commandCalls(setup.admins[0] as Client);
      for (const admin of setup.admins) {
        assert.equal(await admin.sendCommand(['ACL', 'LOG']), [], 'the ACL refused something');
      }
      if (kind.count > 1) return;
      // On one server every command the ACL allows was called. This test's own INFO counts once.
      const allowed = smallestAcl('').flatMap((rule) =>
        rule.startsWith('+') && !(mode.without as readonly string[]).includes(rule.slice(1))
          ? [rule.slice(1)]
          : [],
      );
      const unused = allowed.filter((command) => {
        const calls = (after.get(command) ?? 0) - (before.get(command) ?? 0);
        return calls <= (command === 'info' ? 1 : 0);
      });
      assert.equal(unused, [], 'allowed but never called');
    });

    test.run();
  }

const short = suite('an ACL that lacks a command');

short(
  'a waiter whose ACL lacks a command of the scripts is told so, instead of waiting for ever',
  async () => {
    const server = await startRedisServer(aclArgs(['-exists']));
    try {
      const locker = await createLocker({ url: withUser(server.url) });
      try {
        // No waitTimeoutMs: only the test's bound would end a wait that retried for ever.
        const error = await locker.withContext('refused', bound(10_000)).catch((e: unknown) => e);
        assert.instance(error, UnavailableError);
        assert.match((error as Error).message, /ACL/);
        assert.match((error as Error).message, /compatibility/);
        assert.match(
          String(((error as Error).cause as Error).message),
          /user executing the script|NOPERM/,
        );
      } finally {
        await locker.close();
      }
    } finally {
      await server.stop();
    }
  },
);

short(
  'a user whose ACL lacks a command of the connect is told so at once, not after connectTimeoutMs',
  async () => {
    const server = await startRedisServer(aclArgs(['-script|load']));
    try {
      const started = performance.now();
      const error = await createLocker({
        url: withUser(server.url),
        connectTimeoutMs: 60_000,
      }).catch((e: unknown) => e);
      assert.instance(error, LockError);
      assert.is((error as LockError).code, 'ERR_CONNECT');
      assert.match((error as Error).message, /ACL/);
      assert.match((error as Error).message, /script\|load/);
      assert.not.match((error as Error).message, /password/);
      assert.ok(performance.now() - started < 30_000, 'it waited for connectTimeoutMs');
    } finally {
      await server.stop();
    }
  },
);

short.run();
