import { constants } from 'node:os';

/**
 * The exit statuses of `tracklock` that are its own; otherwise `exec` exits with its command's
 * status, or 128 + the number of the signal that killed it (as a shell reports it). Taken from
 * sysexits.h where one fits, and from outside the range a command's own `exit(1)` or `exit(2)`
 * uses, so a script can tell "the lock was not there" from "the command failed".
 */
export const EXIT = Object.freeze({
  /** Bad arguments or flags, or `release --force` unconfirmed off a terminal (EX_USAGE). */
  usage: 64,
  /** Redis could not be reached or failed a request (EX_UNAVAILABLE). */
  unavailable: 69,
  /**
   * `exec`: the lock was not acquired, held by another owner (`--no-wait`, or `--wait` ran
   * out) (EX_TEMPFAIL: try again later; flock(1) exits 1 here unless told `-E`).
   */
  notAcquired: 75,
  /**
   * `exec`: the lock was lost while the command ran (its keys deleted, taken or expired), or
   * reached `--max-hold`: the command was stopped and its work may not have been protected.
   */
  lost: 76,
  /** `exec`: the command could not be run: not executable (126) or not found (127), as a shell. */
  notExecutable: 126,
  notFound: 127,
});

/** 128 + the signal's number: how a shell reports a process that `signal` ended. */
export function signalStatus(signal: NodeJS.Signals): number {
  return 128 + constants.signals[signal];
}
