/** Policies through the API as an administrator, and statements expected to fail, for the policy tests. */
import assert from 'node:assert/strict';
import type pg from 'pg';
import { type ApiAnswer, call } from './api.js';
import type { TestStack } from './dev_stack.js';

export type PgError = { code: string; message: string; detail?: string; hint?: string };

export interface PolicyAdmin {
  api(method: string, route: string, body?: unknown, token?: string): Promise<ApiAnswer>;
  /** PUT /policies/NAME; fails the test unless it answers 200. */
  put(doc: Record<string, unknown>): Promise<ApiAnswer>;
  /** DELETE /policies/NAME; fails the test unless it answers 204. */
  drop(name: string): Promise<void>;
}

/** `stack` and `token` are read at each call (tests set them up in `before`). */
export function policyAdmin(stack: () => TestStack, token: () => string): PolicyAdmin {
  const api = (method: string, route: string, body?: unknown, as = token()) =>
    call(stack().stack.info.http, method, route, { token: as, body });
  return {
    api,
    async put(doc) {
      const answer = await api('PUT', `/api/v1/policies/${doc['name']}`, doc);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      return answer;
    },
    async drop(name) {
      const answer = await api('DELETE', `/api/v1/policies/${name}`);
      assert.equal(answer.status, 204, JSON.stringify(answer.body));
    },
  };
}

/** The error a statement fails with; fails the test when it runs. */
export async function failure(client: pg.Client, text: string, values?: unknown[]): Promise<PgError> {
  try {
    await client.query(values ? { text, values } : text);
  } catch (err) {
    return err as PgError;
  }
  throw new Error(`${text} was not refused`);
}
