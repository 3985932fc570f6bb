import { createClient } from '@redis/client';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLocker, type LockError, type LockerOptions } from '../src/index.js';
import { aclArgs, CLUSTER_RULES, USER, withUser } from './helpers/acl.js';
import { startRedisCluster } from './helpers/redis-cluster.js';
import { type RedisServer, startRedisServer } from './helpers/redis-server.js';
import { makeCertificates, type TlsFiles } from './helpers/tls.js';
import { bound } from './helpers/wait.js';

// rediss:// with an ACL user (the smallest ACL of docs/compatibility.md, not `default`) in
// every topology: servers that listen with TLS only, a certificate made by openssl here.

interface Setup {
  readonly servers: readonly RedisServer[];
  /** The locker's options, trusting `ca`. */
  options(ca: string): LockerOptions;
  stop(): Promise<void>;
}

interface Kind {
  readonly label: string;
  start(files: TlsFiles): Promise<Setup>;
}

function plain(label: string, count: number, place: (urls: string[]) => LockerOptions): Kind {
  return {
    label,
    async start(files) {
      const servers = await Promise.all(
        Array.from({ length: count }, () => startRedisServer({ tls: files, args: aclArgs() })),
      );
      const urls = servers.map((server) => withUser(server.url));
      return {
        servers,
        options: (ca) => ({ ...place(urls), client: { socket: { tls: true, ca } } }),
        stop: async () => {
          await Promise.all(servers.map((server) => server.stop()));
        },
      };
    },
  };
}

const KINDS: readonly Kind[] = [
  plain('one server', 1, ([url]) => ({ url: url as string })),
  plain('3 nodes', 3, (urls) => ({ nodes: urls })),
  plain('2 groups of 3 nodes', 6, (urls) => ({ groups: [urls.slice(0, 3), urls.slice(3)] })),
  {
    label: 'cluster of 3 masters',
    async start(files) {
      const cluster = await startRedisCluster({ tls: files, args: aclArgs(CLUSTER_RULES) });
      return {
        servers: cluster.servers,
        // The credentials in the root nodes' URLs only: tracklock carries them to every node.
        options: (ca) => ({
          cluster: {
            rootNodes: cluster.rootNodes.map(({ url }) => ({ url: withUser(url) })),
            defaults: { socket: { tls: true, ca } },
          },
        }),
        stop: () => cluster.stop(),
      };
    },
  },
];

/** `args` on `server`, over TLS as `default`. */
async function ask(server: RedisServer, ca: string, args: string[]): Promise<unknown> {
  const client = createClient({ url: server.url, socket: { tls: true, ca } });
  client.on('error', () => {});
  await client.connect();
  try {
    return await client.sendCommand(args);
  } finally {
    client.destroy();
  }
}

/** The users of the clients connected to `server` now. */
async function usersOn(server: RedisServer, ca: string): Promise<string[]> {
  const list = String(await ask(server, ca, ['CLIENT', 'LIST']));
  return [...list.matchAll(/ user=(\S+)/g)].map((match) => match[1] as string);
}

/** `error` and its causes' messages, to look for a leaked password. */
function messages(error: unknown): string {
  let all = '';
  for (let e = error; e instanceof Error; e = e.cause) all += `${e.message}\n`;
  return all;
}

for (const kind of KINDS) {
  const test = suite<{ files: TlsFiles; setup: Setup }>(`TLS and an ACL user: ${kind.label}`);

  test.before(async (ctx) => {
    ctx.files = await makeCertificates();
    ctx.setup = await kind.start(ctx.files);
  });

  test.after(async (ctx) => {
    await ctx.setup?.stop();
    await ctx.files?.remove();
  });

  test('a lock is taken, handed to a waiting locker and released, over TLS as the ACL user', async ({
    files,
    setup,
  }) => {
    const [first, second] = await Promise.all([
      createLocker(setup.options(files.ca)),
      createLocker(setup.options(files.ca)),
    ]);
    try {
      // Every server the lockers use serves them as the user: no connection fell back to
      // `default` (which has no key here anyway).
      for (const server of setup.servers) {
        const users = await usersOn(server, files.ca);
        assert.ok(users.includes(USER.name), `no ${USER.name} connection on ${server.port}`);
      }
      const held = await first.withContext('over-tls', bound(10_000));
      const busy = await second.tryWithContext('over-tls').catch((e: LockError) => e.code);
      assert.is(busy, 'ERR_NOT_LOCKED');
      const waiting = second.withContext('over-tls', bound(10_000));
      assert.is(await held.release(), true);
      const next = await waiting;
      assert.ok((next.token as bigint) > (held.token as bigint), 'fencing token did not grow');
      assert.is(await next.release(), true);
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
    // The ACL (with CLUSTER SLOTS in a cluster) refused nothing.
    for (const server of setup.servers) {
      assert.equal(await ask(server, files.ca, ['ACL', 'LOG']), [], `refused on ${server.port}`);
    }
  });

  test('a certificate the client does not trust is a clear ERR_CONNECT at once, without the password', async ({
    files,
    setup,
  }) => {
    const started = performance.now();
    const error = await createLocker({
      ...setup.options(files.otherCa),
      connectTimeoutMs: 10_000,
    }).then(
      (locker) => locker.close().then(() => assert.unreachable('connected')),
      (e: unknown) => e,
    );
    const tookMs = performance.now() - started;
    assert.is((error as LockError).code, 'ERR_CONNECT');
    assert.match((error as Error).message, /certificate/);
    assert.ok(tookMs < 5_000, `took ${Math.round(tookMs)} ms: waited for the timeout`);
    assert.not.match(messages(error), USER.password);
  });

  test.run();
}

const wrongPassword = suite<{ files: TlsFiles; server: RedisServer }>(
  'TLS and an ACL user: refused',
);

wrongPassword.before(async (ctx) => {
  ctx.files = await makeCertificates();
  ctx.server = await startRedisServer({ tls: ctx.files, args: aclArgs() });
});

wrongPassword.after(async (ctx) => {
  await ctx.server?.stop();
  await ctx.files?.remove();
});

wrongPassword(
  'a wrong password is ERR_CONNECT, and no message repeats it',
  async ({ files, server }) => {
    const url = new URL(withUser(server.url));
    url.password = 'not-the-password-9f3';
    const error = await createLocker({
      url: url.href,
      client: { socket: { tls: true, ca: files.ca } },
      connectTimeoutMs: 5_000,
    }).then(
      (locker) => locker.close().then(() => assert.unreachable('connected')),
      (e: unknown) => e,
    );
    assert.is((error as LockError).code, 'ERR_CONNECT');
    assert.match((error as Error).message, /credentials/);
    assert.not.match(messages(error), 'not-the-password-9f3');
  },
);

wrongPassword.run();
