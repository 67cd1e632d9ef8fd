/**
 * The dev IdP's static people (DESIGN.md): password `password`, one group each. Subjects are
 * fixed so that tokens from several runs name the same person.
 */
export interface DevUser {
  sub: string;
  email: string;
  name: string;
  groups: string[];
  /** More claims in this person's tokens (a vendor's shapes in tests: `hd`, `tid`, ...). */
  claims?: Record<string, unknown>;
}

export const DEV_PASSWORD = 'password';

/** The dev IdP's public client, used by pgward's CLI, console and `pgward dev token`. */
export const DEV_CLIENT_ID = 'pgward';
/** Name of the dev IdP in the gateway's provider list. */
export const DEV_PROVIDER_NAME = 'dev';
/** `aud` of the access tokens the dev IdP issues. */
export const DEV_AUDIENCE = 'pgward';

export const DEV_USERS: readonly DevUser[] = [
  {
    sub: '08a8684b-db88-4b73-90a9-3cd1661f5466',
    email: 'admin@example.com',
    name: 'Ada Admin',
    groups: ['admin'],
  },
  {
    sub: '28a8684b-db88-4b73-90a9-3cd1661f5477',
    email: 'editor@example.com',
    name: 'Eddie Editor',
    groups: ['editor'],
  },
  {
    sub: '38a8684b-db88-4b73-90a9-3cd1661f5488',
    email: 'viewer@example.com',
    name: 'Vera Viewer',
    groups: ['viewer'],
  },
];

/** Finds a dev user by subject or (case-insensitive) email. */
export function findDevUser(idOrEmail: string, users: readonly DevUser[] = DEV_USERS): DevUser | undefined {
  const needle = idOrEmail.toLowerCase();
  return users.find((u) => u.sub === idOrEmail || u.email === needle);
}
