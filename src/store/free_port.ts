import { createServer } from 'node:net';

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : undefined));
    });
  });
}

/** Asks the kernel for a free loopback TCP port (from the ephemeral range). */
export async function freePort(): Promise<number> {
  const port = await tryListen(0);
  if (port === undefined) throw new Error('no free port');
  return port;
}

/** First and last port embedded clusters use: below Linux's ephemeral range (32768-60999). */
const CLUSTER_PORTS = [20000, 32000] as const;

/**
 * A free loopback port for an embedded PostgreSQL. Chosen outside the ephemeral range, so it can
 * never take a port that freePort() just handed to someone else who has not bound it yet.
 */
export async function freeClusterPort(): Promise<number> {
  const [low, high] = CLUSTER_PORTS;
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await tryListen(low + Math.floor(Math.random() * (high - low)));
    if (port !== undefined) return port;
  }
  throw new Error(`no free port between ${low} and ${high}`);
}
