import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type LockError } from '../src/index.js';
import { groupOf } from '../src/redis/groups.js';
import { startProxy } from './checker/proxy.js';
import { connect } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { until } from './helpers/wait.js';

const test = suite('groups');

const ids = (count: number) =>
  Array.from({ length: count }, (_, g) =>
    [0, 1, 2].map((n) => `127.0.0.1:${7000 + 3 * g + n}`).join(','),
  );
const names = Array.from({ length: 10_000 }, (_, i) => `job:${i}`);

test('names spread evenly, and adding a fourth group moves about a quarter of them, all to it', () => {
  const three = ids(3);
  const four = ids(4);
  const shares = [0, 0, 0, 0];
  let moved = 0;
  for (const name of names) {
    const before = groupOf(name, three);
    const after = groupOf(name, four);
    shares[after] = (shares[after] ?? 0) + 1;
    if (before !== after) {
      moved++;
      assert.is(after, 3, `${name} moved from group ${before} to ${after}, not to the new one`);
    }
  }
  // Expected 2500 each; a binomial spread is ±43, so ±250 never fails by chance.
  for (const share of shares) assert.ok(Math.abs(share - 2500) < 250, `shares ${shares}`);
  assert.ok(Math.abs(moved - 2500) < 250, `${moved} of 10000 names moved`);
});

test('every process agrees: the group depends on the name and the groups only', () => {
  assert.is(groupOf('invoice:42', ids(5)), groupOf('invoice:42', [...ids(5)]));
  assert.not.equal(new Set(names.slice(0, 100).map((name) => groupOf(name, ids(5)))).size, 1);
});

test('live: each lock lives wholly on one group of nodes, and excludes across lockers', async () => {
  const servers: RedisServer[] = await Promise.all(
    Array.from({ length: 6 }, () => startRedisServer()),
  );
  const urls = servers.map((server) => server.url);
  const options = { groups: [urls.slice(0, 3), urls.slice(3)] };
  const [a, b] = await Promise.all([createLocker(options), createLocker(options)]);
  try {
    const locks = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        a.withContext(`name-${i}`, { signal: AbortSignal.timeout(10_000) }),
      ),
    );
    for (let i = 0; i < 20; i++) {
      const error = await b.tryWithContext(`name-${i}`).catch((e: LockError) => e);
      assert.is((error as LockError).code, 'ERR_NOT_LOCKED');
    }
    const keysOn = () =>
      Promise.all(
        servers.map(async (server) => {
          const client = await connect(server.url);
          const found = await client.keys('rueidislock:*');
          client.destroy();
          return found;
        }),
      );
    // Late keys joined: 3 lock keys a name (its fence keys aside).
    const lockKeys = async () =>
      (await keysOn()).flat().filter((key) => /^rueidislock:[0-9]+:/.test(key)).length;
    await until(async () => (await lockKeys()) === 3 * 20);
    const keys = await keysOn();
    const used = [0, 1].filter((g) => keys.slice(3 * g, 3 * g + 3).some((k) => k.length > 0));
    assert.equal(used, [0, 1], 'both groups hold locks');
    for (let i = 0; i < 20; i++) {
      const holders = keys.flatMap((found, s) =>
        found.some((key) => key.endsWith(`:name-${i}`)) ? [Math.floor(s / 3)] : [],
      );
      assert.is(holders.length, 3, `name-${i}: keys on ${holders.length} servers`);
      assert.is(new Set(holders).size, 1, `name-${i}: keys on both groups`);
    }
    for (const lock of locks) assert.is(await lock.release(), true);
  } finally {
    await Promise.all([a.close(), b.close()]);
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('lockers that reach the groups\u2019 nodes through other addresses agree on every name', async () => {
  const servers: RedisServer[] = await Promise.all(
    Array.from({ length: 6 }, () => startRedisServer()),
  );
  // A proxy in front of each server: the same servers under other addresses.
  const proxies = await Promise.all(servers.map((server) => startProxy(server.port)));
  const direct = servers.map((server) => server.url);
  const proxied = proxies.map((proxy) => proxy.url);
  const [a, b, named] = await Promise.all([
    createLocker({ groups: [direct.slice(0, 3), direct.slice(3)] }),
    createLocker({ groups: [proxied.slice(0, 3), proxied.slice(3)] }),
    // Ids of one's own: the order of the sets no longer matters.
    createLocker({
      groups: [
        { id: '1', nodes: proxied.slice(3).reverse() },
        { id: '0', nodes: proxied.slice(0, 3) },
      ],
    }),
  ]);
  try {
    const locks = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        a.withContext(`addressed-${i}`, { signal: AbortSignal.timeout(10_000) }),
      ),
    );
    for (const other of [b, named]) {
      for (let i = 0; i < 20; i++) {
        const error = await other.tryWithContext(`addressed-${i}`).catch((e: LockError) => e);
        assert.is((error as LockError).code, 'ERR_NOT_LOCKED', `addressed-${i}`);
      }
    }
    for (const lock of locks) assert.is(await lock.release(), true);
  } finally {
    await Promise.all([a.close(), b.close(), named.close()]);
    await Promise.all(proxies.map((proxy) => proxy.close()));
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test.run();
