import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, signalStatus } from './exit-codes.js';

/** How often a stopped command's process group is asked whether anything of it still runs. */
const GROUP_POLL_MS = 50;

/** A command that `exec` runs, with this process's stdin, stdout and stderr. */
export interface Command {
  readonly pid: number | undefined;
  /**
   * Its exit status as a shell reports it: its code, or 128 + the number of the signal that
   * killed it; 127 or 126 when it could not be run. Never rejects. After `stop`, resolves only
   * once the processes it started are gone too (zombies included), or were sent SIGKILL.
   */
  readonly exited: Promise<number>;
  /** Send it (its process group, unless in the foreground) `signal`. */
  kill(signal: NodeJS.Signals): void;
  /**
   * SIGTERM now, and SIGKILL to whatever still runs `graceMs` later (`onKill` is told then).
   * Once: a second call, or one after `exited` resolved, does nothing.
   */
  stop(graceMs: number, onKill: () => void): void;
}

/**
 * Start `file args…` with `env`. As timeout(1) does, the command runs in a process group of its
 * own, and signals go to the whole group: a lost lock then stops `sh -c '…'` and what it
 * started, not only the shell. `foreground` keeps it in tracklock's group (and the terminal's
 * foreground) for interactive commands; signals then reach the command alone.
 */
export function startCommand(
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  foreground: boolean,
): Command {
  const child = spawn(file, args, { stdio: 'inherit', env, detached: !foreground });
  const pid = child.pid;
  let leaderRunning = pid !== undefined;
  /** Send `signal` (0: only ask whether anything of the command still runs). */
  const send = (signal: NodeJS.Signals | 0) => {
    if (pid === undefined) return;
    try {
      if (foreground) {
        if (leaderRunning) process.kill(pid, signal);
      } else {
        process.kill(-pid, signal);
      }
      return true;
    } catch {
      return false; // ESRCH: nothing of it runs any more
    }
  };
  let stopping = false;
  let killTimer: NodeJS.Timeout | undefined;
  let graceOver = false;
  let settled = false;
  const leader = new Promise<number>((resolve) => {
    // A command that cannot be started emits 'error' and no 'exit'.
    child.once('error', (error: NodeJS.ErrnoException) => {
      leaderRunning = false;
      process.stderr.write(`tracklock: cannot run ${file}: ${error.message}\n`);
      resolve(error.code === 'ENOENT' ? EXIT.notFound : EXIT.notExecutable);
    });
    child.once('exit', (code, signal) => {
      leaderRunning = false;
      resolve(code ?? signalStatus(signal as NodeJS.Signals));
    });
  });
  const exited = leader
    .then(async (status) => {
      // Stopped for a lost lock: what the command left running must stop too. Asked again and
      // again: a group whose last process exits within the grace is done then, not at its end.
      while (stopping && !foreground && !graceOver && send(0)) await sleep(GROUP_POLL_MS);
      return status;
    })
    .finally(() => {
      settled = true;
      clearTimeout(killTimer);
    });
  return {
    pid,
    exited,
    kill: (signal) => void send(signal),
    stop(graceMs, onKill) {
      if (stopping || settled) return;
      stopping = true;
      send('SIGTERM');
      killTimer = setTimeout(() => {
        graceOver = true;
        if (send(0)) {
          onKill();
          send('SIGKILL');
        }
      }, graceMs);
    },
  };
}
