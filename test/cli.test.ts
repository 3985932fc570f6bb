import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LOCKER_FLAGS } from '../src/cli/locker-flags.js';
import { createLocker, DEFAULTS, type Locker } from '../src/index.js';
import { killOnExit } from './helpers/reaper.js';
import { type Client, connect, keysOf } from './helpers/redis.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { abortedWithin, until } from './helpers/wait.js';

// The `tracklock` command (issue 15), end to end: the CLI runs as a child process of its own,
// and `exec` runs real commands under the lock.
interface Context {
  server: RedisServer;
  client: Client;
  lockers: Locker[];
  tmp: string;
}

const test = suite<Context>('cli');
const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

test.before(async (ctx) => {
  ctx.server = await startRedisServer();
  ctx.client = await connect(ctx.server.url);
  ctx.tmp = mkdtempSync(join(tmpdir(), 'tracklock-cli-'));
});

test.before.each((ctx) => {
  ctx.lockers = [];
});

test.after.each(async (ctx) => {
  await Promise.all(ctx.lockers.map((locker) => locker.close()));
});

test.after(async (ctx) => {
  ctx.client.destroy();
  await ctx.server.stop();
  rmSync(ctx.tmp, { recursive: true, force: true });
});

interface Cli {
  readonly child: ChildProcess;
  /** stdout and stderr so far, together (the command's own output included). */
  output(): string;
  /** The exit code, or 128 + the signal's number as a shell reports it. */
  readonly exited: Promise<number>;
}

/** Start `tracklock args…` against the test's server (REDIS_URL), stdin not a terminal. */
function cli(ctx: Context, args: string[], timeoutMs = 60_000): Cli {
  const child = spawn(process.execPath, ['--import', 'tsx', main, ...args], {
    env: { ...process.env, REDIS_URL: ctx.server.url },
    stdio: ['pipe', 'pipe', 'pipe'],
    signal: AbortSignal.timeout(timeoutMs),
  });
  killOnExit(child);
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  const exited = new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve(code ?? 128 + signalNumber(signal)));
  });
  return { child, output: () => output, exited };
}

const signalNumber = (signal: NodeJS.Signals | null) =>
  signal === null ? 0 : constants.signals[signal];

/** Run `tracklock args…` to its end: its exit code and output. */
async function run(ctx: Context, args: string[]): Promise<{ code: number; output: string }> {
  const started = cli(ctx, args);
  const code = await started.exited;
  return { code, output: started.output() };
}

/** `node -e script`, as the command that `exec` runs. */
const node = (script: string) => ['--', process.execPath, '-e', script];

/**
 * The test's own locks wait bounded but are held unbounded (a signal would end the hold too):
 * the CLI runs beside them take seconds each on a loaded machine.
 */
const WAIT = { waitTimeoutMs: 10_000 };

/** Long enough that a loaded machine's stalls cannot end the test's own locks. */
const VALIDITY_MS = 10_000;

async function holder(ctx: Context): Promise<Locker> {
  const locker = await createLocker({ url: ctx.server.url, keyValidityMs: VALIDITY_MS });
  ctx.lockers.push(locker);
  return locker;
}

test('every locker option has a flag', () => {
  const options = new Set(LOCKER_FLAGS.map((flag) => flag.option));
  for (const option of Object.keys(DEFAULTS)) {
    assert.ok(options.has(option as never), `no flag for ${option}`);
  }
});

test('--help lists the commands, and exec --help its flags', async (ctx) => {
  const help = await run(ctx, ['--help']);
  assert.is(help.code, 0, help.output);
  for (const command of ['exec', 'status', 'release']) assert.ok(help.output.includes(command));
  const exec = await run(ctx, ['exec', '--help']);
  assert.is(exec.code, 0, exec.output);
  for (const flag of ['--no-wait', '--wait <ms>', '--grace <ms>', '--max-hold <ms>', '--url']) {
    assert.ok(exec.output.includes(flag), `${flag} missing from:\n${exec.output}`);
  }
});

test('exec exits with the command status, or 128 + the signal that killed it', async (ctx) => {
  const seven = await run(ctx, ['exec', 'status-code', ...node('process.exit(7)')]);
  assert.is(seven.code, 7, seven.output);
  const killed = await run(ctx, [
    'exec',
    'status-code',
    ...node("process.kill(process.pid, 'SIGKILL')"),
  ]);
  assert.is(killed.code, 137, killed.output);
  assert.is(await ctx.client.exists(keysOf('status-code')), 0, 'the lock was not released');
});

test('exec passes TRACKLOCK_TOKEN, growing from one run to the next', async (ctx) => {
  const print = node("console.log('token=' + process.env.TRACKLOCK_TOKEN)");
  const first = await run(ctx, ['exec', 'token', ...print]);
  const second = await run(ctx, ['exec', 'token', ...print]);
  const token = (output: string) => BigInt(/token=(\d+)/.exec(output)?.[1] ?? 'no token');
  assert.is(first.code, 0, first.output);
  assert.is(second.code, 0, second.output);
  assert.ok(token(second.output) > token(first.output), `${first.output}\n${second.output}`);
});

