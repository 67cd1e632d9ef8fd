/**
 * GETs a JSON document from an IdP (or POSTs a form, with `form`) with a timeout and a size cap;
 * failures are IDP_UNREACHABLE.
 */
import { PgwardError } from '../errors.js';

const MAX_BYTES = 1024 * 1024;

export async function fetchJson(
  url: string,
  timeoutMs: number,
  headers: Record<string, string> = {},
  form?: URLSearchParams,
): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, {
      headers: { accept: 'application/json', ...headers },
      signal: AbortSignal.timeout(timeoutMs),
      ...(form ? { method: 'POST', body: form } : {}),
    });
  } catch (err) {
    throw new PgwardError(
      'IDP_UNREACHABLE',
      `the identity provider did not answer (${new URL(url).origin})`,
      { cause: err },
    );
  }
  const text = await res.text();
  if (!res.ok) {
    throw new PgwardError(
      'IDP_UNREACHABLE',
      `the identity provider answered ${res.status} for ${new URL(url).pathname}`,
      {
        detail: String(res.status),
      },
    );
  }
  if (text.length > MAX_BYTES)
    throw new PgwardError('IDP_UNREACHABLE', 'the identity provider sent an oversized document');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new PgwardError('IDP_UNREACHABLE', 'the identity provider sent invalid JSON', { cause: err });
  }
}
