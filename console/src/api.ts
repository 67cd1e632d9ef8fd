/**
 * Calls to the gateway's API with the console's HttpOnly cookie (never a token in JavaScript).
 * A 401 tries one refresh (the refresh cookie); if that fails too, the page goes to sign in,
 * and the editor's text is already in localStorage.
 */

export interface Problem {
  status: number;
  code: string;
  detail: string;
  hint?: string;
  errors?: { path: string; message: string }[];
}

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail);
  }
}

let refreshing: Promise<boolean> | undefined;

async function refresh(): Promise<boolean> {
  refreshing ??= fetch('/api/v1/auth/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ grant_type: 'refresh_token' }),
    credentials: 'same-origin',
  })
    .then((r) => r.ok)
    .catch(() => false)
    .finally(() => {
      refreshing = undefined;
    });
  return refreshing;
}

/** Hook: called before the page leaves for sign-in (the editor saves its text). */
export const beforeSignIn: (() => void)[] = [];

export function goToSignIn(): never {
  for (const f of beforeSignIn) f();
  window.location.assign('/login');
  throw new ApiError({ status: 401, code: 'UNAUTHENTICATED', detail: 'signing in again' });
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(path, {
      method,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401) {
      if (attempt === 0 && (await refresh())) continue;
      goToSignIn();
    }
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    const data = text === '' ? undefined : JSON.parse(text);
    if (!res.ok) {
      throw new ApiError(
        data && typeof data === 'object'
          ? (data as Problem)
          : { status: res.status, code: 'HTTP', detail: res.statusText },
      );
    }
    return data as T;
  }
}

export interface Me {
  userId: string;
  email: string;
  name?: string;
  groups: string[];
  isAdmin: boolean;
}
