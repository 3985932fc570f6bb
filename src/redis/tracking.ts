import { BasicPooledClientSideCache } from '@redis/client';

type Invalidated = (key: string | null) => void;
type CacheArgs = Parameters<BasicPooledClientSideCache['handleCache']>;

/**
 * The client options that choose how a connection hears of changed keys: RESP3 with `router`
 * hearing its invalidation pushes, or, without one, RESP2 (the locker polls: the server may not
 * know HELLO). Typed as RESP3 either way: tracklock reads raw replies (sendCommand), which do
 * not differ.
 */
export function trackingOptions(router: InvalidationRouter | undefined): { RESP: 3 } {
  return (router ? { RESP: 3, clientSideCache: router } : { RESP: 2 }) as unknown as { RESP: 3 };
}

/**
 * node-redis' client-side-cache hook, used as a router rather than a cache: it chooses the
 * tracking mode node-redis sends on every (re)connect and hands every invalidation push to
 * the locker. It never serves a reply from memory: an ownership check must read the server.
 * (node-redis does not export the abstract provider, hence the subclass; the pooled kind, so
 * that one router serves every node connection of a cluster too.)
 */
export class InvalidationRouter extends BasicPooledClientSideCache {
  readonly #noLoop: boolean;
  readonly #invalidated: Invalidated;

  constructor(noLoop: boolean, invalidated: Invalidated) {
    super({ recordStats: false });
    this.#noLoop = noLoop;
    this.#invalidated = invalidated;
  }

  /**
   * OPTOUT tracks every key this connection reads; NOLOOP keeps the locker's own writes from
   * echoing back (Go's rueidislock, without it, answers its own extension with another one).
   */
  override trackingOn(): string[] {
    return this.#noLoop
      ? ['CLIENT', 'TRACKING', 'ON', 'OPTOUT', 'NOLOOP']
      : ['CLIENT', 'TRACKING', 'ON', 'OPTOUT'];
  }

  /** `null` is a flush, or a lost tracking table: everything may have changed. */
  override invalidate(key: Parameters<BasicPooledClientSideCache['invalidate']>[0]): void {
    this.#invalidated(key === null ? null : key.toString());
  }

  override async handleCache(
    _client: CacheArgs[0],
    parser: CacheArgs[1],
    send: CacheArgs[2],
    transformReply?: CacheArgs[3],
    typeMapping?: CacheArgs[4],
  ) {
    const reply = await send();
    return transformReply ? transformReply(reply, parser.preserve, typeMapping) : reply;
  }
}
