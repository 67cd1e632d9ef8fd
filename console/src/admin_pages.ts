/**
 * Administration: connections (the credential is write-only), access maps, groups and
 * mappings, providers, people (deactivate), policies (edit with errors in place, try against
 * sample statements) and reports. Each page is the REST API's data, with its forms.
 */
import { type Diagnostic, lintGutter, setDiagnostics } from '@codemirror/lint';
import { basicSetup, EditorView } from 'codemirror';
import { ApiError, api } from './api.js';
import { field, h, mount } from './dom.js';
import { jsonSpans, spanOf } from './json_paths.js';
import { styleNonce } from './nonce.js';

type Row = Record<string, unknown>;

function cellText(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** A table of records, with an optional actions column. */
function table(label: string, rows: Row[], columns: string[], actions?: (row: Row) => Node[]): HTMLElement {
  if (rows.length === 0) return h('p', {}, 'None yet.');
  return h(
    'table',
    { class: 'list', 'aria-label': label },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        columns.map((c) => h('th', {}, c)),
        actions ? h('th', {}) : null,
      ),
    ),
    h(
      'tbody',
      {},
      rows.map((r) =>
        h(
          'tr',
          {},
          columns.map((c) => h('td', {}, cellText(r[c]))),
          actions ? h('td', {}, actions(r)) : null,
        ),
      ),
    ),
  );
}

/** Shows an API error next to a form (problem detail and hint, never more). */
function errorBox(): { el: HTMLElement; show(err: unknown): void; clear(): void } {
  const el = h('div', { class: 'problem', role: 'alert', hidden: true });
  return {
    el,
    show(err) {
      el.hidden = false;
      const p = err instanceof ApiError ? err.problem : undefined;
      mount(el, p ? `${p.detail}${p.hint ? ` (${p.hint})` : ''}` : (err as Error).message);
    },
    clear() {
      el.hidden = true;
    },
  };
}

function button(label: string, onclick: () => unknown, cls = ''): HTMLButtonElement {
  return h('button', { type: 'button', class: cls, onclick }, label);
}

export const ADMIN_PAGES: Record<
  string,
  { title: string; render: (rerender: () => void) => Promise<HTMLElement> }
> = {
  connections: { title: 'Connections', render: connectionsPage },
  access: { title: 'Access maps', render: accessPage },
  groups: { title: 'Groups and mappings', render: groupsPage },
  providers: { title: 'Providers', render: providersPage },
  people: { title: 'People', render: peoplePage },
  policies: { title: 'Policies', render: policiesPage },
  reports: { title: 'Reports', render: reportsPage },
};

async function connectionsPage(rerender: () => void): Promise<HTMLElement> {
  const list = await api<Row[]>('GET', '/api/v1/connections');
  const errors = errorBox();
  const name = h('input', { required: true });
  const host = h('input', { required: true });
  const port = h('input', { type: 'number', value: '5432' });
  const database = h('input', { required: true });
  const sslmode = h(
    'select',
    {},
    ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'].map((m) =>
      h('option', { value: m, selected: m === 'prefer' }, m),
    ),
  );
  const user = h('input', {});
  const password = h('input', { type: 'password', autocomplete: 'new-password' });
  const form = h(
    'form',
    { class: 'form' },
    h('h3', {}, 'Add or update a connection'),
    field('Name', name),
    field('Host', host),
    field('Port', port),
    field('Database', database),
    field('TLS (sslmode)', sslmode),
    field('Credential user', user),
    field('Credential password', password),
    h('p', { class: 'muted' }, 'The credential is write-only: pgward never shows it again.'),
    h('button', { type: 'submit', class: 'primary' }, 'Save connection'),
    errors.el,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    errors.clear();
    const exists = list.some((c) => c.name === name.value);
    const body: Row = {
      host: host.value,
      port: Number(port.value),
      database: database.value,
      sslmode: sslmode.value,
      ...(user.value && password.value ? { credential: { user: user.value, password: password.value } } : {}),
    };
    try {
      if (exists) await api('PATCH', `/api/v1/connections/${encodeURIComponent(name.value)}`, body);
      else await api('POST', '/api/v1/connections', { ...body, name: name.value });
      rerender();
    } catch (err) {
      errors.show(err);
    }
  });
  const checks = h('div', {});
  return h(
    'div',
    {},
    table('Connections', list, ['name', 'host', 'port', 'database', 'sslmode', 'roleMode'], (c) => [
      button('Edit', () => {
        name.value = String(c['name']);
        host.value = String(c['host']);
        port.value = String(c['port']);
        database.value = String(c['database']);
        sslmode.value = String(c['sslmode']);
      }),
      button('Check', async () => {
        errors.clear();
        try {
          const answer = await api<{ checks: Row[] }>('POST', `/api/v1/connections/${c['name']}/check`);
          mount(
            checks,
            h('h3', {}, `Checks of ${c['name']}`),
            table('Checks', answer.checks, ['check', 'status', 'detail', 'action']),
          );
        } catch (err) {
          errors.show(err);
        }
      }),
      button(
        'Delete',
        async () => {
          if (!window.confirm(`Delete connection ${c['name']}?`)) return;
          await api('DELETE', `/api/v1/connections/${c['name']}`).catch((err) => errors.show(err));
          rerender();
        },
        'danger',
      ),
    ]),
    checks,
    form,
  );
}

