/** Small pieces the administration pages share: a table of records, buttons, an error box. */
import { ApiError } from './api.js';
import { h, mount } from './dom.js';

export type Row = Record<string, unknown>;

function cellText(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** A table of records, with an optional actions column. */
export function table(
  label: string,
  rows: Row[],
  columns: string[],
  actions?: (row: Row) => Node[],
): HTMLElement {
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
export function errorBox(): { el: HTMLElement; show(err: unknown): void; clear(): void } {
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

export function button(label: string, onclick: () => unknown, cls = ''): HTMLButtonElement {
  return h('button', { type: 'button', class: cls, onclick }, label);
}
