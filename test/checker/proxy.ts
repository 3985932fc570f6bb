/**
 * A TCP proxy on loopback between one client and Redis, which the fault scenarios turn into a
 * bad network: it delays every chunk, stalls one direction (holding what comes, sending it
 * all when the stall ends), or cuts every connection.
 */
import { createServer, type Socket, connect as tcpConnect } from 'node:net';

export type Direction = 'to-server' | 'to-client';

export interface FaultyProxy {
  readonly url: string;
  /** Delay every chunk by `ms` (0: none), in order. */
  delay(ms: number): void;
  stall(direction: Direction, on: boolean): void;
  /** Destroy every open connection (the client reconnects through the proxy). */
  cut(): void;
  close(): Promise<void>;
}

export async function startProxy(upstreamPort: number): Promise<FaultyProxy> {
  let delayMs = 0;
  const stalled = new Set<Direction>();
  const pipes = new Set<{ flush(): void; destroy(): void }>();

  const server = createServer((client) => {
    const upstream = tcpConnect(upstreamPort, '127.0.0.1');
    const toServer = pipe(client, upstream, 'to-server');
    const toClient = pipe(upstream, client, 'to-client');
    const both = {
      flush: () => {
        toServer.flush();
        toClient.flush();
      },
      destroy: () => {
        client.destroy();
        upstream.destroy();
      },
    };
    pipes.add(both);
    const end = () => {
      pipes.delete(both);
      both.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end).on('close', end);
    }
  });

  /** Forward `from` to `to`, through the delay and the stall. */
  function pipe(from: Socket, to: Socket, direction: Direction) {
    const held: Buffer[] = [];
    let chain = Promise.resolve();
    // Each chunk leaves `delayMs` after it came (in order), not after the one before it.
    const send = (chunk: Buffer) => {
      const due = performance.now() + delayMs;
      chain = chain.then(async () => {
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (!to.destroyed) to.write(chunk);
      });
    };
    from.on('data', (chunk: Buffer) => {
      if (stalled.has(direction)) held.push(chunk);
      else send(chunk);
    });
    return {
      flush: () => {
        if (stalled.has(direction)) return;
        for (const chunk of held.splice(0)) send(chunk);
      },
    };
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    url: `redis://127.0.0.1:${address.port}`,
    delay: (ms) => {
      delayMs = ms;
    },
    stall: (direction, on) => {
      if (on) stalled.add(direction);
      else stalled.delete(direction);
      for (const each of pipes) each.flush();
    },
    cut: () => {
      for (const each of pipes) each.destroy();
      pipes.clear();
    },
    close: async () => {
      for (const each of pipes) each.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
