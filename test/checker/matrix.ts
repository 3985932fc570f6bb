/**
 * The fault matrix: each scenario a few seconds, its fault's timing drawn from the seed. `safe`
 * says what docs/guarantees.md promises: there, no violation and no lost update may show. The
 * negative controls are broken locks that must show violations, so that the checker is seen
 * to catch them. The mutex's rows come first, then the semaphore's and the rw lock's.
 */
import { createClient } from '@redis/client';
import { semaphoreNames } from '../../src/shared/keys.js';
import { type FaultEnv, labelOf, type Scenario, VALIDITY_MS } from './scenario.js';
import { currentHolder, lastStepOf, logLength, watchStore, wroteSince } from './store.js';
import { workerOf } from './values.js';
import type { Kind } from './worker.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wait until between 0.5 and 1.5 s into the run (from the seed). */
const settle = (env: FaultEnv) => sleep(500 + env.random() * 1000);

/** A connection to a lock server for a fault's own reads and writes; destroy it after. */
async function connect(url: string) {
  const client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

async function command(url: string, ...args: string[]): Promise<void> {
  const client = createClient({ url });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.sendCommand(args);
  } finally {
    client.destroy();
  }
}

const redisStop = async (env: FaultEnv) => {
  await settle(env);
  const server = env.servers[0];
  server?.pause();
  await sleep(1.5 * env.validityMs);
  server?.resume();
};

/**
 * Restart the server empty 320 ms in, while worker 0 is in its first critical section, between
 * its read and its write (a counted lock's: after its enter), and the others wait for the lock:
 * worker 0 reconnects late (slowWorker0), so it goes on to write while the others already hold
 * the lock on the emptied server.
 */
const redisRestart = async (env: FaultEnv) => {
  await sleep(320);
  for (let tries = 0; tries < 1000; tries++) {
    // A semaphore's or a reader's others may enter after worker 0: look at its own last step.
    const inside =
      env.kind === 'mutex'
        ? (await currentHolder(env.storeUrl, 'read')) === 0
        : (await lastStepOf(env.storeUrl, 0)) === 'enter';
    if (inside) {
      await env.servers[0]?.restart();
      return;
    }
    await sleep(2);
  }
  throw new Error('worker 0 never read');
};

const clientPause = async (env: FaultEnv) => {
  await settle(env);
  await command(
    env.servers[0]?.url as string,
    'CLIENT',
    'PAUSE',
    String(1.5 * env.validityMs),
    'WRITE',
  );
};

const clientKill = async (env: FaultEnv) => {
  for (let i = 0; i < 8; i++) {
    await sleep(200 + env.random() * 200);
    await command(env.servers[0]?.url as string, 'CLIENT', 'KILL', 'TYPE', 'normal').catch(
      () => {},
    );
  }
};

const badNetwork = async (env: FaultEnv) => {
  const proxy = env.proxy;
  if (!proxy) throw new Error('no proxy');
  proxy.delay(20);
  await settle(env);
  proxy.delay(0);
  proxy.stall('to-client', true);
  await sleep(2 * env.validityMs);
  proxy.stall('to-client', false);
  await sleep(200);
  proxy.stall('to-server', true);
  await sleep(2 * env.validityMs);
  // The stale requests go out now, late; then every connection is cut.
  proxy.stall('to-server', false);
  await sleep(200);
  proxy.cut();
};

/**
 * The "GC pause": SIGSTOP the worker inside its critical section, between its read and its
 * write (a counted lock's: after its enter, before its exit), for two validities.
 */
const holderStop = async (env: FaultEnv) => {
  await settle(env);
  for (let tries = 0; tries < 500; tries++) {
    const holder = await currentHolder(env.storeUrl, env.midStep);
    if (holder !== undefined) {
      const pid = env.pids[holder] as number;
      process.kill(pid, 'SIGSTOP');
      // Stopped in time? Its write (or exit) may have been on the wire already: then let it go on.
      await sleep(20);
      if ((await lastStepOf(env.storeUrl, holder)) === env.midStep) {
        const since = await logLength(env.storeUrl);
        await sleep(2 * env.validityMs);
        // On a loaded machine the others may not have taken the lock and written (entered)
        // yet: the pause lasts until one has (bounded), or the stale write would find nothing
        // to refuse and the fault would not have landed.
        const next = env.midStep === 'read' ? 'write' : 'enter';
        for (let i = 0; i < 200 && !(await wroteSince(env.storeUrl, since, holder, next)); i++) {
          await sleep(env.validityMs / 10);
        }
        process.kill(pid, 'SIGCONT');
        return;
      }
      process.kill(pid, 'SIGCONT');
    }
    await sleep(2);
  }
  throw new Error(`never stopped a worker mid-section (after its ${env.midStep})`);
};

