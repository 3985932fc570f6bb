/**
 * The fault matrix: each scenario a few seconds, its fault's timing drawn from the seed. `safe`
 * says what docs/guarantees.md promises: there, no violation and no lost update may show. The two
 * negative controls are broken locks that must show violations, so that the checker is seen
 * to catch them.
 */
import { createClient } from '@redis/client';
import type { FaultEnv, Scenario } from './scenario.js';
import { currentHolder, lastStepOf } from './store.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wait until between 0.5 and 1.5 s into the run (from the seed). */
const settle = (env: FaultEnv) => sleep(500 + env.random() * 1000);

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
 * its read and its write, and the others wait for the lock: worker 0 reconnects late
 * (slowWorker0), so it goes on to write while the others already hold the lock on the emptied
 * server.
 */
const redisRestart = async (env: FaultEnv) => {
  await sleep(320);
  for (let tries = 0; tries < 1000; tries++) {
    if ((await currentHolder(env.storeUrl, 'read')) === 0) {
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
 * write, for two validities.
 */
const holderStop = async (env: FaultEnv) => {
  await settle(env);
  for (let tries = 0; tries < 500; tries++) {
    const holder = await currentHolder(env.storeUrl, 'read');
    if (holder !== undefined) {
      const pid = env.pids[holder] as number;
      process.kill(pid, 'SIGSTOP');
      // Stopped in time? Its write may have been on the wire already: then let it go on.
      await sleep(20);
      if ((await lastStepOf(env.storeUrl, holder)) === 'read') {
        await sleep(2 * env.validityMs);
        process.kill(pid, 'SIGCONT');
        return;
      }
      process.kill(pid, 'SIGCONT');
    }
    await sleep(2);
  }
  throw new Error('never stopped a worker between its read and its write');
};

const nodeDown = async (env: FaultEnv) => {
  await env.servers[1]?.stop();
};

const nodeRestart = async (env: FaultEnv) => {
  await settle(env);
  await env.servers[1]?.restart();
};

export const MATRIX: readonly Scenario[] = [
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
    durationMs: 5000,
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

/** The rows `npm test` runs: quick, and both negative controls. */
export const SUBSET = MATRIX.filter((scenario) =>
  [
    'no fault',
    'Redis SIGSTOP for 1.5 validities',
    'Redis kill -9, restart without persistence/tracklock',
    'holder SIGSTOP for 2 validities (GC pause)/fenced',
    '3 nodes, one stopped for the whole run',
    'negative control: SET without NX',
    'negative control: signal ignored, holder SIGSTOP',
  ].some((id) => id === scenario.name || id === `${scenario.name}/${scenario.mode}`),
);
