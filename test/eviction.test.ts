import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type LockerOptions } from '../src/index.js';
import { connect } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { bound } from './helpers/wait.js';

// A server that may evict keys to make room loses locks the way an outside DEL does: the
// locker says so once, at connect, where the server tells its policy.

/** The TRACKLOCK_EVICTION warnings emitted while `run` runs (and the turn after it). */
async function evictionWarnings(run: () => Promise<void>): Promise<Error[]> {
  const warnings: Error[] = [];
  const onWarning = (warning: Error) => {
    if ((warning as { code?: string }).code === 'TRACKLOCK_EVICTION') warnings.push(warning);
  };
  process.on('warning', onWarning);
  try {
    await run();
    // process.emitWarning emits on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', onWarning);
  }
  return warnings;
}

/** Connect, take and release a lock, close. */
async function useLocker(options: LockerOptions): Promise<void> {
  const locker = await createLocker({ connectTimeoutMs: 3000, ...options });
  try {
    const lock = await locker.tryWithContext('evicted?', bound());
    assert.is(await lock.release(), true);
  } finally {
    await locker.close();
  }
}

const test = suite<{ servers: RedisServer[] }>('servers that evict');

test.after.each(async (ctx) => {
  await Promise.all((ctx.servers ?? []).map((server) => server.stop()));
  ctx.servers = [];
});

test('a server that evicts keys with a TTL warns once, naming the policy and the server', async (ctx) => {
  const server = await startRedisServer(['--maxmemory-policy', 'volatile-lru']);
  ctx.servers = [server];
  const warnings = await evictionWarnings(() => useLocker({ url: server.url }));
  assert.is(warnings.length, 1);
  const [warning] = warnings as [Error];
  assert.match(warning.message, 'maxmemory-policy volatile-lru');
  assert.match(warning.message, `127.0.0.1:${server.port}`);
  assert.match(warning.message, 'noeviction');
});

test('a locker on 3 nodes that all evict warns once; each locker warns for itself', async (ctx) => {
  ctx.servers = await Promise.all(
    [1, 2, 3].map(() => startRedisServer(['--maxmemory-policy', 'allkeys-lru'])),
  );
  const nodes = ctx.servers.map((server) => server.url);
  const warnings = await evictionWarnings(async () => {
    await useLocker({ nodes });
    await useLocker({ nodes });
  });
  assert.is(warnings.length, 2);
  for (const warning of warnings) assert.match(warning.message, 'allkeys-lru');
});

test('a server that never evicts does not warn', async (ctx) => {
  const server = await startRedisServer(['--maxmemory-policy', 'noeviction']);
  ctx.servers = [server];
  const warnings = await evictionWarnings(() => useLocker({ url: server.url }));
  assert.equal(warnings, []);
});

test('a user whose ACL refuses INFO still connects and locks, without a warning', async (ctx) => {
  const server = await startRedisServer(['--maxmemory-policy', 'volatile-lru']);
  ctx.servers = [server];
  const admin = await connect(server.url);
  await admin.sendCommand(['ACL', 'SETUSER', 'noinfo', 'on', '>pw', '~*', '+@all', '-info']);
  admin.destroy();
  const url = server.url.replace('redis://', 'redis://noinfo:pw@');
  const warnings = await evictionWarnings(() => useLocker({ url }));
  assert.equal(warnings, []);
});

test.run();
