import type { ChildProcess } from 'node:child_process';

const children = new Set<ChildProcess>();
let listening = false;

/**
 * SIGKILL `child` if it is still running when this process exits, so no redis-server or helper
 * outlives a test run. One 'exit' listener for all of them (not one each: Node warns past 10).
 */
export function killOnExit(child: ChildProcess): void {
  if (!listening) process.once('exit', killAll);
  listening = true;
  children.add(child);
  child.once('exit', () => children.delete(child));
}

function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
}
