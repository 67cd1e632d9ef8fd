import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { SocketInput } from '../src/wire/socket_input.js';

/** A server on loopback that runs `onSocket` for each connection. */
async function serve(onSocket: (socket: Socket) => void, pauseOnConnect = false): Promise<Server> {
  const server = createServer({ pauseOnConnect }, onSocket);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

const portOf = (server: Server) => (server.address() as AddressInfo).port;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/**
 * Reads everything a socket sends until it ends, like a slow client: nothing for a while (the
 * socket buffers between fill up), then with a pause after each read.
 */
async function slowReadAll(socket: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.pause();
  setTimeout(() => socket.resume(), 300);
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    socket.pause();
    setTimeout(() => socket.resume(), 1);
  });
  await once(socket, 'end');
  return Buffer.concat(chunks);
}

/**
 * A server that sends each piece to whoever connects, one per event-loop turn so that each
 * arrives as a read of its own (waiting for 'drain' when the socket is full), then ends.
 */
function trickle(pieces: Iterable<Buffer>): Promise<Server> {
  return serve(async (socket) => {
    for (const piece of pieces) {
      if (!socket.write(piece)) await once(socket, 'drain');
      await new Promise((resolve) => setImmediate(resolve));
    }
    socket.end();
  });
}

/** Relays what `source` sends to `downstream` through a SocketInput on a reused read buffer. */
function relayFrom(source: Server, downstream: Socket): void {
  const input = new SocketInput();
  const upstream = connect({ port: portOf(source), host: '127.0.0.1', onread: input.readOptions() });
  input.pipeTo(upstream, downstream);
  upstream.on('end', () => downstream.end());
}

describe('socket input (reads into a reused buffer)', () => {
  const servers: Server[] = [];
  after(() => {
    for (const s of servers) s.close();
  });

  it('relays every byte intact to a slow reader: a queued write keeps its buffer', async () => {
    // 12 MB of random bytes, trickled in pieces of 1,000 so that each read is small. Once the
    // socket buffers towards the slow reader are full, writes to it queue under the high-water
    // mark while reads go on. Were the read buffer reused under a queued write, the digest
    // would differ.
    const payload = randomBytes(12 * 1024 * 1024);
    const source = await trickle(
      Array.from({ length: Math.ceil(payload.length / 1000) }, (_, i) =>
        payload.subarray(i * 1000, (i + 1) * 1000),
      ),
    );
    servers.push(source);
    const relay = await serve((downstream) => relayFrom(source, downstream));
    servers.push(relay);
    const client = connect({ port: portOf(relay), host: '127.0.0.1' });
    const data = await slowReadAll(client);
    assert.equal(data.length, payload.length);
    assert.equal(sha256(data), sha256(payload));
  });

  it('never lets a write queued behind another hold a whole read buffer (a trickle cannot pin memory)', async () => {
    // Tiny pieces, read one by one, towards a socket whose writes wait (it is corked for a
    // while, which makes every write wait as a full socket would): each piece must be written
    // as a copy of its own size, not as a view that keeps a whole read buffer alive.
    const pieces = 2_000;
    const source = await trickle(Array.from({ length: pieces }, (_, i) => Buffer.alloc(100, i % 256)));
    servers.push(source);
    let queuedWrites = 0;
    let pinned = 0;
    const relay = await serve((downstream) => {
      const write = downstream.write.bind(downstream) as (chunk: Buffer) => boolean;
      downstream.write = ((chunk: Buffer) => {
        if (downstream.writableLength > 0) {
          queuedWrites++;
          // A small view of a large buffer keeps all of that buffer alive.
          if (chunk.buffer.byteLength > 4 * chunk.length) pinned++;
        }
        return write(chunk);
      }) as typeof downstream.write;
      downstream.cork();
      setTimeout(() => downstream.uncork(), 200);
      relayFrom(source, downstream);
    });
    servers.push(relay);
    const client = connect({ port: portOf(relay), host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    client.on('data', (chunk: Buffer) => chunks.push(chunk));
    await once(client, 'end');
    const data = Buffer.concat(chunks);
    assert.equal(data.length, pieces * 100);
    for (let i = 0; i < pieces; i++) assert.equal(data[i * 100], i % 256, `piece ${i}`);
    assert.ok(queuedWrites > 10, 'the test must make writes wait');
    assert.equal(pinned, 0);
  });

  it('reads a small exchange into a small buffer, a burst into large ones, and goes back to small', async () => {
    // A request-response exchange: the server answers each request byte, "h" with a greeting,
    // "b" with a 2 MB burst, "p" with 100 bytes; the client asks for the next answer once it has
    // the whole of the last, so every small answer arrives as a read of its own.
    const burst = randomBytes(2 * 1024 * 1024);
    const answers: Record<string, Buffer> = { h: Buffer.from('hello'), b: burst, p: Buffer.alloc(100, 7) };
    const server = await serve((socket) => {
      socket.on('data', (requests: Buffer) => {
        for (const r of requests.toString()) socket.write(answers[r]!);
      });
    });
    servers.push(server);
    const plan = ['h', 'b', ...Array.from({ length: 10 }, () => 'p')];
    const expected = Buffer.concat(plan.map((r) => answers[r]!));
    // What each read landed in: the size of the buffer behind the chunk, and the chunk's length.
    const reads: { size: number; length: number }[] = [];
    const received: Buffer[] = [];
    let have = 0;
    let asked = 0;
    let due = 0;
    const input = new SocketInput();
    const socket = connect({ port: portOf(server), host: '127.0.0.1', onread: input.readOptions() });
    const ask = () => {
      due += answers[plan[asked]!]!.length;
      socket.write(plan[asked++]!);
    };
    const done = new Promise<void>((resolve) => {
      input.onChunk = (chunk) => {
        reads.push({ size: chunk.buffer.byteLength, length: chunk.length });
        received.push(Buffer.from(chunk));
        have += chunk.length;
        if (have < due) return;
        if (asked < plan.length) ask();
        else resolve();
      };
    });
    ask();
    await done;
    socket.destroy();
    assert.equal(sha256(Buffer.concat(received)), sha256(expected));
    assert.deepEqual(reads[0], { size: 8 * 1024, length: 5 });
    assert.ok(
      reads.some((r) => r.size === 64 * 1024 && r.length > 8 * 1024),
      'the burst is read in 64 KiB buffers',
    );
    // The answers after the burst: the first may still land in a large buffer, the rest in
    // small ones again.
    assert.deepEqual(
      reads.slice(-9),
      Array.from({ length: 9 }, () => ({ size: 8 * 1024, length: 100 })),
    );
  });

  it('adopts an accepted socket: bytes arrive through the handler, writes and close still work', async () => {
    const seen: Buffer[] = [];
    let closed!: () => void;
    const gone = new Promise<void>((resolve) => {
      closed = resolve;
    });
    const server = await serve((accepted) => {
      const input = new SocketInput();
      const socket = input.adopt(accepted);
      input.onChunk = (chunk) => {
        seen.push(Buffer.from(chunk));
        if (Buffer.concat(seen).toString().endsWith('ping')) socket.write('pong');
      };
      socket.on('close', () => closed());
    }, true);
    servers.push(server);
    const client = connect({ port: portOf(server), host: '127.0.0.1' });
    client.write('ping');
    const [answer] = (await once(client, 'data')) as [Buffer];
    assert.equal(answer.toString(), 'pong');
    assert.equal(Buffer.concat(seen).toString(), 'ping');
    assert.equal(client.remotePort, portOf(server));
    client.end();
    await gone;
  });
});
