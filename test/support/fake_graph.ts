/**
 * A local HTTP server that answers like Entra ID's token endpoint (client credentials grant,
 * `/TENANT/oauth2/v2.0/token`) and Microsoft Graph's `GET /v1.0/users/{id}/transitiveMemberOf/
 * microsoft.graph.group` in their documented shapes: app tokens per tenant that expire, Graph
 * refusing (401) a token it did not issue or that expired, and 404 for a person of another tenant,
 * pages of `value` with `@odata.nextLink` (`$top` honoured up to the server's page size).
 * Microsoft's cloud cannot run in a test; this fake is its stand-in.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { freePort } from '../../src/store/free_port.js';

export type GraphMode =
  | 'normal'
  | 'forbidden'
  | 'down'
  /** Answers after 12 seconds. */
  | 'slow'
  /** The next link points at another host. */
  | 'foreign-next-link'
  /** Every page has a next link. */
  | 'endless';

export interface FakeGraph {
  /** Both the authority and Graph's URL. */
  url: string;
  /** People by object id: their tenant and group object ids. */
  people: Map<string, { tid: string; groups: string[] }>;
  mode: GraphMode;
  /** Most groups in one page, whatever `$top` asks. */
  pageSize: number;
  /** Lifetime of app tokens, in seconds. */
  expiresIn: number;
  tokenRequests: number;
  graphRequests: number;
  /** The form fields of the last token request, the secret masked. */
  lastTokenRequest: Record<string, string> | undefined;
  /** Graph stops taking every app token issued so far. */
  revokeTokens(): void;
  close(): Promise<void>;
}

export async function startFakeGraph(app: { clientId: string; clientSecret: string }): Promise<FakeGraph> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const tokens = new Map<string, { tid: string; until: number }>();
  const timers = new Set<NodeJS.Timeout>();
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const graphError = (res: ServerResponse, status: number, code: string, message: string) =>
    json(res, status, { error: { code, message, innerError: { date: new Date().toISOString() } } });
  async function form(req: IncomingMessage): Promise<URLSearchParams> {
    let body = '';
    for await (const chunk of req) body += chunk;
    return new URLSearchParams(body);
  }

  async function token(req: IncomingMessage, res: ServerResponse, tid: string) {
    state.tokenRequests++;
    const f = await form(req);
    state.lastTokenRequest = Object.fromEntries(
      [...f].map(([k, v]) => [k, k === 'client_secret' ? '(masked)' : v]),
    );
    if (f.get('grant_type') !== 'client_credentials')
      return json(res, 400, { error: 'unsupported_grant_type' });
    if (f.get('client_id') !== app.clientId || f.get('client_secret') !== app.clientSecret)
      return json(res, 401, {
        error: 'invalid_client',
        error_description: 'AADSTS7000215: Invalid client secret provided.',
      });
    if (f.get('scope') !== `${url}/.default`) return json(res, 400, { error: 'invalid_scope' });
    const accessToken = randomBytes(24).toString('base64url');
    tokens.set(accessToken, { tid, until: Date.now() + state.expiresIn * 1000 });
    json(res, 200, {
      token_type: 'Bearer',
      expires_in: state.expiresIn,
      ext_expires_in: state.expiresIn,
      access_token: accessToken,
    });
  }

  function memberOf(req: IncomingMessage, res: ServerResponse, u: URL, oid: string) {
    state.graphRequests++;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const held = bearer ? tokens.get(bearer) : undefined;
    if (!held || held.until <= Date.now())
      return graphError(res, 401, 'InvalidAuthenticationToken', 'Access token is empty or invalid.');
    const person = state.people.get(oid);
    if (!person || person.tid !== held.tid)
      return graphError(res, 404, 'Request_ResourceNotFound', `Resource '${oid}' does not exist.`);
    switch (state.mode) {
      case 'forbidden':
        return graphError(
          res,
          403,
          'Authorization_RequestDenied',
          'Insufficient privileges to complete the operation.',
        );
      case 'down':
        req.socket.destroy();
        return;
      case 'slow': {
        const timer = setTimeout(() => {
          timers.delete(timer);
          json(res, 200, { value: [] });
        }, 12_000);
        timers.add(timer);
        return;
      }
      default:
        break;
    }
    const top = Math.min(Number(u.searchParams.get('$top') ?? 100), state.pageSize);
    const skip = Number(u.searchParams.get('$skiptoken') ?? 0);
    const page = person.groups.slice(skip, skip + top);
    const more = skip + top < person.groups.length || state.mode === 'endless';
    const next = new URL(u.pathname, state.mode === 'foreign-next-link' ? 'http://graph.invalid' : url);
    next.searchParams.set('$select', 'id');
    next.searchParams.set('$top', String(top));
    next.searchParams.set('$skiptoken', String(skip + top));
    json(res, 200, {
      '@odata.context': `${url}/v1.0/$metadata#directoryObjects(id)`,
      value: page.map((id) => ({ '@odata.type': '#microsoft.graph.group', id })),
      ...(more ? { '@odata.nextLink': next.toString() } : {}),
    });
  }

  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', url);
    const tokenPath = /^\/([0-9a-f-]{36})\/oauth2\/v2\.0\/token$/.exec(u.pathname);
    if (req.method === 'POST' && tokenPath) return void token(req, res, tokenPath[1]!);
    const graphPath = /^\/v1\.0\/users\/([0-9a-f-]{36})\/transitiveMemberOf\/microsoft\.graph\.group$/.exec(
      u.pathname,
    );
    if (req.method === 'GET' && graphPath) return memberOf(req, res, u, graphPath[1]!);
    graphError(res, 400, 'BadRequest', 'Unsupported request.');
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));

  const state: FakeGraph = {
    url,
    people: new Map(),
    mode: 'normal',
    pageSize: 100,
    expiresIn: 3599,
    tokenRequests: 0,
    graphRequests: 0,
    lastTokenRequest: undefined,
    revokeTokens: () => tokens.clear(),
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return state;
}

/** `n` distinct group object ids, `prefix` (8 hex digits) first. */
export function groupIds(prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`);
}
