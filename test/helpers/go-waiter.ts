/**
 * A Go rueidislock waiting for a lock, in a process of its own (as a Go service is), played
 * command for command as lock.go's WithContext sends them: argv url name. Each try draws a value
 * and takes the keys in order, each by `SET key value NX PXAT deadline` and `GET key` pipelined,
 * until a majority is its own or has failed (after a majority it takes the rest too); each
 * key's step first drains that key's pending invalidation. A try that failed deletes by value
 * (delkey) what it took, then waits for an invalidation of any of the keys that came after its
 * step (or ExtendInterval), and tries again. Tracks with NOLOOP, as docs/rueidislock.md asks.
 * Sends 'ready' once its first try is out, `held:<tries>` when a majority of the keys is its
 * own; on 'release' it deletes them (delkey) and sends 'released'. Exits when the IPC channel
 * closes.
 */
import { randomUUID } from 'node:crypto';
import { createClient } from '@redis/client';

const [url, name] = process.argv.slice(2) as [string, string];
const DELKEY = `if redis.call("GET",KEYS[1]) == ARGV[1] then return redis.call("DEL",KEYS[1]) else return 0 end`;
const GO_VALIDITY_MS = 30_000;
const keys = [0, 1, 2].map((i) => `rueidislock:${i}:${name}`);
const majority = 2;
const pending = new Set<string>();
let wake: (() => void) | undefined;
const client = createClient({ url, RESP: 3, emitInvalidate: true });
client.on('error', () => {});
client.on('invalidate', (key: Buffer | string | null) => {
  for (const changed of key === null ? keys : [key.toString()]) {
    if (keys.includes(changed)) pending.add(changed);
  }
  wake?.();
});
await client.connect();
await client.sendCommand(['CLIENT', 'TRACKING', 'ON', 'NOLOOP']);
process.on('disconnect', () => {
  client.destroy();
  process.exit(0);
});

async function acquire(key: string, value: string): Promise<boolean> {
  const deadline = String(Date.now() + GO_VALIDITY_MS);
  const [set] = await Promise.all([
    client.sendCommand(['SET', key, value, 'NX', 'PXAT', deadline]),
    client.sendCommand(['GET', key]),
  ]);
  return set !== null;
}

let tries = 0;
for (;;) {
  tries++;
  const value = randomUUID();
  const taken: string[] = [];
  let failed = 0;
  let next = 0;
  const trying = (async () => {
    for (; next < keys.length && taken.length < majority && failed < majority; next++) {
      const key = keys[next] as string;
      pending.delete(key);
      if (await acquire(key, value)) taken.push(key);
      else failed++;
    }
  })();
  if (tries === 1) process.send?.('ready');
  await trying;
  for (const key of keys.slice(next)) {
    pending.delete(key);
    if (taken.length >= majority && (await acquire(key, value))) taken.push(key);
  }
  if (taken.length >= majority) {
    process.send?.(`held:${tries}`);
    await new Promise((resolve) => process.once('message', resolve));
    for (const key of taken) await client.sendCommand(['EVAL', DELKEY, '1', key, value]);
    process.send?.('released');
    break;
  }
  for (const key of taken) await client.sendCommand(['EVAL', DELKEY, '1', key, value]);
  if (pending.size === 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, GO_VALIDITY_MS / 2); // ExtendInterval
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }
}
await new Promise(() => {}); // until the test disconnects
