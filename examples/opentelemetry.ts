/**
 * tracklock's diagnostics channels as OpenTelemetry metrics.
 *
 *   npm install --prefix examples
 *   node --import tsx examples/opentelemetry.ts      # REDIS_URL, or a redis-server it starts
 *
 * `instrumentTracklock(meter)` is the part to copy: it subscribes to the channels and records
 *
 *   tracklock.lock.wait.duration  histogram (s)   acquire call → lock or giving up
 *   tracklock.lock.hold.duration  histogram (s)   lock taken → released or ended
 *   tracklock.lock.lost           counter {lock}  locks that ended without release()
 *   tracklock.lock.contended      counter {acquisition}  acquisitions that found it held
 *
 * following OpenTelemetry's naming advice: seconds, one histogram with a `tracklock.outcome`
 * attribute rather than a counter per outcome, no `.total` suffix, attributes in the
 * `tracklock.` namespace. The lock name is an attribute too (`tracklock.lock.name`): drop it if
 * your names are unbounded (one per user, per order…), or the metrics' cardinality will be.
 * The rest of the file is a workload to show it working, printed from an in-memory exporter.
 */
import { spawn } from 'node:child_process';
import { subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { type Meter, metrics } from '@opentelemetry/api';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
// In your code: from 'tracklock'.
import {
  type AcquireMessage,
  CHANNELS,
  createLocker,
  type LostMessage,
  type ReleaseMessage,
} from '../src/index.js';

/** Record tracklock's channels on `meter`; returns the unsubscribe. */
export function instrumentTracklock(meter: Meter): () => void {
  const wait = meter.createHistogram('tracklock.lock.wait.duration', {
    unit: 's',
    description: 'Time from an acquire call to its lock, or to giving up',
  });
  const hold = meter.createHistogram('tracklock.lock.hold.duration', {
    unit: 's',
    description: 'Time a lock was held, from taken to released or ended',
  });
  const lost = meter.createCounter('tracklock.lock.lost', {
    unit: '{lock}',
    description: 'Locks that ended without release(): lost, capped, aborted or closed',
  });
  const contended = meter.createCounter('tracklock.lock.contended', {
    unit: '{acquisition}',
    description: 'Acquisitions that found the lock held by another owner at least once',
  });

  const acquires = {
    // The message is filled once the call settles: `asyncEnd` follows success and `error` alike.
    asyncEnd(message: unknown) {
      const { name, mode, outcome, contended: busy, waitMs } = message as AcquireMessage;
      const attributes = {
        'tracklock.lock.name': name,
        'tracklock.mode': mode,
        'tracklock.outcome': outcome ?? 'error',
      };
      wait.record(waitMs / 1000, attributes);
      if (busy) contended.add(1, { 'tracklock.lock.name': name, 'tracklock.mode': mode });
    },
  };
  const releases = {
    asyncEnd(message: unknown) {
      const { name, held, heldMs, outcome } = message as ReleaseMessage;
      // Not held: the lock had ended already, and its end was recorded from `lost`.
      if (held) recordHold(name, heldMs, outcome ?? 'unconfirmed');
    },
  };
  const recordHold = (name: string, heldMs: number, outcome: string) =>
    hold.record(heldMs / 1000, { 'tracklock.lock.name': name, 'tracklock.outcome': outcome });
  const onLost = (message: unknown) => {
    const { name, reason, heldMs } = message as LostMessage;
    lost.add(1, { 'tracklock.lock.name': name, 'tracklock.outcome': reason });
    recordHold(name, heldMs, reason);
  };

  const acquireChannel = tracingChannel(CHANNELS.acquire);
  const releaseChannel = tracingChannel(CHANNELS.release);
  // A TracingChannel takes handlers for all five events; those not given are not subscribed.
  acquireChannel.subscribe(acquires as Parameters<typeof acquireChannel.subscribe>[0]);
  releaseChannel.subscribe(releases as Parameters<typeof releaseChannel.subscribe>[0]);
  subscribe(CHANNELS.lost, onLost);
  return () => {
    acquireChannel.unsubscribe(acquires as Parameters<typeof acquireChannel.unsubscribe>[0]);
    releaseChannel.unsubscribe(releases as Parameters<typeof releaseChannel.unsubscribe>[0]);
    unsubscribe(CHANNELS.lost, onLost);
  };
}

/** REDIS_URL, or a throwaway redis-server on a free loopback port. */
async function redis(): Promise<{ url: string; stop(): void }> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: () => {} };
  const port = await new Promise<number>((resolve, reject) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.on('error', () => {}); // reported as the ready wait's failure
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis-server did not start in 10 s')), 10_000);
    child.once('exit', () => reject(new Error('redis-server exited (is it installed?)')));
    child.stdout?.on('data', (chunk: Buffer) => {
      if (!chunk.toString().includes('Ready to accept connections')) return;
      clearTimeout(timer);
      resolve();
    });
  });
  child.stdout?.resume();
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill() };
}

async function main(): Promise<void> {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
  const provider = new MeterProvider({ readers: [reader] });
  metrics.setGlobalMeterProvider(provider);
  const stopRecording = instrumentTracklock(metrics.getMeter('tracklock-example'));

  const server = await redis();
  const lockers = await Promise.all([1, 2].map(() => createLocker({ url: server.url })));
  try {
    const [a, b] = lockers as [(typeof lockers)[0], (typeof lockers)[0]];
    // Contention: four workers over two processes' worth of lockers, ten turns each.
    await Promise.all(
      [a, b, a, b].map(async (locker) => {
        for (let turn = 0; turn < 10; turn++) {
          await locker.withLock(
            'report',
            (signal) => new Promise((resolve) => setTimeout(resolve, 2, { signal })),
            { signal: AbortSignal.timeout(10_000) },
          );
        }
      }),
    );
    // A try that finds the lock held, and a wait that gives up.
    const held = await a.withContext('nightly', { signal: AbortSignal.timeout(10_000) });
    await b.tryWithContext('nightly').catch(() => {});
    await b.withContext('nightly', { waitTimeoutMs: 20 }).catch(() => {});
    // A lock taken over (its holder's signal aborts: lost, changed), and one capped.
    const forced = await b.forceWithContext('nightly');
    await once(held.signal, 'abort', { signal: AbortSignal.timeout(5000) });
    await forced.release();
    const capped = await a.withContext('migration', { maxHoldMs: 30 });
    await once(capped.signal, 'abort', { signal: AbortSignal.timeout(5000) });
  } finally {
    await Promise.all(lockers.map((locker) => locker.close()));
    server.stop();
  }

  await provider.forceFlush();
  stopRecording();
  for (const { scopeMetrics } of exporter.getMetrics().slice(-1)) {
    for (const { metrics: collected } of scopeMetrics) {
      for (const metric of collected) {
        console.log(`${metric.descriptor.name} (${metric.descriptor.unit})`);
        for (const point of metric.dataPoints) {
          const attributes = JSON.stringify(point.attributes);
          if (metric.dataPointType === DataPointType.HISTOGRAM) {
            const { count, sum } = point.value as { count: number; sum: number };
            console.log(`  ${attributes} count ${count}, mean ${(sum / count).toFixed(4)} s`);
          } else console.log(`  ${attributes} ${point.value}`);
        }
      }
    }
  }
  await provider.shutdown();
}

await main();
