/**
 * The PostgreSQL endpoint: accepts client connections and runs a ClientSession for each.
 * Connections still starting up or authenticating are capped apart from signed-in sessions, in
 * total and per client address, and each has a short deadline: half-open sockets cannot lock
 * people out (beyond the caps a connection is answered 53300 at once, before any TLS work).
 * Signed-in sessions are capped by pg.maxConnections: beyond it the client gets 53300 after
 * its TLS handshake, as PostgreSQL's "too many clients" comes after SSL negotiation. close() stops accepting, tells every client the gateway is shutting
 * down, and waits for sessions to hand back their upstream connections.
 */

import type { AddressInfo } from 'node:net';
import { createServer, type Server, type Socket } from 'node:net';
import { PgwardError } from '../errors.js';
import { SocketInput } from '../wire/socket_input.js';
import { ClientSession } from './client_session.js';
import { errorResponseFor } from './error_response.js';
import { InProcessEnd } from './in_process.js';
import type { ProxyContext } from './proxy_context.js';

export interface ListenerLimits {
  /** Signed-in sessions at once. */
  maxConnections: number;
  /** Connections not signed in yet, in total and per client address. */
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
}

export class PgListener {
  private readonly server: Server;
  private readonly sessions = new Set<ClientSession>();
  /** Connections not signed in yet, per client address. */
  private readonly starting = new Map<string, number>();
  private startingTotal = 0;
  private signedIn = 0;

  constructor(
    private readonly ctx: ProxyContext,
    private readonly limits: ListenerLimits,
  ) {
    // Paused until a session adopts the socket: it reads into a reused buffer (see SocketInput).
    this.server = createServer({ noDelay: true, pauseOnConnect: true }, (socket) => this.accept(socket));
  }

  /** Answers a connection pgward will not serve with a FATAL error, and closes it. */
  private turnAway(socket: Socket, err: PgwardError): void {
    socket.on('error', () => undefined);
    // Read (and drop) what it sends, so that its close is seen; a client that never closes
    // is cut off.
    socket.resume();
    setTimeout(() => socket.destroy(), 2_000).unref();
    socket.end(errorResponseFor(err));
  }

  /**
   * A connection from inside the gateway (the web console): served as a socket is, with the
   * same caps, handshake, connect path and relay; `clientAddress` is who it is for (the
   * browser's address), for the caps and the audit.
   */
  connectInProcess(clientAddress: string): InProcessEnd {
    const { client, server } = InProcessEnd.pair(clientAddress);
    this.accept(server as unknown as Socket, true);
    return client;
  }

  private accept(socket: Socket, inProcess = false): void {
    const address = socket.remoteAddress ?? 'unknown';
    const fromAddress = this.starting.get(address) ?? 0;
    if (
      this.startingTotal >= this.limits.maxUnauthenticated ||
      fromAddress >= this.limits.maxUnauthenticatedPerAddress
    ) {
      const perAddress = fromAddress >= this.limits.maxUnauthenticatedPerAddress;
      this.turnAway(
        socket,
        new PgwardError(
          'TOO_MANY_CONNECTIONS',
          perAddress
            ? `too many connections from ${address} still signing in to pgward (limit ${this.limits.maxUnauthenticatedPerAddress})`
            : `too many connections still signing in to pgward (limit ${this.limits.maxUnauthenticated})`,
          {
            hint: 'try again shortly; connections that do not finish signing in are closed after pg.authTimeoutSeconds',
          },
        ),
      );
      return;
    }
    this.starting.set(address, fromAddress + 1);
    this.startingTotal++;
    let startingOver = false;
    const leaveStarting = () => {
      if (startingOver) return;
      startingOver = true;
      this.startingTotal--;
      const n = (this.starting.get(address) ?? 1) - 1;
      if (n <= 0) this.starting.delete(address);
      else this.starting.set(address, n);
    };
    const input = new SocketInput();
    const session = new ClientSession(input.adopt(socket), input, this.ctx, { inProcess });
    let counted = false;
    session.onAuthenticated = () => {
      leaveStarting();
      if (this.signedIn >= this.limits.maxConnections) {
        return new PgwardError(
          'TOO_MANY_CONNECTIONS',
          `too many connections to pgward (limit ${this.limits.maxConnections})`,
          {
            hint: 'try again later, or ask the operator to raise pg.maxConnections',
          },
        );
      }
      this.signedIn++;
      counted = true;
      return undefined;
    };
    this.sessions.add(session);
    void session.done.then(() => {
      leaveStarting();
      if (counted) this.signedIn--;
      this.sessions.delete(session);
    });
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

  /**
   * Ends, with 57P01 and `reason`, every signed-in session for which `ended` says so: access
   * rechecks after a revocation, deactivation, sign-out or access change.
   */
  async endSessions(ended: (session: ClientSession) => Promise<string | undefined>): Promise<number> {
    let count = 0;
    await Promise.all(
      [...this.sessions].map(async (session) => {
        if (!session.person) return;
        const reason = await ended(session).catch(() => undefined);
        if (reason === undefined) return;
        count++;
        await session.terminate(reason);
      }),
    );
    return count;
  }

  /** The signed-in sessions here now (the console's live sessions). */
  liveSessions(): { sessionId: string; userId: string | undefined }[] {
    return [...this.sessions]
      .filter((s) => s.person !== undefined)
      .map((s) => ({ sessionId: s.id, userId: s.person?.person.userId }));
  }

  /** Ends one session with 57P01 and `reason` (an administrator's "end session"). */
  async endSession(sessionId: string, reason: string): Promise<boolean> {
    return (await this.endSessions(async (s) => (s.id === sessionId ? reason : undefined))) > 0;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await Promise.all([...this.sessions].map((s) => s.shutdown()));
    await closed;
  }
}