/** How long the keys may hold a running worker's value while it is in no section. */
const IDLE_MS = VALIDITY_MS / 2;

/**
 * Until the run's last 300 ms: the keys must never hold a running worker's value for IDLE_MS
 * or more while that worker is in no critical section. That is a lock handed to a waiter that
 * does not take it: everyone waits for the keys to expire. Each such stretch is a problem.
 * `gone`: a worker taken out on purpose, whose value may sit in the keys.
 */
async function watchIdleKeys(
  env: FaultEnv,
  lock: Awaited<ReturnType<typeof connect>>,
  store: Awaited<ReturnType<typeof watchStore>>,
  gone: number | undefined,
): Promise<void> {
  const key = `${env.keyPrefix}:0:${env.lockName}`;
  let value: string | null = null;
  let since: number | undefined;
  for (let polls = 0; polls < 100_000 && Date.now() < env.endsAt - 300; polls++) {
    await sleep(5);
    const now = await lock.get(key);
    const worker = now === null ? undefined : workerOf(now);
    const idle = worker !== undefined && worker !== gone && !(await store.inSection(worker));
    if (!idle || now !== value) {
      value = now;
      since = idle ? Date.now() : undefined;
    } else if (since !== undefined && Date.now() - since >= IDLE_MS) {
      env.problem(
        `the keys held worker ${worker}'s value for ${IDLE_MS} ms while it was in no section (a handoff it did not take)`,
      );
      since = undefined;
    }
  }
}

/**
 * A stopped worker: 'kill' SIGKILLs it (the run goes on without it), 'stop' resumes it two
 * validities after `stoppedAt`.
 */
async function endStop(
  env: FaultEnv,
  how: 'stop' | 'kill',
  worker: number,
  stoppedAt: number,
): Promise<void> {
  if (how === 'kill') {
    await env.kill(worker);
  } else {
    await sleep(stoppedAt + 2 * env.validityMs - Date.now());
    process.kill(env.pids[worker] as number, 'SIGCONT');
  }
}

/**
 * The queue's head while a release hands it the lock. Once a worker is mid-section (its read
 * logged), the queue's head (`ZRANGE q 0 0`) is another worker's waiter (its value names the
 * worker: values.ts) and the keys hold the holder's value, SIGSTOP that worker; then wait for
 * the holder to let go: if the keys now hold the head's value, the release handed it the lock
 * while it was stopped (else SIGCONT it and try again). Then 'stop' resumes it two validities
 * after it was stopped, and 'kill' SIGKILLs it: the run goes on without it. From then on, no
 * handoff may sit idle in the keys (watchIdleKeys).
 */
const headHandoff = (how: 'stop' | 'kill') => async (env: FaultEnv) => {
  await settle(env);
  const lock = await connect(env.servers[0]?.url as string);
  const store = await watchStore(env.storeUrl);
  try {
    const queue = `${env.keyPrefix}:q:${env.lockName}`;
    const key = `${env.keyPrefix}:0:${env.lockName}`;
    // The stop leaves the run a second and a half after the SIGCONT.
    const last = env.endsAt - 2 * env.validityMs - 1500;
    let missed = 0;
    let seen = 'no holder';
    for (let tries = 0; tries < 1000 && Date.now() < last; tries++) {
      await sleep(2);
      const holder = await store.holder('read');
      if (holder === undefined) continue;
      const [head] = await lock.zRange(queue, 0, 0);
      const worker = head === undefined ? undefined : workerOf(head);
      const held = await lock.get(key);
      seen = `holder ${holder}, head ${head}, keys ${held}`;
      if (worker === undefined || worker === holder || held === null || held === head) continue;
      const pid = env.pids[worker] as number;
      process.kill(pid, 'SIGSTOP');
      const stoppedAt = Date.now();
      let now: string | null = held;
      for (let polls = 0; polls < 2000 && now === held; polls++) {
        await sleep(1);
        now = await lock.get(key);
      }
      if (now !== head) {
        process.kill(pid, 'SIGCONT');
        missed++;
        continue;
      }
      await endStop(env, how, worker, stoppedAt);
      env.over();
      await watchIdleKeys(env, lock, store, how === 'kill' ? worker : undefined);
      return;
    }
    throw new Error(
      `never stopped the head while a release handed it the lock (${missed} stops missed; last seen: ${seen})`,
    );
  } finally {
    lock.destroy();
    store.close();
  }
};

