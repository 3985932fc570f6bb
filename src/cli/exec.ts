import { createLocker, type Locker } from '../lock/api.js';
import type { Lock } from '../lock/handle.js';
import { LockError } from '../shared/errors.js';
import type { LockerOptions } from '../shared/options.js';
import { onAbort } from '../shared/signals.js';
import { type Command, startCommand } from './child.js';
import { EXIT, signalStatus } from './exit-codes.js';
import { onInterrupt } from './interrupts.js';
import { say } from './say.js';

/** What `tracklock exec` was told, besides the locker's options. */
export interface ExecOptions {
  /** `--wait <ms>`: give up after so long; `false` (`--no-wait`): try once; else wait. */
  readonly wait: number | boolean;
  /** `--grace <ms>`: from SIGTERM to SIGKILL when the lock is lost or `--max-hold` is reached. */
  readonly grace: number;
  /**
   * `--max-hold <ms>`: stop the command after holding the lock so long (Infinity: never). Kept
   * out of the locker's options: the library would release the keys at once, and a waiting
   * exec would start while this command still runs its grace period.
   */
  readonly maxHold: number;
  /** `--foreground`: the command stays in tracklock's process group (see startCommand). */
  readonly foreground: boolean;
}

/** The default of `--grace`: the command's time to stop after its lock was lost. */
export const DEFAULT_GRACE_MS = 5000;

/**
 * A distributed flock(1): run `file args…` while holding lock `name`, and resolve with the exit
 * status `tracklock` should exit with (see EXIT). The lock is released and the locker closed
 * on every path, so nothing is left to keep the process alive.
 */
export async function exec(
  name: string,
  [file, ...args]: readonly string[],
  options: ExecOptions,
  lockerOptions: LockerOptions,
): Promise<number> {
  if (file === undefined)
    throw new TypeError('exec needs a command: tracklock exec NAME -- COMMAND');
  const interrupted = new AbortController();
  let command: Command | undefined;
  const untrap = onInterrupt((signal) => {
    if (command) command.kill(signal);
    else interrupted.abort(signal);
  });
  let locker: Locker | undefined;
  try {
    locker = await createLocker(lockerOptions);
    const lock = await acquire(locker, name, options.wait, interrupted.signal);
    if (typeof lock === 'number') return lock;
    if (interrupted.signal.aborted) {
      await releaseQuietly(lock);
      return signalStatus(interrupted.signal.reason);
    }
    if (lock.signal.aborted) {
      say(`${reasonOf(lock.signal)}: the command was not started`);
      return EXIT.lost;
    }
    const env = { ...process.env };
    // An inherited token would be taken for this lock's.
    if (lock.token === undefined) delete env.TRACKLOCK_TOKEN;
    else env.TRACKLOCK_TOKEN = String(lock.token);
    command = startCommand(file, args, env, options.foreground);
    const started = command;
    let stopping = false;
    const stop = (why: string) => {
      if (stopping) return; // a lock lost during --max-hold's grace: already stopping
      stopping = true;
      say(`${why}: sending SIGTERM to the command (pid ${started.pid})`);
      started.stop(options.grace, () =>
        say(`the command did not exit within ${options.grace} ms of SIGTERM: sending SIGKILL`),
      );
    };
    let capped = false;
    const cap =
      options.maxHold === Infinity
        ? undefined
        : setTimeout(() => {
            capped = true;
            stop(`held lock "${name}" for --max-hold (${options.maxHold} ms)`);
          }, options.maxHold);
    const unhook = onAbort(lock.signal, () => stop(reasonOf(lock.signal)));
    const status = await command.exited;
    clearTimeout(cap);
    unhook();
    if (lock.signal.aborted) return EXIT.lost;
    // Released only now that the command has exited: the next holder never overlaps it.
    await releaseQuietly(lock);
    return capped ? EXIT.lost : status;
  } finally {
    untrap();
    await locker?.close();
  }
}

/** The held lock, or the exit status when it was not acquired. */
async function acquire(
  locker: Locker,
  name: string,
  wait: number | boolean,
  signal: AbortSignal,
): Promise<Lock | number> {
  try {
    if (wait === false) return await locker.tryWithContext(name, { signal });
    if (wait === true) return await locker.withContext(name, { signal });
    return await locker.withContext(name, { signal, waitTimeoutMs: wait });
  } catch (error) {
    if (signal.aborted) return signalStatus(signal.reason);
    if (!(error instanceof LockError) || error.code !== 'ERR_NOT_LOCKED') throw error;
    say(`not acquired: ${error.message}`);
    return EXIT.notAcquired;
  }
}

/** An unconfirmed release is not the command's failure: its keys expire by themselves. */
async function releaseQuietly(lock: Lock): Promise<void> {
  try {
    await lock.release();
  } catch (error) {
    say(`${(error as Error).message}`);
  }
}

function reasonOf(signal: AbortSignal): string {
  return signal.reason instanceof Error ? signal.reason.message : String(signal.reason);
}
