import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';

// The runnable examples (examples/, a package of its own). They need its dependencies, which
// `npm test` installs first (`pretest`: `npm ci --prefix examples`); without them this fails.
const test = suite<{ server: RedisServer }>('examples');
const root = fileURLToPath(new URL('..', import.meta.url));
const installed = existsSync(
  new URL('../examples/node_modules/@opentelemetry/sdk-metrics', import.meta.url),
);

test.before(async (ctx) => {
  ctx.server = await startRedisServer();
});

test.after(async (ctx) => {
  await ctx.server?.stop();
});

test('the OpenTelemetry example records wait and hold histograms and the lost and contended counters', async (ctx) => {
  assert.ok(installed, "examples/ lacks its dependencies: run 'npm ci --prefix examples'");
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', 'examples/opentelemetry.ts'],
    {
      cwd: root,
      env: { ...process.env, REDIS_URL: ctx.server.url },
      signal: AbortSignal.timeout(60_000),
    },
  );
  for (const metric of [
    'tracklock.lock.wait.duration (s)',
    'tracklock.lock.hold.duration (s)',
    'tracklock.lock.lost ({lock})',
    'tracklock.lock.contended ({acquisition})',
  ]) {
    assert.ok(stdout.includes(metric), `${metric} missing from:\n${stdout}`);
  }
  assert.match(stdout, /"tracklock.mode":"try","tracklock.outcome":"busy"/);
  assert.match(stdout, /"tracklock.outcome":"changed"\} 1/);
  assert.match(stdout, /"tracklock.outcome":"ERR_MAX_HOLD"\} 1/);
});

test.run();