/**
 * A counted lock's queue head while a release grants it permits (docs/semaphores.md: the
 * script that frees permits gives them to the head that fits, valid until its ticket runs out,
 * and writes its handoff key). Once the lock is full (every permit, or a writer, held) and the
 * head is a worker in no section, SIGSTOP it; if it is still queued 20 ms later (not admitted
 * just before: that would be a paused holder) and then its own key appears (a grant reached it
 * stopped), 'stop' resumes it two validities after the stop (it must not take what its ticket
 * no longer covers) and 'kill' SIGKILLs it; else it is resumed and the search starts again.
 * The lock must go on: the grant lapses with the ticket, the next waiter takes the permits
 * (the row's `maxGapMs` and `everyoneAfterFault`).
 */
const countedHead = (how: 'stop' | 'kill') => async (env: FaultEnv) => {
  await settle(env);
  const lock = await connect(env.servers[0]?.url as string);
  const store = await watchStore(env.storeUrl);
  try {
    const names = semaphoreNames(env.keyPrefix, env.kind === 'rw' ? 'rw' : 's', env.lockName);
    const last = env.endsAt - 2 * env.validityMs - 1500;
    let seen = 'nothing';
    let missed = 0;
    for (let tries = 0; tries < 2000 && Date.now() < last; tries++) {
      await sleep(2);
      const [head] = await lock.zRange(names.queue.queueKey, 0, 0);
      const worker = head === undefined ? undefined : workerOf(head);
      // Full: every permit held, or a writer holding (a rw lock's readers have no limit).
      const full =
        env.kind === 'rw'
          ? (await lock.zCard(names.writers)) > 0
          : (await lock.zCard(names.holders)) >= env.limit;
      seen = `head ${head}, full ${full}`;
      if (worker === undefined || !full || (await store.inSection(worker))) continue;
      const pid = env.pids[worker] as number;
      process.kill(pid, 'SIGSTOP');
      const stoppedAt = Date.now();
      // Admitted just before it stopped (then it is a paused holder, not this row's fault), or
      // no release granted it permits while it was stopped: resume it, try again.
      await sleep(20);
      const own = `${names.owns}${head}`;
      const queued =
        (await lock.zScore(names.queue.queueKey, head as string)) !== null &&
        !(await lock.exists(own));
      let granted = false;
      for (let polls = 0; queued && polls < 1000 && !granted; polls++) {
        await sleep(1);
        granted = (await lock.exists(own)) > 0;
      }
      if (!granted) {
        process.kill(pid, 'SIGCONT');
        missed++;
        continue;
      }
      await endStop(env, how, worker, stoppedAt);
      return;
    }
    throw new Error(
      `never stopped the queue's head while a release granted it permits (${missed} stops missed; last seen: ${seen})`,
    );
  } finally {
    lock.destroy();
    store.close();
  }
};

/**
 * FLUSHALL on the lock's server, three times, each while a worker is mid-section (its read
 * logged) and at least three others (of four) wait in the queue: the held lock's keys, its fence and the
 * whole queue vanish at once, and the holder's connection stays open.
 */
const flushQueued = async (env: FaultEnv) => {
  const lock = await connect(env.servers[0]?.url as string);
  const store = await watchStore(env.storeUrl);
  try {
    const queue = `${env.keyPrefix}:q:${env.lockName}`;
    let flushes = 0;
    let seen = '';
    await settle(env);
    // The last flush leaves the run a second to show that every worker takes the lock again.
    for (let tries = 0; tries < 2000 && flushes < 3 && Date.now() < env.endsAt - 1000; tries++) {
      await sleep(2);
      const holder = await store.holder('read');
      const queued = await lock.zCard(queue);
      seen = `holder ${holder}, ${queued} queued`;
      if (holder === undefined || queued < 3) continue;
      await lock.flushAll();
      flushes++;
      await sleep(200 + env.random() * 200);
    }
    if (flushes < 3) throw new Error(`flushed ${flushes} times, not 3 (last seen: ${seen})`);
  } finally {
    lock.destroy();
    store.close();
  }
};

const nodeDown = async (env: FaultEnv) => {
  await env.servers[1]?.stop();
};

