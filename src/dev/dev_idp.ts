/**
 * The dev stack's OpenID provider, built on `oidc-provider`: the static dev users, authorization
 * code + PKCE, device authorization grant, refresh tokens, and JWT access tokens (RFC 9068) that
 * carry `email`, `name` and `groups`. Development only: it consents on the person's behalf.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import Provider, { type Configuration, errors } from 'oidc-provider';
import type { Logger } from '../log/logger.js';
import {
  DEV_AUDIENCE,
  DEV_CLIENT_ID,
  DEV_PASSWORD,
  DEV_USERS,
  type DevUser,
  findDevUser,
} from './dev_users.js';
import { loadIdpKeys } from './idp_keys.js';
import {
  codeConfirmPage,
  codeInputPage,
  deviceSuccessPage,
  loginPage,
  logoutPage,
  signedOutPage,
} from './idp_pages.js';

/** Resource indicator (RFC 8707) of the gateway; every access token is issued for it. */
const GATEWAY_RESOURCE = 'urn:pgward:gateway';
const SCOPES = ['openid', 'offline_access', 'email', 'profile', 'groups'];
const MAX_FORM_BYTES = 8 * 1024;

export interface DevIdp {
  readonly issuer: string;
  /** Serves one request (under the issuer's path); for a listener shared by several IdPs. */
  handle?(req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
}

export interface DevIdpOptions {
  /** Folder for the IdP's persistent keys. */
  dir: string;
  host: string;
  port: number;
  /** Redirect URIs of the gateway's browser login, besides the CLI's loopback one. */
  redirectUris: string[];
  /** The people who can sign in; the static dev users when absent. Read at each sign-in and token. */
  users?: readonly DevUser[];
  /**
   * `jwt`: access tokens are RFC 9068 JWTs for the gateway (the dev default). `opaque`: they are
   * opaque and only the userinfo endpoint can vouch for them (a provider validated by userinfo).
   */
  accessTokens?: 'jwt' | 'opaque';
  /** Claim that carries the groups (e.g. a namespaced `https://app.example/groups`); `groups` by default. */
  groupsClaim?: string;
  /** A path of the issuer (`/TENANT/v2.0`, as Entra ID's issuers have); none by default. */
  issuerPath?: string;
  /** false: do not listen; another listener hands requests to `handle` (several issuers on one port). */
  listen?: boolean;
  /** Names of the users' extra `claims` that ID tokens and userinfo carry too (with the profile scope). */
  extraClaims?: string[];
  /** A confidential client instead of a public one: its secret, sent in the form (client_secret_post). */
  clientSecret?: string;
  /** Storage of sessions, grants and tokens; the library's memory adapter when absent. */
  adapter?: Configuration['adapter'];
  log: Logger;
}

function samePassword(given: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(DEV_PASSWORD).digest();
  return timingSafeEqual(a, b);
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function buildConfiguration(
  opts: DevIdpOptions,
  keys: Awaited<ReturnType<typeof loadIdpKeys>>,
  findUser: (idOrEmail: string) => DevUser | undefined,
): Configuration {
  const groupsClaim = opts.groupsClaim ?? 'groups';
  const base = (opts.issuerPath ?? '').replace(/\/$/, '');
  return {
    ...(opts.adapter ? { adapter: opts.adapter } : {}),
    clients: [
      {
        client_id: DEV_CLIENT_ID,
        application_type: 'native',
        ...(opts.clientSecret
          ? { token_endpoint_auth_method: 'client_secret_post', client_secret: opts.clientSecret }
          : { token_endpoint_auth_method: 'none' }),
        grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback', ...opts.redirectUris],
        post_logout_redirect_uris: opts.redirectUris.map((uri) => new URL('/', uri).toString()),
      },
    ],
    async findAccount(_ctx, id) {
      const user = findUser(id);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        claims: async () => ({
          sub: user.sub,
          email: user.email,
          email_verified: true,
          name: user.name,
          preferred_username: user.email,
          [groupsClaim]: user.groups,
          ...user.claims,
        }),
      };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', ...(opts.extraClaims ?? [])],
      groups: [groupsClaim],
    },
    scopes: SCOPES,
    // ID tokens carry the profile and groups even when an access token is issued alongside.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource(ctx, form, _out, err) {
          ctx.body = codeInputPage(
            form,
            err ? 'That code is not valid or has expired. Try again.' : undefined,
          );
        },
        userCodeConfirmSource(ctx, form, client, _deviceInfo, userCode) {
          ctx.body = codeConfirmPage(form, client.clientName ?? client.clientId, userCode);
        },
        successSource(ctx) {
          ctx.body = deviceSuccessPage();
        },
      },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource(ctx, form) {
          ctx.body = logoutPage(form);
        },
        postLogoutSuccessSource(ctx) {
          ctx.body = signedOutPage();
        },
      },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: opts.accessTokens !== 'opaque',
        defaultResource: () => GATEWAY_RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => {
          if (indicator !== GATEWAY_RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: SCOPES.join(' '),
            audience: DEV_AUDIENCE,
            accessTokenTTL: 3600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    async extraTokenClaims(_ctx, token) {
      if (token.kind !== 'AccessToken' || !token.accountId) return undefined;
      const user = findUser(token.accountId);
      return user
        ? {
            email: user.email,
            email_verified: true,
            name: user.name,
            [groupsClaim]: user.groups,
            ...user.claims,
          }
        : undefined;
    },
    interactions: { url: (_ctx, interaction) => `${base}/interaction/${interaction.uid}` },
    jwks: { keys: [keys.signing as never] },
    cookies: { keys: keys.cookies },
    pkce: { required: () => true },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      DeviceCode: 600,
      IdToken: 3600,
      Interaction: 600,
      Session: 14 * 86400,
      Grant: 14 * 86400,
      RefreshToken: 14 * 86400,
    },
  };
}

