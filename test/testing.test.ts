import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type StartRedisOptions, startRedis, type TestRedis } from '../src/testing/index.js';
import { connect } from './helpers/redis.js';
import { startRedisServer } from './helpers/redis-server.js';
import { sleep, watched } from './helpers/wait.js';

// tracklock/testing: the throwaway Redis a user's own tests start.
const test = suite('testing');

/** Runs test/helpers/testing-child.ts with `env` and returns the JSON it printed. */
async function inChild(mode: string, env: NodeJS.ProcessEnv = process.env) {
  const child = fileURLToPath(new URL('./helpers/testing-child.ts', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', child, mode], {
    env,
    timeout: 30_000,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1) as string);
}

/** The code a connection to 127.0.0.1:`port` ends with: ECONNREFUSED once nothing listens. */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port, timeout: 5000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve('timeout');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/** Runs `body` with a server from `startRedis(options)`, stopped afterwards whatever happens. */
async function withRedis(options: StartRedisOptions, body: (redis: TestRedis) => Promise<void>) {
  const redis = await startRedis(options);
  try {
    await body(redis);
  } finally {
    await redis.stop();
  }
}

/** Runs `body` with REDIS_URL set to `url`, restored afterwards. */
async function withRedisUrl(url: string, body: () => Promise<void>) {
  const saved = process.env.REDIS_URL;
  process.env.REDIS_URL = url;
  try {
    await body();
  } finally {
    if (saved === undefined) delete process.env.REDIS_URL;
    else process.env.REDIS_URL = saved;
  }
}

const rejection = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );

test('a local redis-server answers at the URL, started with the extra args', async () => {
  await withRedis({ source: 'local', args: ['--hz', '42'] }, async (redis) => {
    assert.is(redis.source, 'local');
    assert.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
    const client = await connect(redis.url);
    try {
      assert.is(await client.ping(), 'PONG');
      assert.equal(await client.configGet('hz'), { hz: '42' });
    } finally {
      client.destroy();
    }
  });
});

test('a command sent to a paused server waits until the server is resumed', async () => {
  await withRedis({ source: 'local' }, async (redis) => {
    const client = await connect(redis.url);
    try {
      await redis.pause();
      const ping = watched(client.ping());
      ping.promise.catch(() => {}); // the client is destroyed if an assertion below fails
      await sleep(300); // a window, not a wait: no reply may come in it
      assert.not.ok(ping.resolved(), 'a paused server replied');
      await redis.resume();
      assert.is(await ping.promise, 'PONG');
    } finally {
      client.destroy();
    }
  });
});

test('restart loses the data and keeps the URL', async () => {
  await withRedis({ source: 'local' }, async (redis) => {
    const url = redis.url;
    const before = await connect(url);
    await before.set('testing:kept?', 'yes');
    before.destroy();
    await redis.restart();
    assert.is(redis.url, url);
    const after = await connect(url);
    try {
      assert.is(await after.get('testing:kept?'), null);
    } finally {
      after.destroy();
    }
  });
});

test('a stop() during a restart() leaves no server running, and that restart rejects', async () => {
  const redis = await startRedis({ source: 'local' });
  const restarted = rejection(redis.restart());
  await redis.stop(); // what an after-hook does when a test times out mid-restart
  const error = await restarted;
  assert.instance(error, Error);
  assert.match((error as Error).message, /stop\(\)/);
  assert.is(await connectOutcome(Number(new URL(redis.url).port)), 'ECONNREFUSED');
});

test('restart() after stop() rejects and starts no server', async () => {
  const redis = await startRedis({ source: 'local' });
  await redis.stop();
  const error = await rejection(redis.restart());
  assert.instance(error, Error);
  assert.match((error as Error).message, /stop\(\)/);
  assert.is(await connectOutcome(Number(new URL(redis.url).port)), 'ECONNREFUSED');
});

test('a start that times out leaves no handle behind once it has rejected', async () => {
  const seen = await inChild('timeout');
  assert.match(seen.message, /redis-server did not start before its start timeout ran out/);
  assert.equal(seen.handles, []);
});