const nodeRestart = async (env: FaultEnv) => {
  await settle(env);
  await env.servers[1]?.restart();
};

/** The rows that push and poll alike (issue 14): each expected as its pushing row. */
const POLLED = [
  'no fault',
  'Redis SIGSTOP for 1.5 validities',
  'Redis kill -9, restart without persistence',
  'CLIENT KILL TYPE normal, 8 times',
  'holder SIGSTOP for 2 validities (GC pause)',
  'queue head SIGSTOP while handed the lock, 2 validities',
];

/** A pushing row's fault with every worker polling (`tracking: 'off'`). */
const polling = (scenario: Scenario): Scenario => ({
  ...scenario,
  name: `${scenario.name}; workers poll`,
  tracking: 'off',
});

const PUSHED: readonly Scenario[] = [
  { name: 'no fault', mode: 'tracklock', topology: 'server', safe: true },
  {
    name: 'Redis SIGSTOP for 1.5 validities',
    mode: 'tracklock',
    topology: 'server',
    safe: true,
    fault: redisStop,
  },
  {
    // Worker 0 is mid-section when its connection drops: it must see its signal abort.
    name: 'Redis kill -9, restart without persistence',
    mode: 'tracklock',
    topology: 'server',
    safe: true,
    slowWorker0: true,
    workMs: 200,
    expectAbort: 'ERR_LOCK_LOST disconnected',
    fault: redisRestart,
  },
  {
    name: 'Redis kill -9, restart without persistence',
    mode: 'fenced',
    topology: 'server',
    safe: true,
    slowWorker0: true,
    workMs: 200,
    expectAbort: 'ERR_LOCK_LOST disconnected',
    fault: redisRestart,
  },
  {
    name: 'CLIENT PAUSE WRITE for 1.5 validities',
    mode: 'tracklock',
    topology: 'server',
    safe: true,
    fault: clientPause,
  },
  {
    name: 'CLIENT KILL TYPE normal, 8 times',
    mode: 'tracklock',
    topology: 'server',
    safe: true,
    fault: clientKill,
  },
  {
    name: 'proxy: delay 20 ms, stall each way 2 validities, cut',
    mode: 'tracklock',
    topology: 'server',
    safe: true,
    proxy: true,
    durationMs: 6000,
    fault: badNetwork,
  },
  {
    name: 'holder SIGSTOP for 2 validities (GC pause)',
    mode: 'tracklock',
    topology: 'server',
    safe: false,
    workMs: 50,
    fault: holderStop,
  },
  {
    name: 'holder SIGSTOP for 2 validities (GC pause)',
    mode: 'fenced',
    topology: 'server',
    safe: true,
    workMs: 50,
    expectRefused: true,
    fault: holderStop,
  },
  {
    name: 'proxy stall, fenced',
    mode: 'fenced',
    topology: 'server',
    safe: true,
    proxy: true,
    durationMs: 5000,
    fault: badNetwork,
  },
  {
    // The release hands the keys to a stopped head: they stay its own until its ticket's
    // deadline, then the next waiter takes them; the head, resumed, must refuse the handoff.
    name: 'queue head SIGSTOP while handed the lock, 2 validities',
    mode: 'tracklock',
    topology: 'server',
    safe: true,
    workMs: 50,
    durationMs: 6000,
    maxGapMs: 1.5 * VALIDITY_MS,
    everyoneAfterFault: true,
    fault: headHandoff('stop'),
  },
  {
    name: 'queue head SIGKILL while handed the lock',
    mode: 'tracklock',
    topology: 'server',
    safe: true,
    workMs: 50,
    durationMs: 5000,
    maxGapMs: 1.5 * VALIDITY_MS,
    everyoneAfterFault: true,
    fault: headHandoff('kill'),
  },
  // The flush takes the held keys while the holder's connection stays open: a waiter can take
  // them before the holder hears of it (as with an outside DEL), but the next token is the
  // server's clock, greater than every earlier one: safe only fenced.
  ...(['tracklock', 'fenced'] as const).map(
    (mode): Scenario => ({
      name: 'FLUSHALL while 3 or more wait in the queue, 3 times',
      mode,
      topology: 'server',
      safe: mode === 'fenced',
      workers: 5,
      workMs: 50,
      durationMs: 6000,
      expectAbort: 'ERR_LOCK_LOST changed',
      everyoneAfterFault: true,
      fault: flushQueued,
    }),
  ),
  {
    name: 'Go rueidislock protocol in 2 of 5 workers',
    mode: 'tracklock',
    topology: 'server',
    safe: true,
    workers: 5,
    goWorkers: 2,
    durationMs: 5000,
  },
  {
    name: '3 nodes, one stopped for the whole run',
    mode: 'tracklock',
    topology: 'nodes3',
    safe: true,
    fault: nodeDown,
  },
  {
    name: '3 nodes, one kill -9 and restarted',
    mode: 'tracklock',
    topology: 'nodes3',
    safe: true,
    fault: nodeRestart,
  },
  {
    name: 'negative control: SET without NX',
    mode: 'no-nx',
    topology: 'server',
    safe: false,
  },
  {
    name: 'negative control: signal ignored, holder SIGSTOP',
    mode: 'no-abort',
    topology: 'server',
    safe: false,
    workMs: 50,
    fault: holderStop,
  },
];