/** Starts the dev IdP on host:port; its issuer is `http://host:port`. */
export async function startDevIdp(opts: DevIdpOptions): Promise<DevIdp> {
  const log = opts.log.child({ component: 'dev-idp' });
  // The issuer URL is part of every token, so the port must be known before listening.
  if (opts.port === 0) throw new Error('the dev IdP needs a fixed port');
  const keys = await loadIdpKeys(opts.dir);
  const base = (opts.issuerPath ?? '').replace(/\/$/, '');
  const issuer = `http://${opts.host}:${opts.port}${opts.issuerPath ?? ''}`;
  const findUser = (idOrEmail: string) => findDevUser(idOrEmail, opts.users ?? DEV_USERS);
  const provider = new Provider(issuer, buildConfiguration(opts, keys, findUser));
  provider.on('server_error', (_ctx, err) => log.error({ err }, 'dev IdP error'));
  const oidc = provider.callback();

  /** The login page and the automatic consent of the dev IdP. */
  async function interaction(
    req: IncomingMessage,
    res: ServerResponse,
    uid: string,
    action: string | undefined,
  ) {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) throw new Error('interaction mismatch');
    if (details.prompt.name === 'login') {
      if (req.method === 'POST' && action === 'login') {
        const form = await readForm(req);
        const user = findUser(form.get('email') ?? '');
        if (user && samePassword(form.get('password') ?? '')) {
          log.info({ email: user.email }, 'dev user signed in');
          await provider.interactionFinished(
            req,
            res,
            { login: { accountId: user.sub } },
            { mergeWithLastSubmission: false },
          );
          return;
        }
        res.writeHead(401, { 'content-type': 'text/html; charset=utf-8' });
        res.end(
          loginPage({
            uid,
            base,
            email: form.get('email') ?? '',
            error: 'Unknown email or wrong password.',
          }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginPage({ uid, base, email: String(details.params['login_hint'] ?? ''), error: undefined }));
      return;
    }
    // Consent: the dev IdP's one client is pgward itself, so everything it asks for is granted.
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({
          accountId: details.session!.accountId,
          clientId: String(details.params['client_id']),
        });
    if (!grant) throw new Error('grant not found');
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    // The issuer's path is the IdP's root: oidc-provider routes what follows it.
    if (base !== '') {
      const url = req.url ?? '';
      if (!url.startsWith(`${base}/`) && url !== base) {
        res.writeHead(404).end();
        return;
      }
      // As a mounted app: oidc-provider builds its endpoints' URLs from originalUrl.
      Object.assign(req, { originalUrl: url });
      req.url = url.slice(base.length) || '/';
    }
    const match = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(login))?$/.exec((req.url ?? '').split('?')[0]!);
    if (!match) {
      oidc(req, res);
      return;
    }
    interaction(req, res, match[1]!, match[2]).catch((err: unknown) => {
      log.warn({ err: (err as Error).message }, 'dev IdP interaction failed');
      if (!res.headersSent) {
        res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('This sign-in attempt has expired or is invalid. Start the login again.\n');
      }
    });
  };
  if (opts.listen === false) return { issuer, handle, close: async () => {} };
  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  log.debug({ issuer }, 'dev IdP listening');
  return {
    issuer,
    handle,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
