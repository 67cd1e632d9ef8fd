/**
 * GETs a JSON document from an IdP (or POSTs `form`: a form, or any other value as JSON) with a
 * timeout and a size cap; failures are IDP_UNREACHABLE.
 */
import { PgwardError } from '../errors.js';

const MAX_BYTES = 1024 * 1024;

export async function fetchJson(
  url: string,
  timeoutMs: number,
  headers: Record<string, string> = {},
  form?: URLSearchParams | Record<string, unknown>,
): Promise<unknown> {
  const body = form === undefined || form instanceof URLSearchParams ? form : JSON.stringify(form);
  const type: Record<string, string> = typeof body === 'string' ? { 'content-type': 'application/json' } : {};
  let res: Response;
  try {
    res = await fetch(url, {
      headers: { accept: 'application/json', ...type, ...headers },
      signal: AbortSignal.timeout(timeoutMs),
      ...(body ? { method: 'POST', body } : {}),
    });
  } catch (err) {
    throw new PgwardError(
      'IDP_UNREACHABLE',
      `the identity provider did not answer (${new URL(url).origin})`,
      { cause: err },
    );
  }
  const text = await readCapped(res);
  if (!res.ok) {
    throw new PgwardError(
      'IDP_UNREACHABLE',
      `the identity provider answered ${res.status} for ${new URL(url).pathname}`,
      {
        detail: String(res.status),
      },
    );
  }
  if (text === undefined)
    throw new PgwardError('IDP_UNREACHABLE', 'the identity provider sent an oversized document');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new PgwardError('IDP_UNREACHABLE', 'the identity provider sent invalid JSON', { cause: err });
  }
}

/** The body as text, or undefined once it passes MAX_BYTES (reading stops there). */
async function readCapped(res: Response): Promise<string | undefined> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    // Leaving the loop cancels the rest of the body.
    if (size > MAX_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
