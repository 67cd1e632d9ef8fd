/**
 * The PostgreSQL endpoint: accepts client connections, caps how many there are (53300 beyond
 * the limit), and runs a ClientSession for each. close() stops accepting, tells every client the
 * gateway is shutting down, and waits for sessions to hand back their upstream connections.
 */

import type { AddressInfo } from 'node:net';
import { createServer, type Server, type Socket } from 'node:net';
import * as encode from '../wire/encode.js';
import { SocketInput } from '../wire/socket_input.js';
import { ClientSession } from './client_session.js';
import type { ProxyContext } from './proxy_context.js';

export class PgListener {
  private readonly server: Server;
  private readonly sessions = new Set<ClientSession>();

  constructor(
    private readonly ctx: ProxyContext,
    private readonly maxConnections: number,
  ) {
    // Paused until a session adopts the socket: it reads into a reused buffer (see SocketInput).
    this.server = createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket));
  }

  private accept(socket: Socket): void {
    if (this.sessions.size >= this.maxConnections) {
      socket.on('error', () => undefined);
      // Read (and drop) what it sends, so that its close is seen; a client that never closes
      // is cut off.
      socket.resume();
      setTimeout(() => socket.destroy(), 2_000).unref();
      socket.end(
        encode.errorResponse({
          severity: 'FATAL',
          code: '53300',
          message: `too many connections to pgward (limit ${this.maxConnections})`,
          hint: 'try again later, or ask the operator to raise pg.maxConnections',
        }),
      );
      return;
    }
    const input = new SocketInput();
    const session = new ClientSession(input.adopt(socket), input, this.ctx);
    this.sessions.add(session);
    void session.done.then(() => this.sessions.delete(session));
    void session.run();
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  get listening(): boolean {
    return this.server.listening;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.all([...this.sessions].map((s) => s.shutdown()));
    await closed;
  }
}
