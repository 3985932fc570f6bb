import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { EXIT } from './exit-codes.js';

/** A command that `exec` runs, with this process's stdin, stdout and stderr. */
export interface Command {
  readonly pid: number | undefined;
  /**
   * Its exit status as a shell reports it: its code, or 128 + the number of the signal that
   * killed it; 127 or 126 when it could not be run. Never rejects.
   */
  readonly exited: Promise<number>;
  /** Send it `signal`, if it still runs. */
  kill(signal: NodeJS.Signals): void;
  /**
   * SIGTERM now, and SIGKILL if it still runs `graceMs` later (`onKill` is told then). Once:
   * a second call does nothing.
   */
  stop(graceMs: number, onKill: () => void): void;
}

/** Start `file args…` with `env`. */
export function startCommand(
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Command {
  const child = spawn(file, args, { stdio: 'inherit', env });
  let running = true;
  let killTimer: NodeJS.Timeout | undefined;
  const exited = new Promise<number>((resolve) => {
    // A command that cannot be started emits 'error' and no 'exit'.
    child.once('error', (error: NodeJS.ErrnoException) => {
      running = false;
      process.stderr.write(`tracklock: cannot run ${file}: ${error.message}\n`);
      resolve(error.code === 'ENOENT' ? EXIT.notFound : EXIT.notExecutable);
    });
    child.once('exit', (code, signal) => {
      running = false;
      resolve(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  }).finally(() => clearTimeout(killTimer));
  const kill = (signal: NodeJS.Signals) => {
    if (running) child.kill(signal);
  };
  let stopping = false;
  return {
    pid: child.pid,
    exited,
    kill,
    stop(graceMs, onKill) {
      if (stopping) return;
      stopping = true;
      kill('SIGTERM');
      killTimer = setTimeout(() => {
        if (!running) return;
        onKill();
        kill('SIGKILL');
      }, graceMs);
    },
  };
}
