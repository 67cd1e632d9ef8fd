/**
 * A PostgreSQL session spoken byte by byte, for tests that need what drivers hide: pipelined
 * extended-protocol batches, FunctionCall, the exact sequence of answers. Works against the
 * gateway (a token as the password) or a target directly (trust or cleartext).
 */
import { connect, type Socket } from 'node:net';
import { SCRAM_MECHANISM, ScramClient } from '../../src/upstream/scram.js';
import * as decode from '../../src/wire/decode.js';
import * as encode from '../../src/wire/encode.js';
import { AUTH, BE, PROTOCOL } from '../../src/wire/protocol.js';

/** One message from the server: its type letter, body and, for errors, the fields. */
export interface Answer {
  type: string;
  message: Buffer;
  fields?: Map<string, string>;
}

function frame(type: string, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const cstr = (s: string) => Buffer.from(`${s}\0`);
const int16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

/** Protocol message builders (frontend). */
export const msg = {
  query: (sql: string) => encode.query(sql),
  parse: (name: string, sql: string) => frame('P', cstr(name), cstr(sql), int16(0)),
  /** Bind with text parameters. */
  bind: (portal: string, statement: string, params: (string | null)[] = []) =>
    frame(
      'B',
      cstr(portal),
      cstr(statement),
      int16(0),
      int16(params.length),
      ...params.map((p) =>
        p === null ? int32(-1) : Buffer.concat([int32(Buffer.byteLength(p)), Buffer.from(p)]),
      ),
      int16(0),
    ),
  describePortal: (portal: string) => frame('D', Buffer.from('P'), cstr(portal)),
  execute: (portal: string, maxRows = 0) => encode.execute(portal, maxRows),
  sync: () => encode.sync(),
  flush: () => frame('H'),
  closeStatement: (name: string) => frame('C', Buffer.from('S'), cstr(name)),
  copyData: (data: string) => frame('d', Buffer.from(data)),
  copyDone: () => frame('c'),
  /** FunctionCall with text arguments and a text result. */
  functionCall: (oid: number, args: string[]) =>
    frame(
      'F',
      int32(oid),
      int16(0),
      int16(args.length),
      ...args.map((a) => Buffer.concat([int32(Buffer.byteLength(a)), Buffer.from(a)])),
      int16(0),
    ),
  terminate: () => encode.terminate(),
};

export class RawSession {
  private buffered = Buffer.alloc(0);
  private readonly answers: Answer[] = [];
  private wake: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 5) {
        const length = this.buffered.readInt32BE(1);
        if (this.buffered.length < 1 + length) break;
        const message = this.buffered.subarray(0, 1 + length);
        this.buffered = this.buffered.subarray(1 + length);
        const type = String.fromCharCode(message[0]!);
        this.answers.push({
          type,
          message,
          fields:
            message[0] === BE.ERROR || message[0] === BE.NOTICE ? decode.errorFields(message) : undefined,
        });
      }
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => undefined);
  }

  /** Connects and logs in as `user` to `database`, answering a cleartext password request. */
  static async open(opts: {
    host: string;
    port: number;
    user: string;
    database: string;
    password?: string;
  }): Promise<RawSession> {
    const socket = connect({ host: opts.host, port: opts.port });
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const session = new RawSession(socket);
    let scram: ScramClient | undefined;
    socket.write(encode.startupMessage(PROTOCOL.V3_0, { user: opts.user, database: opts.database }));
    for (;;) {
      const answer = await session.next();
      if (answer.type === 'R') {
        const { code, data } = decode.authenticationRequest(answer.message);
        if (code === AUTH.CLEARTEXT) socket.write(encode.passwordMessage(opts.password ?? ''));
        else if (code === AUTH.SASL) {
          scram = new ScramClient(opts.password ?? '');
          socket.write(encode.saslInitialResponse(SCRAM_MECHANISM, scram.clientFirst()));
        } else if (code === AUTH.SASL_CONTINUE) {
          socket.write(encode.saslResponse(await scram!.clientFinal(data.toString('utf8'))));
        } else if (code === AUTH.SASL_FINAL) {
          scram!.verifyServerFinal(data.toString('utf8'));
        } else if (code !== AUTH.OK) throw new Error(`authentication method ${code} is not supported here`);
      } else if (answer.type === 'E') {
        throw Object.assign(new Error(answer.fields?.get('M')), { fields: answer.fields });
      } else if (answer.type === 'Z') {
        return session;
      }
    }
  }

  private async next(timeoutMs = 20_000): Promise<Answer> {
    const deadline = Date.now() + timeoutMs;
    while (this.answers.length === 0) {
      if (this.closed) throw new Error('the server closed the connection');
      if (Date.now() > deadline) throw new Error('no answer in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.wake = () => {
          clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
      });
    }
    return this.answers.shift()!;
  }

  send(...messages: Buffer[]): void {
    this.socket.write(Buffer.concat(messages));
  }

  /** The answers up to and including the `count`-th ReadyForQuery. */
  async untilReady(count = 1, timeoutMs = 20_000): Promise<Answer[]> {
    const got: Answer[] = [];
    let ready = 0;
    while (ready < count) {
      const answer = await this.next(timeoutMs);
      got.push(answer);
      if (answer.type === 'Z') ready++;
    }
    return got;
  }

  /** The answers up to and including a CopyInResponse (the server then waits for CopyData). */
  async untilCopy(timeoutMs = 20_000): Promise<Answer[]> {
    const got: Answer[] = [];
    for (;;) {
      const answer = await this.next(timeoutMs);
      got.push(answer);
      if (answer.type === 'G' || answer.type === 'E') return got;
    }
  }

  /** Every answer until the server closes the connection. */
  async untilClosed(timeoutMs = 20_000): Promise<Answer[]> {
    const got: Answer[] = [];
    for (;;) {
      try {
        got.push(await this.next(timeoutMs));
      } catch (err) {
        if (this.closed) return got;
        throw err;
      }
    }
  }

  close(): void {
    this.socket.end(encode.terminate());
  }
}

/** The answers' type letters, e.g. "12DCEZ": the shape of a server's reply. */
export function shape(answers: Answer[]): string {
  return answers.map((a) => a.type).join('');
}

/**
 * Opens a TCP connection, sends `chunks` as they are, and collects what the server answers:
 * until it closes the connection, `ms` pass, or (with `first`) the first bytes arrive.
 */
export function exchange(
  to: { host: string; port: number },
  chunks: Buffer[],
  opts: { ms?: number; localAddress?: string; first?: boolean } = {},
): Promise<Buffer> {
  return new Promise((resolve) => {
    const socket = connect({ host: to.host, port: to.port, localAddress: opts.localAddress });
    const received: Buffer[] = [];
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(received));
    };
    const timer = setTimeout(finish, opts.ms ?? 3000);
    socket.on('data', (d: Buffer) => {
      received.push(d);
      if (opts.first) finish();
    });
    socket.on('close', finish);
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      for (const chunk of chunks) socket.write(chunk);
    });
  });
}

/** The fields of the last ErrorResponse in a run of server messages, or undefined. */
export function errorIn(answer: Buffer): Map<string, string> | undefined {
  let found: Map<string, string> | undefined;
  let pos = 0;
  while (pos + 5 <= answer.length) {
    const length = answer.readInt32BE(pos + 1);
    if (answer[pos] === BE.ERROR) found = decode.errorFields(answer.subarray(pos, pos + 1 + length));
    pos += 1 + length;
  }
  return found;
}
