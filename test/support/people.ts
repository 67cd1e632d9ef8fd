/** People in the store for tests that drive the provisioner directly, with any email. */
import type { TestStack } from './dev_stack.js';

/** Adds a person to the default tenant; returns what the provisioner needs. */
export async function addPerson(t: TestStack, email: string): Promise<{ userId: string; email: string }> {
  const { rows } = await t.store().query<{ user_id: string }>(
    `INSERT INTO pgward.user_info (tenant_id, email) SELECT tenant_id, $1 FROM pgward.tenant
        WHERE code = 'default' RETURNING user_id`,
    [email],
  );
  return { userId: rows[0]!.user_id, email };
}
