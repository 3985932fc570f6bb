import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { within } from '../shared/timing.js';
import { freePort } from './free-port.js';
import type { ServerControls } from './start-redis.js';
import { stoppable } from './stoppable.js';

/** The image of a container source. */
const IMAGE = 'redis:7-alpine';
/** How long a Docker engine, once there is a sign of one, may take to answer. */
const ENGINE_ANSWER_MS = 5000;

type Testcontainers = typeof import('testcontainers');

let engine: Promise<string | undefined> | undefined;

/**
 * Whether a Docker engine answers: `undefined` if so, else why not. Asked once per process.
 * Loading testcontainers alone takes about half a second, so it is loaded only when there is a
 * sign of an engine: one of the places testcontainers 11 looks (its runtime strategies).
 */
export function dockerEngine(): Promise<string | undefined> {
  engine ??= (async () => {
    if (!engineHinted()) return 'no DOCKER_HOST, testcontainers config nor Docker socket found';
    const testcontainers = await load().catch((error: Error) => error);
    if (testcontainers instanceof Error) return testcontainers.message;
    const answered = testcontainers.getContainerRuntimeClient().then(() => undefined);
    return within(
      answered,
      ENGINE_ANSWER_MS,
      () => new Error(`no answer within ${ENGINE_ANSWER_MS} ms`),
    ).catch((error: Error) => error.message);
  })();
  return engine;
}

function engineHinted(): boolean {
  if (process.env.DOCKER_HOST || process.platform === 'win32') return true;
  const home = homedir();
  const runtimeDir = process.env.XDG_RUNTIME_DIR;
  return [
    join(home, '.testcontainers.properties'),
    '/var/run/docker.sock',
    runtimeDir ? join(runtimeDir, 'docker.sock') : undefined,
    join(home, '.docker', 'run', 'docker.sock'),
    join(home, '.docker', 'desktop', 'docker.sock'),
    process.getuid ? `/run/user/${process.getuid()}/docker.sock` : undefined,
  ].some((path) => path !== undefined && existsSync(path));
}

/** testcontainers is an optional peer dependency: loaded only for a container. */
async function load(): Promise<Testcontainers> {
  try {
    return await import('testcontainers');
  } catch (error) {
    throw new Error('a Redis container needs the testcontainers package: npm i -D testcontainers', {
      cause: error,
    });
  }
}

/**
 * A `redis:7-alpine` container with no persistence, published on a host port picked here so
 * that a restart keeps the URL. Pause and resume freeze its processes (`docker pause`, the
 * cgroup freezer: like SIGSTOP, its sockets stay open); restart kills it and starts it again.
 */
export async function startContainer(
  args: readonly string[],
  startTimeoutMs: number,
): Promise<ServerControls> {
  const { GenericContainer, Wait, getContainerRuntimeClient } = await load();
  const port = await freePort();
  const container = await new GenericContainer(IMAGE)
    // The image's default would refuse clients from outside the container (protected mode).
    .withCommand(
      ['redis-server', '--protected-mode', 'no', '--save', '', '--appendonly', 'no'].concat(args),
    )
    .withExposedPorts({ container: 6379, host: port })
    .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
    .withStartupTimeout(startTimeoutMs)
    .start();
  // Else a failure here would leave the container running until Ryuk removes it, or for good
  // when Ryuk is disabled.
  const frozen = await getContainerRuntimeClient()
    .then((client) => client.container.getById(container.getId()))
    .catch(async (error: unknown) => {
      await container.stop({ timeout: 0 }).catch(() => {});
      throw error;
    });
  let paused = false;
  let stopped = false;
  // Docker refuses to stop or restart a paused container.
  const thaw = async () => {
    if (paused) await frozen.unpause();
    paused = false;
  };
  const { restart, stop } = stoppable(
    async () => {
      await thaw();
      await container.restart({ timeout: 0 });
    },
    async () => {
      if (stopped) return;
      stopped = true;
      await thaw();
      await container.stop({ timeout: 0 });
    },
  );
  return {
    url: `redis://${container.getHost()}:${port}`,
    pause: async () => {
      await frozen.pause();
      paused = true;
    },
    resume: thaw,
    restart,
    stop,
  };
}
