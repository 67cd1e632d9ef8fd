/**
 * Sessions (your own; administrators: everyone's) from the audit, live ones marked, and a
 * session's statements as a timeline to play back: each statement in its order and at its pace
 * (gaps shortened), with duration, rows, error and the policy decision when the audit has one.
 */
import type {
  SessionRecord as AuditSession,
  StatementRecord as AuditStatement,
  OverJson,
} from '../../src/audit/audit_records.js';
import { api, type Me } from './api.js';
import { field, h, mount, when } from './dom.js';

type SessionRecord = OverJson<AuditSession>;
export type StatementRecord = OverJson<AuditStatement>;

/** "refused by editors-safe · rule 0: schema changes go through migrations". */
export function decisionText(s: StatementRecord): string {
  if (!s.decision) return '';
  const why = (s.decidedBy ?? []).map(
    (d) => `${d.outcome} by ${d.policy} (${d.rule})${d.message ? `: ${d.message}` : ''}`,
  );
  return why.length > 0 ? why.join('; ') : s.decision;
}

export async function sessionsPage(me: Me): Promise<HTMLElement> {
  const person = h('input', { type: 'search', placeholder: 'email' });
  const connection = h('input', { type: 'search', placeholder: 'name' });
  const liveOnly = h('input', { type: 'checkbox' });
  const tbody = h('tbody', {});
  const empty = h('p', { hidden: true }, 'No sessions.');
  async function show(): Promise<void> {
    const q = new URLSearchParams({ limit: '200' });
    if (person.value.trim()) q.set('user', person.value.trim());
    if (connection.value.trim()) q.set('connection', connection.value.trim());
    const [all, live] = await Promise.all([
      api<SessionRecord[]>('GET', `/api/v1/sessions?${q}`),
      api<string[]>('GET', '/api/v1/console/live'),
    ]);
    const liveSet = new Set(live);
    const sessions = liveOnly.checked ? all.filter((s) => liveSet.has(s.sessionId) && !s.endedAt) : all;
    empty.hidden = sessions.length > 0;
    mount(
      tbody,
      sessions.map((s) => {
        const isLive = liveSet.has(s.sessionId) && !s.endedAt;
        const end = h('button', { type: 'button', class: 'danger' }, 'End session');
        end.addEventListener('click', async () => {
          if (!window.confirm(`End the session of ${s.email ?? 'this person'} on ${s.connection}?`)) return;
          end.disabled = true;
          await api('DELETE', `/api/v1/console/live/${s.sessionId}`);
          state.textContent = 'ended';
          state.className = '';
          end.remove();
        });
        const state = h(
          'span',
          { class: isLive ? 'live' : '' },
          isLive ? 'live' : s.endedAt ? `ended ${when(s.endedAt)}` : '',
        );
        return h(
          'tr',
          { 'data-session': s.sessionId },
          h('td', {}, when(s.startedAt)),
          h('td', {}, s.email ?? ''),
          h('td', {}, s.connection ?? ''),
          h('td', {}, s.applicationName ?? '', s.clientAddr ? ` (${s.clientAddr})` : ''),
          h('td', {}, state, s.endReason ? h('div', { class: 'muted' }, s.endReason) : null),
          h(
            'td',
            {},
            h('a', { href: `#/sessions/${s.sessionId}` }, 'Play back'),
            ' ',
            me.isAdmin && isLive ? end : null,
          ),
        );
      }),
    );
  }
  let timer = 0;
  const later = () => {
    clearTimeout(timer);
    timer = window.setTimeout(() => void show().catch(() => undefined), 300);
  };
  person.addEventListener('input', later);
  connection.addEventListener('input', later);
  liveOnly.addEventListener('change', () => void show());
  await show();
  return h(
    'section',
    {},
    h('h2', {}, me.isAdmin ? 'Sessions (everyone)' : 'Your sessions'),
    h(
      'div',
      { class: 'toolbar' },
      me.isAdmin ? field('Person', person) : null,
      field('Connection name', connection),
      field('Live only', liveOnly),
    ),
    h(
      'table',
      { class: 'list', 'aria-label': 'Sessions' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Started', 'Person', 'Connection', 'Client', 'State', ''].map((t) => h('th', {}, t)),
        ),
      ),
      tbody,
    ),
    empty,
  );
}

