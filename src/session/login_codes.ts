/**
 * One-time codes for `pgward login --browser` (table cli_login_code). The browser signs in at the
 * gateway as usual; the gateway then redirects it to the CLI's loopback listener with a code that
 * the CLI exchanges for its tokens. The code is bound to the CLI's PKCE challenge (RFC 7636) and
 * redirect URI, so another program on the machine that sees the redirect cannot use it; it lives
 * a minute and the exchange deletes it, whether or not the exchange succeeds.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import { PgwardError } from '../errors.js';
import type { SecretBox } from '../vault/secret_box.js';
import type { IssuedGrant, TokenGrant } from './authenticator.js';
import type { LoginSessions } from './login_sessions.js';

const CODE_LIFETIME_SECONDS = 60;

const sha256 = (text: string) => createHash('sha256').update(text).digest();
const owner = (hash: Buffer) => `cli-login-code:${hash.toString('hex')}`;

/** The loopback redirect URIs of RFC 8252 section 7.3: http, a loopback IP literal, a port. */
export function isLoopbackRedirect(uri: string): boolean {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return false;
  }
  return (
    url.protocol === 'http:' &&
    (url.hostname === '127.0.0.1' || url.hostname === '[::1]') &&
    url.port !== '' &&
    url.username === '' &&
    url.password === '' &&
    url.hash === ''
  );
}

function refused(message: string): PgwardError {
  return new PgwardError('LOGIN_FAILED', message, { hint: 'run `pgward login --browser` again' });
}

export class LoginCodes {
  constructor(
    private readonly pool: pg.Pool,
    private readonly box: SecretBox,
    private readonly sessions: LoginSessions,
  ) {}

  /** Keeps `grant` for the CLI behind a new one-time code; returns the code. */
  async issue(grant: IssuedGrant, cli: { codeChallenge: string; redirectUri: string }): Promise<string> {
    const code = randomBytes(32).toString('base64url');
    const hash = sha256(code);
    const { signInId, ...forClient } = grant;
    await this.pool.query(
      `INSERT INTO pgward.cli_login_code
         (code_hash, login_session_id, code_challenge, redirect_uri, grant_sealed, expires_at)
       VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))`,
      [
        hash,
        signInId,
        cli.codeChallenge,
        cli.redirectUri,
        this.box.seal(JSON.stringify({ grant: forClient, issuedAt: Date.now() }), owner(hash)),
        CODE_LIFETIME_SECONDS,
      ],
    );
    await this.pool.query('DELETE FROM pgward.cli_login_code WHERE expires_at < now()');
    return code;
  }

  /**
   * Hands out the grant behind `code` once. A wrong verifier or redirect URI also revokes the
   * sign-in: whoever presents it is not the CLI that started the login.
   */
  async exchange(code: string, codeVerifier: string, redirectUri: string): Promise<TokenGrant> {
    const hash = sha256(code);
    const { rows } = await this.pool.query<{
      login_session_id: string;
      code_challenge: string;
      redirect_uri: string;
      grant_sealed: Buffer;
      live: boolean;
    }>(
      `DELETE FROM pgward.cli_login_code WHERE code_hash = $1
       RETURNING login_session_id, code_challenge, redirect_uri, grant_sealed, expires_at > now() AS live`,
      [hash],
    );
    const row = rows[0];
    if (!row) throw refused('this login code is unknown or was already used');
    if (!row.live) {
      await this.sessions.revoke(row.login_session_id, 'login code expired');
      throw refused('this login code expired');
    }
    const challenge = Buffer.from(sha256(codeVerifier).toString('base64url'));
    const expected = Buffer.from(row.code_challenge);
    if (
      challenge.length !== expected.length ||
      !timingSafeEqual(challenge, expected) ||
      redirectUri !== row.redirect_uri
    ) {
      await this.sessions.revoke(row.login_session_id, 'login code presented with a wrong verifier');
      throw refused('the code verifier or redirect URI does not match the login');
    }
    const kept = JSON.parse(this.box.open(row.grant_sealed, owner(hash))) as {
      grant: TokenGrant;
      issuedAt: number;
    };
    // The access token has aged while the browser came back to the CLI.
    const aged = Math.ceil((Date.now() - kept.issuedAt) / 1000);
    return { ...kept.grant, expires_in: Math.max(0, kept.grant.expires_in - aged) };
  }
}