async function accessPage(rerender: () => void): Promise<HTMLElement> {
  const list = await api<{ name: string; access: Record<string, string[]> }[]>('GET', '/api/v1/connections');
  return h(
    'div',
    {},
    list.map((c) => {
      const errors = errorBox();
      const text = h('textarea', { rows: '6', class: 'code', 'aria-label': `Access map of ${c.name}` });
      text.value = JSON.stringify(c.access, null, 2);
      const save = button(
        'Save access map',
        async () => {
          errors.clear();
          try {
            await api('PUT', `/api/v1/connections/${c.name}/access`, JSON.parse(text.value));
            rerender();
          } catch (err) {
            errors.show(err);
          }
        },
        'primary',
      );
      return h(
        'div',
        { class: 'card' },
        h('h3', {}, c.name),
        h('p', { class: 'muted' }, 'Group → database roles its members get.'),
        text,
        save,
        errors.el,
      );
    }),
  );
}

async function groupsPage(rerender: () => void): Promise<HTMLElement> {
  const [groups, mappings] = await Promise.all([
    api<Row[]>('GET', '/api/v1/groups'),
    api<Row[]>('GET', '/api/v1/mappings'),
  ]);
  const errors = errorBox();
  const gName = h('input', {});
  const mProvider = h('input', {});
  const mExternal = h('input', {});
  const mGroup = h('input', {});
  const act = async (work: () => Promise<unknown>) => {
    errors.clear();
    try {
      await work();
      rerender();
    } catch (err) {
      errors.show(err);
    }
  };
  return h(
    'div',
    {},
    errors.el,
    h('h3', {}, 'Groups'),
    table('Groups', groups, ['name', 'description'], (g) => [
      button('Delete', () => act(() => api('DELETE', `/api/v1/groups/${g['name']}`)), 'danger'),
    ]),
    h(
      'div',
      { class: 'form inline' },
      field('New group', gName),
      button('Add group', () => act(() => api('POST', '/api/v1/groups', { name: gName.value }))),
    ),
    h('h3', {}, 'Mappings (provider group → pgward group)'),
    table('Mappings', mappings, ['provider', 'externalGroup', 'externalRole', 'group'], (m) => [
      button('Delete', () => act(() => api('DELETE', `/api/v1/mappings/${m['id']}`)), 'danger'),
    ]),
    h(
      'div',
      { class: 'form inline' },
      field('Provider', mProvider),
      field('Provider group', mExternal),
      field('pgward group', mGroup),
      button('Add mapping', () =>
        act(() =>
          api('POST', '/api/v1/mappings', {
            provider: mProvider.value,
            externalGroup: mExternal.value,
            group: mGroup.value,
          }),
        ),
      ),
    ),
  );
}

async function providersPage(): Promise<HTMLElement> {
  const list = await api<Row[]>('GET', '/api/v1/providers');
  const columns = Object.keys(list[0] ?? {}).filter((k) => !/secret/i.test(k));
  return h('div', {}, table('Providers', list, columns));
}

