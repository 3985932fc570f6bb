/**
 * Where a variant's locks live, as one string, so the IPC `open` request keeps carrying a single
 * field and the coordinator alone decides the servers:
 *
 *   redis://127.0.0.1:6379                           one server (the main tables)
 *   nodes:redis://127.0.0.1:7001,redis://…:7002,…    independent servers (Redlock-style)
 *   cluster:redis://127.0.0.1:7101,redis://…:7102,…  a Redis Cluster, by its root nodes
 *
 * A plain URL stays a valid target, so every phase that ran on one server runs as before. The
 * URLs in a list must not contain commas (a password with one would be split).
 */

export type LockTarget =
  | { readonly kind: 'server'; readonly url: string }
  | { readonly kind: 'nodes'; readonly urls: readonly string[] }
  | { readonly kind: 'cluster'; readonly rootNodes: readonly string[] };

const NODES = 'nodes:';
const CLUSTER = 'cluster:';

export function nodesTarget(urls: readonly string[]): string {
  return `${NODES}${checkedList(urls, NODES).join(',')}`;
}

export function clusterTarget(rootNodes: readonly string[]): string {
  return `${CLUSTER}${checkedList(rootNodes, CLUSTER).join(',')}`;
}

export function parseLockTarget(target: string): LockTarget {
  if (target.startsWith(NODES)) {
    return { kind: 'nodes', urls: checkedList(split(target, NODES), NODES) };
  }
  if (target.startsWith(CLUSTER)) {
    return { kind: 'cluster', rootNodes: checkedList(split(target, CLUSTER), CLUSTER) };
  }
  // As REDIS_URL gives it: whatever the clients accept.
  return { kind: 'server', url: target };
}

/** The URL of a one-server target; what a library that takes a single server is given. */
export function singleServer(target: string, library: string): string {
  const parsed = parseLockTarget(target);
  if (parsed.kind !== 'server') {
    throw new TypeError(`${library} runs on one server here, not on ${parsed.kind}: ${target}`);
  }
  return parsed.url;
}

function split(target: string, prefix: string): string[] {
  return target.slice(prefix.length).split(',');
}

function checkedList(urls: readonly string[], prefix: string): readonly string[] {
  if (urls.length === 0) throw new RangeError(`${prefix} needs at least one URL`);
  return urls.map((url) => checkedUrl(url, prefix));
}

/** A comma inside a URL would split it in two: refuse it rather than mis-parse it later. */
function checkedUrl(url: string, what: string): string {
  if (!/^rediss?:\/\/[^,\s]+$/.test(url)) {
    throw new RangeError(`${what}: expected a redis:// or rediss:// URL, got "${url}"`);
  }
  return url;
}
