/**
 * A fake PostgreSQL target that speaks just enough of the protocol to misbehave in one chosen
 * way: stay silent, stall in TLS or login, ask for a password in cleartext or md5, stall a query.
 * It records what it received, so a test can prove a password never reached it.
 */
import { createServer, type Server, type Socket } from 'node:net';

export type FakeBehaviour =
  /** Accepts TCP and says nothing. */
  | 'silent'
  /** Answers 'S' to SSLRequest, then says nothing (the TLS handshake never completes). */
  | 'tls-then-stall'
  /** Answers 'N' to SSLRequest, reads the startup message, then says nothing. */
  | 'stall-after-startup'
  /** Asks for the password in cleartext, records it, then lets the client in. */
  | 'cleartext'
  /** Asks for the password as md5, records it, then lets the client in. */
  | 'md5'
  /** Lets the client in without a password, then never answers a query. */
  | 'stall-queries'
  /** Answers the startup with FATAL 57P03 (the database system is starting up). */
  | 'starting-up';

export interface FakeTarget {
  port: number;
  /** Every PasswordMessage body received (the password, or its md5 form). */
  passwords: string[];
  /** Connections accepted. */
  accepted: number;
  close(): Promise<void>;
}

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

const authRequest = (code: number, extra = Buffer.alloc(0)) =>
  message('R', Buffer.concat([int32(code), extra]));
const readyForQuery = () => message('Z', Buffer.from('I'));
const backendKey = () => message('K', Buffer.concat([int32(4242), int32(1)]));

function errorResponse(code: string, text: string): Buffer {
  return message('E', Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${text}\0\0`, 'utf8'));
}

export async function startFakeTarget(behaviour: FakeBehaviour): Promise<FakeTarget> {
  const sockets = new Set<Socket>();
  const fake: FakeTarget = { port: 0, passwords: [], accepted: 0, close: async () => undefined };
  const server: Server = createServer((socket) => {
    fake.accepted++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (behaviour === 'silent') return;
    let buffered = Buffer.alloc(0);
    let startedUp = false;
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (!startedUp) {
          if (buffered.length < 8) return;
          const length = buffered.readInt32BE(0);
          if (buffered.length < length) return;
          const code = buffered.readInt32BE(4);
          buffered = buffered.subarray(length);
          if (code === 80877103 /* SSLRequest */) {
            if (behaviour === 'tls-then-stall') {
              socket.write('S');
              socket.removeAllListeners('data');
              return;
            }
            socket.write('N');
            continue;
          }
          startedUp = true;
          if (behaviour === 'stall-after-startup') return;
          if (behaviour === 'starting-up') {
            socket.end(errorResponse('57P03', 'the database system is starting up'));
            return;
          }
          if (behaviour === 'cleartext') socket.write(authRequest(3));
          else if (behaviour === 'md5') socket.write(authRequest(5, Buffer.from([1, 2, 3, 4])));
          else socket.write(Buffer.concat([authRequest(0), backendKey(), readyForQuery()]));
          continue;
        }
        if (buffered.length < 5) return;
        const length = buffered.readInt32BE(1);
        if (buffered.length < 1 + length) return;
        const type = String.fromCharCode(buffered[0]!);
        const body = buffered.subarray(5, 1 + length);
        buffered = buffered.subarray(1 + length);
        if (type === 'p') {
          fake.passwords.push(body.subarray(0, body.length - 1).toString('utf8'));
          socket.write(Buffer.concat([authRequest(0), backendKey(), readyForQuery()]));
        }
        // Queries go unanswered ('stall-queries'); Terminate needs no answer.
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.port = (server.address() as { port: number }).port;
  fake.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return fake;
}
