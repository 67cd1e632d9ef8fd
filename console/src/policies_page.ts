/**
 * The policies page: every policy, a document editor that marks each validation error at its
 * field, and a try-out of a document against sample statements (`POST /api/v1/policies/test`).
 */
import { type Diagnostic, lintGutter, setDiagnostics } from '@codemirror/lint';
import { basicSetup, EditorView } from 'codemirror';
import { ApiError, api } from './api.js';
import { field, h, mount } from './dom.js';
import { jsonSpans, spanOf } from './json_paths.js';
import { styleNonce } from './nonce.js';
import { button, errorBox, type Row, table } from './widgets.js';

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

export async function policiesPage(): Promise<HTMLElement> {
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
