/**
 * Logging in to pgward. For the CLI: the device authorization grant, brokered by the gateway
 * (it holds the client credentials), then pgward's own tokens, refreshed through the IdP and
 * revocable. For browsers: a page of provider buttons, authorization code + PKCE with state and
 * nonce, HttpOnly cookies, and logout (RP-initiated at the IdP when it supports it).
 */
import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ProviderConfig } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { readSamlLogout, samlLogoutResponseUrl, samlLogoutUrl } from '../identity/saml_logout.js';
import { samlAcsPath, samlMetadataPath, samlSloPath } from '../identity/saml_provider.js';
import { isLoopbackHost } from '../loopback.js';
import type { TokenGrant } from '../session/authenticator.js';
import type { IdpTokens } from '../session/idp_client.js';
import { LoginPending } from '../session/idp_client.js';
import { isLoopbackRedirect } from '../session/login_codes.js';
import { escapeHtml, gatewayPage } from './html.js';
import type { ApiContext } from './http_server.js';
import { ACCESS_COOKIE, caller, presentedToken, REFRESH_COOKIE, requestGuards } from './request_auth.js';

const LOGIN_COOKIE = 'pgward_login';
const LOGIN_STATE_MS = 10 * 60_000;
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

const providerName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'expected a provider name');

export const personSchema = z.object({
  userId: z.string(),
  email: z.string(),
  name: z.string().optional(),
  provider: z.string(),
  groups: z.array(z.string()),
  isAdmin: z.boolean(),
});

const grantSchema = z.object({
  access_token: z.string(),
  token_type: z.literal('Bearer'),
  expires_in: z.number(),
  refresh_token: z.string(),
  person: personSchema,
});

/** `pgward login --browser` (RFC 8252): where the CLI listens, and its PKCE challenge and state. */
const cliLogin = z.object({
  redirectUri: z
    .string()
    .max(200)
    .refine(isLoopbackRedirect, 'expected http://127.0.0.1:PORT/... or http://[::1]:PORT/...'),
  codeChallenge: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'expected an S256 code challenge'),
  state: z.string().regex(/^[A-Za-z0-9_-]{16,128}$/, 'expected 16 to 128 base64url characters'),
});

const loginState = z.object({
  provider: providerName,
  state: z.string(),
  nonce: z.string(),
  verifier: z.string(),
  until: z.number(),
  cli: cliLogin.optional(),
  /** SAML: the AuthnRequest this browser's response must answer (InResponseTo). */
  samlRequestId: z.string().optional(),
});

