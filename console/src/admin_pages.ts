/**
 * Administration: connections (the credential is write-only), access maps, groups and
 * mappings, providers, people (deactivate), policies (edit with errors in place, try against
 * sample statements) and reports. Each page is the REST API's data, with its forms.
 */
import { api } from './api.js';
import { field, h, mount } from './dom.js';
import { policiesPage } from './policies_page.js';
import { button, errorBox, type Row, table } from './widgets.js';

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
