import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { killOnExit } from './reaper.js';

/** Fork a TypeScript helper under tsx with IPC; killed when the test process exits. */
export function forkHelper(file: string, args: string[]): ChildProcess {
  const child = fork(new URL(file, import.meta.url), args, {
    execArgv: ['--import', 'tsx'],
    stdio: 'inherit',
  });
  killOnExit(child);
  return child;
}

/** The child's next IPC message that starts with `prefix`; rejects after `ms` or on exit. */
export function message(child: ChildProcess, prefix: string, ms = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => done(new Error(`no "${prefix}" from child within ${ms} ms`)),
      ms,
    );
    const onMessage = (m: unknown) =>
      typeof m === 'string' && m.startsWith(prefix) && done(undefined, m);
    const onExit = (code: number | null) =>
      done(new Error(`child exited (${code}) before "${prefix}"`));
    function done(error?: Error, value?: string) {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(value as string);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

export async function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await once(child, 'exit');
}
