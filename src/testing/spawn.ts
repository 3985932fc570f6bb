import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { settleWithin } from '../shared/timing.js';

/** A child process that is ready, and its exit (resolved once it has exited). */
export interface Spawned {
  readonly child: ChildProcess;
  readonly exited: Promise<unknown>;
}

/** How `spawnUntil` words its failures. */
export interface SpawnErrors {
  /** Names the process in the timeout's message. */
  readonly label: string;
  /** The binary could not be run (`error.code` is `ENOENT` when it is not on PATH). */
  readonly notRun: (error: NodeJS.ErrnoException) => Error;
  /** It exited before it was ready, having printed `output`. */
  readonly exited: (code: number | null, output: string) => Error;
}

/**
 * Spawn `bin` with `args` and resolve once its stdout shows `readyText`; reject (killing it)
 * after `timeoutMs`, or with `errors`' error when it cannot run or exits first. The child does
 * not outlive this process, nor keep it alive.
 */
export async function spawnUntil(
  bin: string,
  args: readonly string[],
  readyText: string,
  timeoutMs: number,
  errors: SpawnErrors,
): Promise<Spawned> {
  const child: ChildProcess = spawn(bin, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Do not let the process outlive this one, even if it dies while this waits.
  killOnExit(child);
  const exited = once(child, 'exit');
  exited.catch(() => {}); // 'error' instead of 'exit' when the binary is missing: handled below
  // After 'exit' and its stdio, and after 'error' too (not once(), which rejects on 'error').
  const closed = new Promise((resolve) => child.once('close', resolve));
  let output = '';
  const collect = (chunk: string) => {
    output += chunk;
  };
  child.stdout?.setEncoding('utf8').on('data', collect);
  child.stderr?.setEncoding('utf8').on('data', collect);
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `${errors.label} did not start before its start timeout ran out (${Math.max(0, Math.round(timeoutMs))} ms were left when it was launched):\n${output}`,
          ),
        ),
      Math.max(0, timeoutMs),
    );
    const check = () => {
      if (output.includes(readyText)) {
        clearTimeout(timer);
        child.stdout?.off('data', check);
        resolve();
      }
    };
    child.stdout?.on('data', check);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(errors.notRun(error));
    });
    // 'close', not 'exit': by then all of the output has been read.
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(errors.exited(code, output));
    });
  });
  try {
    await ready;
  } catch (error) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // As stop() does: a caller that counts handles once this rejects must find none.
    await settleWithin(closed, CLOSE_MS);
    await sleep(0); // the handles are freed in the loop's close phase, after the event
    throw error;
  }
  // Do not let a forgotten process keep this one alive.
  child.unref();
  child.stdout?.destroy();
  child.stderr?.destroy();
  return { child, exited };
}

/** How long a killed child may take to close its stdio: it has no children of its own. */
const CLOSE_MS = 5000;

const children = new Set<ChildProcess>();

/**
 * SIGKILL `child` if it is still running when this process exits, so that no server outlives
 * the tests that started it. One 'exit' listener for all children (Node warns past 10), there
 * only while one of them runs.
 */
export function killOnExit(child: ChildProcess): void {
  if (child.pid === undefined) return; // it never started (its 'error' event tells why)
  if (children.size === 0) process.once('exit', killAll);
  children.add(child);
  child.once('exit', () => {
    if (children.delete(child) && children.size === 0) process.off('exit', killAll);
  });
}

function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
}
