/**
 * The bare push lock (bare-push-lock.ts) on node-redis, tracklock's own client: one RESP3
 * connection with `emitInvalidate`, which makes node-redis send `CLIENT TRACKING ON` on every
 * connect and emit each invalidation push as an `invalidate` event.
 */
import { createClient } from '@redis/client';
import { singleServer } from '../lock-target.js';
import {
  BARE_VALIDITY_MS,
  type BareCommands,
  BarePushLock,
  releaseWith,
} from './bare-push-lock.js';
import type { LockClient, Variant } from './types.js';

const CONNECT_TIMEOUT_MS = 5000;

export const bareNodeRedis: Variant = {
  id: 'bare-node-redis',
  library: '@redis/client',
  settings: `bare push lock: RESP3 emitInvalidate; MULTI SET NX PX ${BARE_VALIDITY_MS} + GET + PTTL, retry on the invalidation; no extension`,
  signalsLoss: false,
  isTracklock: false,
  async create(target, namespace): Promise<LockClient> {
    const lock = new BarePushLock(namespace);
    const client = createClient({
      url: singleServer(target, 'bare-node-redis'),
      RESP: 3,
      emitInvalidate: true,
      socket: { connectTimeout: CONNECT_TIMEOUT_MS, reconnectStrategy: false },
    });
    client.on('error', () => {}); // a failure shows up as a rejected command
    client.on('invalidate', (key: Buffer | string | null) => {
      lock.invalidated(key === null ? null : key.toString());
    });
    await client.connect();
    const commands: BareCommands = {
      async attempt(key, token) {
        const [set, , pttl] = await client
          .multi()
          .set(key, token, { condition: 'NX', expiration: { type: 'PX', value: BARE_VALIDITY_MS } })
          .get(key)
          .pTTL(key)
          .exec();
        return { acquired: set !== null, pttlMs: Number(pttl) };
      },
      release: (key, token) => releaseWith((args) => client.sendCommand(args), key, token),
      async close() {
        await Promise.race([
          client.close().catch(() => {}),
          new Promise((resolve) => setTimeout(resolve, 1000).unref()),
        ]);
        if (client.isOpen) client.destroy();
      },
    };
    lock.use(commands);
    return lock.client();
  },
};
