/**
 * A TCP relay on loopback that records every byte a client sends through it, to show what a
 * network observer between pgward and a server would see.
 */
import { connect, createServer, type Socket } from 'node:net';
import { freePort } from '../../src/store/free_port.js';

export interface RecordingRelay {
  port: number;
  /** Everything clients sent, all connections in order of arrival. */
  sent(): Buffer;
  close(): Promise<void>;
}

const MAX_RECORDED = 1 << 20;

/** Relays 127.0.0.1:port to 127.0.0.1:targetPort. */
export async function startRecordingRelay(targetPort: number): Promise<RecordingRelay> {
  const chunks: Buffer[] = [];
  let recorded = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      // A runaway client is cut off rather than filling memory.
      if (recorded + chunk.length > MAX_RECORDED) {
        client.destroy();
        upstream.destroy();
        return;
      }
      recorded += chunk.length;
      chunks.push(chunk);
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    sent: () => Buffer.concat(chunks),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
