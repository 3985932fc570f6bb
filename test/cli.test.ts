import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { signalStatus } from '../src/cli/exit-codes.js';
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
    child.once('close', (code, signal) => resolve(code ?? signalStatus(signal as NodeJS.Signals)));
  });
  return { child, output: () => output, exited };
}

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
const stubborn = (onTerm: string, signal = 'SIGTERM') =>
  node(`process.on('${signal}', () => { console.log('got ${signal}'); ${onTerm} });
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

test('release --force deletes a held lock beside a key another value held when it was shown', async (ctx) => {
  // A racer's leftover or a queued waiter's key: shown, unchanged, not a new holder.
  const lock = await (await holder(ctx)).withContext('stray', WAIT);
  const held = await ctx.client.get('rueidislock:0:stray');
  await ctx.client.set('rueidislock:2:stray', 'someone-else', { PX: 60_000 });
  assert.is(await ctx.client.get('rueidislock:1:stray'), held);
  const { code, output } = await run(ctx, ['release', '--force', '--yes', 'stray']);
  assert.is(code, 0, output);
  await abortedWithin(lock.signal, 10_000);
  assert.is(
    await ctx.client.exists(['rueidislock:0:stray', 'rueidislock:1:stray', 'rueidislock:2:stray']),
    0,
  );
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

/** A shell word for `text`: script(1) runs its command line through a shell. */
const quoted = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;

/**
 * `tracklock args…` on a pseudo-terminal (script(1)), its output (the prompt included) on
 * stdout; what is written to `child.stdin` reaches it as typed on the terminal.
 */
function onTerminal(ctx: Context, args: string[]): Cli & { child: { stdin: Writable } } {
  const line = [process.execPath, '--import', 'tsx', main, ...args].map(quoted).join(' ');
  const child = spawn('script', ['-qec', line, '/dev/null'], {
    env: { ...process.env, REDIS_URL: ctx.server.url },
    stdio: ['pipe', 'pipe', 'pipe'],
    signal: AbortSignal.timeout(60_000),
  });
  killOnExit(child);
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  const exited = once(child, 'close').then(([code]) => code as number);
  return { child, output: () => output, exited };
}

/** Answer release --force's question once it is asked, and resolve with the exit code. */
async function answer(asking: ReturnType<typeof onTerminal>, text: string) {
  await until(() => asking.output().includes('[y/N]'), AbortSignal.timeout(30_000));
  asking.child.stdin.end(`${text}\n`);
  return { code: await asking.exited, output: asking.output() };
}

test('on a terminal, release --force asks, and deletes only on yes', async (ctx) => {
  const lock = await (await holder(ctx)).withContext('asked', WAIT);
  const declined = await answer(onTerminal(ctx, ['release', '--force', 'asked']), 'n');
  assert.is(declined.code, 1, declined.output);
  assert.match(declined.output, /Delete the 3 keys of lock "asked"\? \[y\/N\]/);
  assert.is(await ctx.client.exists(keysOf('asked')), 3);
  const confirmed = await answer(onTerminal(ctx, ['release', '--force', 'asked']), 'y');
  assert.is(confirmed.code, 0, confirmed.output);
  await abortedWithin(lock.signal, 10_000);
  assert.is(await ctx.client.exists(keysOf('asked')), 0);
});

test('release --force deletes nothing when a value other than the holder shown took the keys', async (ctx) => {
  // The holder shown holds 2 of 3 keys; a stray value holds the third, then takes all three
  // while the question is asked: the stray value is now the holder, and not the one shown.
  const keys = keysOf('swapped');
  const px = { PX: 60_000 } as const;
  await ctx.client.set(keys[0] as string, 'shown', px);
  await ctx.client.set(keys[1] as string, 'shown', px);
  await ctx.client.set(keys[2] as string, 'newcomer', px);
  const asking = onTerminal(ctx, ['release', '--force', 'swapped']);
  await until(() => asking.output().includes('[y/N]'), AbortSignal.timeout(30_000));
  assert.match(asking.output(), /held by shown/);
  for (const key of keys) await ctx.client.set(key, 'newcomer', px);
  const { code, output } = await answer(asking, 'y');
  assert.is(code, 1, output);
  assert.match(output, /changed/);
  assert.equal(await ctx.client.mGet(keys), ['newcomer', 'newcomer', 'newcomer']);
  await ctx.client.del(keys);
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

test('--max-hold stops the command and releases only once it has exited: a waiting exec never overlaps it', async (ctx) => {
  const log = join(ctx.tmp, 'max-hold.log');
  const pidFile = join(ctx.tmp, 'max-hold.pid');
  const fs = `const fs = require('node:fs'); const log = ${JSON.stringify(log)};`;
  // A ignores SIGTERM: it runs until SIGKILL, --grace after --max-hold. B, started meanwhile,
  // waits; the grace is long enough that B is there before it ends on a loaded machine.
  const first = cli(ctx, [
    'exec',
    'capped',
    '--key-validity',
    '20000',
    '--max-hold',
    '2000',
    '--grace',
    '5000',
    ...node(`${fs} process.on('SIGTERM', () => fs.appendFileSync(log, 'A got SIGTERM\\n'));
      fs.writeFileSync(${JSON.stringify(pidFile)}, String(process.pid));
      fs.appendFileSync(log, 'start A\\n'); setInterval(() => {}, 1000);`),
  ]);
  await until(() => existsSync(pidFile), AbortSignal.timeout(30_000));
  // B checks, as its first act under the lock, whether A's command still exists (a zombie too).
  const second = cli(ctx, [
    'exec',
    'capped',
    '--key-validity',
    '20000',
    ...node(`${fs} let alive = true;
      try { process.kill(Number(fs.readFileSync(${JSON.stringify(pidFile)}, 'utf8')), 0) }
      catch { alive = false }
      fs.appendFileSync(log, alive ? 'start B while A runs\\n' : 'start B\\n');`),
  ]);
  assert.is(await first.exited, 76, first.output());
  assert.is(await second.exited, 0, second.output());
  assert.match(first.output(), /SIGKILL/);
  assert.equal(readFileSync(log, 'utf8').trim().split('\n'), [
    'start A',
    'A got SIGTERM',
    'start B',
  ]);
});

test('--grace, --wait and --max-hold take whole ms up to 2^31-1, else exit 64 naming the flag', async (ctx) => {
  const flags = [
    ['--grace', 'Infinity'],
    ['--grace', '2147483648'],
    ['--grace', '-1'],
    ['--grace', '1.5'],
    ['--wait', '-1'],
    ['--max-hold', '0'],
    ['--max-hold', '2147483648'],
  ];
  for (const [flag, value] of flags) {
    const ran = await run(ctx, ['exec', 'checked', flag as string, value as string, '--', 'true']);
    assert.is(ran.code, 64, `${flag} ${value}: ${ran.output}`);
    assert.ok(ran.output.includes(flag as string), `${flag} ${value}: ${ran.output}`);
  }
  const validity = await run(ctx, ['exec', 'checked', '--key-validity', '-5', '--', 'true']);
  assert.is(validity.code, 64, validity.output);
  assert.match(validity.output, /--key-validity must be/);
  const forever = await run(ctx, [
    'exec',
    'checked',
    '--wait',
    'Infinity',
    '--grace',
    '0',
    '--',
    'true',
  ]);
  assert.is(forever.code, 0, forever.output);
  const sentinelName = await run(ctx, ['exec', 'checked', '--sentinel-name', 'm', '--', 'true']);
  assert.is(sentinelName.code, 64, sentinelName.output);
  assert.match(sentinelName.output, /--sentinel-name.*--sentinel/);
});

test('status and release --force exit 69 naming the server when it does not answer within --command-timeout', async (ctx) => {
  const frozen = await startRedisServer();
  try {
    frozen.pause();
    const server = `127.0.0.1:${frozen.port}`;
    for (const args of [
      ['status', 'frozen'],
      ['release', '--force', '--yes', 'frozen'],
    ]) {
      const ran = await run(ctx, [
        ...args,
        '--url',
        frozen.url,
        '--command-timeout',
        '300',
        '--connect-timeout',
        '300',
      ]);
      assert.is(ran.code, 69, `${args[0]}: ${ran.output}`);
      assert.ok(ran.output.includes(server), `${args[0]}: ${ran.output}`);
    }
  } finally {
    frozen.resume();
    await frozen.stop();
  }
});

test('SIGQUIT to tracklock is forwarded to the command too', async (ctx) => {
  const running = cli(ctx, [
    'exec',
    'quit',
    '--key-validity',
    '20000',
    ...stubborn('process.exit(3)', 'SIGQUIT'),
  ]);
  await until(() => running.output().includes('ready'), AbortSignal.timeout(30_000));
  const pid = Number(/pid=(\d+)/.exec(running.output())?.[1]);
  try {
    running.child.kill('SIGQUIT');
    // Not `exited` (stdio closed): a command left running would keep stdout open.
    const [code] = await once(running.child, 'exit');
    assert.is(code, 3, running.output());
    await until(() => running.output().includes('got SIGQUIT'));
    assert.is(await ctx.client.exists(keysOf('quit')), 0, 'the lock was not released');
  } finally {
    try {
      process.kill(pid, 'SIGKILL'); // the test's own command, if tracklock left it running
    } catch {}
  }
});

test.run();
