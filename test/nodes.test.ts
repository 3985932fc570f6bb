import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createLocker,
  type LockError,
  type Locker,
  type LockerOptions,
  LockLostError,
} from '../src/index.js';
import { type FaultyProxy, startProxy } from './checker/proxy.js';
import { type Client, calls, connect, stillHeldAgainst } from './helpers/redis.js';
import { freePort, type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { abortedWithin, bound, sleep, until } from './helpers/wait.js';

// Independent servers (Redlock). Each test stops or freezes some, so each gets its own.
const test = suite<{ servers: RedisServer[] }>('nodes');

test.before.each(async (ctx) => {
  // Listed in this order, server j is the locker's node j: it holds the lock keys i = j mod 3.
  ctx.servers = await Promise.all(Array.from({ length: 3 }, () => startRedisServer()));
});

test.after.each(async (ctx) => {
  for (const server of ctx.servers) server.resume();
  await Promise.all(ctx.servers.map((server) => server.stop()));
});

const urls = (servers: readonly RedisServer[]) => servers.map((server) => server.url);

/**
 * Every server holds its key of the lock: keys whose server answered after the majority was
 * decided join the lock a little later.
 */
async function everyKeyJoined(servers: readonly RedisServer[]): Promise<void> {
  await until(async () => (await keysOn(servers)).every((keys) => keys.length === 1));
  // A key set on its server joins the lock once the locker has read the reply, which nothing
  // outside shows: without this moment, a fault right after could find it not yet counted.
  await sleep(50);
}

/** The lock keys each server holds, in server order. */
async function keysOn(servers: readonly RedisServer[]): Promise<string[][]> {
  return Promise.all(
    servers.map(async (server) => {
      const client = await connect(server.url);
      try {
        // Lock keys only: the fencing token's key outlives the lock.
        return (await client.keys('rueidislock:[0-9]*')).sort();
      } finally {
        client.destroy();
      }
    }),
  );
}

test('every node holds the same keys of a lock, and release deletes every one', async ({
  servers,
}) => {
  const locker = await createLocker({ nodes: urls(servers) });
  try {
    const lock = await locker.withContext('spread', bound(10_000));
    await everyKeyJoined(servers);
    // As in Redlock, a key's name does not depend on which node it is on: so it cannot depend
    // on the address a client uses to reach that node.
    assert.equal(await keysOn(servers), [
      ['rueidislock:0:spread'],
      ['rueidislock:0:spread'],
      ['rueidislock:0:spread'],
    ]);
    assert.is(await lock.release(), true);
    assert.equal(await keysOn(servers), [[], [], []]);
  } finally {
    await locker.close();
  }
});

test('a frozen node does not slow an acquisition or a release down to its timeout', async ({
  servers,
}) => {
  // Were the frozen node waited for, each call below would take commandTimeoutMs (20 s).
  const locker = await createLocker({ nodes: urls(servers), commandTimeoutMs: 20_000 });
  try {
    servers[2]?.pause();
    const lock = await locker.withContext('frozen-node', bound(10_000));
    assert.is(lock.signal.aborted, false);
    assert.is(await lock.release(), true);
    const again = await locker.tryWithContext('frozen-node', bound(10_000));
    assert.is(await again.release(), true);
  } finally {
    servers[2]?.resume();
    await locker.close();
  }
});

for (const fault of ['frozen (SIGSTOP)', 'killed'] as const) {
  test(`the lock is held while a minority of nodes is ${fault}, and nobody else gets it`, async ({
    servers,
  }) => {
    // Timeouts a loaded machine meets: with 600 ms keys and 100 ms commands, a busy event loop
    // alone lost the lock.
    const options: LockerOptions = {
      nodes: urls(servers),
      keyValidityMs: 1500,
      commandTimeoutMs: 500,
    };
    const holder = await createLocker(options);
    const other = await createLocker(options);
    try {
      const lock = await holder.withContext('minority', bound(10_000));
      await everyKeyJoined(servers);
      if (fault === 'killed') await servers[1]?.stop();
      else servers[1]?.pause();
      // Three validities: the lock lives only if extensions keep reaching the other two nodes.
      await stillHeldAgainst(lock, other, 15);
      assert.is(await lock.release(), true);
      const next = await other.tryWithContext('minority', bound(10_000));
      assert.is(await next.release(), true);
    } finally {
      await Promise.all([holder.close(), other.close()]);
    }
  });
}

test('the signal aborts, before the keys can expire, when a majority of nodes goes away', async ({
  servers,
}) => {
  const locker = await createLocker({
    nodes: urls(servers),
    keyValidityMs: 1000,
    extendIntervalMs: 850,
    commandTimeoutMs: 100,
    // A 102 ms margin: timers on a loaded 2-core machine can be late by more than 12 ms.
    driftFactor: 0.1,
  });
  try {
    const sentNoEarlierThan = Date.now();
    const lock = await locker.withContext('majority', bound(10_000));
    servers[0]?.pause();
    servers[2]?.pause();
    const reason = await abortedWithin(lock.signal, 5000);
    assert.instance(reason, LockLostError);
    assert.is((reason as LockLostError).loss, 'expired');
    assert.ok(Date.now() < sentNoEarlierThan + 1000, 'aborted after the keys could expire');
  } finally {
    await locker.close();
  }
});

test('lockers that reach the same nodes through other addresses exclude each other', async ({
  servers,
}) => {
  // A proxy in front of each server gives it a second address, as a DNS name against an IP or
  // a sidecar would. The proxies' addresses sort in another order than the servers': placing
  // keys by address (as tracklock 0.1.0 did) then puts a lock's keys on other servers.
  const proxies = await proxiesInAnotherOrder(servers);
  const [a, b] = await Promise.all([
    createLocker({ nodes: urls(servers) }),
    createLocker({ nodes: proxies.map((proxy) => proxy.url) }),
  ]);
  try {
    await excludeEachOther(a, b, 'addressed');
  } finally {
    await Promise.all([a.close(), b.close()]);
    await Promise.all(proxies.map((proxy) => proxy.close()));
  }
});

/** Whichever of `a` and `b` holds `name`, the other cannot take it. */
async function excludeEachOther(a: Locker, b: Locker, name: string): Promise<void> {
  for (const [first, second] of [
    [a, b],
    [b, a],
  ] as const) {
    const lock = await first.tryWithContext(name, bound(10_000));
    const error = await second.tryWithContext(name).catch((e: LockError) => e);
    assert.is((error as LockError).code, 'ERR_NOT_LOCKED');
    await lock.release();
  }
}

/** A proxy per server whose addresses, in port order, reach the servers in another order. */
async function proxiesInAnotherOrder(servers: readonly RedisServer[]): Promise<FaultyProxy[]> {
  const port = (url: string) => Number(new URL(url).port);
  for (let attempt = 0; attempt < 20; attempt++) {
    const proxies = await Promise.all(servers.map((server) => startProxy(server.port)));
    const byPort = proxies.map((proxy, s) => ({ proxy, s }));
    byPort.sort((x, y) => port(x.proxy.url) - port(y.proxy.url));
    const serverOrder = servers
      .map((_, s) => s)
      .sort((x, y) => (servers[x]?.port ?? 0) - (servers[y]?.port ?? 0));
    if (byPort.some(({ s }, i) => s !== serverOrder[i])) return proxies;
    await Promise.all(proxies.map((proxy) => proxy.close()));
  }
  throw new Error('could not get proxy ports that sort in another order');
}

test('every process places keys alike, whatever order its nodes are listed in', async ({
  servers,
}) => {
  const [a, b] = await Promise.all([
    createLocker({ nodes: urls(servers) }),
    createLocker({ nodes: urls([...servers].reverse()) }),
  ]);
  try {
    await excludeEachOther(a, b, 'order');
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test('a frozen node does not hold up the other nodes’ extensions', async ({ servers }) => {
  // Were the extension's outcome taken only once the frozen node timed out (1 s), the keys on
  // the live nodes would be counted as extended too late, and the lock lost at 2 s.
  const locker = await createLocker({ nodes: urls(servers), keyValidityMs: 2000 });
  try {
    const lock = await locker.withContext('slow-extend', bound(10_000));
    await everyKeyJoined(servers);
    servers[1]?.pause();
    await sleep(5000); // a window: the lock must hold all through it
    assert.is(lock.signal.aborted, false, String(lock.signal.reason));
    assert.is(await lock.release(), true);
  } finally {
    await locker.close();
  }
});

test('a node that stays down does not make the lock extend more often', async ({ servers }) => {
  // Timeouts a loaded machine meets: with 100 ms for a command and 1 s keys, a live node's
  // slow answer under load once ended the lock (see the minority tests).
  const locker = await createLocker({
    nodes: urls(servers),
    keyValidityMs: 2000,
    commandTimeoutMs: 500,
  });
  const admin = await connect(servers[0]?.url as string);
  try {
    const lock = await locker.withContext('down-extend', bound(10_000));
    await everyKeyJoined(servers);
    await servers[2]?.stop();
    // Its key's local deadline has passed (a time inside the lock, which nothing shows).
    await sleep(2000);
    const before = await calls(admin, 'evalsha');
    await sleep(3000); // a window: the extensions in it are counted
    const extensions = (await calls(admin, 'evalsha')) - before;
    // One every 1000 ms: 3. Retrying the dead node's key as a failed extension, every 250 ms: 12.
    assert.ok(extensions <= 5, `${extensions} extensions in 3 s`);
    assert.is(lock.signal.aborted, false);
    await lock.release();
  } finally {
    admin.destroy();
    await locker.close();
  }
});

test('with 5 nodes keyMajority defaults to 3, and the lock outlives 2 dead nodes', async ({
  servers,
}) => {
  const more = await Promise.all([startRedisServer(), startRedisServer()]);
  servers.push(...more);
  // Timeouts a loaded machine meets (see the minority tests).
  const options: LockerOptions = {
    nodes: urls(servers),
    keyValidityMs: 1500,
    commandTimeoutMs: 500,
  };
  const holder = await createLocker(options);
  const other = await createLocker(options);
  try {
    const lock = await holder.withContext('five', bound(10_000));
    await everyKeyJoined(servers);
    assert.equal(
      (await keysOn(servers)).map((keys) => keys.length),
      [1, 1, 1, 1, 1],
    );
    await servers[0]?.stop();
    await servers[3]?.stop();
    await sleep(4000); // a window of over two validities: the lock must hold all through it
    assert.is(lock.signal.aborted, false, String(lock.signal.reason));
    const attempt = await other.tryWithContext('five').catch((error: LockError) => error);
    assert.is((attempt as LockError).code, 'ERR_NOT_LOCKED');
    await lock.release();
    const next = await other.tryWithContext('five', bound(10_000));
    await next.release();
  } finally {
    await Promise.all([holder.close(), other.close()]);
  }
});

test('createLocker fails with ERR_CONNECT, naming the nodes, when too few are up', async ({
  servers,
}) => {
  await servers[0]?.stop();
  await servers[1]?.stop();
  const error = (await createLocker({ nodes: urls(servers), connectTimeoutMs: 500 }).catch(
    (e: unknown) => e,
  )) as LockError;
  assert.is(error.code, 'ERR_CONNECT');
  assert.match(error.message, `127.0.0.1:${servers[0]?.port}`);
  assert.match(error.message, `127.0.0.1:${servers[1]?.port}`);
});

/** The value of `key` on one server, or null (also when the server is down). */
async function valueOn(server: RedisServer, key: string): Promise<string | null> {
  const client = await connect(server.url).catch(() => undefined);
  if (!client) return null;
  try {
    return (await client.get(key)) as string | null;
  } finally {
    client.destroy();
  }
}

test('a dropped connection to one node costs only its keys, which the lock takes back', async ({
  servers,
}) => {
  const locker = await createLocker({
    nodes: urls(servers),
    keyValidityMs: 1000,
    client: { socket: { reconnectStrategy: 20 } },
  });
  const admins = await Promise.all(servers.map((server) => connect(server.url)));
  try {
    const lock = await locker.withContext('dropped', bound(10_000));
    // Before a drop, every key counts: a key whose reply the locker has not read yet would
    // not, and the drop would leave less than a majority.
    await everyKeyJoined(servers);
    // Node 0's connection drops: its key no longer counts, 2 of 3 still do.
    await killClients(admins[0] as Client);
    // Beside its next extension the lock takes node 0's key back (it still holds our value
    // there), and extends it from then on: two scripts on node 0 after the kill.
    const before = await calls(admins[0] as Client, 'evalsha');
    await until(
      async () => (await calls(admins[0] as Client, 'evalsha')) >= before + 2,
      AbortSignal.timeout(10_000),
    );
    // Then node 1's connection drops too: nodes 0 and 2 must still count.
    await killClients(admins[1] as Client);
    // A window, not a wait: more than a validity, in which keys 0 and 2 were extended and the
    // lock must hold.
    await sleep(1500);
    assert.not.ok(lock.signal.aborted, String(lock.signal.reason));
    assert.is(await lock.release(), true);
  } finally {
    await locker.close();
    for (const admin of admins) admin.destroy();
  }
});

test('a lock lost to dropped connections is deleted once they are back, not left to expire', async ({
  servers,
}) => {
  const options = { nodes: urls(servers), keyValidityMs: 30_000 };
  const locker = await createLocker(options);
  const admins = await Promise.all(servers.map((server) => connect(server.url)));
  try {
    const lock = await locker.withContext('orphaned', bound(10_000));
    await everyKeyJoined(servers);
    for (const admin of admins) await killClients(admin);
    const reason = await abortedWithin(lock.signal, 5000);
    assert.is((reason as LockLostError).loss, 'disconnected');
    // The deletion failed with the connections; it goes out again when they are back.
    await until(
      async () => (await keysOn(servers)).every((keys) => keys.length === 0),
      AbortSignal.timeout(10_000),
    );
  } finally {
    await locker.close();
    for (const admin of admins) admin.destroy();
  }
});

/** CLIENT KILL every connection of a server but this one. */
async function killClients(admin: Client): Promise<void> {
  await admin.sendCommand(['CLIENT', 'KILL', 'SKIPME', 'yes']);
}

test('createLocker resolves with a majority of nodes up; a node that comes up later joins', async ({
  servers,
}) => {
  const port = await freePort();
  const nodes = [servers[0]?.url as string, servers[1]?.url as string, `redis://127.0.0.1:${port}`];
  // Every node holds key 0 of the lock (3 keys on 3 nodes).
  const key = 'rueidislock:0:late';
  const locker = await createLocker({ nodes, keyValidityMs: 600, connectTimeoutMs: 2000 });
  let late: RedisServer | undefined;
  try {
    const lock = await locker.withContext('late', bound(10_000));
    late = await startRedisServer({ port });
    // The holder takes the free key on the new node at one of its next extensions.
    await until(
      async () => (await valueOn(late as RedisServer, key)) !== null,
      AbortSignal.timeout(10_000),
    );
    assert.is(lock.signal.aborted, false);
    assert.is(await lock.release(), true);
    assert.is(await valueOn(late, key), null);
  } finally {
    await locker.close();
    await late?.stop();
  }
});

test('nodes killed and restarted empty, each after keyValidityMs, never let a second holder in', async ({
  servers,
}) => {
  const options: LockerOptions = {
    nodes: urls(servers),
    // Timeouts a loaded machine meets (see the minority tests).
    keyValidityMs: 1500,
    commandTimeoutMs: 500,
    client: { socket: { reconnectStrategy: 50 } },
  };
  const [holder, other] = await Promise.all([createLocker(options), createLocker(options)]);
  /** The other locker tries, and must not get the lock (its nodes may fail it: unavailable). */
  const notTaken = async () => {
    const attempt = await other.tryWithContext('restarts').catch((e: LockError) => e);
    assert.ok(
      ['ERR_NOT_LOCKED', 'ERR_UNAVAILABLE'].includes((attempt as LockError).code),
      'two holders',
    );
  };
  try {
    const lock = await holder.withContext('restarts', bound(10_000));
    await everyKeyJoined(servers);
    // Every node in turn: its keys are lost, and it stays down for longer than a validity
    // (the restart delay Redlock asks for when a server keeps nothing on disk).
    for (const server of servers) {
      await server.stop();
      // A window: longer than a validity, and nobody else may get the lock in it.
      for (let t = 0; t < 17; t++) {
        await sleep(100);
        await notTaken();
      }
      await server.restart();
      // The holder takes its key back at an extension once its client has reconnected.
      await until(
        async () => (await valueOn(server, 'rueidislock:0:restarts')) !== null,
        AbortSignal.timeout(10_000),
      );
      await notTaken();
      assert.is(lock.signal.aborted, false, String(lock.signal.reason));
    }
    assert.is(await lock.release(), true);
  } finally {
    await Promise.all([holder.close(), other.close()]);
  }
});

test.run();
