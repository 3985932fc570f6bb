import { once } from 'node:events';
import { createServer, type Server } from 'node:net';

/** A port on 127.0.0.1 that was free a moment ago, picked by the kernel. */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port as number;
}

/** `count` distinct free ports on 127.0.0.1, held open together so none is handed out twice. */
export async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(
      servers.map((server) =>
        server.listening ? new Promise((resolve) => server.close(resolve)) : undefined,
      ),
    );
  }
}
