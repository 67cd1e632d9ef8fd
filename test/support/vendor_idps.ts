/**
 * Real OpenID providers issuing a vendor's token shapes: dev IdPs (oidc-provider) under issuer
 * paths on one listener, as Entra ID's tenants share login.microsoftonline.com, all signing with
 * the same keys (one JWKS for every tenant, as Entra ID has).
 */
import { createServer, type Server } from 'node:http';
import { type DevIdp, startDevIdp } from '../../src/dev/dev_idp.js';
import { IdpPageWalker } from '../../src/dev/dev_login.js';
import type { DevUser } from '../../src/dev/dev_users.js';
import { freePort } from '../../src/store/free_port.js';
import { quietLog } from './quiet_log.js';
import { tempDir } from './temp_dir.js';

/** Entra ID tenant ids (tid) the tests issue tokens for. */
export const TENANT_A = '11111111-1111-4111-8111-111111111111';
export const TENANT_B = '22222222-2222-4222-8222-222222222222';
export const TENANT_C = '33333333-3333-4333-8333-333333333333';

export interface VendorIdps {
  /** `http://127.0.0.1:PORT`, the authority every issuer is under. */
  origin: string;
  /** Adds an IdP whose issuer is origin + `path`; with `clientSecret`, its client is confidential. */
  add(path: string, users: DevUser[], extraClaims?: string[], clientSecret?: string): Promise<DevIdp>;
  /** An access token and an ID token of `email` at the IdP of `issuer` (device grant, pages walked). */
  tokens(issuer: string, email: string): Promise<{ access_token: string; id_token: string }>;
  close(): Promise<void>;
}

export async function startVendorIdps(): Promise<VendorIdps> {
  const dir = tempDir('vendor-idps');
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const idps: DevIdp[] = [];
  const secrets = new Map<string, string>();
  const server: Server = createServer((req, res) => {
    // The longest issuer path that the request is under.
    const idp = idps
      .filter((i) => {
        const root = new URL(i.issuer).pathname.replace(/\/$/, '');
        return req.url === root || req.url?.startsWith(`${root}/`);
      })
      .sort((a, b) => b.issuer.length - a.issuer.length)[0];
    if (idp?.handle) idp.handle(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    origin,
    async add(path, users, extraClaims = [], clientSecret = undefined) {
      const idp = await startDevIdp({
        dir,
        host: '127.0.0.1',
        port,
        issuerPath: path,
        listen: false,
        // A native client's loopback redirect URI matches any port (RFC 8252 §7.3): the gateway's.
        redirectUris: ['http://127.0.0.1/login/callback'],
        users,
        extraClaims,
        ...(clientSecret ? { clientSecret } : {}),
        log: quietLog,
      });
      idps.push(idp);
      if (clientSecret) secrets.set(idp.issuer, clientSecret);
      return idp;
    },
    async tokens(issuer, email) {
      const metadata = (await (
        await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`)
      ).json()) as { device_authorization_endpoint: string; token_endpoint: string };
      const secret = secrets.get(issuer);
      const client = { client_id: 'pgward', ...(secret ? { client_secret: secret } : {}) };
      const started = (await (
        await fetch(metadata.device_authorization_endpoint, {
          method: 'POST',
          body: new URLSearchParams({ ...client, scope: 'openid email profile groups' }),
        })
      ).json()) as { device_code: string; verification_uri_complete: string };
      await new IdpPageWalker(issuer).walk(
        started.verification_uri_complete,
        { email, password: 'password' },
        () => false,
      );
      const res = await fetch(metadata.token_endpoint, {
        method: 'POST',
        body: new URLSearchParams({
          grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
          device_code: started.device_code,
          ...client,
        }),
      });
      return (await res.json()) as { access_token: string; id_token: string };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
