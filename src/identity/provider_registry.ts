/**
 * The live list of identity providers: those of the configuration, plus those administrators add
 * through the API (stored in the `provider` table, client secret sealed). Gateways sharing a
 * store pick up each other's changes within a minute; the one that made a change at once.
 */
import type pg from 'pg';
import { type ProviderConfig, type ProviderInput, providerSchema } from '../config/schema.js';
import { PgwardError } from '../errors.js';
import { withTransaction } from '../store/transaction.js';
import type { SecretBox } from '../vault/secret_box.js';

const owner = (id: string) => `provider:${id}`;

export class ProviderRegistry {
  private added: ProviderConfig[] = [];

  constructor(
    private readonly configured: ProviderConfig[],
    private readonly pool: pg.Pool,
    private readonly box: SecretBox,
    /** Told the whole list after each change (the token verifier rebuilds its key sets). */
    private readonly onChange: (providers: ProviderConfig[]) => void,
  ) {}

  all(): ProviderConfig[] {
    return [...this.configured, ...this.added];
  }

  /** Reads the active API providers again. A row that no longer validates is skipped, loudly. */
  async reload(): Promise<string[]> {
    const { rows } = await this.pool.query<{
      provider_id: string;
      configuration: ProviderInput;
      client_secret: Buffer | null;
    }>(
      "SELECT provider_id, configuration, client_secret FROM pgward.provider WHERE source = 'api' AND is_active ORDER BY code",
    );
    const problems: string[] = [];
    const added: ProviderConfig[] = [];
    for (const row of rows) {
      const secret = row.client_secret ? this.box.open(row.client_secret, owner(row.provider_id)) : undefined;
      const parsed = providerSchema.safeParse({
        ...row.configuration,
        ...(secret ? { clientSecret: secret } : {}),
      });
      if (parsed.success) added.push(parsed.data);
      else problems.push(`${row.configuration.name}: ${parsed.error.issues[0]?.message}`);
    }
    this.added = added;
    this.onChange(this.all());
    return problems;
  }

  /** Adds a provider at run time; its name must be new. */
  async create(input: ProviderInput): Promise<ProviderConfig> {
    const parsed = providerSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new PgwardError('BAD_REQUEST', `${issue.path.join('.') || 'provider'}: ${issue.message}`);
    }
    const provider = parsed.data;
    const { groups, roles } = provider.mappings;
    if (Object.keys(groups).length + Object.keys(roles).length > 0) {
      throw new PgwardError(
        'BAD_REQUEST',
        'mappings of a provider added at run time are made with POST /api/v1/mappings',
      );
    }
    const taken = provider.issuers.find((iss) => this.all().some((p) => p.issuers.includes(iss)));
    if (taken) throw new PgwardError('CONFLICT', `a provider with issuer ${taken} exists already`);
    const { clientSecret, ...stored } = input;
    await withTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ provider_id: string }>(
        `INSERT INTO pgward.provider (code, name, provider_type, configuration, source)
         VALUES ($1, $2, $4, $3, 'api') ON CONFLICT (code) DO NOTHING RETURNING provider_id`,
        [provider.name, provider.displayName ?? provider.name, stored, provider.type],
      );
      if (!rows[0]) throw new PgwardError('CONFLICT', `a provider named "${provider.name}" exists already`);
      if (clientSecret) {
        await client.query('UPDATE pgward.provider SET client_secret = $2 WHERE provider_id = $1', [
          rows[0].provider_id,
          this.box.seal(clientSecret, owner(rows[0].provider_id)),
        ]);
      }
    });
    await this.reload();
    return provider;
  }

  private refuseConfigured(name: string): void {
    if (this.configured.some((p) => p.name === name)) {
      throw new PgwardError(
        'BAD_REQUEST',
        `provider "${name}" comes from the configuration; change it there`,
      );
    }
  }

  /** (De)activates a provider added through the API; its tokens are refused while inactive. */
  async setActive(name: string, active: boolean): Promise<void> {
    this.refuseConfigured(name);
    const { rowCount } = await this.pool.query(
      "UPDATE pgward.provider SET is_active = $2, updated_at = now() WHERE code = $1 AND source = 'api'",
      [name, active],
    );
    if (rowCount !== 1) throw new PgwardError('NOT_FOUND', `provider "${name}" does not exist`);
    await this.reload();
  }

  /**
   * Deletes a provider added through the API that nobody has signed in with yet (with its
   * mappings). One with identities is kept: deleting it would delete them; deactivate it instead.
   */
  async remove(name: string): Promise<void> {
    this.refuseConfigured(name);
    const { rows } = await this.pool.query<{ deleted: boolean; found: boolean }>(
      `WITH target AS (SELECT provider_id FROM pgward.provider WHERE code = $1 AND source = 'api'),
            used AS (SELECT FROM pgward.user_identity WHERE provider_id IN (SELECT provider_id FROM target)),
            gone AS (DELETE FROM pgward.provider WHERE provider_id IN (SELECT provider_id FROM target)
                      AND NOT EXISTS (SELECT FROM used) RETURNING 1)
       SELECT EXISTS (SELECT FROM gone) AS deleted, EXISTS (SELECT FROM target) AS found`,
      [name],
    );
    const row = rows[0];
    if (!row?.found) throw new PgwardError('NOT_FOUND', `provider "${name}" does not exist`);
    if (!row.deleted) {
      throw new PgwardError(
        'CONFLICT',
        `people have signed in with provider "${name}"; it is kept with their identities`,
        {
          hint: `deactivate it instead: pgward admin update provider ${name} --inactive`,
        },
      );
    }
    await this.reload();
  }
}