/**
 * A semaphore's or a rw lock's rows: the mutex's faults where a counted lock is built the same
 * way (one server: a counted lock refuses `nodes`; no queue faults yet), and its negative
 * control. The paused holder is not safe, as for the mutex: its permit goes while it is inside.
 */
const countedRows = (kind: Kind): Scenario[] => {
  const rows: Scenario[] = [
    { name: 'no fault', mode: 'tracklock', topology: 'server', safe: true, expectShared: true },
    ...PUSHED.filter((scenario) =>
      [
        'Redis SIGSTOP for 1.5 validities',
        'CLIENT PAUSE WRITE for 1.5 validities',
        'CLIENT KILL TYPE normal, 8 times',
        'proxy: delay 20 ms, stall each way 2 validities, cut',
        'Redis kill -9, restart without persistence',
        'holder SIGSTOP for 2 validities (GC pause)',
      ].includes(scenario.name),
    ).filter((scenario) => scenario.mode === 'tracklock'),
    ...(['stop', 'kill'] as const).map(
      (how): Scenario => ({
        name:
          how === 'stop'
            ? 'queue head SIGSTOP while granted permits, 2 validities'
            : 'queue head SIGKILL while granted permits',
        mode: 'tracklock',
        topology: 'server',
        safe: true,
        workMs: 50,
        durationMs: 6000,
        maxGapMs: 1.5 * VALIDITY_MS,
        everyoneAfterFault: true,
        fault: countedHead(how),
      }),
    ),
    kind === 'semaphore'
      ? {
          // Every worker's semaphore has room for all of them; the store allows `limit`.
          name: 'negative control: a semaphore that does not count',
          mode: 'no-count',
          topology: 'server',
          safe: false,
        }
      : {
          name: 'negative control: a read lock that ignores writers',
          mode: 'no-writer-check',
          topology: 'server',
          safe: false,
        },
  ];
  const withKind = rows.map((scenario): Scenario => ({ ...scenario, kind }));
  return [
    ...withKind,
    ...withKind
      .filter((scenario) => scenario.mode === 'tracklock' && POLLED.includes(scenario.name))
      .map(polling),
  ];
};

export const MATRIX: readonly Scenario[] = [
  ...PUSHED,
  ...PUSHED.filter((scenario) => POLLED.includes(scenario.name)).map(polling),
  {
    // One queue, its waiters woken by pushes or by their own polls: a handoff between them.
    name: 'no fault; 2 of 4 workers poll, 2 push',
    mode: 'tracklock',
    topology: 'server',
    safe: true,
    workers: 4,
    tracking: 'mixed',
  },
  ...countedRows('semaphore'),
  ...countedRows('rw'),
];

/** The rows `npm test` runs, by label: quick, and every negative control. */
export const SUBSET = MATRIX.filter((scenario) =>
  [
    'no fault [tracklock]',
    'Redis SIGSTOP for 1.5 validities [tracklock]',
    'Redis kill -9, restart without persistence [tracklock]',
    'holder SIGSTOP for 2 validities (GC pause) [fenced]',
    '3 nodes, one stopped for the whole run [tracklock]',
    'Go rueidislock protocol in 2 of 5 workers [tracklock]',
    'negative control: SET without NX [no-nx]',
    'negative control: signal ignored, holder SIGSTOP [no-abort]',
    'semaphore 2 of 5: no fault [tracklock]',
    'semaphore 2 of 5: negative control: a semaphore that does not count [no-count]',
    'rw: no fault [tracklock]',
    'rw: negative control: a read lock that ignores writers [no-writer-check]',
  ].includes(labelOf(scenario)),
);