test('exec --no-wait and --wait <ms> exit 75 without running the command when the lock is held', async (ctx) => {
  const lock = await (await holder(ctx)).withContext('busy', WAIT);
  const marker = join(ctx.tmp, 'ran');
  const touch = node(`require('node:fs').writeFileSync(${JSON.stringify(marker)}, '')`);
  const noWait = await run(ctx, ['exec', 'busy', '--no-wait', ...touch]);
  assert.is(noWait.code, 75, `exit ${noWait.code}: ${noWait.output}`);
  assert.match(noWait.output, /not acquired/);
  const waited = await run(ctx, ['exec', 'busy', '--wait', '300', ...touch]);
  assert.is(waited.code, 75, waited.output);
  assert.not.ok(lock.signal.aborted);
  assert.throws(() => readFileSync(marker));
});

test('two execs never overlap', async (ctx) => {
  const log = join(ctx.tmp, 'overlap.log');
  const script = (id: number) =>
    node(`const fs = require('node:fs');
      fs.appendFileSync(${JSON.stringify(log)}, 'start ${id}\\n');
      setTimeout(() => fs.appendFileSync(${JSON.stringify(log)}, 'end ${id}\\n'), 200);`);
  const runs = await Promise.all(
    [1, 2, 3].map((id) => run(ctx, ['exec', 'overlap', ...script(id)])),
  );
  for (const ran of runs) assert.is(ran.code, 0, ran.output);
  const lines = readFileSync(log, 'utf8').trim().split('\n');
  assert.is(lines.length, 6, lines.join('\n'));
  for (let i = 0; i < lines.length; i += 2) {
    const id = lines[i]?.split(' ')[1];
    assert.equal([lines[i], lines[i + 1]], [`start ${id}`, `end ${id}`], lines.join('\n'));
  }
});

/** The command of a lost-lock test: says "ready", then runs until killed. */
const stubborn = (onTerm: string) =>
  node(`process.on('SIGTERM', () => { console.log('got SIGTERM'); ${onTerm} });
    console.log('ready pid=' + process.pid); setInterval(() => {}, 1000);`);

test('a lock lost mid-command sends the command SIGTERM and exits 76', async (ctx) => {
  const running = cli(ctx, ['exec', 'lost', '--grace', '5000', ...stubborn('process.exit(0)')]);
  await until(() => running.output().includes('ready'), AbortSignal.timeout(30_000));
  await ctx.client.del(keysOf('lost'));
  assert.is(await running.exited, 76, running.output());
  assert.match(running.output(), /got SIGTERM/);
  assert.match(running.output(), /lost/);
});

test('a command that ignores SIGTERM after the lock is lost is killed by SIGKILL after --grace', async (ctx) => {
  const running = cli(ctx, ['exec', 'stubborn', '--grace', '300', ...stubborn('')]);
  await until(() => running.output().includes('ready'), AbortSignal.timeout(30_000));
  const pid = Number(/pid=(\d+)/.exec(running.output())?.[1]);
  await ctx.client.del(keysOf('stubborn'));
  assert.is(await running.exited, 76, running.output());
  assert.match(running.output(), /got SIGTERM/);
  assert.match(running.output(), /SIGKILL/);
  assert.throws(() => process.kill(pid, 0), /ESRCH/);
});

test('a lost lock stops what the command started too (its process group)', async (ctx) => {
  const grandchild = `${process.execPath} -e "console.log('ready pid=' + process.pid); setInterval(() => {}, 1000)"`;
  const running = cli(ctx, [
    'exec',
    'group',
    '--grace',
    '5000',
    '--',
    'sh',
    '-c',
    `${grandchild}; echo after`,
  ]);
  await until(() => running.output().includes('ready'), AbortSignal.timeout(30_000));
  const pid = Number(/pid=(\d+)/.exec(running.output())?.[1]);
  await ctx.client.del(keysOf('group'));
  assert.is(await running.exited, 76, running.output());
  assert.throws(() => process.kill(pid, 0), /ESRCH/);
});

test('SIGTERM to tracklock is forwarded to the command, whose status it exits with', async (ctx) => {
  const running = cli(ctx, ['exec', 'forward', ...stubborn('process.exit(3)')]);
  await until(() => running.output().includes('ready'), AbortSignal.timeout(30_000));
  running.child.kill('SIGTERM');
  assert.is(await running.exited, 3, running.output());
  assert.match(running.output(), /got SIGTERM/);
  assert.is(await ctx.client.exists(keysOf('forward')), 0, 'the lock was not released');
});