export async function sessionPlayback(id: string): Promise<HTMLElement> {
  const statements = (
    await api<StatementRecord[]>('GET', `/api/v1/statements?session=${id}&limit=1000`)
  ).sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.seq - b.seq);
  const t0 = statements.length > 0 ? Date.parse(statements[0]!.startedAt) : 0;
  const items = statements.map((s, i) =>
    h(
      'li',
      {
        class: `step${s.sqlstate ? ' failed' : ''}${s.decision === 'refused' ? ' refused' : ''}`,
        'data-index': String(i),
      },
      h('div', { class: 'step-time' }, `+${((Date.parse(s.startedAt) - t0) / 1000).toFixed(3)} s`),
      h('pre', { class: 'step-sql' }, s.text),
      h(
        'div',
        { class: 'step-facts' },
        [
          s.commandTag ?? s.kind,
          s.durationMs !== null ? `${s.durationMs.toFixed?.(1) ?? s.durationMs} ms` : '',
          s.rows !== null ? `${s.rows} rows` : '',
          s.sqlstate ? `SQLSTATE ${s.sqlstate}` : '',
          decisionText(s),
        ]
          .filter(Boolean)
          .join(' · '),
      ),
    ),
  );
  const list = h('ol', { class: 'timeline', 'aria-label': 'Timeline' }, items);
  const position = h('input', {
    type: 'range',
    min: '0',
    max: String(Math.max(0, statements.length - 1)),
    value: '0',
    'aria-label': 'Position',
  });
  const now = h('div', { class: 'status', role: 'status' });
  const play = h('button', { type: 'button', class: 'primary' }, 'Play');
  let timer = 0;
  function show(i: number): void {
    items.forEach((el, j) => {
      el.classList.toggle('current', j === i);
      el.classList.toggle('future', j > i);
    });
    position.value = String(i);
    items[i]?.scrollIntoView({ block: 'nearest' });
    mount(now, statements[i] ? `Statement ${i + 1} of ${statements.length}` : '');
  }
  function step(i: number): void {
    show(i);
    if (i + 1 >= statements.length) {
      play.textContent = 'Play';
      timer = 0;
      return;
    }
    const gap = Date.parse(statements[i + 1]!.startedAt) - Date.parse(statements[i]!.startedAt);
    timer = window.setTimeout(() => step(i + 1), Math.min(1000, Math.max(150, gap)));
  }
  play.addEventListener('click', () => {
    if (timer) {
      clearTimeout(timer);
      timer = 0;
      play.textContent = 'Play';
      return;
    }
    play.textContent = 'Pause';
    const from = Number(position.value);
    step(from >= statements.length - 1 ? 0 : from);
  });
  position.addEventListener('input', () => show(Number(position.value)));
  show(statements.length > 0 ? 0 : -1);
  return h(
    'section',
    {},
    h('h2', {}, 'Session ', h('code', {}, id)),
    h('p', {}, h('a', { href: '#/sessions' }, '← All sessions')),
    statements.length === 0
      ? h('p', {}, 'No statements in this session.')
      : h('div', { class: 'player' }, play, position, now),
    list,
  );
}

export async function historyPage(load: (text: string, connection?: string) => void): Promise<HTMLElement> {
  const search = h('input', { type: 'search', placeholder: 'text in the statement' });
  const refusedOnly = h('input', { type: 'checkbox' });
  const body = h('tbody', {});
  async function show(): Promise<void> {
    const q = new URLSearchParams({ limit: '300' });
    if (search.value.trim()) q.set('text', search.value.trim());
    if (refusedOnly.checked) q.set('decision', 'refused');
    const statements = await api<StatementRecord[]>('GET', `/api/v1/statements?${q}`);
    mount(
      body,
      statements.map((s) => {
        const open = h('button', { type: 'button' }, 'Open');
        open.addEventListener('click', () => load(s.text, s.connection ?? undefined));
        return h(
          'tr',
          {},
          h('td', {}, when(s.startedAt)),
          h('td', {}, s.connection ?? ''),
          h('td', {}, h('code', { class: 'sql-cell' }, s.text)),
          h('td', { class: 'num' }, s.durationMs === null ? '' : `${Math.round(s.durationMs)} ms`),
          h('td', { class: 'num' }, s.rows === null ? '' : String(s.rows)),
          h('td', {}, s.sqlstate ? `SQLSTATE ${s.sqlstate}` : (s.commandTag ?? ''), ' ', decisionText(s)),
          h('td', {}, open),
        );
      }),
    );
  }
  let timer = 0;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = window.setTimeout(() => void show(), 250);
  });
  refusedOnly.addEventListener('change', () => void show());
  await show();
  return h(
    'section',
    {},
    h('h2', {}, 'History'),
    h('div', { class: 'toolbar' }, field('Search', search), field('Refused by a policy', refusedOnly)),
    h(
      'table',
      { class: 'list', 'aria-label': 'History' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['When', 'Connection', 'Statement', 'Time', 'Rows', 'Result', ''].map((t) => h('th', {}, t)),
        ),
      ),
      body,
    ),
  );
}

interface Saved {
  id: string;
  name: string;
  connection: string;
  sql: string;
  updatedAt: string;
}

export async function savedPage(load: (text: string, connection?: string) => void): Promise<HTMLElement> {
  const saved = await api<Saved[]>('GET', '/api/v1/console/saved');
  const body = h(
    'tbody',
    {},
    saved.map((q) => {
      const open = h('button', { type: 'button' }, 'Open');
      open.addEventListener('click', () => load(q.sql, q.connection));
      const del = h('button', { type: 'button', class: 'danger' }, 'Delete');
      const row = h(
        'tr',
        {},
        h('td', {}, q.name),
        h('td', {}, q.connection),
        h('td', {}, h('code', { class: 'sql-cell' }, q.sql)),
        h('td', {}, when(q.updatedAt)),
        h('td', {}, open, ' ', del),
      );
      del.addEventListener('click', async () => {
        await api('DELETE', `/api/v1/console/saved/${q.id}`);
        row.remove();
      });
      return row;
    }),
  );
  return h(
    'section',
    {},
    h('h2', {}, 'Saved queries'),
    saved.length === 0
      ? h('p', {}, 'Nothing saved yet: use Save on the Query page.')
      : h(
          'table',
          { class: 'list', 'aria-label': 'Saved queries' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Name', 'Connection', 'Statement', 'Saved', ''].map((t) => h('th', {}, t)),
            ),
          ),
          body,
        ),
  );
}
