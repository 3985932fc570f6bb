/**
 * The signals by which a terminal or a supervisor asks `tracklock` to stop: while it waits for
 * the lock they end the wait; while the command runs they are passed on to it, so that the
 * command decides how to stop and `tracklock` releases the lock after it. timeout(1)'s list:
 * each would otherwise end tracklock by Node's default and leave the command running, in a
 * group of its own, without the lock. SIGPIPE too (Node ignores it, so a supervisor's SIGPIPE
 * would do nothing): the command decides. Not SIGUSR1, which starts Node's debugger.
 */
export const INTERRUPTS = [
  'SIGINT',
  'SIGTERM',
  'SIGHUP',
  'SIGQUIT',
  'SIGUSR2',
  'SIGALRM',
  'SIGPIPE',
] as const;
export type Interrupt = (typeof INTERRUPTS)[number];

/**
 * Call `listener` on each of {@link INTERRUPTS} instead of Node's default (exiting at once,
 * which would leave the lock to expire and the command running). Returns the undo.
 */
export function onInterrupt(listener: (signal: Interrupt) => void): () => void {
  for (const signal of INTERRUPTS) process.on(signal, listener);
  return () => {
    for (const signal of INTERRUPTS) process.off(signal, listener);
  };
}