async function peoplePage(rerender: () => void): Promise<HTMLElement> {
  const people = await api<Row[]>('GET', '/api/v1/users');
  const errors = errorBox();
  const detail = h('div', {});
  const act = async (work: () => Promise<unknown>, then: () => void) => {
    errors.clear();
    try {
      await work();
      then();
    } catch (err) {
      errors.show(err);
    }
  };
  async function showIdentities(userId: string, email: string): Promise<void> {
    const person = await api<{ identities: Row[] }>('GET', `/api/v1/users/${userId}`);
    mount(
      detail,
      h('h3', {}, `Identities of ${email}`),
      table(
        `Identities of ${email}`,
        person.identities,
        ['provider', 'subject', 'groups', 'roles', 'isActive', 'isLastUsed', 'lastLoginAt'],
        (i) => [
          button(i['isActive'] ? 'Deactivate identity' : 'Activate identity', () =>
            act(
              () =>
                api('PATCH', `/api/v1/users/${userId}/identities/${i['identityId']}`, {
                  isActive: !i['isActive'],
                }),
              () => void showIdentities(userId, email),
            ),
          ),
        ],
      ),
    );
  }
  return h(
    'div',
    {},
    errors.el,
    table('People', people, ['email', 'name', 'isActive', 'isAdmin', 'createdAt'], (p) => [
      button('Identities', () => void showIdentities(String(p['userId']), String(p['email']))),
      button(p['isActive'] ? 'Deactivate' : 'Activate', () =>
        act(() => api('PATCH', `/api/v1/users/${p['userId']}`, { isActive: !p['isActive'] }), rerender),
      ),
    ]),
    detail,
  );
}

async function reportsPage(): Promise<HTMLElement> {
  const [usage, stale] = await Promise.all([
    api<Row[]>('GET', '/api/v1/reports/provider-usage'),
    api<Row[]>('GET', '/api/v1/reports/stale-identities'),
  ]);
  return h(
    'div',
    {},
    h('h3', {}, 'Provider usage'),
    table('Provider usage', usage, Object.keys(usage[0] ?? {})),
    h('h3', {}, 'Stale identities (no login for 90 days)'),
    table('Stale identities', stale, Object.keys(stale[0] ?? {})),
  );
}

interface PolicyItem {
  name: string;
  source: 'config' | 'api';
  document: unknown;
  updatedAt: string;
}

const NEW_POLICY = {
  name: 'new-policy',
  connections: ['demo'],
  mode: 'enforce',
  rules: [{ deny: ['ddl'], message: 'schema changes go through migrations' }],
};

