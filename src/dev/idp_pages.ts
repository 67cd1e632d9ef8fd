/**
 * The dev IdP's pages: sign-in, device code entry and confirmation, success and logout. Plain
 * HTML with no outside resources; every interpolated value is escaped.
 */

import { escapeHtml } from '../api/html.js';

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · pgward dev IdP</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;display:flex;justify-content:center;padding-top:10vh}
main{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;width:20rem}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1.2rem;width:100%;padding:.6rem;background:#2457d6;color:#fff;border:0;border-radius:4px}
button.secondary{background:#fff;color:#333;border:1px solid #ccc}
.error{color:#b00020}.hint{color:#555;font-size:.85rem}code{font-size:1.4rem}
</style></head>
<body><main><h1>${escapeHtml(title)}</h1>
${body}
<p class="hint">pgward dev IdP: development only.</p>
</main></body></html>
`;
}

function errorLine(error: string | undefined): string {
  return error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : '';
}

export function loginPage(opts: {
  uid: string;
  email: string;
  error: string | undefined;
  /** The issuer's path, when it has one. */
  base?: string;
}): string {
  return page(
    'Sign in',
    `${errorLine(opts.error)}<form method="post" action="${escapeHtml(opts.base ?? '')}/interaction/${escapeHtml(opts.uid)}/login">
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required value="${escapeHtml(opts.email)}">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p class="hint">Users: admin@, editor@, viewer@example.com; password <code>password</code>.</p>`,
  );
}

/** Device flow, step 1: `form` is the library's complete form (CSRF field and code input). */
export function codeInputPage(form: string, error: string | undefined): string {
  return page(
    'Connect a device',
    `${errorLine(error)}<p>Enter the code your terminal shows.</p>${form}
<button type="submit" form="op.deviceInputForm">Continue</button>`,
  );
}

/** Device flow, step 2: confirm that the code matches the terminal. */
export function codeConfirmPage(form: string, clientName: string, userCode: string): string {
  return page(
    'Confirm the device',
    `<p><strong>${escapeHtml(clientName)}</strong> asks to sign in. Check that your terminal shows</p>
<p><code>${escapeHtml(userCode)}</code></p>${form}
<button type="submit" form="op.deviceConfirmForm">Yes, sign in</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes" class="secondary">Abort</button>`,
  );
}

export function deviceSuccessPage(): string {
  return page('Signed in', '<p>You are signed in. Return to your terminal; you can close this page.</p>');
}

/** RP-initiated logout: `form` is the library's form; the button submits it. */
export function logoutPage(form: string): string {
  return page(
    'Sign out',
    `<p>Sign out of the pgward dev IdP?</p>${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button>`,
  );
}

export function signedOutPage(): string {
  return page('Signed out', '<p>You are signed out.</p>');
}
