/**
 * The Query page: pick a connection, write SQL (CodeMirror, PostgreSQL dialect, completion from
 * the connection's catalog as the person sees it), run the statement at the cursor or the
 * selection, see the result in the grid, cancel, export the whole result, save the query.
 */
import { PostgreSQL, type SQLNamespace, sql } from '@codemirror/lang-sql';
import { Compartment, type Extension, StateEffect, StateField } from '@codemirror/state';
import { Decoration, type DecorationSet, keymap } from '@codemirror/view';
import { basicSetup, EditorView } from 'codemirror';
import { ApiError, api, beforeSignIn } from './api.js';
import { field, h, mount } from './dom.js';
import { type GridColumn, ResultGrid } from './grid.js';
import { statementAt } from './statements.js';

const TEXT_KEY = 'pgward.console.sql';
const CONNECTION_KEY = 'pgward.console.connection';
const FIRST_PAGE = 1_000;
const NEXT_PAGE = 5_000;

interface SqlError {
  sqlstate: string;
  message: string;
  severity?: string;
  detail?: string;
  hint?: string;
  position?: number;
}

interface Notice {
  severity: string;
  message: string;
  detail?: string;
}

interface Page {
  columns: GridColumn[];
  rows: (string | null)[][];
  done: boolean;
  command?: string;
  rowCount?: number;
  durationMs: number;
  notices?: Notice[];
}

type Answer = Page | { error: SqlError; notices?: Notice[] };

interface CatalogEntry {
  schema: string;
  table: string;
  columns: string[];
}

/** Where PostgreSQL's error position points, marked in the editor. */
const setErrorMark = StateEffect.define<{ from: number; to: number } | null>();
const errorMark = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(marks, tr) {
    let next = marks.map(tr.changes);
    for (const e of tr.effects) {
      if (e.is(setErrorMark)) {
        next = e.value
          ? Decoration.set([Decoration.mark({ class: 'cm-error-mark' }).range(e.value.from, e.value.to)])
          : Decoration.none;
      }
    }
    return tr.docChanged ? Decoration.none : next;
  },
  provide: (f) => EditorView.decorations.from(f),
});

/** The catalog as lang-sql's completion namespace: schema → table → columns. */
function namespace(catalog: CatalogEntry[]): SQLNamespace {
  const out: Record<string, Record<string, string[]>> = {};
  for (const e of catalog) {
    out[e.schema] ??= {};
    out[e.schema]![e.table] = e.columns;
  }
  return out;
}

export interface QueryPage {
  element: HTMLElement;
  /** Puts text in the editor (history, saved queries). */
  load(text: string, connection?: string): void;
}

