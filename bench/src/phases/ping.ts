/** The floor: sequential PINGs on one connection, the round trip no handoff can beat. */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Context } from '../context.js';
import { type Summary, summarize } from '../stats.js';

const WARMUP = 200;
/** The same pause as a handoff round's average settle time. */
export const IDLE_PAUSE_MS = 5;

export interface PingResult {
  readonly ping: Summary | null;
  /** PINGs each sent after an idle pause: what each leg of a handoff pays on this machine. */
  readonly idlePing: Summary | null;
}

export async function measurePing(ctx: Context): Promise<PingResult> {
  for (let i = 0; i < WARMUP; i++) await ctx.admin.ping();
  const samples: number[] = [];
  for (let i = 0; i < ctx.mode.pingSamples; i++) {
    ctx.interrupted.throwIfAborted();
    const start = performance.now();
    await ctx.admin.ping();
    samples.push(performance.now() - start);
  }
  const idle: number[] = [];
  for (let i = 0; i < ctx.mode.idlePingSamples; i++) {
    ctx.interrupted.throwIfAborted();
    await sleep(IDLE_PAUSE_MS);
    const start = performance.now();
    await ctx.admin.ping();
    idle.push(performance.now() - start);
  }
  ctx.progress.step('handoff');
  return { ping: summarize(samples), idlePing: summarize(idle) };
}
