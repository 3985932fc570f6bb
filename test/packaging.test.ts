import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

// The package as a user gets it: packed by npm (which builds dist/ through `prepare`),
// installed from the tarball into an app of its own, loaded by name from ESM, CommonJS and
// TypeScript's `.cts`.
interface Context {
  tmp: string;
  tarball: string;
  /** An app with the tarball installed: `node_modules/tracklock` is what npm unpacked. */
  app: string;
  installed: string;
}

const test = suite<Context>('packaging');
const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
/** sha256 of the Apache License 2.0 as apache.org and Debian's common-licenses ship it. */
const APACHE_2_SHA256 = 'cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30';

interface Ran {
  status: number | null;
  output: string;
}

/**
 * Runs a command to its end, bounded by `timeoutMs`, with stdout and stderr together. The
 * `npm_*` variables of an enclosing `npm test` are left out: they would point a nested npm at
 * this repository rather than at `cwd`.
 */
function run(command: string, args: string[], cwd: string, timeoutMs: number): Promise<Ran> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')),
  );
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      cwd,
      env,
      signal: AbortSignal.timeout(timeoutMs),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('error', reject);
    child.once('close', (status) => resolvePromise({ status, output }));
  });
}

test.before(async (ctx) => {
  ctx.tmp = mkdtempSync(join(tmpdir(), 'tracklock-pack-'));
  const packed = await run('npm', ['pack', '--pack-destination', ctx.tmp], root, 180_000);
  assert.is(packed.status, 0, packed.output);
  const name = readdirSync(ctx.tmp).find((file) => file.endsWith('.tgz'));
  assert.ok(name, `npm pack wrote no tarball:\n${packed.output}`);
  ctx.tarball = join(ctx.tmp, name);
  ctx.app = join(ctx.tmp, 'app');
  mkdirSync(ctx.app);
  writeFileSync(join(ctx.app, 'package.json'), JSON.stringify({ name: 'app', private: true }));
  // The dependencies come from npm's cache, which `npm ci` filled.
  const installed = await run(
    'npm',
    ['install', '--prefer-offline', '--no-audit', '--no-fund', ctx.tarball],
    ctx.app,
    180_000,
  );
  assert.is(installed.status, 0, installed.output);
  ctx.installed = join(ctx.app, 'node_modules', 'tracklock');
});

test.after((ctx) => {
  rmSync(ctx.tmp, { recursive: true, force: true });
});

/** Every file of the installed package, as paths relative to it. */
function filesOf(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((entry) => {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    return entry.isDirectory() ? filesOf(dir, path) : [path];
  });
}

test('the tarball holds dist, src, LICENSE, README.md and package.json, and nothing else', (ctx) => {
  const files = filesOf(ctx.installed).filter((file) => !file.startsWith('node_modules/'));
  for (const file of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'src/index.ts']) {
    assert.ok(files.includes(file), `${file} is missing from the tarball`);
  }
  const unexpected = files.filter(
    (file) =>
      !/^(dist|src)\//.test(file) && !['LICENSE', 'README.md', 'package.json'].includes(file),
  );
  assert.equal(unexpected, []);
  // No test of ours (test/, *.test.ts); src/testing is the tracklock/testing entry.
  assert.equal(
    files.filter((file) => /(^|[^a-z])tests?([^a-z]|$)/i.test(file)),
    [],
  );
  assert.ok(files.includes('dist/testing/index.js'), 'dist/testing/index.js is missing');
});

test('LICENSE is the plain Apache License 2.0 text that package.json names', (ctx) => {
  const manifest = JSON.parse(readFileSync(join(ctx.installed, 'package.json'), 'utf8'));
  assert.is(manifest.license, 'Apache-2.0');
  const license = readFileSync(join(ctx.installed, 'LICENSE'));
  assert.is(createHash('sha256').update(license).digest('hex'), APACHE_2_SHA256);
});

test('every source map in the tarball points at sources the tarball holds', (ctx) => {
  const dist = join(ctx.installed, 'dist');
  const maps = readdirSync(dist).filter((file) => file.endsWith('.map'));
  assert.ok(maps.length > 0, 'no source maps in dist/');
  for (const map of maps) {
    const { sources } = JSON.parse(readFileSync(join(dist, map), 'utf8')) as { sources: string[] };
    for (const source of sources) {
      assert.ok(existsSync(resolve(dist, source)), `${map} points at ${source}, not shipped`);
    }
  }
});

/** The names an app needs from the package, read in a child process. */
const probe = `
  const names = ['createLocker', 'DEFAULTS', 'MAX_NAME_BYTES', 'LockError', 'NotLockedError',
    'LockLostError', 'LockReleasedError', 'LockerClosedError', 'ReleaseUnconfirmedError',
    'UnavailableError'];
  const describe = (m) => ({
    types: Object.fromEntries(names.map((name) => [name, typeof m[name]])),
    keyValidityMs: m.DEFAULTS?.keyValidityMs,
    errors: names.filter((name) => /Error$/.test(name) && name !== 'LockError')
      .every((name) => m[name].prototype instanceof m.LockError),
  });
`;
const expected = {
  types: {
    createLocker: 'function',
    DEFAULTS: 'object',
    MAX_NAME_BYTES: 'number',
    LockError: 'function',
    NotLockedError: 'function',
    LockLostError: 'function',
    LockReleasedError: 'function',
    LockerClosedError: 'function',
    ReleaseUnconfirmedError: 'function',
    UnavailableError: 'function',
  },
  keyValidityMs: 5000,
  errors: true,
};

