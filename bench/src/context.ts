/**
 * What every phase gets: the servers, the worker processes, the mode and the progress. Where
 * the locks live (`target`) is apart from the main server (`url`), which keeps the counters:
 * the "many servers" phase points `target` elsewhere and leaves the rest as it is.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Mode } from './modes.js';
import type { Worker } from './pool.js';

export interface Progress {
  /** One step of the plan done; `label` says what runs next. */
  step(label: string): void;
}

export interface Context {
  /** The main server: counters, PING, and the loss phase's keys. */
  readonly url: string;
  /** A plain connection to `url` for INFO, counters and the loss phase's DEL. */
  readonly admin: Redis;
  /** Where the handoff, throughput and uncontended phases' locks live; `url` for the main tables. */
  readonly target: string;
  /**
   * Plain connections to every server that holds lock keys (every master of a cluster), whose
   * INFO commandstats are summed: `[admin]` when `target` is `url`.
   */
  readonly lockServers: readonly Redis[];
  /** Four long-lived worker processes, each with its own connections. */
  readonly workers: readonly Worker[];
  readonly mode: Mode;
  readonly progress: Progress;
  /** Aborted on SIGINT/SIGTERM: every loop checks it. */
  readonly interrupted: AbortSignal;
}

/** A key namespace nobody else uses: a shared REDIS_URL may hold other runs' keys. */
export function freshNamespace(tag: string): string {
  return `bench:${tag}:${randomBytes(4).toString('hex')}`;
}

/** Generous bound on one IPC request that should take `expectedMs`. */
export function budget(expectedMs: number): number {
  return expectedMs * 3 + 15_000;
}