test('stop leaves no handle nor exit listener behind, and the port closes', async () => {
  const seen = await inChild('lifecycle');
  assert.equal(seen.handles, []);
  assert.is(seen.exitListeners, 0);
  assert.is(await connectOutcome(Number(new URL(seen.url).port)), 'ECONNREFUSED');
});

test('with REDIS_URL set, startRedis uses that server and stop() leaves it running', async () => {
  const server = await startRedisServer();
  try {
    await withRedisUrl(server.url, async () => {
      const redis = await startRedis();
      assert.is(redis.source, 'env');
      assert.is(redis.url, server.url);
      await redis.stop();
    });
    assert.ok(server.running);
    const client = await connect(server.url);
    try {
      assert.is(await client.ping(), 'PONG');
    } finally {
      client.destroy();
    }
  } finally {
    await server.stop();
  }
});

test('a server from REDIS_URL cannot be paused, resumed or restarted, and the error says why', async () => {
  await withRedisUrl('redis://127.0.0.1:1', async () => {
    const redis = await startRedis();
    for (const operation of [redis.pause, redis.resume, redis.restart]) {
      const error = await rejection(operation());
      assert.instance(error, Error);
      assert.match((error as Error).message, /REDIS_URL/);
      assert.match((error as Error).message, /source: 'local'/);
    }
    await redis.stop();
  });
});

test('extra args are refused for the server at REDIS_URL: they could not apply to it', async () => {
  await withRedisUrl('redis://127.0.0.1:1', async () => {
    const error = await rejection(startRedis({ args: ['--hz', '42'] }));
    assert.instance(error, Error);
    assert.match((error as Error).message, /args/);
  });
});

test('without redis-server on PATH, the error names what to install', async () => {
  const empty = mkdtempSync(join(tmpdir(), 'tracklock-no-redis-'));
  try {
    const { REDIS_SERVER_BIN: _bin, REDIS_URL: _url, ...env } = process.env;
    const seen = await inChild('start', { ...env, PATH: empty });
    assert.match(seen.message, /redis-server was not found/);
    assert.match(seen.message, /install Redis/);
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});

test('a container is started when a Docker engine answers, else the error says none did', async () => {
  const outcome = await rejection(
    withRedis({ source: 'container' }, async (redis) => {
      const client = await connect(redis.url);
      try {
        assert.is(await client.ping(), 'PONG');
      } finally {
        client.destroy();
      }
    }),
  );
  // CI here has no Docker engine: the answer must then be quick and say so.
  if (outcome !== undefined) assert.match((outcome as Error).message, /Docker engine/);
});

test('bad options are refused, naming the option', async () => {
  const refused = async (options: unknown, type: typeof TypeError, name: string) => {
    const error = await rejection(startRedis(options as StartRedisOptions));
    assert.instance(error, type);
    assert.match((error as Error).message, name);
  };
  await refused({ source: 'docker' }, TypeError, 'source');
  await refused({ args: '--hz 42' }, TypeError, 'args');
  await refused({ args: [42] }, TypeError, 'args');
  await refused({ startTimeoutMs: 0 }, RangeError, 'startTimeoutMs');
  await refused({ startTimeoutMs: Number.NaN }, RangeError, 'startTimeoutMs');
});

test('the lock-loss example of docs/testing.md passes under node --test', async () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const page = readFileSync(join(root, 'docs/testing.md'), 'utf8');
  const example = /## A test of lock loss[\s\S]*?```js\n([\s\S]*?)```/.exec(page)?.[1];
  assert.ok(example, 'no example under "A test of lock loss"');
  const dir = mkdtempSync(join(tmpdir(), 'tracklock-example-'));
  try {
    const file = join(dir, 'report.test.mjs');
    writeFileSync(
      file,
      example
        .replace("from 'tracklock'", `from '${join(root, 'src/index.ts')}'`)
        .replace("from 'tracklock/testing'", `from '${join(root, 'src/testing/index.ts')}'`),
    );
    const { REDIS_URL: _url, ...env } = process.env;
    const ran = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--test', file], {
      cwd: root,
      env,
      timeout: 60_000,
    }).catch((error: { stdout?: string; message: string }) => ({
      stdout: error.stdout ?? error.message,
    }));
    assert.match(ran.stdout, /# pass 2\n# fail 0\n/, ran.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
