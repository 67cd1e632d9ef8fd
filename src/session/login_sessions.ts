/**
 * Sign-ins through an IdP (table login_session): the refresh token pgward gave the client (only
 * its hash is stored; it rotates at each use, and a rotated one presented again revokes the whole
 * sign-in, since that means it was copied), the IdP's refresh token (sealed), and revocation.
 */
import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { AccessEvents } from '../directory/access_events.js';
import { PgwardError } from '../errors.js';
import { tokenError } from '../identity/token_verifier.js';
import type { SecretBox } from '../vault/secret_box.js';

export type LoginClient = 'cli' | 'browser' | 'api';

export interface LoginSession {
  id: string;
  userId: string;
  provider: string;
  client: LoginClient;
  idpRefreshToken: string | undefined;
  createdAt: Date;
  refreshedAt: Date;
  expiresAt: Date;
  revokedAt: Date | undefined;
}

/** A rotated refresh token presented again within this window is a race of one client, not theft. */
const REUSE_GRACE_MS = 30_000;

const hashOf = (token: string) => createHash('sha256').update(token).digest();
const newRefreshToken = () => `pgw_rt_${randomBytes(32).toString('base64url')}`;
const owner = (id: string) => `login-session:${id}`;

interface Row {
  login_session_id: string;
  user_id: string;
  provider: string;
  client: LoginClient;
  idp_refresh_token: Buffer | null;
  created_at: Date;
  refreshed_at: Date;
  expires_at: Date;
  revoked_at: Date | null;
}

const COLUMNS = `s.login_session_id, s.user_id, p.code AS provider, s.client, s.idp_refresh_token,
  s.created_at, s.refreshed_at, s.expires_at, s.revoked_at`;

export class LoginSessions {
  constructor(
    private readonly pool: pg.Pool,
    private readonly box: SecretBox,
    private readonly lifetimeMs: number,
    /** Told of every ended sign-in, so live sessions opened with its tokens end too. */
    private readonly events?: AccessEvents,
  ) {}

  private toSession(row: Row): LoginSession {
    return {
      id: row.login_session_id,
      userId: row.user_id,
      provider: row.provider,
      client: row.client,
      idpRefreshToken: row.idp_refresh_token
        ? this.box.open(row.idp_refresh_token, owner(row.login_session_id))
        : undefined,
      createdAt: row.created_at,
      refreshedAt: row.refreshed_at,
      expiresAt: row.expires_at,
      revokedAt: row.revoked_at ?? undefined,
    };
  }

  /** Records a new sign-in; returns its id and the refresh token for the client. */
  async create(opts: {
    userId: string;
    provider: string;
    client: LoginClient;
    idpRefreshToken: string | undefined;
  }): Promise<{ id: string; refreshToken: string }> {
    const refreshToken = newRefreshToken();
    const { rows } = await this.pool.query<{ login_session_id: string }>(
      `INSERT INTO pgward.login_session (user_id, provider_id, client, refresh_hash, expires_at)
       SELECT $1, provider_id, $3, $4, now() + make_interval(secs => $5) FROM pgward.provider WHERE code = $2
       RETURNING login_session_id`,
      [opts.userId, opts.provider, opts.client, hashOf(refreshToken), this.lifetimeMs / 1000],
    );
    const id = rows[0]?.login_session_id;
    if (!id) throw new PgwardError('INTERNAL', `provider ${opts.provider} is not in the directory`);
    if (opts.idpRefreshToken) await this.storeIdpRefreshToken(id, opts.idpRefreshToken);
    return { id, refreshToken };
  }

  private async storeIdpRefreshToken(id: string, token: string): Promise<void> {
    await this.pool.query(
      'UPDATE pgward.login_session SET idp_refresh_token = $2 WHERE login_session_id = $1',
      [id, this.box.seal(token, owner(id))],
    );
  }

  /**
   * The live sign-in a refresh token belongs to. A rotated token presented again (after a short
   * grace for a client racing itself) revokes the sign-in: someone else holds a copy.
   */
  async findByRefreshToken(refreshToken: string): Promise<LoginSession> {
    const hash = hashOf(refreshToken);
    const { rows } = await this.pool.query<Row & { current: boolean }>(
      `SELECT ${COLUMNS}, s.refresh_hash = $1 AS current
         FROM pgward.login_session s JOIN pgward.provider p USING (provider_id)
        WHERE s.refresh_hash = $1 OR s.previous_refresh_hash = $1`,
      [hash],
    );
    const row = rows[0];
    if (!row) throw tokenError('TOKEN_REVOKED', 'this refresh token is unknown or was revoked');
    if (!row.current) {
      if (Date.now() - row.refreshed_at.getTime() > REUSE_GRACE_MS) {
        await this.revoke(row.login_session_id, 'refresh token reused');
        throw tokenError('TOKEN_REVOKED', 'this refresh token was already used; the sign-in is revoked');
      }
      throw tokenError('TOKEN_REVOKED', 'this refresh token was just used by another request');
    }
    const session = this.toSession(row);
    if (session.revokedAt) throw tokenError('TOKEN_REVOKED', 'this sign-in was revoked');
    if (session.expiresAt.getTime() <= Date.now()) {
      throw tokenError('TOKEN_EXPIRED', `this sign-in expired at ${session.expiresAt.toISOString()}`);
    }
    return session;
  }

