import { readFileSync } from 'node:fs';

/**
 * The rules of the smallest ACL, as docs/compatibility.md states them (its `ACL SETUSER
 * tracklock` line), so that the tests run under exactly what the doc says.
 */
export function smallestAcl(password: string): string[] {
  const doc = readFileSync(new URL('../../docs/compatibility.md', import.meta.url), 'utf8');
  const line = /^ACL SETUSER tracklock (.+)$/m.exec(doc)?.[1];
  if (!line) throw new Error('docs/compatibility.md has no "ACL SETUSER tracklock" line');
  return line.split(' ').map((rule) => (rule === '>PASSWORD' ? `>${password}` : rule));
}

/** What a cluster user needs on top: node-redis reads the slot map. */
export const CLUSTER_RULES = ['+cluster|slots'];

/** The user tests connect as, with the smallest ACL. */
export const USER = { name: 'tracklock', password: 'tls-and-acl-secret' } as const;

/**
 * redis-server args that make `USER` with the smallest ACL (and `more` rules), and take every
 * key from `default`, so that a connection that lost the user's credentials on the way cannot
 * take a lock as `default` (the test helpers still connect as it, for their own questions).
 */
export function aclArgs(more: readonly string[] = []): string[] {
  return [
    ...['--user', USER.name, ...smallestAcl(USER.password), ...more],
    ...['--user', 'default', 'on', 'nopass', 'resetkeys', '+@all'],
  ];
}

/** `url` (redis:// or rediss://) with the user's credentials in it. */
export function withUser(url: string): string {
  const parsed = new URL(url);
  parsed.username = USER.name;
  parsed.password = USER.password;
  return parsed.href.replace(/\/$/, '');
}
