/** The coordinator's side of a worker process: fork it, send it requests, stop it. */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Envelope, Replies, Reply, Request } from './protocol.js';

const WORKER_PATH = fileURLToPath(new URL('./worker.ts', import.meta.url));
/** Forking a worker loads tsx and the libraries. */
const STARTUP_TIMEOUT_MS = 20_000;
const SHUTDOWN_TIMEOUT_MS = 3000;

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class Worker {
  readonly name: string;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #gone: string | undefined;
  readonly #exited: Promise<void>;
  readonly ready: Promise<void>;

  constructor(name: string, options: { exposeGc?: boolean } = {}) {
    this.name = name;
    this.#child = fork(WORKER_PATH, [], {
      execArgv: ['--import', 'tsx', ...(options.exposeGc ? ['--expose-gc'] : [])],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
    this.ready = this.#expect(0, STARTUP_TIMEOUT_MS, 'startup').then(() => {});
    this.#child.on('message', (reply: Reply) => {
      const pending = this.#pending.get(reply.id);
      if (!pending) return;
      this.#pending.delete(reply.id);
      if (reply.ok) pending.resolve(reply.value);
      else pending.reject(new Error(`worker ${this.name}: ${reply.error}`));
    });
    this.#child.once('exit', (code, signal) =>
      this.#fail(`exited (code ${code}, signal ${signal})`),
    );
    this.#child.on('error', (error) => this.#fail(error.message));
  }

  /** Send `request`; rejects with a message naming it if no answer comes within `timeoutMs`. */
  call<R extends Request>(request: R, timeoutMs: number): Promise<Replies[R['op']]> {
    if (this.#gone) return Promise.reject(new Error(`worker ${this.name} ${this.#gone}`));
    const id = this.#nextId++;
    const answer = this.#expect(id, timeoutMs, request.op);
    const envelope: Envelope = { id, ...request };
    this.#child.send(envelope, (error) => {
      if (error) this.#settle(id)?.reject(new Error(`worker ${this.name}: ${error.message}`));
    });
    return answer as Promise<Replies[R['op']]>;
  }

  /** Disconnect (the worker then closes its clients and exits), SIGKILL if it does not. */
  async stop(): Promise<void> {
    if (this.#child.exitCode === null && this.#child.signalCode === null) {
      if (this.#child.connected) this.#child.disconnect();
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), SHUTDOWN_TIMEOUT_MS);
      await this.#exited;
      clearTimeout(timer);
    }
    this.#fail('stopped');
  }

  #expect(id: number, timeoutMs: number, what: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`worker ${this.name}: no answer to '${what}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    });
  }

  #settle(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    this.#pending.delete(id);
    return pending;
  }

  #fail(why: string): void {
    this.#gone ??= why;
    for (const [id, pending] of this.#pending) {
      this.#pending.delete(id);
      pending.reject(new Error(`worker ${this.name} ${why}`));
    }
  }
}

/** Fork `count` workers and wait until all are ready; on failure none is left running. */
export async function startWorkers(count: number, prefix: string): Promise<Worker[]> {
  const workers = Array.from({ length: count }, (_, i) => new Worker(`${prefix}${i + 1}`));
  try {
    await Promise.all(workers.map((w) => w.ready));
  } catch (error) {
    await Promise.all(workers.map((w) => w.stop()));
    throw error;
  }
  return workers;
}

/** `count` dealt over `parts` as evenly as can be, the first parts taking one more. */
export function shares(count: number, parts: number): number[] {
  return Array.from(
    { length: parts },
    (_, i) => Math.floor(count / parts) + (i < count % parts ? 1 : 0),
  );
}