  /** Replaces the refresh token (only if it is still the one presented); returns the new one. */
  async rotate(
    session: LoginSession,
    presented: string,
    idpRefreshToken: string | undefined,
  ): Promise<string> {
    const next = newRefreshToken();
    const { rowCount } = await this.pool.query(
      `UPDATE pgward.login_session
          SET previous_refresh_hash = refresh_hash, refresh_hash = $3, refreshed_at = now()
        WHERE login_session_id = $1 AND refresh_hash = $2 AND revoked_at IS NULL`,
      [session.id, hashOf(presented), hashOf(next)],
    );
    if (rowCount !== 1)
      throw tokenError('TOKEN_REVOKED', 'this refresh token was just used by another request');
    if (idpRefreshToken && idpRefreshToken !== session.idpRefreshToken) {
      await this.storeIdpRefreshToken(session.id, idpRefreshToken);
    }
    return next;
  }

  /** Whether tokens of this sign-in are still good: not revoked or expired, the person active. */
  async isLive(sessionId: string, tokenId: string): Promise<boolean> {
    const { rows } = await this.pool.query<{ live: boolean }>(
      `SELECT s.revoked_at IS NULL AND s.expires_at > now() AND u.is_active
              AND NOT EXISTS (SELECT FROM pgward.revoked_token WHERE jti = $2) AS live
         FROM pgward.login_session s JOIN pgward.user_info u USING (user_id)
        WHERE s.login_session_id = $1`,
      [sessionId, tokenId],
    );
    return rows[0]?.live === true;
  }

  async get(sessionId: string): Promise<LoginSession | undefined> {
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM pgward.login_session s JOIN pgward.provider p USING (provider_id)
        WHERE s.login_session_id = $1`,
      [sessionId],
    );
    return rows[0] && this.toSession(rows[0]);
  }

  /** A person's sign-ins, newest first (never their secrets). */
  async listFor(userId: string): Promise<Omit<LoginSession, 'idpRefreshToken'>[]> {
    const { rows } = await this.pool.query<Row>(
      `SELECT ${COLUMNS} FROM pgward.login_session s JOIN pgward.provider p USING (provider_id)
        WHERE s.user_id = $1 ORDER BY s.created_at DESC LIMIT 200`,
      [userId],
    );
    return rows.map((row) => {
      const { idpRefreshToken: _, ...session } = this.toSession({ ...row, idp_refresh_token: null });
      return session;
    });
  }

  async revoke(signInId: string, reason: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE pgward.login_session SET revoked_at = now(), revoked_reason = $2, idp_refresh_token = NULL
        WHERE login_session_id = $1 AND revoked_at IS NULL`,
      [signInId, reason],
    );
    await this.events?.publish({ kind: 'sign-in', signInId, reason: `sign-in ended: ${reason}` });
    return rowCount === 1;
  }

  /** Revokes every sign-in of a person; returns how many were live. */
  async revokeAllOf(userId: string, reason: string): Promise<number> {
    const { rowCount } = await this.pool.query(
      `UPDATE pgward.login_session SET revoked_at = now(), revoked_reason = $2, idp_refresh_token = NULL
        WHERE user_id = $1 AND revoked_at IS NULL`,
      [userId, reason],
    );
    await this.events?.publish({ kind: 'person', userId, reason: `sign-ins ended: ${reason}` });
    return rowCount ?? 0;
  }

  /** Revokes one access token until it would have expired anyway. */
  async revokeToken(tokenId: string, expiresAt: Date, signInId?: string): Promise<void> {
    await this.pool.query(
      'INSERT INTO pgward.revoked_token (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING',
      [tokenId, expiresAt],
    );
    await this.pool.query('DELETE FROM pgward.revoked_token WHERE expires_at < now()');
    // Sessions of this sign-in recheck; those opened with the revoked token find it revoked.
    if (signInId) await this.events?.publish({ kind: 'sign-in', signInId, reason: 'token revoked' });
  }
}
