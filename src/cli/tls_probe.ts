/**
 * TLS as a client sees it, for `pgward doctor`: a handshake with the HTTP listener or, after an
 * SSLRequest, with the PostgreSQL endpoint, and what the certificate showed (trusted or why not,
 * whether it names the host, until when). Nothing is verified here: the verdict is the caller's.
 */
import { isIP, connect as netConnect, type Socket } from 'node:net';
import {
  type ConnectionOptions,
  checkServerIdentity,
  type PeerCertificate,
  connect as tlsConnect,
} from 'node:tls';

const PROBE_TIMEOUT_MS = 5_000;
/** PostgreSQL's SSLRequest: length 8, code 80877103 (protocol docs, "SSL Session Encryption"). */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47]);

export interface TlsFacts {
  cert: PeerCertificate;
  /** Why the chain is not trusted, when it is not. */
  untrusted: string | undefined;
  /** Why the certificate does not name the host, when it does not. */
  wrongName: string | undefined;
}

/** A TLS handshake on `socket` (or a new one to host:port), and what it showed of the certificate. */
export function tlsFacts(
  host: string,
  port: number,
  socket: Socket | undefined,
  ca: string[] | undefined,
): Promise<TlsFacts> {
  return new Promise((resolve, reject) => {
    const opts: ConnectionOptions = {
      ...(socket ? { socket } : { host, port }),
      ...(isIP(host) ? {} : { servername: host }),
      ...(ca ? { ca } : {}),
      rejectUnauthorized: false,
    };
    const tls = tlsConnect(opts, () => {
      const cert = tls.getPeerCertificate();
      const identity = checkServerIdentity(host, cert);
      resolve({
        cert,
        untrusted: tls.authorized ? undefined : String(tls.authorizationError),
        wrongName: identity?.message,
      });
      tls.destroy();
    });
    tls.setTimeout(PROBE_TIMEOUT_MS, () => tls.destroy(new Error('no TLS handshake within 5 s')));
    tls.once('error', reject);
  });
}

/** Asks the PostgreSQL endpoint for TLS (SSLRequest) and answers the socket once it said `S`. */
export function sslRequest(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host, port });
    socket.setTimeout(PROBE_TIMEOUT_MS, () => socket.destroy(new Error('no answer within 5 s')));
    socket.once('error', reject);
    socket.once('connect', () => socket.write(SSL_REQUEST));
    socket.once('data', (answer) => {
      socket.setTimeout(0);
      socket.removeListener('error', reject);
      if (answer[0] === 0x53) resolve(socket);
      else {
        socket.destroy();
        reject(new Error('the endpoint answered SSLRequest without TLS'));
      }
    });
  });
}