test("require('tracklock') from CommonJS loads the same module as import", async (ctx) => {
  const file = join(ctx.app, 'probe.cjs');
  writeFileSync(
    file,
    `${probe}
    const required = require('tracklock');
    import('tracklock').then((imported) => console.log(JSON.stringify({
      ...describe(required),
      same: imported.LockError === required.LockError && imported.createLocker === required.createLocker,
    })));`,
  );
  const ran = await run(process.execPath, [file], ctx.app, 30_000);
  assert.is(ran.status, 0, ran.output);
  const line = ran.output.split('\n').find((text) => text.startsWith('{')) ?? ran.output;
  assert.equal(JSON.parse(line), { ...expected, same: true });
});

test('tracklock/testing starts a redis-server, from import and require alike', async (ctx) => {
  const file = join(ctx.app, 'probe-testing.mjs');
  writeFileSync(
    file,
    `import { createRequire } from 'node:module';
    import * as main from 'tracklock';
    import { startRedis } from 'tracklock/testing';
    const redis = await startRedis({ source: 'local' });
    await redis.stop();
    console.log(JSON.stringify({
      source: redis.source,
      url: /^redis:\\/\\/127\\.0\\.0\\.1:\\d+$/.test(redis.url),
      same: createRequire(import.meta.url)('tracklock/testing').startRedis === startRedis,
      apart: !('startRedis' in main),
    }));`,
  );
  const ran = await run(process.execPath, [file], ctx.app, 30_000);
  assert.is(ran.status, 0, ran.output);
  const line = ran.output.split('\n').find((text) => text.startsWith('{')) ?? ran.output;
  assert.equal(JSON.parse(line), { source: 'local', url: true, same: true, apart: true });
});

test('a .cts file type-checks against the package and its compiled require() runs', async (ctx) => {
  writeFileSync(
    join(ctx.app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'ES2022',
        strict: true,
        types: ['node'],
        typeRoots: [join(root, 'node_modules', '@types')],
        outDir: 'out',
      },
      files: ['check.cts'],
    }),
  );
  writeFileSync(
    join(ctx.app, 'check.cts'),
    `import { createLocker, DEFAULTS, type Lock, LockError, NotLockedError } from 'tracklock';
import tracklock = require('tracklock');
import { startRedis, type StartRedisOptions, type TestRedis } from 'tracklock/testing';

const validity: number = DEFAULTS.keyValidityMs;
const token = (lock: Lock): bigint | undefined => lock.token;
const code: string = new NotLockedError('taken').code;
// Never called: only checked, to show the types are the package's own and not \`any\`.
export const wrong = () =>
  // @ts-expect-error: keyValidityMs is a number
  createLocker({ keyValidityMs: 'long' });
export const redis = (options: StartRedisOptions): Promise<TestRedis> => startRedis(options);
// @ts-expect-error: there is no 'docker' source
export const docker = () => startRedis({ source: 'docker' });
console.log(JSON.stringify({
  validity, code, token: typeof token,
  errors: NotLockedError.prototype instanceof LockError && tracklock.LockError === LockError,
}));
`,
  );
  const checked = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], ctx.app, 60_000);
  assert.is(checked.status, 0, checked.output);
  const ran = await run(process.execPath, [join(ctx.app, 'out', 'check.cjs')], ctx.app, 30_000);
  assert.is(ran.status, 0, ran.output);
  const line = ran.output.split('\n').find((text) => text.startsWith('{')) ?? ran.output;
  assert.equal(JSON.parse(line), {
    validity: 5000,
    code: 'ERR_NOT_LOCKED',
    token: 'function',
    errors: true,
  });
});

test('the installed `tracklock` command runs from node_modules/.bin', async (ctx) => {
  const bin = join(ctx.app, 'node_modules', '.bin', 'tracklock');
  const ran = await run(bin, ['--help'], ctx.app, 30_000);
  assert.is(ran.status, 0, ran.output);
  for (const command of ['exec', 'status', 'release']) assert.ok(ran.output.includes(command));
});

test('publint finds nothing to report in the tarball', async (ctx) => {
  const tarball = readFileSync(ctx.tarball);
  const { messages, pkg } = await publint({
    strict: true,
    pack: {
      tarball: tarball.buffer.slice(tarball.byteOffset, tarball.byteOffset + tarball.length),
    },
  });
  assert.equal(
    messages.map((message) => `${message.type}: ${formatMessage(message, pkg)}`),
    [],
  );
});

test('installing a clone that has no node_modules fails, saying to run npm ci there', async (ctx) => {
  const clone = join(ctx.tmp, 'clone');
  cpSync(root, clone, {
    recursive: true,
    filter: (source) => !['node_modules', 'dist', '.git'].includes(basename(source)),
  });
  const app = join(ctx.tmp, 'clone-app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'clone-app', private: true }));
  const installed = await run(
    'npm',
    ['install', '--prefer-offline', '--no-audit', '--no-fund', clone],
    app,
    120_000,
  );
  assert.is.not(installed.status, 0, installed.output);
  assert.ok(installed.output.includes('npm ci'), installed.output);
  assert.ok(installed.output.includes(clone), installed.output);
});

test.run();
