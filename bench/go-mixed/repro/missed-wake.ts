/**
 * Reproduction: a waiter promoted to head misses a key change that arrives with the reply of
 * its first attempt as head, and sleeps up to keyValidityMs / 2 (2.5 s) although the keys are
 * free. Go's rueidislock deletes its keys on release (no handoff), so with Go services on the
 * same lock this happens whenever such a promotion races a Go release: in bench/go-mixed, at
 * commit d891e38, the tracklock side got ~1-3 % of the critical sections.
 *
 * Why (d891e38): `state.listening` is false while the waiter is the deputy, and only set by
 * `#listen` once the attempt's reply has been handled; an invalidation parsed in the same
 * socket read as the reply (before the attempt's continuation runs) finds it false and wakes
 * nobody. Fixed in d73fcff (`state.listening = true` before each attempt).
 *
 * Deterministic with CLIENT PAUSE WRITE: the deputy's attempt (woken when the dead head ahead
 * of it loses its ticket) and a Go-style DEL of the keys are both held at the server, then run
 * one after the other, so the reply and the invalidation reach the waiter together.
 *
 * Regression test: test/queue-races.test.ts (suite 'queue races'), "a deputy whose attempt
 * makes it the head hears a deletion of the keys that comes with that attempt's reply".
 *
 * Run: node --import tsx bench/go-mixed/repro/missed-wake.ts   (exit 1: reproduced)
 */
import { createLocker } from '../../../src/index.js';
import { startRedisServer } from '../../../test/helpers/redis-server.js';
import { until } from '../../../test/helpers/wait.js';
import { closeIoredis, connectIoredis } from '../../src/adapters/ioredis.js';

const name = 'repro-missed-wake';
const keys = [0, 1, 2].map((i) => `rueidislock:${i}:${name}`);
const queue = `rueidislock:q:${name}`;
const roles = `rueidislock:r:${name}`;

const server = await startRedisServer();
const raw = await connectIoredis(server.url); // plays a Go holder, and a head that died
const admin = await connectIoredis(server.url);
const locker = await createLocker({ url: server.url });
const blocked = async () => Number(/blocked_clients:(\d+)/.exec(await admin.info('clients'))?.[1]);
let exitCode = 2;
try {
  // A Go holder, and ahead of the waiter a head that has died (its ticket is deleted below).
  for (const key of keys) await raw.set(key, 'go-holder', 'PX', 60_000);
  await raw.zadd(queue, 1, 'ghost');
  await raw.hset(roles, 'ghost', 'head');
  await raw.set('rueidislock:t:ghost', String(Date.now() + 60_000), 'PX', 60_000);

  const acquired = locker.withContext(name, { signal: AbortSignal.timeout(20_000) });
  acquired.catch(() => {}); // awaited below; an early failure is reported by what threw
  // The waiter joins as the deputy, behind the ghost, and listens to the ghost's ticket: it
  // reads it with a PTTL of its own (no other client here sends one).
  await until(async () => {
    const members = await raw.zrange(queue, '0', '-1');
    return members.length === 2 && (await raw.hget(roles, members[1] as string)) === 'deputy';
  });
  await until(async () => / cmd=pttl /.test(String(await admin.client('LIST'))));
  // The ghost's ticket goes, and in the same read the server pauses writes: the deputy's
  // attempt (woken by the ticket's invalidation; it will make it the head) is held, and the
  // Go holder's DEL below is held behind it. On unpause they run in that order, back to back.
  await admin.pipeline().del('rueidislock:t:ghost').call('CLIENT', 'PAUSE', '900', 'WRITE').exec();
  await until(async () => (await blocked()) === 1, AbortSignal.timeout(800));
  const deleted = raw.del(...keys); // the Go holder lets go
  await until(async () => (await blocked()) === 2, AbortSignal.timeout(800));
  await admin.call('CLIENT', 'UNPAUSE');
  const unpausedAt = performance.now();
  const lock = await acquired;
  const ms = performance.now() - unpausedAt;
  await deleted;
  await lock.release();
  const reproduced = ms > 1000;
  console.log(
    `acquired ${ms.toFixed(0)} ms after the keys were deleted: ${
      reproduced ? 'REPRODUCED (woken by its timer, not by the invalidation)' : 'not reproduced'
    }`,
  );
  exitCode = reproduced ? 1 : 0;
} finally {
  await locker.close();
  await closeIoredis(raw);
  await closeIoredis(admin);
  await server.stop();
}
process.exit(exitCode);