test('status --json shows the keys, their holder and TTLs, the fence and the queue', async (ctx) => {
  const lock = await (await holder(ctx)).withContext('shown', WAIT);
  const waiting = (await holder(ctx)).withContext('shown', { waitTimeoutMs: 60_000 });
  waiting.catch(() => {}); // awaited below; closed by after.each if the test fails first
  await until(async () => (await ctx.client.zCard('rueidislock:q:shown')) === 1);
  const { code, output } = await run(ctx, ['status', 'shown', '--json']);
  assert.is(code, 0, output);
  const status = JSON.parse(output);
  assert.is(status.name, 'shown');
  assert.is(status.held, true);
  assert.is(status.keys.length, 3);
  const holderValue = status.keys[0].value;
  for (const [i, key] of status.keys.entries()) {
    assert.is(key.key, `rueidislock:${i}:shown`);
    assert.is(key.value, holderValue);
    assert.ok(key.ttlMs > 0 && key.ttlMs <= VALIDITY_MS, String(key.ttlMs));
  }
  assert.is(status.holder, holderValue);
  assert.is(status.fences[0].key, 'rueidislock:f:shown');
  // The last token drawn: the holder's, or one the queue's head drew for itself since.
  const fence = BigInt(status.fences[0].token);
  assert.ok(fence >= (lock.token ?? 0n), `fence ${fence}, holder's ${lock.token}`);
  assert.is(status.queue[0].key, 'rueidislock:q:shown');
  assert.is(status.queue[0].waiters.length, 1);
  await lock.release();
  const next = await waiting;
  assert.ok((next.token ?? 0n) >= fence);
  await next.release();
});

test('status of a free lock says it is free', async (ctx) => {
  const { code, output } = await run(ctx, ['status', 'nobody']);
  assert.is(code, 0, output);
  assert.match(output, /free/);
});

test('release --force --yes frees a stuck lock: the holder is told, the fence stays', async (ctx) => {
  const lock = await (await holder(ctx)).withContext('stuck', WAIT);
  const { code, output } = await run(ctx, ['release', '--force', '--yes', 'stuck']);
  assert.is(code, 0, output);
  assert.is(((await abortedWithin(lock.signal, 10_000)) as { code: string }).code, 'ERR_LOCK_LOST');
  assert.is(await ctx.client.get('rueidislock:f:stuck'), String(lock.token));
  const next = await (await holder(ctx)).tryWithContext('stuck');
  assert.ok((next.token ?? 0n) > (lock.token ?? 0n));
  await next.release();
});

test('status and release --force read and free a lock on --node servers', async (ctx) => {
  const servers = await Promise.all([0, 1, 2].map(() => startRedisServer()));
  const urls = servers.map((server) => server.url);
  const flags = urls.flatMap((url) => ['--node', url]);
  const lockers: Locker[] = [];
  try {
    const locker = await createLocker({ nodes: urls, keyValidityMs: VALIDITY_MS });
    lockers.push(locker);
    const lock = await locker.withContext('spread', WAIT);
    const shown = await run(ctx, ['status', 'spread', '--json', ...flags]);
    assert.is(shown.code, 0, shown.output);
    const status = JSON.parse(shown.output);
    assert.is(status.held, true);
    assert.equal(
      status.keys.map((key: { server: string }) => key.server),
      urls.map((url) => url.replace('redis://', '')),
    );
    const released = await run(ctx, ['release', '--force', '--yes', 'spread', ...flags]);
    assert.is(released.code, 0, released.output);
    await abortedWithin(lock.signal, 10_000);
  } finally {
    await Promise.all(lockers.map((locker) => locker.close()));
    await Promise.all(servers.map((server) => server.stop()));
  }
});

test('on a terminal, release --force asks, and deletes only on yes', async (ctx) => {
  // script(1) gives the CLI a pseudo-terminal; the answer waits in its input buffer.
  const onTerminal = async (answer: string) => {
    const line = [process.execPath, '--import', 'tsx', main, 'release', '--force', 'asked'];
    const child = spawn('script', ['-qec', line.join(' '), '/dev/null'], {
      env: { ...process.env, REDIS_URL: ctx.server.url },
      stdio: ['pipe', 'pipe', 'pipe'],
      signal: AbortSignal.timeout(60_000),
    });
    killOnExit(child);
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      output += text;
    });
    child.stdin.end(`${answer}\n`);
    const [code] = (await once(child, 'close')) as [number];
    return { code, output };
  };
  const lock = await (await holder(ctx)).withContext('asked', WAIT);
  const declined = await onTerminal('n');
  assert.is(declined.code, 1, declined.output);
  assert.match(declined.output, /Delete the 3 keys of lock "asked"\? \[y\/N\]/);
  assert.is(await ctx.client.exists(keysOf('asked')), 3);
  const confirmed = await onTerminal('y');
  assert.is(confirmed.code, 0, confirmed.output);
  await abortedWithin(lock.signal, 10_000);
  assert.is(await ctx.client.exists(keysOf('asked')), 0);
});

test('release --force without --yes refuses when stdin is not a terminal', async (ctx) => {
  const lock = await (await holder(ctx)).withContext('kept', WAIT);
  const { code, output } = await run(ctx, ['release', '--force', 'kept']);
  assert.is(code, 64, output);
  assert.match(output, /--yes/);
  assert.is(await ctx.client.exists(keysOf('kept')), 3);
  assert.not.ok(lock.signal.aborted);
});

test('release without --force refuses', async (ctx) => {
  const { code, output } = await run(ctx, ['release', '--yes', 'kept']);
  assert.is(code, 64, output);
  assert.match(output, /--force/);
});

test.run();
