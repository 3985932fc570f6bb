/**
 * The bare push lock (bare-push-lock.ts) on ioredis over RESP2, the protocol its pub/sub
 * events serve (it has no event for a RESP3 `invalidate` push): invalidations cannot
 * share the command connection there, so a second connection SUBSCRIBEs to
 * `__redis__:invalidate` and the command connection sends `CLIENT TRACKING ON REDIRECT <its
 * id>`. A reconnect of either would lose the redirection; the bench does not reconnect, and
 * the PTTL fallback would still bound every wait.
 */
import { singleServer } from '../lock-target.js';
import {
  BARE_VALIDITY_MS,
  type BareCommands,
  BarePushLock,
  releaseWith,
} from './bare-push-lock.js';
import { closeIoredis, connectIoredis } from './ioredis.js';
import type { LockClient, Variant } from './types.js';

const INVALIDATE_CHANNEL = '__redis__:invalidate';
const CONNECT_TIMEOUT_MS = 5000;

export const bareIoredis: Variant = {
  id: 'bare-ioredis',
  library: 'ioredis',
  settings: `bare push lock: RESP2, tracking redirected to a subscriber; MULTI SET NX PX ${BARE_VALIDITY_MS} + GET + PTTL, retry on the invalidation; no extension`,
  signalsLoss: false,
  isTracklock: false,
  async create(target, namespace): Promise<LockClient> {
    const url = singleServer(target, 'bare-ioredis');
    const lock = new BarePushLock(namespace);
    // ioredis 6 would speak RESP3, whose pushes it has no event for: RESP2 is what it serves.
    const connect = () => connectIoredis(url, CONNECT_TIMEOUT_MS, 2);
    const [client, subscriber] = await Promise.all([connect(), connect()]);
    const close = async () => {
      await Promise.all([closeIoredis(client), closeIoredis(subscriber)]);
    };
    try {
      const id = Number(await subscriber.client('ID'));
      // The payload is the invalidated keys, or null for a flush: only the Buffer event has it.
      subscriber.on('messageBuffer', (channel: Buffer, keys: Buffer[] | null) => {
        if (channel.toString() !== INVALIDATE_CHANNEL) return;
        if (keys === null || !Array.isArray(keys)) lock.invalidated(null);
        else for (const key of keys) lock.invalidated(key.toString());
      });
      await subscriber.subscribe(INVALIDATE_CHANNEL);
      await client.call('CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id));
    } catch (error) {
      await close();
      throw error;
    }
    const commands: BareCommands = {
      async attempt(key, token) {
        const replies = await client
          .multi()
          .set(key, token, 'PX', BARE_VALIDITY_MS, 'NX')
          .get(key)
          .pttl(key)
          .exec();
        if (!replies) throw new Error('bare-ioredis: transaction aborted');
        const [set, , pttl] = replies.map(([error, value]) => {
          if (error) throw error;
          return value;
        });
        return { acquired: set !== null, pttlMs: Number(pttl) };
      },
      release: (key, token) =>
        releaseWith(([command, ...args]) => client.call(command as string, ...args), key, token),
      close,
    };
    lock.use(commands);
    return lock.client();
  },
};
