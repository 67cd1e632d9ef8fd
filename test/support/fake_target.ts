/**
 * A fake PostgreSQL target that speaks just enough of the protocol to misbehave in one chosen
 * way: stay silent, stall in TLS or login, ask for a password in cleartext or md5, stall a query,
 * complete SCRAM with a signature of its own making (an impersonator), or serve TLS with a
 * certificate of the test's choosing. It records what it received, so a test can prove a
 * password never reached it.
 */
import { createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

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
  | 'starting-up'
  /** SCRAM-SHA-256 done right for `password`: a server that knows the verifier. */
  | 'scram'
  /** SCRAM-SHA-256 ended with a server signature it made up (it does not know the verifier). */
  | 'scram-wrong-signature'
  /** SCRAM-SHA-256 started, then AuthenticationOk without the server's final message. */
  | 'scram-skip-final';

export interface FakeOptions {
  /** Answer SSLRequest with 'S' and serve TLS with this key and certificate (PEM). */
  tls?: { key: string; cert: string };
  /** The password the 'scram' behaviour knows. */
  password?: string;
}

export interface FakeTarget {
  port: number;
  /** Every PasswordMessage body received (the password, or its md5 form). */
  passwords: string[];
  /** Connections accepted. */
  accepted: number;
  /** Query texts received after login. */
  queries: string[];
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

const hmac = (key: Buffer, text: string) => createHmac('sha256', key).update(text).digest();

/** The server side of SCRAM-SHA-256 (RFC 5802), written apart from pgward's client. */
class ScramServer {
  private clientFirstBare = '';
  private serverFirst = '';
  private readonly salt = randomBytes(16);

  constructor(
    private readonly behaviour: FakeBehaviour,
    private readonly password: string,
  ) {}

  /** SASLInitialResponse (mechanism, length, client-first-message) → server-first-message. */
  first(body: Buffer): string {
    const mechanismEnd = body.indexOf(0);
    const clientFirst = body.subarray(mechanismEnd + 5).toString('utf8');
    this.clientFirstBare = clientFirst.replace(/^n,,/, '');
    const clientNonce = /r=([^,]+)/.exec(this.clientFirstBare)?.[1] ?? '';
    this.serverFirst = `r=${clientNonce}${randomBytes(12).toString('base64')},s=${this.salt.toString('base64')},i=4096`;
    return this.serverFirst;
  }

  /** SASLResponse (client-final-message) → server-final-message. */
  final(body: Buffer): string {
    if (this.behaviour === 'scram-wrong-signature') return `v=${randomBytes(32).toString('base64')}`;
    const withoutProof = body.toString('utf8').replace(/,p=[^,]*$/, '');
    const salted = pbkdf2Sync(this.password.normalize('NFKC'), this.salt, 4096, 32, 'sha256');
    const serverKey = hmac(salted, 'Server Key');
    const authMessage = `${this.clientFirstBare},${this.serverFirst},${withoutProof}`;
    return `v=${hmac(serverKey, authMessage).toString('base64')}`;
  }
}

export async function startFakeTarget(behaviour: FakeBehaviour, opts: FakeOptions = {}): Promise<FakeTarget> {
  const sockets = new Set<Socket>();
  const fake: FakeTarget = { port: 0, passwords: [], accepted: 0, queries: [], close: async () => undefined };
  /** Serves one client on `stream` (the TCP socket, or TLS over it after 'S'). */
  const serve = (stream: Socket, startedUpAlready: boolean) => {
    let buffered = Buffer.alloc(0);
    let startedUp = startedUpAlready;
    let scram: ScramServer | undefined;
    let scramAnswered = false;
    const write = (b: Buffer) => stream.write(b);
    stream.on('data', (chunk: Buffer) => {
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
              stream.write('S');
              stream.removeAllListeners('data');
              return;
            }
            if (opts.tls) {
              stream.write('S');
              stream.removeAllListeners('data');
              const tls = new TLSSocket(stream, { isServer: true, key: opts.tls.key, cert: opts.tls.cert });
              tls.on('error', () => undefined);
              serve(tls, false);
              return;
            }
            stream.write('N');
            continue;
          }
          startedUp = true;
          if (behaviour === 'stall-after-startup') return;
          if (behaviour === 'starting-up') {
            stream.end(errorResponse('57P03', 'the database system is starting up'));
            return;
          }
          if (behaviour === 'cleartext') write(authRequest(3));
          else if (behaviour === 'md5') write(authRequest(5, Buffer.from([1, 2, 3, 4])));
          else if (behaviour.startsWith('scram')) {
            scram = new ScramServer(behaviour, opts.password ?? '');
            write(authRequest(10, Buffer.from('SCRAM-SHA-256\0\0')));
          } else write(Buffer.concat([authRequest(0), backendKey(), readyForQuery()]));
          continue;
        }
        if (buffered.length < 5) return;
        const length = buffered.readInt32BE(1);
        if (buffered.length < 1 + length) return;
        const type = String.fromCharCode(buffered[0]!);
        const body = buffered.subarray(5, 1 + length);
        buffered = buffered.subarray(1 + length);
        if (type === 'p' && scram) {
          if (!scramAnswered) {
            scramAnswered = true;
            write(authRequest(11, Buffer.from(scram.first(body))));
          } else if (behaviour === 'scram-skip-final') {
            write(Buffer.concat([authRequest(0), backendKey(), readyForQuery()]));
          } else {
            write(
              Buffer.concat([
                authRequest(12, Buffer.from(scram.final(body))),
                authRequest(0),
                backendKey(),
                readyForQuery(),
              ]),
            );
          }
        } else if (type === 'p') {
          fake.passwords.push(body.subarray(0, body.length - 1).toString('utf8'));
          write(Buffer.concat([authRequest(0), backendKey(), readyForQuery()]));
        } else if (type === 'Q') {
          fake.queries.push(body.subarray(0, body.length - 1).toString('utf8'));
        }
        // Queries go unanswered ('stall-queries'); Terminate needs no answer.
      }
    });
  };
  const server: Server = createServer((accepted) => {
    fake.accepted++;
    sockets.add(accepted);
    accepted.on('close', () => sockets.delete(accepted));
    accepted.on('error', () => undefined);
    if (behaviour === 'silent') return;
    serve(accepted, false);
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
