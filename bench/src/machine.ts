/** Where the numbers came from: the machine, the runtime and every library's exact version. */
import { readFileSync } from 'node:fs';
import { arch, cpus, release, totalmem, type } from 'node:os';

export interface Machine {
  readonly os: string;
  readonly cpus: string;
  readonly memoryGiB: number;
  readonly node: string;
  readonly redis: string;
  readonly versions: Record<string, string>;
}

function versionOf(packageJson: URL): string {
  return (JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string }).version;
}

/** The installed version of each library measured, of ioredis which the peers use, and of node-redis. */
export function libraryVersions(): Record<string, string> {
  const modules = new URL('../node_modules/', import.meta.url);
  const versions: Record<string, string> = {
    tracklock: versionOf(new URL('../../package.json', import.meta.url)),
    // tracklock's own client, which the bare push lock on node-redis uses too.
    '@redis/client': versionOf(
      new URL('../../node_modules/@redis/client/package.json', import.meta.url),
    ),
  };
  for (const name of ['redlock', '@sesamecare-oss/redlock', 'redis-semaphore', 'ioredis']) {
    versions[name] = versionOf(new URL(`${name}/package.json`, modules));
  }
  return versions;
}

export function describeMachine(redis: string): Machine {
  const list = cpus();
  return {
    os: `${type()} ${release()} ${arch()}`,
    cpus: `${list.length} × ${list[0]?.model.trim() ?? 'unknown'}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    redis,
    versions: libraryVersions(),
  };
}
