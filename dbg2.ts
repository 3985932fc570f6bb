import { SCRIPTS } from './src/redis/scripts.js';
import { startRedisServer } from './test/helpers/redis-server.js';
import { connect } from './test/helpers/redis.js';
const server = await startRedisServer();
const c = await connect(server.url);
const args = ['4','k0','f','q','r','v1', String(Date.now()+30000),'PXAT','NX','','1','1','30000','t:','w:','h:','60000'];
try { console.log(await c.sendCommand(['EVAL', SCRIPTS.acquire.source, ...args])); } catch (e) { console.log('ERR', e); }
console.log(await c.keys('*'));
await c.close(); await server.stop();
