import type { RedisClientOptions, RedisClusterOptions } from '@redis/client';

/**
 * The options node-redis connects to each cluster node with. It uses `defaults` alone for the
 * nodes it discovers: the user and password in a root node's URL, and its `rediss:` scheme,
 * stay with that root node, so a user who put them there (as for one server) reached the other
 * masters as `default`, or in plain text. Lay the first root node's under `defaults`, where
 * `defaults` does not say otherwise.
 */
export function nodeDefaults(cluster: RedisClusterOptions): RedisClientOptions {
  const defaults: RedisClientOptions = { ...cluster.defaults };
  const url = parseUrl(cluster.rootNodes[0]?.url);
  if (!url) return defaults;
  const own = defaults.username !== undefined || defaults.password !== undefined;
  if (!own && defaults.credentialsProvider === undefined) {
    if (url.username) defaults.username = decodeURIComponent(url.username);
    if (url.password) defaults.password = decodeURIComponent(url.password);
  }
  const socket = defaults.socket as { tls?: unknown } | undefined;
  if (url.protocol === 'rediss:' && socket?.tls === undefined) {
    defaults.socket = { ...defaults.socket, tls: true } as NonNullable<
      RedisClientOptions['socket']
    >;
  }
  return defaults;
}

/** node-redis refuses a URL it cannot parse when it connects; nothing to carry from it. */
function parseUrl(url: string | undefined): URL | undefined {
  if (url === undefined) return undefined;
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}
