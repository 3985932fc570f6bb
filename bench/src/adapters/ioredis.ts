/** The ioredis connection every peer is given, made the way the peers' READMEs make it. */
import { Redis } from 'ioredis';

/**
 * Connect and wait until ready; rejects (and disconnects) after `timeoutMs`. Absent `protocol`,
 * ioredis' default (RESP3 in 6.x).
 */
export async function connectIoredis(
  url: string,
  timeoutMs = 5000,
  protocol?: 2 | 3,
): Promise<Redis> {
  // lazyConnect so a failure to connect is a rejection here, not a retry loop for ever.
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    ...(protocol === undefined ? {} : { protocol }),
  });
  client.on('error', () => {}); // a failure shows up as a rejected command or the timeout
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`ioredis: no connection in ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
  } catch (error) {
    client.disconnect();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return client;
}

/** Close without waiting on a server that may no longer answer. */
export async function closeIoredis(client: Redis): Promise<void> {
  await Promise.race([
    client.quit().catch(() => {}),
    new Promise((resolve) => setTimeout(resolve, 1000).unref()),
  ]);
  client.disconnect();
}
