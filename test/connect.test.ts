import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, LockError, type LockerOptions } from '../src/index.js';
import { freePort, type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { sleep } from './helpers/wait.js';

// What createLocker does when a server answers but cannot serve locks (not Redis, refused
// credentials), when nothing listens, and what it leaves behind when it gives up.
const test = suite<{ servers: RedisServer[]; locked: RedisServer; http: Server }>('connect');

/** Far above what a failure that is known at once may take, even on a loaded machine. */
const LONG_MS = 30_000;
/** "At once": well under LONG_MS, with room for a busy 2-core machine. */
const AT_ONCE_MS = 5_000;

test.before(async (ctx) => {
  ctx.servers = await Promise.all([startRedisServer(), startRedisServer()]);
  ctx.locked = await startRedisServer(['--requirepass', 'secret']);
  ctx.http = await notRedis();
});

test.after(async (ctx) => {
  ctx.http.close();
  await Promise.all([...ctx.servers, ctx.locked].map((server) => server.stop()));
});

/** A server that answers like an HTTP server does to a request it cannot parse, and hangs up. */
async function notRedis(): Promise<Server> {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

const urlOf = (server: Server) =>
  `redis://127.0.0.1:${(server.address() as { port: number }).port}`;
const withPassword = (server: RedisServer, password: string) =>
  `redis://:${password}@127.0.0.1:${server.port}`;

/** createLocker's rejection, and how long it took. */
async function failure(options: LockerOptions): Promise<{ error: LockError; ms: number }> {
  const started = performance.now();
  const error = await createLocker(options).then(
    async (locker) => {
      await locker.close();
      throw new Error('createLocker resolved');
    },
    (e: unknown) => e,
  );
  assert.instance(error, LockError);
  return { error: error as LockError, ms: performance.now() - started };
}

const causeOf = (error: Error) => String((error.cause as Error | undefined)?.message);

test('a server that is not Redis fails createLocker at once with ERR_CONNECT', async ({ http }) => {
  const { error, ms } = await failure({ url: urlOf(http), connectTimeoutMs: LONG_MS });
  assert.is(error.code, 'ERR_CONNECT');
  assert.match(error.message, /Redis protocol/);
  assert.match(causeOf(error), /Unknown RESP type/);
  assert.ok(ms < AT_ONCE_MS, `took ${Math.round(ms)} ms`);
});

test('a wrong password fails createLocker at once with ERR_CONNECT carrying WRONGPASS', async ({
  locked,
}) => {
  const url = withPassword(locked, 'wrong');
  const { error, ms } = await failure({ url, connectTimeoutMs: LONG_MS });
  assert.is(error.code, 'ERR_CONNECT');
  assert.match(error.message, /credentials/);
  assert.match(causeOf(error), /^WRONGPASS/);
  assert.ok(ms < AT_ONCE_MS, `took ${Math.round(ms)} ms`);
});

test('a missing password fails createLocker at once with ERR_CONNECT carrying NOAUTH', async ({
  locked,
}) => {
  const { error, ms } = await failure({ url: locked.url, connectTimeoutMs: LONG_MS });
  assert.is(error.code, 'ERR_CONNECT');
  assert.match(error.message, /credentials/);
  assert.match(causeOf(error), /^NOAUTH/);
  assert.ok(ms < AT_ONCE_MS, `took ${Math.round(ms)} ms`);
});

test('the right password connects', async ({ locked }) => {
  const locker = await createLocker({ url: withPassword(locked, 'secret') });
  await locker.close();
});

test('a refused connection is retried until connectTimeoutMs: a server that starts late is used', async () => {
  const port = await freePort();
  const connecting = createLocker({ url: `redis://127.0.0.1:${port}`, connectTimeoutMs: LONG_MS });
  connecting.catch(() => {}); // awaited below
  // Refused at first: let a few attempts fail before the server is there (a time that is part
  // of the test: nothing listens, so nothing shows the attempts).
  await sleep(300);
  const late = await startRedisServer({ port });
  try {
    const locker = await connecting;
    const lock = await locker.tryWithContext('late-server');
    assert.is(await lock.release(), true);
    await locker.close();
  } finally {
    await late.stop();
  }
});

test('with nodes, a node that refuses the credentials is left out: the others make a majority', async ({
  servers,
  locked,
}) => {
  const warnings: string[] = [];
  const onWarning = (warning: Error & { code?: string }) => warnings.push(String(warning.code));
  process.on('warning', onWarning);
  try {
    const locker = await createLocker({
      nodes: [...servers.map((server) => server.url), withPassword(locked, 'wrong')],
      connectTimeoutMs: LONG_MS,
    });
    const lock = await locker.tryWithContext('two-of-three');
    assert.is(await lock.release(), true);
    await locker.close();
    // The refusal is reported (once the warning, emitted on the next tick, is out).
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(warnings.includes('TRACKLOCK_NODE'), `warnings: ${warnings.join(', ')}`);
  } finally {
    process.off('warning', onWarning);
  }
});

test('with nodes, refusals that leave no majority fail createLocker at once, naming the nodes', async ({
  servers,
  locked,
  http,
}) => {
  const { error, ms } = await failure({
    nodes: [servers[0]?.url as string, withPassword(locked, 'wrong'), urlOf(http)],
    connectTimeoutMs: LONG_MS,
  });
  assert.is(error.code, 'ERR_CONNECT');
  assert.match(error.message, `127.0.0.1:${locked.port} (WRONGPASS`);
  assert.match(error.message, `${urlOf(http).slice('redis://'.length)} (Unknown RESP type`);
  assert.ok(ms < AT_ONCE_MS, `took ${Math.round(ms)} ms`);
});

test('a cluster root node that refuses the credentials fails createLocker with the reason, not the password', async ({
  locked,
}) => {
  const url = withPassword(locked, 'wrong-secret');
  const { error, ms } = await failure({
    cluster: { rootNodes: [{ url }] },
    connectTimeoutMs: LONG_MS,
  });
  assert.is(error.code, 'ERR_CONNECT');
  assert.match(error.message, /credentials/);
  assert.not.match(error.message, /wrong-secret/);
  assert.match(causeOf(error), /^WRONGPASS/);
  assert.ok(ms < AT_ONCE_MS, `took ${Math.round(ms)} ms`);
});

test('a cluster root node that is not Redis fails createLocker with the reason', async ({
  http,
}) => {
  const rootNodes = [{ url: urlOf(http) }];
  const { error } = await failure({ cluster: { rootNodes }, connectTimeoutMs: LONG_MS });
  assert.is(error.code, 'ERR_CONNECT');
  assert.match(causeOf(error), /Unknown RESP type/);
});

/** Run a createLocker that must fail in a child process: what it rejected with, what it left. */
async function failInChild(options: LockerOptions): Promise<{ code: string; handles: string[] }> {
  const child = decodeURIComponent(new URL('./helpers/connect-child.ts', import.meta.url).pathname);
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', child, JSON.stringify(options)],
    { timeout: 20_000 },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1) as string);
}

test('a failed createLocker leaves no handle behind: the process can exit at once', async ({
  servers,
  locked,
  http,
}) => {
  const refused = `redis://127.0.0.1:${await freePort()}`;
  const cases: [string, LockerOptions][] = [
    ['refused', { url: refused, connectTimeoutMs: 1500 }],
    ['wrong password', { url: withPassword(locked, 'wrong') }],
    ['not Redis', { url: urlOf(http) }],
    [
      'nodes: too few',
      {
        nodes: [servers[0]?.url as string, withPassword(locked, 'wrong'), refused],
        connectTimeoutMs: 1500,
      },
    ],
  ];
  for (const [label, options] of cases) {
    const seen = await failInChild(options);
    assert.is(seen.code, 'ERR_CONNECT', label);
    assert.equal(seen.handles, [], label);
  }
});

test.run();
