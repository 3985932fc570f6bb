import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createLocker,
  LockerClosedError,
  type LockerOptions,
  LockLostError,
} from '../src/index.js';
import { scriptCounter, stillHeldAgainst } from './helpers/redis.js';
import { TOPOLOGIES, type Topology } from './helpers/topologies.js';
import { abortedWithin, bound, sleep, until } from './helpers/wait.js';

// What the single-server issue promised, in every topology and with pushes or polling:
// extension, wake-up on release, loss detection, the local expiry timer, close. One set of
// servers per topology and mode; the test that freezes them all comes last.

const MODES: readonly { readonly label: string; readonly options: LockerOptions }[] = [
  { label: '', options: {} },
  { label: ', polling', options: { tracking: 'off' } },
];

for (const kind of TOPOLOGIES)
  for (const mode of MODES) {
    const test = suite<{ topology: Topology }>(`topology: ${kind.label}${mode.label}`);
    const options = (topology: Topology, more: LockerOptions = {}): LockerOptions => ({
      ...topology.options,
      ...mode.options,
      ...more,
    });

    test.before(async (ctx) => {
      ctx.topology = await kind.start();
    });

    test.after(async (ctx) => {
      await ctx.topology.stop();
    });

    test('extensions keep the lock past its validity; nobody else gets it meanwhile', async ({
      topology,
    }) => {
      const [holder, other] = await Promise.all([
        createLocker(options(topology, { keyValidityMs: 600 })),
        createLocker(options(topology, { keyValidityMs: 600 })),
      ]);
      try {
        const lock = await holder.withContext('extended', bound(10_000));
        await stillHeldAgainst(lock, other, 5);
        assert.is(await lock.release(), true);
        const next = await other.tryWithContext('extended', bound(10_000));
        assert.is(await next.release(), true);
      } finally {
        await Promise.all([holder.close(), other.close()]);
      }
    });

    test('a waiter in another locker wakes on release (by push, or at its next poll), not at the keys\u2019 expiry', async ({
      topology,
    }) => {
      // With 60 s keys, a waiter that missed the push, or did not poll, would sleep until they
      // expire.
      const [holder, waiter] = await Promise.all([
        createLocker(options(topology, { keyValidityMs: 60_000 })),
        createLocker(options(topology, { keyValidityMs: 60_000 })),
      ]);
      try {
        const urls = topology.servers.map((server) => server.url);
        for (const name of ['push-a', 'push-b', 'push-c']) {
          const scripts = await scriptCounter(urls);
          const lock = await holder.withContext(name, bound(10_000));
          await until(async () => (await topology.keysSet(name)) === 3);
          const holders = await scripts();
          const waiting = waiter.withContext(name, bound(10_000));
          // The waiter tried once (as many scripts as the holder's acquisition) and sleeps.
          await until(async () => (await scripts()) >= 2 * holders);
          await lock.release();
          const next = await waiting;
          assert.is(next.signal.aborted, false);
          assert.ok((next.token as bigint) > (lock.token as bigint), 'fencing token did not grow');
          await next.release();
          // A release settles on the majority: the last server's delete, still to come, must
          // not count as the next round's scripts.
          await until(async () => (await topology.keysSet(name)) === 0);
        }
      } finally {
        await Promise.all([holder.close(), waiter.close()]);
      }
    });

    test('deleting a majority of the keys aborts the holder\u2019s signal (changed)', async ({
      topology,
    }) => {
      const locker = await createLocker(options(topology, { keyValidityMs: 60_000 }));
      try {
        const lock = await locker.withContext('deleted', bound(10_000));
        await topology.deleteKeys(['rueidislock:0:deleted', 'rueidislock:2:deleted']);
        const reason = await abortedWithin(lock.signal, 5000);
        assert.instance(reason, LockLostError);
        assert.is((reason as LockLostError).loss, 'changed');
      } finally {
        await locker.close();
      }
    });

    test('close aborts held signals and rejects waiters with LockerClosedError', async ({
      topology,
    }) => {
      const locker = await createLocker(options(topology));
      const lock = await locker.withContext('closing', bound(10_000));
      const waiting = locker.withContext('closing', bound(10_000)).catch((error: unknown) => error);
      // Nothing outside shows the waiter queued behind the holder in this locker: a moment for
      // it to get there (close must reject it wherever it is).
      await sleep(20);
      await locker.close();
      assert.instance(lock.signal.reason, LockerClosedError);
      assert.instance(await waiting, LockerClosedError);
      assert.is(await lock.release(), false);
    });

    test('with every server frozen the signal aborts before the keys can expire (expired)', async ({
      topology,
    }) => {
      const locker = await createLocker(
        options(topology, {
          keyValidityMs: 1000,
          extendIntervalMs: 850,
          commandTimeoutMs: 100,
          // A 102 ms margin: timers on a loaded 2-core machine can be late by more than 12 ms.
          driftFactor: 0.1,
        }),
      );
      try {
        const sentNoEarlierThan = Date.now();
        const lock = await locker.withContext('frozen', bound(10_000));
        for (const server of topology.servers) server.pause();
        const reason = await abortedWithin(lock.signal, 5000);
        assert.ok(Date.now() < sentNoEarlierThan + 1000, 'aborted after the keys could expire');
        assert.instance(reason, LockLostError);
        assert.is((reason as LockLostError).loss, 'expired');
      } finally {
        for (const server of topology.servers) server.resume();
        await locker.close();
      }
    });

    test.run();
  }
