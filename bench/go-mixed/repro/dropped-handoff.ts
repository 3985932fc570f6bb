/**
 * Reproduction: a handoff to a waiter whose first attempt (the one that put it in the queue)
 * is still unanswered on the client when the handoff's invalidation is read is dropped. The
 * keys then hold the waiter's value until the handoff's expiry (up to keyValidityMs, 5 s),
 * and if anyone joined the queue meanwhile the waiter rejoins behind it without reading the
 * keys: nobody, Go or Node, gets the lock for up to 5 s. In bench/go-mixed, at commit d891e38,
 * every worker, Go and tracklock, showed one wait of ~5 s at the same moment.
 *
 * Why (d891e38): `#handedOver` returns on `ticket.registeredAt === undefined` before it looks
 * at `ticket.inFlight`, so `heard` is never set during a first attempt; and `#attempt` judges
 * a handoff heard during an attempt that `joined` the queue by "what was known before", which
 * for a first attempt is nothing (the handoff can only have come after it). Fixed in d73fcff.
 *
 * Deterministic with CLIENT PAUSE WRITE: the waiter's first attempt, the holder's release
 * (which hands it the keys) and a third locker's attempt are held at the server and run in
 * that order, so the reply and the handoff reach the waiter together.
 *
 * Regression test: test/queue-races.test.ts (suite 'queue races'), "a handoff that reaches
 * the waiter with the reply of its first attempt gives it the lock before any key expires".
 *
 * Run: node --import tsx bench/go-mixed/repro/dropped-handoff.ts   (exit 1: reproduced)
 */
import { createLocker, type Lock } from '../../../src/index.js';
import { startRedisServer } from '../../../test/helpers/redis-server.js';
import { until } from '../../../test/helpers/wait.js';
import { closeIoredis, connectIoredis } from '../../src/adapters/ioredis.js';

const name = 'repro-dropped-handoff';
const server = await startRedisServer();
const admin = await connectIoredis(server.url);
const holder = await createLocker({ url: server.url });
const waiter = await createLocker({ url: server.url });
const third = await createLocker({ url: server.url });
const blocked = async () => Number(/blocked_clients:(\d+)/.exec(await admin.info('clients'))?.[1]);
let exitCode = 2;
try {
  const held = await holder.withContext(name);
  await admin.call('CLIENT', 'PAUSE', '900', 'WRITE');
  const signal = AbortSignal.timeout(20_000);
  const first = waiter.withContext(name, { signal }).then((lock) => ({ who: 'waiter', lock }));
  first.catch(() => {}); // awaited below; an early failure is reported by what threw
  await until(async () => (await blocked()) === 1, AbortSignal.timeout(800));
  const released = held.release(); // hands the keys to the waiter, once the server runs it
  await until(async () => (await blocked()) === 2, AbortSignal.timeout(800));
  const second = third.withContext(name, { signal }).then((lock) => ({ who: 'third', lock }));
  second.catch(() => {});
  await until(async () => (await blocked()) === 3, AbortSignal.timeout(800));
  await admin.call('CLIENT', 'UNPAUSE');
  const unpausedAt = performance.now();
  const winner: { who: string; lock: Lock } = await Promise.race([first, second]);
  const ms = performance.now() - unpausedAt;
  await released;
  await winner.lock.release();
  await (winner.who === 'waiter' ? second : first).then(({ lock }) => lock.release());
  const reproduced = ms > 1000;
  console.log(
    `first acquisition (${winner.who}) ${ms.toFixed(0)} ms after the release: ${
      reproduced ? 'REPRODUCED (the handoff was dropped; its keys had to expire)' : 'not reproduced'
    }`,
  );
  exitCode = reproduced ? 1 : 0;
} finally {
  await Promise.all([holder.close(), waiter.close(), third.close()]);
  await closeIoredis(admin);
  await server.stop();
}
process.exit(exitCode);
