/**
 * The console's entry: who is signed in (else to sign in), the navigation, and the pages by
 * location hash. The Query page is made once and kept, so its editor and results survive
 * a look at another page.
 */
import { ADMIN_PAGES } from './admin_pages.js';
import { api, type Me } from './api.js';
import { h, mount } from './dom.js';
import { styleNonce } from './nonce.js';
import { type QueryPage, queryPage } from './query_page.js';
import { historyPage, savedPage, sessionPlayback, sessionsPage } from './sessions_page.js';

async function start(): Promise<void> {
  const me = await api<Me>('GET', '/api/v1/whoami');
  const main = h('main', { id: 'main' });
  const other = h('div', { class: 'page' });
  let query: QueryPage | undefined;
  const load = (text: string, connection?: string) => {
    location.hash = '#/query';
    query?.load(text, connection);
  };
  const links: [string, string][] = [
    ['#/query', 'Query'],
    ['#/history', 'History'],
    ['#/saved', 'Saved'],
    ['#/sessions', 'Sessions'],
    ...(me.isAdmin
      ? Object.entries(ADMIN_PAGES).map(([key, p]) => [`#/admin/${key}`, p.title] as [string, string])
      : []),
  ];
  const nav = h(
    'nav',
    { 'aria-label': 'Console' },
    links.map(([href, label]) => h('a', { href }, label)),
  );
  const header = h(
    'header',
    {},
    h('span', { class: 'brand' }, 'pgward'),
    nav,
    h(
      'form',
      { method: 'post', action: '/logout', class: 'signout' },
      h('span', { class: 'me' }, me.email),
      h('button', { type: 'submit' }, 'Sign out'),
    ),
  );
  document.body.replaceChildren(header, main);

  async function route(): Promise<void> {
    const hash = location.hash || '#/query';
    for (const a of nav.querySelectorAll('a')) {
      if (
        a.getAttribute('href') ===
        hash
          .split('/')
          .slice(0, hash.startsWith('#/admin') ? 3 : 2)
          .join('/')
      ) {
        a.setAttribute('aria-current', 'page');
      } else a.removeAttribute('aria-current');
    }
    if (hash === '#/query') {
      query ??= queryPage(styleNonce);
      mount(main, query.element);
      return;
    }
    mount(main, other);
    mount(other, h('p', { class: 'muted' }, 'Loading…'));
    const parts = hash.slice(2).split('/');
    try {
      let page: HTMLElement;
      if (parts[0] === 'history') page = await historyPage(load);
      else if (parts[0] === 'saved') page = await savedPage(load);
      else if (parts[0] === 'sessions' && parts[1]) page = await sessionPlayback(parts[1]);
      else if (parts[0] === 'sessions') page = await sessionsPage(me);
      else if (parts[0] === 'admin' && parts[1] && ADMIN_PAGES[parts[1]]) {
        const admin = ADMIN_PAGES[parts[1]]!;
        page = h('section', {}, h('h2', {}, admin.title), await admin.render(() => void route()));
      } else page = h('p', {}, 'No such page.');
      mount(other, page);
    } catch (err) {
      mount(other, h('div', { class: 'problem', role: 'alert' }, (err as Error).message));
    }
  }
  window.addEventListener('hashchange', () => void route());
  await route();
}

void start().catch((err) => {
  document.body.replaceChildren(h('div', { class: 'problem', role: 'alert' }, (err as Error).message));
});
