import { createLocker } from './src/index.js';
import { startRedisServer } from './test/helpers/redis-server.js';
import { connect } from './test/helpers/redis.js';
const server = await startRedisServer();
const mon = await connect(server.url);
const queue = process.argv[2] !== 'race';
const a = await createLocker({ url: server.url, queue });
const b = await createLocker({ url: server.url, queue });
const lats: number[] = [];
let holder = await a.withContext('d');
let cur = a, other = b;
for (let i = 0; i < 300; i++) {
  const waiting = other.withContext('d');
  await new Promise((r) => setTimeout(r, 3));
  if (i === 50) await mon.sendCommand(['CONFIG', 'RESETSTAT']);
  const t0 = performance.now();
  await holder.release();
  holder = await waiting;
  lats.push(performance.now() - t0);
  [cur, other] = [other, cur];
}
await holder.release();
const s = lats.slice(50).sort((x, y) => x - y);
console.log(queue ? 'queue' : 'race', 'p50', s[Math.floor(s.length / 2)]?.toFixed(3), 'p90', s[Math.floor(s.length * 0.9)]?.toFixed(3));
console.log(String(await mon.sendCommand(['INFO', 'commandstats'])).split('\n').filter((l) => /evalsha|mget|pttl|cmdstat_get/.test(l)).join('\n'));
await a.close(); await b.close(); await mon.close(); await server.stop();
