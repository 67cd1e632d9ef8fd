/**
 * oidc-provider's storage adapter on pgward's store, so the dev IdP's sessions, grants and refresh
 * tokens survive a restart of `pgward dev` (the library's memory adapter would drop them).
 */
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type pg from 'pg';

/** Returns the adapter class oidc-provider instantiates once per model name. */
export function storeAdapter(pool: pg.Pool): new (model: string) => Adapter {
  const live = 'AND (expires_at IS NULL OR expires_at > now())';
  return class StoreAdapter implements Adapter {
    constructor(private readonly model: string) {}

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      await pool.query(
        `INSERT INTO pgward.dev_idp_payload (model, id, payload, grant_id, user_code, uid, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
         ON CONFLICT (model, id) DO UPDATE SET payload = $3, grant_id = $4, user_code = $5, uid = $6,
           expires_at = now() + make_interval(secs => $7)`,
        [
          this.model,
          id,
          payload,
          payload.grantId ?? null,
          payload.userCode ?? null,
          payload.uid ?? null,
          expiresIn,
        ],
      );
    }

    private async findWhere(
      column: 'id' | 'user_code' | 'uid',
      value: string,
    ): Promise<AdapterPayload | undefined> {
      const { rows } = await pool.query<{ payload: AdapterPayload; consumed: number | null }>(
        `SELECT payload, extract(epoch FROM consumed_at)::int AS consumed FROM pgward.dev_idp_payload
         WHERE model = $1 AND ${column} = $2 ${live}`,
        [this.model, value],
      );
      const row = rows[0];
      if (!row) return undefined;
      return row.consumed === null ? row.payload : { ...row.payload, consumed: row.consumed };
    }

    find(id: string) {
      return this.findWhere('id', id);
    }

    findByUserCode(userCode: string) {
      return this.findWhere('user_code', userCode);
    }

    findByUid(uid: string) {
      return this.findWhere('uid', uid);
    }

    async consume(id: string): Promise<void> {
      await pool.query('UPDATE pgward.dev_idp_payload SET consumed_at = now() WHERE model = $1 AND id = $2', [
        this.model,
        id,
      ]);
    }

    async destroy(id: string): Promise<void> {
      await pool.query('DELETE FROM pgward.dev_idp_payload WHERE model = $1 AND id = $2', [this.model, id]);
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await pool.query('DELETE FROM pgward.dev_idp_payload WHERE grant_id = $1', [grantId]);
    }
  };
}
