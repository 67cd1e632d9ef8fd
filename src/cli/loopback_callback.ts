/**
 * The one-shot HTTP listener of `pgward login --browser`: 127.0.0.1 on a port the system picks,
 * waiting for the gateway to send the browser back with a one-time code. Requests without the
 * login's state are answered 400 and ignored, so another page cannot end the wait with a code of
 * its own; an error from the gateway ends it with the gateway's reason.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { escapeHtml, gatewayPage } from '../api/html.js';
import { PgwardError } from '../errors.js';

const CALLBACK_PATH = '/pgward/callback';

export interface LoopbackCallback {
  redirectUri: string;
  /** The code, once the browser is back; rejects on an error from the gateway or a timeout. */
  code: Promise<string>;
  close: () => void;
}

export async function awaitLoopbackCallback(state: string, timeoutMs: number): Promise<LoopbackCallback> {
  let settle: { resolve: (code: string) => void; reject: (err: Error) => void } | undefined;
  const code = new Promise<string>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const answer = (status: number, title: string, body: string) => {
      res.writeHead(status, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'referrer-policy': 'no-referrer',
      });
      res.end(gatewayPage(title, body));
    };
    if (req.method !== 'GET' || url.pathname !== CALLBACK_PATH || url.searchParams.get('state') !== state) {
      answer(
        400,
        'Not this login',
        '<p class="error">This page does not belong to the login in progress.</p>',
      );
      return;
    }
    const error = url.searchParams.get('error');
    const received = url.searchParams.get('code');
    if (error || !received) {
      const reason = url.searchParams.get('error_description') ?? error ?? 'no code';
      answer(401, 'Sign-in failed', `<p class="error">${escapeHtml(reason)}</p>`);
      settle?.reject(new PgwardError('LOGIN_FAILED', `the sign-in failed: ${reason}`));
      return;
    }
    answer(200, 'Signed in', '<p>pgward is signed in. You can close this tab.</p>');
    settle?.resolve(received);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const timer = setTimeout(
    () =>
      settle?.reject(
        new PgwardError('LOGIN_FAILED', 'the browser did not come back in time', {
          hint: 'run `pgward login --browser` again, or `pgward login` to confirm a code instead',
        }),
      ),
    timeoutMs,
  );
  const { port } = server.address() as AddressInfo;
  return {
    redirectUri: `http://127.0.0.1:${port}${CALLBACK_PATH}`,
    code,
    close: () => {
      clearTimeout(timer);
      server.closeAllConnections();
      server.close();
    },
  };
}