export function queryPage(nonce: string): QueryPage {
  const language = new Compartment();
  const sqlLanguage = (catalog: CatalogEntry[]): Extension =>
    sql({
      dialect: PostgreSQL,
      schema: namespace(catalog),
      defaultSchema: 'public',
      upperCaseKeywords: false,
    });

  const connection = h('select', { id: 'connection', 'aria-label': 'Connection' });
  const timeout = h('input', { type: 'number', min: '0', max: '3600', value: '300', class: 'timeout' });
  const run = h('button', { type: 'button', class: 'primary', title: 'Run (Ctrl+Enter)' }, 'Run');
  const cancel = h('button', { type: 'button', disabled: true }, 'Cancel');
  const exportCsv = h('button', { type: 'button' }, 'Export CSV');
  const exportJson = h('button', { type: 'button' }, 'Export JSON');
  const save = h('button', { type: 'button' }, 'Save');
  const status = h('div', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const problem = h('div', { class: 'problem', role: 'alert', hidden: true });
  /** A statement held for review shows here (the reviews layer sends a notice naming it). */
  const pending = h('div', { class: 'pending', role: 'status', hidden: true });
  const notices = h('ul', { class: 'notices', hidden: true });
  const valueView = h('pre', { class: 'value-view', hidden: true, tabindex: '0' });
  const grid = new ResultGrid();
  const editorHost = h('div', { class: 'editor' });

  const exportFrame = h('iframe', {
    name: 'pgward-export',
    class: 'export-frame',
    title: 'export',
    hidden: true,
  });
  const exportForm = h('form', { method: 'post', action: '/api/v1/console/export', target: 'pgward-export' });

  let sessionId: string | undefined;
  let running = false;
  let more: Promise<void> | undefined;
  let done = true;
  let loaded = 0;
  let runStartedAt = 0;
  /** How long the first page took (a result read on as the grid scrolls). */
  let firstMs: number | undefined;

  const runKey = () => {
    void runStatement();
    return true;
  };
  const editor = new EditorView({
    doc: localStorage.getItem(TEXT_KEY) ?? 'select * from users limit 100;',
    parent: editorHost,
    extensions: [
      keymap.of([
        { key: 'Mod-Enter', run: runKey },
        { key: 'Shift-Enter', run: runKey },
      ]),
      basicSetup,
      language.of(sqlLanguage([])),
      errorMark,
      EditorView.cspNonce.of(nonce),
      EditorView.contentAttributes.of({ 'aria-label': 'SQL' }),
      EditorView.updateListener.of((u) => {
        if (u.docChanged) saveText();
      }),
    ],
  });

  let saveTimer = 0;
  function saveText(now = false): void {
    clearTimeout(saveTimer);
    const write = () => localStorage.setItem(TEXT_KEY, editor.state.doc.toString());
    if (now) write();
    else saveTimer = window.setTimeout(write, 250);
  }
  beforeSignIn.push(() => saveText(true));
  window.addEventListener('beforeunload', () => saveText(true));
  // Closing the tab ends its session at once (else it ends after 15 minutes unused).
  window.addEventListener('pagehide', () => {
    if (sessionId) {
      void fetch(`/api/v1/console/sessions/${sessionId}`, { method: 'DELETE', keepalive: true }).catch(
        () => undefined,
      );
    }
  });

  function setRunning(on: boolean): void {
    running = on;
    run.disabled = on;
    cancel.disabled = !on;
  }

  function showError(err: SqlError, offset: number, length: number): void {
    problem.hidden = false;
    mount(
      problem,
      h('div', { class: 'problem-message' }, `${err.severity ?? 'ERROR'}:  ${err.message}`),
      err.detail ? h('div', {}, `DETAIL:  ${err.detail}`) : null,
      err.hint ? h('div', {}, `HINT:  ${err.hint}`) : null,
      h('div', { class: 'sqlstate' }, `SQLSTATE: ${err.sqlstate}`),
    );
    if (err.position !== undefined && err.position > 0 && err.position <= length) {
      const from = offset + err.position - 1;
      const word = /^[\w$."]+/.exec(editor.state.doc.sliceString(from, from + 64));
      editor.dispatch({ effects: setErrorMark.of({ from, to: from + Math.max(1, word?.[0].length ?? 1) }) });
    }
  }

  function showProblem(message: string): void {
    problem.hidden = false;
    mount(problem, h('div', { class: 'problem-message' }, message));
  }

  function showNotices(list: Notice[] | undefined): void {
    const items = list ?? [];
    notices.hidden = items.length === 0;
    mount(
      notices,
      items.map((n) => h('li', {}, `${n.severity}:  ${n.message}`, n.detail ? ` (${n.detail})` : '')),
    );
    const review = items.find((n) => /review/i.test(n.message));
    pending.hidden = !review;
    mount(pending, review ? `Waiting for review: ${review.message}` : '');
  }

  function describe(page: Page): string {
    if (!page.done) return `${loaded.toLocaleString()} rows loaded · first rows in ${page.durationMs} ms`;
    const total = Math.round(performance.now() - runStartedAt);
    if (firstMs !== undefined && firstMs !== page.durationMs) {
      return `${loaded.toLocaleString()} rows · first rows in ${firstMs} ms, all read after ${total} ms`;
    }
    if (page.columns.length === 0) {
      return `${page.command ?? 'OK'}${page.rowCount !== undefined && page.rowCount !== null ? ` ${page.rowCount}` : ''} · ${total} ms`;
    }
    return `${loaded.toLocaleString()} ${loaded === 1 ? 'row' : 'rows'} · ${total} ms`;
  }

  async function openSession(name: string): Promise<void> {
    const old = sessionId;
    sessionId = undefined;
    if (old) void api('DELETE', `/api/v1/console/sessions/${old}`).catch(() => undefined);
    if (!name) return;
    localStorage.setItem(CONNECTION_KEY, name);
    mount(status, `Connecting to ${name}…`);
    problem.hidden = true;
    try {
      const opened = await api<{ id: string; catalog: CatalogEntry[] } | { error: SqlError }>(
        'POST',
        '/api/v1/console/sessions',
        { connection: name },
      );
      if ('error' in opened) {
        mount(status, '');
        showError(opened.error, 0, 0);
        return;
      }
      sessionId = opened.id;
      editor.dispatch({ effects: language.reconfigure(sqlLanguage(opened.catalog)) });
      mount(status, `Connected to ${name}`);
    } catch (err) {
      mount(status, '');
      showProblem((err as Error).message);
    }
  }

  /** The selection, or the statement at the cursor. */
  function currentStatement(): { text: string; from: number } | undefined {
    const sel = editor.state.selection.main;
    const doc = editor.state.doc.toString();
    if (!sel.empty) {
      const raw = doc.slice(sel.from, sel.to);
      const lead = raw.length - raw.trimStart().length;
      const text = raw.trim().replace(/;\s*$/, '');
      return text ? { text, from: sel.from + lead } : undefined;
    }
    const span = statementAt(doc, sel.head);
    return span ? { text: span.text, from: span.from } : undefined;
  }

  async function runStatement(): Promise<void> {
    if (running) return;
    const statement = currentStatement();
    if (!statement) return;
    if (!sessionId) await openSession(connection.value);
    if (!sessionId) return;
    problem.hidden = true;
    showNotices([]);
    editor.dispatch({ effects: setErrorMark.of(null) });
    setRunning(true);
    mount(status, 'Running…');
    runStartedAt = performance.now();
    try {
      const answer = await api<Answer>('POST', `/api/v1/console/sessions/${sessionId}/run`, {
        sql: statement.text,
        timeoutSeconds: Number(timeout.value) || 0,
        pageRows: FIRST_PAGE,
      });
      showNotices(answer.notices);
      if ('error' in answer) {
        mount(status, `Failed after ${Math.round(performance.now() - runStartedAt)} ms`);
        showError(answer.error, statement.from, statement.text.length);
        return;
      }
      loaded = answer.rows.length;
      done = answer.done;
      firstMs = answer.done ? undefined : answer.durationMs;
      grid.reset(answer.columns, answer.rows);
      mount(status, describe(answer));
    } catch (err) {
      if (err instanceof ApiError && err.problem.code === 'NOT_FOUND') sessionId = undefined;
      mount(status, '');
      showProblem((err as Error).message);
    } finally {
      setRunning(false);
    }
  }

  function fetchMore(): void {
    if (done || more || running || !sessionId) return;
    const id = sessionId;
    more = (async () => {
      try {
        const answer = await api<Answer>('POST', `/api/v1/console/sessions/${id}/more`, {
          pageRows: NEXT_PAGE,
        });
        if ('error' in answer) {
          done = true;
          showError(answer.error, 0, 0);
          return;
        }
        loaded += answer.rows.length;
        done = answer.done;
        grid.append(answer.rows);
        mount(status, describe(answer));
      } catch (err) {
        done = true;
        showProblem((err as Error).message);
      } finally {
        more = undefined;
      }
    })();
  }
  grid.onNearEnd = () => fetchMore();
  grid.onOpenValue = (column, value) => {
    valueView.hidden = false;
    mount(valueView, `${column}:\n${value === null ? 'NULL' : value}`);
  };
  valueView.addEventListener('click', () => {
    valueView.hidden = true;
  });

  function exportAs(format: 'csv' | 'json'): void {
    const statement = currentStatement();
    if (!statement || !connection.value) return;
    problem.hidden = true;
    const values: Record<string, string> = {
      connection: connection.value,
      sql: statement.text,
      format,
      timeoutSeconds: String(Number(timeout.value) || 0),
    };
    mount(
      exportForm,
      Object.entries(values).map(([name, value]) => h('input', { type: 'hidden', name, value })),
    );
    exportForm.submit();
    mount(status, `Exporting ${format.toUpperCase()}…`);
  }
  // A download does not load the frame; an error page does: show what it says.
  exportFrame.addEventListener('load', () => {
    const text = exportFrame.contentDocument?.body?.textContent?.trim();
    if (text) showProblem(text);
  });

  run.addEventListener('click', () => void runStatement());
  cancel.addEventListener('click', () => {
    if (sessionId) void api('POST', `/api/v1/console/sessions/${sessionId}/cancel`).catch(() => undefined);
  });
  exportCsv.addEventListener('click', () => exportAs('csv'));
  exportJson.addEventListener('click', () => exportAs('json'));
  save.addEventListener('click', async () => {
    const statement = currentStatement();
    const name = statement && window.prompt('Save this query as');
    if (!statement || !name) return;
    try {
      await api('PUT', '/api/v1/console/saved', { name, connection: connection.value, sql: statement.text });
      mount(status, `Saved as "${name}"`);
    } catch (err) {
      showProblem((err as Error).message);
    }
  });
  connection.addEventListener('change', () => void openSession(connection.value));

  async function loadConnections(): Promise<void> {
    const list = await api<{ name: string; database: string }[]>('GET', '/api/v1/connections');
    const remembered = localStorage.getItem(CONNECTION_KEY);
    mount(
      connection,
      list.map((c) => h('option', { value: c.name, selected: c.name === remembered }, c.name)),
    );
    if (list.length === 0)
      showProblem('No connection is open to you: ask a pgward administrator for access.');
    else await openSession(connection.value);
  }
  void loadConnections();

  const element = h(
    'section',
    { class: 'query-page' },
    h(
      'div',
      { class: 'toolbar' },
      h('label', { for: 'connection' }, 'Connection'),
      connection,
      run,
      cancel,
      exportCsv,
      exportJson,
      save,
      field('Timeout (s)', timeout),
    ),
    editorHost,
    problem,
    pending,
    notices,
    status,
    grid.element,
    valueView,
    exportForm,
    exportFrame,
  );
  return {
    element,
    load(text, conn) {
      editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: text } });
      if (conn && conn !== connection.value && [...connection.options].some((o) => o.value === conn)) {
        connection.value = conn;
        void openSession(conn);
      }
      editor.focus();
    },
  };
}