export function authRoutes(ctx: ApiContext): FastifyPluginAsyncZod {
  return async (app) => {
    const guards = requestGuards(ctx.auth);
    const rateLimit = { max: ctx.config.api.loginRateLimit, timeWindow: '1 minute' };
    // Cookies are Secure unless the gateway is reached on loopback (the dev stack).
    const secure = () => !isLoopbackHost(new URL(ctx.publicUrl()).hostname);
    const redirectUri = () => `${ctx.publicUrl()}/login/callback`;
    const samlAcsUrl = (provider: ProviderConfig) => `${ctx.publicUrl()}${samlAcsPath(provider.name)}`;

    function setSessionCookies(reply: FastifyReply, grant: TokenGrant): void {
      reply.setCookie(ACCESS_COOKIE, grant.access_token, {
        httpOnly: true,
        secure: secure(),
        sameSite: 'strict',
        path: '/',
        maxAge: grant.expires_in,
      });
      reply.setCookie(REFRESH_COOKIE, grant.refresh_token, {
        httpOnly: true,
        secure: secure(),
        sameSite: 'strict',
        path: '/api/v1/auth',
        maxAge: ctx.config.tokens.sessionHours * 3600,
      });
    }

    function clearSessionCookies(reply: FastifyReply): void {
      reply.clearCookie(ACCESS_COOKIE, { path: '/' });
      reply.clearCookie(REFRESH_COOKIE, { path: '/api/v1/auth' });
    }

    // ---- CLI: device login, token refresh, logout, revocation ---------------------------------

    app.post(
      '/api/v1/auth/password',
      {
        config: { rateLimit },
        schema: {
          summary: 'Sign in with a directory user name and password (LDAP providers)',
          description:
            'Checked by a bind at the LDAP server; wrong passwords lock the user name for a while (429).',
          tags: ['auth'],
          security: [],
          body: z.object({
            provider: providerName.optional(),
            username: z.string().min(1).max(256),
            password: z.string().min(1).max(1024),
          }),
          response: { 200: grantSchema },
        },
      },
      async (req) => {
        const provider = ctx.auth.provider(req.body.provider);
        const login = await ctx.idp.passwordSignIn(provider, req.body.username, req.body.password);
        return ctx.auth.login(provider, login, 'cli');
      },
    );

    app.post(
      '/api/v1/auth/device',
      {
        config: { rateLimit },
        schema: {
          summary: 'Start a device login at an identity provider',
          tags: ['auth'],
          security: [],
          body: z.object({ provider: providerName.optional() }).default({}),
          response: {
            200: z.object({
              provider: z.string(),
              device_code: z.string(),
              user_code: z.string(),
              verification_uri: z.string(),
              verification_uri_complete: z.string().optional(),
              expires_in: z.number(),
              interval: z.number(),
            }),
          },
        },
      },
      async (req) => {
        const provider = ctx.auth.provider(req.body.provider);
        return { provider: provider.name, ...(await ctx.idp.startDevice(provider)) };
      },
    );

    app.post(
      '/api/v1/auth/token',
      {
        config: { rateLimit },
        schema: {
          summary: 'Finish a device login, or refresh a sign-in',
          description:
            'grant_type device_code answers LOGIN_PENDING until the person confirms; authorization_code finishes `pgward login --browser` (one-time code, PKCE); refresh_token re-reads the person at the IdP. Without refresh_token, the console cookie is used.',
          tags: ['auth'],
          security: [],
          body: z.discriminatedUnion('grant_type', [
            z.object({
              grant_type: z.literal(DEVICE_GRANT),
              provider: providerName.optional(),
              device_code: z.string().min(1).max(4096),
            }),
            z.object({
              grant_type: z.literal('refresh_token'),
              refresh_token: z.string().min(1).max(4096).optional(),
            }),
            z.object({
              grant_type: z.literal('authorization_code'),
              code: z.string().min(1).max(256),
              code_verifier: z
                .string()
                .regex(/^[A-Za-z0-9._~-]{43,128}$/, 'expected an RFC 7636 code verifier'),
              redirect_uri: z.string().max(200),
            }),
          ]),
          response: { 200: grantSchema },
        },
      },
      async (req, reply) => {
        const body = req.body;
        if (body.grant_type === DEVICE_GRANT) {
          const provider = ctx.auth.provider(body.provider);
          try {
            const login = await ctx.idp.pollDevice(provider, body.device_code);
            return await ctx.auth.login(provider, login, 'cli');
          } catch (err) {
            if (err instanceof LoginPending) {
              throw new PgwardError(
                err.reason === 'slow_down' ? 'LOGIN_SLOW_DOWN' : 'LOGIN_PENDING',
                'the login is not confirmed yet',
              );
            }
            throw err;
          }
        }
        if (body.grant_type === 'authorization_code') {
          return ctx.loginCodes.exchange(body.code, body.code_verifier, body.redirect_uri);
        }
        const fromCookie = body.refresh_token === undefined;
        const refreshToken = body.refresh_token ?? req.cookies[REFRESH_COOKIE];
        if (!refreshToken) throw new PgwardError('UNAUTHENTICATED', 'no refresh token given');
        const grant = await ctx.auth.refresh(refreshToken);
        if (fromCookie) setSessionCookies(reply, grant);
        return grant;
      },
    );

    app.post(
      '/api/v1/auth/logout',
      {
        preHandler: guards.signedIn,
        schema: {
          summary: "End the caller's sign-in: its refresh token and every access token of it stop working",
          tags: ['auth'],
          response: { 200: z.object({ revoked: z.boolean() }) },
        },
      },
      async (req, reply) => {
        const { signInId } = caller(req);
        clearSessionCookies(reply);
        if (!signInId) {
          throw new PgwardError(
            'BAD_REQUEST',
            'this is an IdP token, not a pgward sign-in; log out at the IdP',
          );
        }
        return { revoked: await ctx.sessions.revoke(signInId, 'logout') };
      },
    );

    app.post(
      '/api/v1/auth/revoke',
      {
        preHandler: guards.signedIn,
        schema: {
          summary: "Revoke one pgward access token (yours, or anyone's for an administrator)",
          tags: ['auth'],
          body: z.object({ token: z.string().min(1).max(65_535) }),
          response: { 200: z.object({ revoked: z.literal(true) }) },
        },
      },
      async (req) => {
        const me = caller(req);
        const target = await ctx.auth.authenticate(req.body.token).catch((err: unknown) => {
          if (err instanceof PgwardError && err.code === 'TOKEN_REVOKED') return undefined;
          throw err;
        });
        if (target) {
          if (!target.tokenId)
            throw new PgwardError('BAD_REQUEST', 'only tokens pgward issued can be revoked here');
          if (target.person.userId !== me.person.userId && !me.person.isAdmin) {
            throw new PgwardError('NOT_ALLOWED', 'you may revoke only your own tokens');
          }
          await ctx.sessions.revokeToken(target.tokenId, target.expiresAt, target.signInId);
        }
        return { revoked: true as const };
      },
    );

    // ---- Browsers: provider buttons, code + PKCE, logout ---------------------------------------

    app.get('/login', { schema: { hide: true } }, async (_req, reply) => {
      const buttons = ctx.providers
        .all()
        .map(
          (p) =>
            `<a class="provider" href="/login/${encodeURIComponent(p.name)}">Sign in with ${escapeHtml(p.displayName ?? p.name)}</a>`,
        )
        .join('\n');
      reply.type('text/html; charset=utf-8');
      return gatewayPage(
        'Sign in to pgward',
        buttons || '<p class="error">No identity provider is configured.</p>',
      );
    });

    /** Sends the browser to the IdP, with state, nonce and PKCE verifier kept in a sealed cookie. */
    async function startLogin(
      reply: FastifyReply,
      provider: ProviderConfig,
      cli?: z.infer<typeof cliLogin>,
    ): Promise<FastifyReply> {
      const state = {
        provider: provider.name,
        state: randomBytes(24).toString('base64url'),
        nonce: randomBytes(24).toString('base64url'),
        verifier: randomBytes(32).toString('base64url'),
        until: Date.now() + LOGIN_STATE_MS,
        ...(cli ? { cli } : {}),
      };
      let url: URL;
      if (provider.type === 'ldap') {
        // The gateway's own password form, which the login cookie (below) goes with.
        url = new URL(`${ctx.publicUrl()}/login/ldap/${encodeURIComponent(provider.name)}`);
      } else if (provider.type === 'saml') {
        // RelayState carries the state; the request id is sealed with it (InResponseTo).
        const started = await ctx.idp.samlStart(provider, samlAcsUrl(provider), state.state);
        url = started.url;
        Object.assign(state, { samlRequestId: started.requestId });
      } else {
        url = await ctx.idp.authorizationUrl(provider, {
          redirectUri: redirectUri(),
          state: state.state,
          nonce: state.nonce,
          codeVerifier: state.verifier,
        });
      }
      // Sealed, so any gateway sharing the key can finish the login and nothing waits in memory.
      reply.setCookie(LOGIN_COOKIE, ctx.box.seal(JSON.stringify(state), LOGIN_COOKIE).toString('base64url'), {
        httpOnly: true,
        secure: secure(),
        // Lax: the IdP's redirect back is a top-level cross-site navigation.
        sameSite: 'lax',
        path: '/login',
        maxAge: LOGIN_STATE_MS / 1000,
      });
      return reply.redirect(url.toString());
    }

    app.get(
      '/login/cli',
      {
        config: { rateLimit },
        schema: {
          hide: true,
          querystring: z.object({
            provider: providerName.optional(),
            redirect_uri: cliLogin.shape.redirectUri,
            code_challenge: cliLogin.shape.codeChallenge,
            code_challenge_method: z.literal('S256'),
            state: cliLogin.shape.state,
          }),
        },
      },
      async (req, reply) => {
        const q = req.query;
        return startLogin(reply, ctx.auth.provider(q.provider), {
          redirectUri: q.redirect_uri,
          codeChallenge: q.code_challenge,
          state: q.state,
        });
      },
    );

    app.get(
      '/login/:provider',
      { config: { rateLimit }, schema: { hide: true, params: z.object({ provider: providerName }) } },
      async (req, reply) => startLogin(reply, ctx.auth.provider(req.params.provider)),
    );

    /** The login this browser started, from its sealed cookie (cleared: it is used once). */
    function loginStarted(
      req: FastifyRequest,
      reply: FastifyReply,
      keep = false,
    ): z.infer<typeof loginState> {
      const sealed = req.cookies[LOGIN_COOKIE];
      if (!keep) reply.clearCookie(LOGIN_COOKIE, { path: '/login' });
      try {
        if (!sealed) throw new Error('no login cookie');
        const state = loginState.parse(
          JSON.parse(ctx.box.open(Buffer.from(sealed, 'base64url'), LOGIN_COOKIE)),
        );
        if (state.until < Date.now()) throw new Error('expired');
        return state;
      } catch {
        throw new PgwardError('LOGIN_FAILED', 'this login was not started here, or it took too long', {
          hint: 'start again at /login',
        });
      }
    }

    /** Signs the person in: the console's cookies, or a one-time code for the waiting CLI. */
    async function completeLogin(
      reply: FastifyReply,
      state: z.infer<typeof loginState>,
      login: (provider: ProviderConfig) => Promise<IdpTokens>,
    ): Promise<FastifyReply> {
      const finish = async () => {
        const provider = ctx.auth.provider(state.provider);
        const tokens = await login(provider);
        const grant = await ctx.auth.login(provider, tokens, state.cli ? 'cli' : 'browser');
        if (tokens.saml) await ctx.idp.samlSignIns.record(provider.name, grant.signInId, tokens.saml);
        return grant;
      };
      if (!state.cli) {
        setSessionCookies(reply, await finish());
        return reply.redirect('/login/done');
      }
      // `pgward login --browser`: the CLI waiting on loopback gets a one-time code, or the reason
      // it will not get one (so it stops waiting).
      const back = new URL(state.cli.redirectUri);
      back.searchParams.set('state', state.cli.state);
      try {
        back.searchParams.set('code', await ctx.loginCodes.issue(await finish(), state.cli));
      } catch (err) {
        back.searchParams.set('error', 'access_denied');
        back.searchParams.set(
          'error_description',
          err instanceof PgwardError ? err.message : 'the gateway could not finish the login',
        );
        if (!(err instanceof PgwardError)) ctx.log.error({ err }, 'browser login for the CLI failed');
      }
      return reply.redirect(back.toString());
    }

    app.get('/login/callback', { config: { rateLimit }, schema: { hide: true } }, async (req, reply) => {
      const state = loginStarted(req, reply);
      return completeLogin(reply, state, (provider) =>
        ctx.idp.finishCode(provider, new URL(req.url, ctx.publicUrl()), {
          state: state.state,
          nonce: state.nonce,
          codeVerifier: state.verifier,
          redirectUri: redirectUri(),
        }),
      );
    });

    // ---- LDAP: the gateway's own password form -------------------------------------------------
    const passwordForm = (provider: ProviderConfig, state: string, error?: string) =>
      gatewayPage(
        `Sign in with ${escapeHtml(provider.displayName ?? provider.name)}`,
        `${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}<form method="post" action="/login/ldap/${encodeURIComponent(provider.name)}">
<label for="username">User name</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="state" value="${escapeHtml(state)}">
<button type="submit">Sign in</button></form>`,
      );
    const ldapProvider = (name: string) => {
      const provider = ctx.auth.provider(name);
      if (provider.type !== 'ldap') throw new PgwardError('NOT_FOUND', `${name} is not an LDAP provider`);
      return provider;
    };
    app.get(
      '/login/ldap/:provider',
      { config: { rateLimit }, schema: { hide: true, params: z.object({ provider: providerName }) } },
      async (req, reply) => {
        const provider = ldapProvider(req.params.provider);
        const state = loginStarted(req, reply, true);
        reply.type('text/html; charset=utf-8');
        return passwordForm(provider, state.state);
      },
    );
    app.post(
      '/login/ldap/:provider',
      {
        config: { rateLimit },
        schema: {
          hide: true,
          params: z.object({ provider: providerName }),
          body: z.object({
            username: z.string().max(256),
            password: z.string().max(1024),
            state: z.string().max(100),
          }),
        },
      },
      async (req, reply) => {
        const provider = ldapProvider(req.params.provider);
        const state = loginStarted(req, reply, true);
        // The form's state is the cookie's: a form posted from elsewhere is refused (login CSRF).
        if (state.provider !== provider.name || req.body.state !== state.state) {
          throw new PgwardError('LOGIN_FAILED', 'this sign-in form was not opened here', {
            hint: 'start again at /login',
          });
        }
        let login: IdpTokens;
        try {
          login = await ctx.idp.passwordSignIn(provider, req.body.username, req.body.password);
        } catch (err) {
          if (err instanceof PgwardError && (err.code === 'LOGIN_FAILED' || err.code === 'RATE_LIMITED')) {
            reply.status(err.code === 'RATE_LIMITED' ? 429 : 401).type('text/html; charset=utf-8');
            return passwordForm(provider, state.state, err.message);
          }
          throw err;
        }
        reply.clearCookie(LOGIN_COOKIE, { path: '/login' });
        return completeLogin(reply, state, async () => login);
      },
    );

    // ---- SAML 2.0: metadata and the assertion consumer service --------------------------------
    const samlProvider = (name: string) => {
      const provider = ctx.auth.provider(name);
      if (provider.type !== 'saml') throw new PgwardError('NOT_FOUND', `${name} is not a SAML provider`);
      return provider;
    };
    app.get(
      samlMetadataPath(':provider'),
      { config: { rateLimit }, schema: { hide: true, params: z.object({ provider: providerName }) } },
      async (req, reply) => {
        const provider = samlProvider(req.params.provider);
        reply.type('application/samlmetadata+xml; charset=utf-8');
        return ctx.idp.samlMetadata(provider, samlAcsUrl(provider));
      },
    );
    // The IdP's HTTP-POST binding: a form of at most 256 KiB.
    app.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: 256 * 1024 },
      (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );
    app.post(
      samlAcsPath(':provider'),
      {
        config: { rateLimit },
        schema: {
          hide: true,
          params: z.object({ provider: providerName }),
          body: z.object({
            SAMLResponse: z.string().min(1).max(200_000),
            RelayState: z.string().max(80).optional(),
            bounced: z.literal('1').optional(),
          }),
        },
      },
      async (req, reply) => {
        const provider = samlProvider(req.params.provider);
        const form = req.body;
        // The IdP's POST is cross-site, so the (SameSite) login cookie is not sent with it: the
        // browser posts the response once more from this page, same-site, with the cookie.
        if (req.cookies[LOGIN_COOKIE] === undefined && form.bounced === undefined) {
          reply.type('text/html; charset=utf-8');
          return gatewayPage(
            'Signing in',
            `<form method="post" action="${escapeHtml(samlAcsPath(provider.name))}">
<input type="hidden" name="SAMLResponse" value="${escapeHtml(form.SAMLResponse)}">
<input type="hidden" name="RelayState" value="${escapeHtml(form.RelayState ?? '')}">
<input type="hidden" name="bounced" value="1">
<button type="submit">Continue</button></form>
<script>document.forms[0].submit()</script>`,
          );
        }
        const state = loginStarted(req, reply);
        if (
          state.provider !== provider.name ||
          state.samlRequestId === undefined ||
          form.RelayState !== state.state
        ) {
          throw new PgwardError(
            'LOGIN_FAILED',
            'this SAML response does not belong to the login started here',
            {
              hint: 'start again at /login',
            },
          );
        }
        return completeLogin(reply, state, (p) =>
          ctx.idp.finishSaml(p, samlAcsUrl(p), form.SAMLResponse, state.samlRequestId!),
        );
      },
    );

    /**
     * The single logout service: an IdP's LogoutRequest ends the sign-ins of its session (their
     * live PostgreSQL sessions too) and is answered with a LogoutResponse; the IdP's
     * LogoutResponse to the gateway's own request ends at the login page.
     */
    async function singleLogout(
      reply: FastifyReply,
      provider: ProviderConfig,
      message: Parameters<typeof readSamlLogout>[2],
    ): Promise<FastifyReply> {
      if (!provider.saml?.sloUrl) {
        throw new PgwardError('NOT_FOUND', `single logout is not configured for ${provider.name}`, {
          hint: 'set saml.sloUrl',
        });
      }
      const logout = await readSamlLogout(provider, samlAcsUrl(provider), message, ctx.idp.samlReplays);
      clearSessionCookies(reply);
      if (logout.kind === 'response') return reply.redirect('/login', 303);
      const signIns = await ctx.idp.samlSignIns.named(provider.name, logout.nameId, logout.sessionIndex);
      for (const id of signIns) await ctx.sessions.revoke(id, `SAML single logout from ${provider.name}`);
      ctx.log.info({ provider: provider.name, signIns: signIns.length }, 'SAML single logout');
      const back = await samlLogoutResponseUrl(provider, samlAcsUrl(provider), logout.id, logout.relayState);
      return reply.redirect(back.toString(), 303);
    }
    app.get(
      samlSloPath(':provider'),
      { config: { rateLimit }, schema: { hide: true, params: z.object({ provider: providerName }) } },
      async (req, reply) =>
        singleLogout(reply, samlProvider(req.params.provider), {
          binding: 'redirect',
          rawQuery: req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '',
        }),
    );
    app.post(
      samlSloPath(':provider'),
      {
        config: { rateLimit },
        schema: {
          hide: true,
          params: z.object({ provider: providerName }),
          body: z.object({
            SAMLRequest: z.string().min(1).max(200_000).optional(),
            SAMLResponse: z.string().min(1).max(200_000).optional(),
            RelayState: z.string().max(1024).optional(),
          }),
        },
      },
      async (req, reply) =>
        singleLogout(reply, samlProvider(req.params.provider), { binding: 'post', form: req.body }),
    );

    app.get('/login/done', { preHandler: guards.signedIn, schema: { hide: true } }, async (req, reply) => {
      const { person } = caller(req);
      reply.type('text/html; charset=utf-8');
      return gatewayPage(
        'Signed in',
        `<p>Signed in as <b>${escapeHtml(person.email)}</b> with ${escapeHtml(person.provider)}.</p>
<p><a class="provider" href="/">Open the console</a></p>
<meta http-equiv="refresh" content="1; url=/">
<form method="post" action="/logout"><button type="submit">Sign out</button></form>`,
      );
    });

    app.post('/logout', { schema: { hide: true } }, async (req: FastifyRequest, reply) => {
      const token = presentedToken(req);
      const signedIn = token ? await ctx.auth.authenticate(token).catch(() => undefined) : undefined;
      clearSessionCookies(reply);
      if (signedIn?.signInId) await ctx.sessions.revoke(signedIn.signInId, 'logout');
      const provider = signedIn && ctx.providers.all().find((p) => p.name === signedIn.person.provider);
      let endSession: URL | undefined;
      if (provider?.saml?.sloUrl && signedIn?.signInId) {
        // SAML single logout: the IdP ends its session (and its other service providers').
        const session = await ctx.idp.samlSignIns.of(signedIn.signInId);
        endSession = session
          ? await samlLogoutUrl(provider, samlAcsUrl(provider), session).catch((err: unknown) => {
              // The sign-in has ended here already; the IdP's session outlives it.
              ctx.log.warn({ err, provider: provider.name }, 'cannot build the SAML LogoutRequest');
              return undefined;
            })
          : undefined;
      } else if (provider) {
        endSession = await ctx.idp.endSessionUrl(provider, `${ctx.publicUrl()}/`).catch(() => undefined);
      }
      return reply.redirect(endSession?.toString() ?? '/login', 303);
    });
  };
}