async function policiesPage(): Promise<HTMLElement> {
  let list: PolicyItem[] = [];
  const listErrors = errorBox();
  const listHost = h('div', {});
  async function showList(): Promise<void> {
    try {
      list = await api<PolicyItem[]>('GET', '/api/v1/policies');
    } catch (err) {
      listErrors.show(err);
    }
    mount(
      listHost,
      table('Policies', list as unknown as Row[], ['name', 'source', 'updatedAt', 'updatedBy'], (p) => [
        button('Edit', () => edit(p as unknown as PolicyItem)),
        p['source'] === 'api'
          ? button(
              'Delete',
              async () => {
                if (!window.confirm(`Delete policy ${p['name']}?`)) return;
                await api('DELETE', `/api/v1/policies/${p['name']}`).catch((err) => listErrors.show(err));
                await showList();
              },
              'danger',
            )
          : h('span', { class: 'muted' }, 'from the configuration file'),
      ]),
    );
  }
  await showList();
  const name = h('input', { 'aria-label': 'Policy name' });
  const docHost = h('div', { class: 'editor policy-editor' });
  const docView = new EditorView({
    parent: docHost,
    extensions: [
      basicSetup,
      lintGutter(),
      EditorView.lineWrapping,
      EditorView.cspNonce.of(styleNonce),
      EditorView.contentAttributes.of({ 'aria-label': 'Policy document' }),
      // An edit makes the last answer's marks stale: the next Save or Test gives new ones.
      EditorView.updateListener.of((u) => {
        if (u.docChanged) clearProblems();
      }),
    ],
  });
  function clearProblems(): void {
    problems.hidden = true;
    queueMicrotask(() => docView.dispatch(setDiagnostics(docView.state, [])));
  }
  const doc = {
    get value() {
      return docView.state.doc.toString();
    },
    set value(text: string) {
      docView.dispatch({ changes: { from: 0, to: docView.state.doc.length, insert: text } });
      docView.dispatch(setDiagnostics(docView.state, []));
    },
  };
  const problems = h('ul', {
    class: 'problem',
    role: 'alert',
    'aria-label': 'Validation errors',
    hidden: true,
  });
  const saved = h('div', { class: 'status', role: 'status' });
  const statements = h('textarea', {
    rows: '5',
    class: 'code',
    'aria-label': 'Sample statements',
  });
  statements.value = 'select * from users;\ndrop table users;';
  const results = h('div', {});
  const edit = (p: { name: string; document: unknown }) => {
    name.value = p.name;
    doc.value = JSON.stringify(p.document, null, 2);
    problems.hidden = true;
    mount(saved, '');
  };
  edit(list[0] ?? { name: NEW_POLICY.name, document: NEW_POLICY });

  function parsed(): unknown {
    try {
      return JSON.parse(doc.value);
    } catch (err) {
      showProblems([{ path: '(document)', message: `not valid JSON: ${(err as Error).message}` }]);
      return undefined;
    }
  }
  /** Each problem at its field in the document (underlined, in the gutter) and in a list. */
  function showProblems(errors: { path: string; message: string }[], detail?: string): void {
    problems.hidden = false;
    const spans = jsonSpans(doc.value);
    const located = errors.map((e) => {
      const span = (spans && spanOf(spans, e.path)) ?? { from: 0, to: 0 };
      return { ...e, span, line: docView.state.doc.lineAt(span.from).number };
    });
    const diagnostics: Diagnostic[] = located.map((e) => ({
      from: e.span.from,
      to: e.span.to,
      severity: 'error',
      message: `${e.path}: ${e.message}`,
    }));
    docView.dispatch(setDiagnostics(docView.state, diagnostics));
    mount(
      problems,
      errors.length === 0 && detail ? h('li', {}, detail) : null,
      located.map((e) =>
        h(
          'li',
          {
            onclick: () => {
              docView.dispatch({ selection: { anchor: e.span.from, head: e.span.to }, scrollIntoView: true });
              docView.focus();
            },
          },
          `line ${e.line}  `,
          h('code', {}, e.path),
          ': ',
          e.message,
        ),
      ),
    );
  }

  const save = button(
    'Save policy',
    async () => {
      problems.hidden = true;
      mount(saved, '');
      const document = parsed();
      if (document === undefined) return;
      try {
        await api('PUT', `/api/v1/policies/${encodeURIComponent(name.value)}`, document);
        mount(saved, `Saved policy ${name.value}`);
        await showList();
      } catch (err) {
        if (err instanceof ApiError) showProblems(err.problem.errors ?? [], err.problem.detail);
        else showProblems([], (err as Error).message);
      }
    },
    'primary',
  );
  const test = button('Test', async () => {
    const document = parsed();
    if (document === undefined) return;
    try {
      const answer = await api<{
        results: { statement: string; decision: string; policy?: string; rule?: string; message?: string }[];
      }>('POST', '/api/v1/policies/test', { document, statements: statements.value });
      mount(
        results,
        table('Test results', answer.results as unknown as Row[], [
          'statement',
          'decision',
          'policy',
          'rule',
          'message',
        ]),
      );
    } catch (err) {
      if (err instanceof ApiError) showProblems(err.problem.errors ?? [], err.problem.detail);
    }
  });
  return h(
    'div',
    {},
    listErrors.el,
    listHost,
    button('New policy', () => edit({ name: NEW_POLICY.name, document: NEW_POLICY })),
    h(
      'div',
      { class: 'card' },
      field('Name', name),
      docHost,
      problems,
      save,
      saved,
      h('h3', {}, 'Try it'),
      statements,
      test,
      results,
    ),
  );
}
