/**
 * The web console end to end, in real Chromium: sign in through the dev IdP's pages, run a
 * query, export, cancel, see errors as PostgreSQL gives them, a 100,000-row result, sessions
 * played back and ended, and the page's security (CSP, HttpOnly cookies, CSRF, expiry).
 * Screenshots are left in the folder printed at the start.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { call } from './support/api.js';
import { launchChromium, screenshotDir, shot, signIn, signInHere } from './support/console_browser.js';
import { startTestStack, type TestStack } from './support/dev_stack.js';
import { eventually } from './support/eventually.js';

/** Replaces the editor's text (CodeMirror: select all, then type over it). */
async function setSql(page: Page, text: string): Promise<void> {
  const editor = page.getByRole('textbox', { name: 'SQL' });
  await editor.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await editor.pressSequentially(text, { delay: 0 });
  // Completion pop-ups must not swallow the next key.
  await page.keyboard.press('Escape');
}

async function runSql(page: Page, text: string): Promise<void> {
  await setSql(page, text);
  await page.getByRole('button', { name: 'Run' }).click();
  await page.getByRole('button', { name: 'Run' }).and(page.locator(':enabled')).waitFor({ timeout: 30_000 });
}

const rowCount = async (page: Page) => Number(await page.getByRole('grid').getAttribute('aria-rowcount'));

describe('web console', () => {
  let t: TestStack;
  let browser: Browser;
  let http: string;
  let shots: string;
  let adminContext: BrowserContext;
  let admin: Page;
  const pageErrors: string[] = [];

  before(async () => {
    t = await startTestStack();
    http = t.stack.info.http;
    browser = await launchChromium();
    shots = screenshotDir();
    console.log(`# console screenshots: ${shots}`);
    adminContext = await browser.newContext({
      acceptDownloads: true,
      viewport: { width: 1280, height: 800 },
    });
    // Every violation of the page's Content-Security-Policy, and every script error, is kept.
    await adminContext.addInitScript(`document.addEventListener('securitypolicyviolation', (e) => {
      const seen = JSON.parse(sessionStorage.getItem('csp') || '[]');
      seen.push(e.violatedDirective + ' ' + e.blockedURI);
      sessionStorage.setItem('csp', JSON.stringify(seen));
    });`);
    adminContext.on('weberror', (e) => pageErrors.push(e.error().message));
    admin = await signIn(adminContext, http, 'admin@example.com');
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  it('serves the console with a CSP without inline script, cacheable compressed assets, HttpOnly cookies', async () => {
    const page = await fetch(`${http}/`);
    const csp = page.headers.get('content-security-policy') ?? '';
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    const html = await page.text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    const script = /src="(\/assets\/console-[0-9a-f]{12}\.js)"/.exec(html)?.[1];
    assert.ok(script, 'a content-hashed script');
    const asset = await fetch(`${http}${script}`, { headers: { 'accept-encoding': 'br' } });
    assert.equal(asset.status, 200);
    assert.match(asset.headers.get('cache-control') ?? '', /max-age=31536000, immutable/);
    assert.equal(asset.headers.get('content-encoding'), 'br');
    const cookies = await adminContext.cookies();
    const access = cookies.find((c) => c.name === 'pgward_access');
    assert.ok(access?.httpOnly, 'the access cookie is HttpOnly');
    assert.equal(await admin.evaluate("document.cookie.includes('pgward_access')"), false);
  });

  it('runs a query and shows its rows in the grid, typed', async () => {
    await runSql(admin, 'select id, username, email, null::text as nothing from users order by id');
    const grid = admin.getByRole('grid');
    await grid.getByRole('gridcell', { name: 'jane_smith' }).waitFor();
    const { rows } = await (await t.client('admin@example.com')).query(
      'select count(*)::int as n from users',
    );
    assert.equal(await rowCount(admin), rows[0].n + 1);
    assert.match((await admin.getByRole('status').first().textContent()) ?? '', /rows · \d+ ms/);
    assert.ok(await grid.locator('.grid-cell.num').count(), 'numbers are right-aligned');
    assert.equal(await grid.locator('.grid-cell.null').first().textContent(), 'NULL');
    await shot(admin, shots, '01-query');
  });

  it('went through the gateway as a PostgreSQL session of its own, audited', async () => {
    const store = t.store();
    const found = await eventually(async () => {
      const { rows } = await store.query(
        `SELECT s.application_name, st.text FROM pgward.statement st JOIN pgward.session s USING (session_id)
          WHERE st.text LIKE 'select id, username, email%' LIMIT 1`,
      );
      return rows[0];
    }, 'the console statement in the audit');
    assert.equal(found.application_name, 'pgward console');
  });

  it('completes tables and columns from the catalog the person sees', async () => {
    await setSql(admin, 'select * from sensitive_d');
    await admin.keyboard.press('Control+Space');
    await admin
      .getByRole('listbox')
      .getByRole('option', { name: /sensitive_data/ })
      .waitFor();
    await admin.keyboard.press('Escape');
    await setSql(admin, 'select users.em');
    await admin.keyboard.press('Control+Space');
    await admin.getByRole('listbox').getByRole('option', { name: /email/ }).waitFor();
    await shot(admin, shots, '01b-completion');
    await admin.keyboard.press('Escape');
  });

  it('runs the statement at the cursor, or the selection', async () => {
    await setSql(admin, "select 'first' as which;\nselect 'second' as which;");
    await admin.getByRole('button', { name: 'Run' }).click();
    await admin.getByRole('grid').getByRole('gridcell', { name: 'second', exact: true }).waitFor();
    await admin.getByRole('textbox', { name: 'SQL' }).click();
    await admin.keyboard.press('ControlOrMeta+Home');
    await admin.keyboard.press('Shift+End');
    await admin.keyboard.press('ControlOrMeta+Enter');
    await admin.getByRole('grid').getByRole('gridcell', { name: 'first', exact: true }).waitFor();
  });

  it('saves a query and opens it again from Saved', async () => {
    await setSql(admin, 'select count(*) from users');
    admin.once('dialog', (d) => void d.accept('user count'));
    await admin.getByRole('button', { name: 'Save' }).click();
    await admin.getByRole('status').filter({ hasText: 'Saved as "user count"' }).waitFor();
    await setSql(admin, 'select 1');
    await admin.getByRole('link', { name: 'Saved', exact: true }).click();
    await admin
      .getByRole('row', { name: /user count/ })
      .getByRole('button', { name: 'Open' })
      .click();
    await admin.getByRole('button', { name: 'Run' }).waitFor();
    assert.equal(
      await admin.getByRole('textbox', { name: 'SQL' }).textContent(),
      'select count(*) from users',
    );
  });

  it('exports the whole result as CSV', async () => {
    await setSql(admin, 'select id, username, email from users order by id');
    const [download] = await Promise.all([
      admin.waitForEvent('download'),
      admin.getByRole('button', { name: 'Export CSV' }).click(),
    ]);
    const csv = readFileSync((await download.path())!, 'utf8');
    const direct = new pg.Client({ connectionString: t.stack.info.target });
    await direct.connect();
    const { rows } = await direct.query('select id, username, email from users order by id');
    await direct.end();
    const expected = ['id,username,email', ...rows.map((r) => `${r.id},${r.username},${r.email}`)].join(
      '\r\n',
    );
    assert.equal(csv.trimEnd(), expected);
    const [json] = await Promise.all([
      admin.waitForEvent('download'),
      admin.getByRole('button', { name: 'Export JSON' }).click(),
    ]);
    const objects = JSON.parse(readFileSync((await json.path())!, 'utf8'));
    assert.deepEqual(
      objects,
      rows.map((r) => ({ id: String(r.id), username: r.username, email: r.email })),
    );
  });

  it('cancels select pg_sleep(30) within 3 s with a real CancelRequest', async () => {
    await setSql(admin, 'select pg_sleep(30)');
    await admin.getByRole('button', { name: 'Run' }).click();
    await admin.getByRole('button', { name: 'Cancel' }).and(admin.locator(':enabled')).waitFor();
    const started = Date.now();
    await admin.getByRole('button', { name: 'Cancel' }).click();
    const alert = admin.getByRole('alert').filter({ hasText: '57014' });
    await alert.waitFor({ timeout: 3_000 });
    assert.ok(Date.now() - started < 3_000);
    assert.match((await alert.textContent()) ?? '', /canceling statement due to user request/);
    await shot(admin, shots, '02-cancelled');
  });

  it('shows a statement timeout as PostgreSQL reports it', async () => {
    await admin.getByLabel('Timeout (s)').fill('1');
    await runSql(admin, 'select pg_sleep(5)');
    await admin.getByRole('alert').filter({ hasText: '57014' }).waitFor();
    assert.match((await admin.getByRole('alert').textContent()) ?? '', /statement timeout/);
    await admin.getByLabel('Timeout (s)').fill('300');
  });

  it('shows the error position in the editor', async () => {
    await runSql(admin, 'select nosuchcolumn from users');
    await admin.getByRole('alert').filter({ hasText: '42703' }).waitFor();
    assert.equal(await admin.locator('.cm-error-mark').textContent(), 'nosuchcolumn');
  });

  it('shows a permission error to the viewer, with its SQLSTATE', async () => {
    const context = await browser.newContext();
    const viewer = await signIn(context, http, 'viewer@example.com');
    await runSql(viewer, "insert into users (username, email) values ('mallory', 'm@example.com')");
    const alert = viewer.getByRole('alert').filter({ hasText: '42501' });
    await alert.waitFor();
    assert.match((await alert.textContent()) ?? '', /permission denied for table users/);
    await shot(viewer, shots, '03-viewer-permission');
    // The viewer sees no administration.
    assert.equal(await viewer.getByRole('link', { name: 'Policies' }).count(), 0);
    await context.close();
  });

  it('scrolls a 100,000-row result, fetched in pages, and exports every row', async () => {
    const sql = 'select g as n, md5(g::text) as hash from generate_series(1, 100000) g';
    await runSql(admin, sql);
    assert.ok((await rowCount(admin)) < 100_001, 'the first page is not the whole result');
    const grid = admin.getByRole('grid');
    await grid.focus();
    const frames = await eventually(
      async () => {
        await admin.keyboard.press('End');
        return (await rowCount(admin)) === 100_001 ? true : undefined;
      },
      'every row loaded by scrolling',
      60_000,
    );
    assert.ok(frames);
    await grid.getByRole('rowheader', { name: '100000', exact: true }).waitFor();
    assert.ok((await grid.getByRole('row').count()) < 200, 'only the rows in view are in the DOM');
    // Smooth: a long scroll stays at frame rate.
    const fps = (await admin.evaluate(`(async () => {
      const viewport = document.querySelector('.grid-viewport');
      let frames = 0;
      const start = performance.now();
      await new Promise((resolve) => {
        const step = () => {
          frames++;
          viewport.scrollTop = (viewport.scrollTop + 2000) % viewport.scrollHeight;
          if (performance.now() - start < 1000) requestAnimationFrame(step);
          else resolve();
        };
        requestAnimationFrame(step);
      });
      return frames / ((performance.now() - start) / 1000);
    })()`)) as number;
    console.log(`# grid scroll at 100,000 rows: ${fps.toFixed(0)} frames/s`);
    assert.ok(fps > 20, `scrolling ran at ${fps.toFixed(0)} frames/s`);
    await shot(admin, shots, '04-100k-rows');
    await setSql(admin, sql);
    const [download] = await Promise.all([
      admin.waitForEvent('download'),
      admin.getByRole('button', { name: 'Export CSV' }).click(),
    ]);
    const lines = readFileSync((await download.path())!, 'utf8')
      .trimEnd()
      .split('\r\n');
    assert.equal(lines.length, 100_001);
    assert.equal(lines[0], 'n,hash');
    assert.equal(lines[100_000], `100000,${md5('100000')}`);
  });

  it('runs a write and shows its command tag and row count', async () => {
    await runSql(admin, "insert into users (username, email) values ('console_user', 'console@example.com')");
    assert.match((await admin.getByRole('status').first().textContent()) ?? '', /^INSERT 1 · \d+ ms$/);
    await runSql(admin, "delete from users where username = 'console_user'");
    assert.match((await admin.getByRole('status').first().textContent()) ?? '', /^DELETE 1 · \d+ ms$/);
  });

  it('plays back a session: its statements in order', async () => {
    await runSql(admin, "select 'played' as step");
    await runSql(admin, "select 'back' as step");
    // The administrator's own console session, once the audit has its record.
    const row = admin
      .getByRole('row')
      .filter({ hasText: 'pgward console' })
      .filter({ hasText: 'admin@example.com' })
      .first();
    await eventually(async () => {
      await admin.goto(`${http}/#/query`);
      await admin.getByRole('link', { name: 'Sessions', exact: true }).click();
      await admin.getByRole('heading', { name: 'Sessions (everyone)' }).waitFor();
      return row
        .waitFor({ timeout: 2_000 })
        .then(() => true)
        .catch(() => undefined);
    }, 'a console session in the list');
    await row.getByRole('link', { name: 'Play back' }).click();
    const timeline = admin.getByRole('list', { name: 'Timeline' });
    await timeline.waitFor();
    assert.ok((await timeline.getByRole('listitem').count()) >= 3);
    await admin.getByRole('button', { name: 'Play' }).click();
    await admin.getByRole('button', { name: 'Play' }).waitFor({ timeout: 30_000 });
    const last = await timeline.getByRole('listitem').count();
    assert.match(
      (await admin.getByRole('status').textContent()) ?? '',
      new RegExp(`Statement ${last} of ${last}`),
    );
    await shot(admin, shots, '05-playback');
  });

  it('ends a live session as an administrator', async () => {
    const editor = await t.client('editor@example.com', { applicationName: 'psql-like' });
    const ended = new Promise<{ code?: string }>((resolve) =>
      editor.once('error', (e) => resolve(e as never)),
    );
    await editor.query('select 1');
    // The audit writes the session's record in its next batch: look until the list has it.
    const row = admin.getByRole('row').filter({ hasText: 'psql-like' }).filter({ hasText: 'live' }).first();
    await eventually(async () => {
      await admin.goto(`${http}/#/query`);
      await admin.getByRole('link', { name: 'Sessions', exact: true }).click();
      await admin.getByRole('heading', { name: 'Sessions (everyone)' }).waitFor();
      await admin.getByLabel('Person').fill('editor@example.com');
      await admin.getByLabel('Live only').check();
      return row
        .waitFor({ timeout: 2_000 })
        .then(() => true)
        .catch(() => undefined);
    }, 'the live session in the list');
    // The filter shows only the editor's live sessions.
    const rows = admin.getByRole('table', { name: 'Sessions' }).locator('tbody').getByRole('row');
    for (const text of await rows.allTextContents()) assert.match(text, /editor@example\.com.*live/);
    admin.once('dialog', (d) => void d.accept());
    await row.getByRole('button', { name: 'End session' }).click();
    assert.equal((await ended).code, '57P01');
    await shot(admin, shots, '06-session-ended');
  });

  it("ends the tab's session through the gateway when the tab closes", async () => {
    const context = await browser.newContext();
    const page = await signIn(context, http, 'viewer@example.com');
    await runSql(page, 'select 1');
    const token = await t.token('viewer@example.com');
    const live = async () => (await call<string[]>(http, 'GET', '/api/v1/console/live', { token })).body;
    const before = await live();
    assert.ok(before.length > 0, 'the tab has a live session');
    await page.close({ runBeforeUnload: true });
    await eventually(
      async () => ((await live()).length < before.length ? true : undefined),
      'the session ended',
    );
    await context.close();
  });

  it('refuses state-changing console requests from another origin', async () => {
    const cookie = (await adminContext.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
    const answer = await call(http, 'POST', '/api/v1/console/sessions', {
      cookie,
      body: { connection: 'demo' },
      headers: { origin: 'http://evil.example' },
    });
    assert.equal(answer.status, 403);
  });

  it('keeps the editor text across an expired sign-in and brings the person back to it', async () => {
    const context = await browser.newContext();
    const page = await signIn(context, http, 'editor@example.com');
    await setSql(page, 'select 42 as kept');
    await page.waitForTimeout(400);
    await context.clearCookies();
    await page.getByRole('button', { name: 'Run' }).click();
    await page.waitForURL(/\/login$/);
    await signInHere(page, http, 'editor@example.com');
    assert.equal(await page.getByRole('textbox', { name: 'SQL' }).textContent(), 'select 42 as kept');
    await context.close();
  });

  it("shows a statement refused by a policy with the rule's message, detail, hint and SQLSTATE", async () => {
    const token = await t.token('admin@example.com');
    const put = await call(http, 'PUT', '/api/v1/policies/editors-no-ddl', {
      token,
      body: {
        connections: ['demo'],
        groups: ['editor'],
        rules: [{ deny: ['ddl'], message: 'schema changes go through migrations' }],
      },
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const context = await browser.newContext();
    const editor = await signIn(context, http, 'editor@example.com');
    // Every gateway applies a stored policy within seconds.
    const alert = editor.getByRole('alert');
    await eventually(
      async () => {
        await runSql(editor, 'create table console_scratch (x int)');
        return /POLICY_DENIED/.test((await alert.textContent()) ?? '') ? true : undefined;
      },
      'the policy in force',
      20_000,
    );
    const text = (await alert.textContent()) ?? '';
    assert.match(text, /schema changes go through migrations/);
    assert.match(text, /DETAIL: {2}pgward error POLICY_DENIED/);
    assert.match(text, /HINT: {2}\S/);
    assert.match(text, /SQLSTATE: 42501/);
    await shot(editor, shots, '07-policy-refusal');
    // The audit has the decision, and the person's history shows it.
    const refused = editor
      .getByRole('table', { name: 'History' })
      .getByRole('row')
      .filter({ hasText: 'console_scratch' })
      .filter({ hasText: 'refused by editors-no-ddl' });
    await eventually(
      async () => {
        // Through another page: the History page is read when it is opened.
        await editor.goto(`${http}/#/query`);
        await editor.getByRole('link', { name: 'History', exact: true }).click();
        await editor.getByRole('heading', { name: 'History' }).waitFor();
        return (await refused.count()) > 0 ? true : undefined;
      },
      'the refusal in the history',
      20_000,
    );
    // Only refusals, when asked: the catalog reads and the like go.
    await editor.getByLabel('Refused by a policy').check();
    const history = editor.getByRole('table', { name: 'History' });
    await eventually(
      async () =>
        (await history
          .getByRole('row')
          .filter({ hasText: /SELECT|select/ })
          .count()) === 0
          ? true
          : undefined,
      'only refused statements',
    );
    assert.ok((await refused.count()) > 0);
    await context.close();
  });

  it('edits a policy in the console: validation errors in place, then a test against sample statements', async () => {
    await admin.goto(`${http}/#/admin/policies`);
    await admin
      .getByRole('table', { name: 'Policies' })
      .getByRole('row', { name: /editors-no-ddl/ })
      .waitFor();
    await admin
      .getByRole('row', { name: /editors-no-ddl/ })
      .getByRole('button', { name: 'Edit' })
      .click();
    const doc = admin.getByLabel('Policy document');
    // The editor's lines, joined: still the same JSON document.
    const valid = (await doc.textContent()) ?? '';
    assert.match(valid, /"ddl"/);
    await doc.fill(valid.replace('"ddl"', '"nonsense"'));
    await admin.getByRole('button', { name: 'Save policy' }).click();
    const errors = admin.getByRole('alert', { name: 'Validation errors' });
    await errors
      .locator('code', { hasText: /^rules\[0\]\.deny/ })
      .first()
      .waitFor();
    // In place: the value is underlined in the document.
    assert.equal(await admin.locator('.cm-lintRange-error').first().textContent(), '"nonsense"');
    await shot(admin, shots, '08-policy-invalid');
    await doc.fill(valid);
    await admin.getByLabel('Sample statements').fill('select 1;\ndrop table users;');
    await admin.getByRole('button', { name: 'Test' }).click();
    const results = admin.getByRole('table', { name: 'Test results' });
    await results.waitFor();
    assert.match((await results.getByRole('row', { name: /drop table users/ }).textContent()) ?? '', /deny/);
    await admin.getByRole('button', { name: 'Save policy' }).click();
    await admin.getByRole('status').filter({ hasText: 'Saved policy editors-no-ddl' }).waitFor();
    assert.equal(
      await admin.locator('.cm-lintRange-error').count(),
      0,
      'the fixed document has no marks left',
    );
    await shot(admin, shots, '09-policy-test');
  });

  it("opens every administration page; a connection's credential is written, never shown", async () => {
    for (const title of [
      'Connections',
      'Access maps',
      'Groups and mappings',
      'Providers',
      'People',
      'Reports',
    ]) {
      await admin.getByRole('link', { name: title, exact: true }).click();
      await admin.getByRole('heading', { name: title }).waitFor();
      assert.equal(await admin.getByRole('alert').count(), 0, `${title} shows no error`);
    }
    await admin.getByRole('link', { name: 'Connections', exact: true }).click();
    await admin.getByLabel('Name', { exact: true }).fill('scratch');
    await admin.getByLabel('Host').fill('127.0.0.1');
    await admin.getByLabel('Database').fill('scratch');
    await admin.getByLabel('Credential user').fill('someone');
    await admin.getByLabel('Credential password').fill('s3cret-never-shown');
    await admin.getByRole('button', { name: 'Save connection' }).click();
    const row = admin.getByRole('table', { name: 'Connections' }).getByRole('row', { name: /scratch/ });
    await row.waitFor();
    assert.doesNotMatch((await admin.content()) ?? '', /s3cret-never-shown/);
    admin.once('dialog', (d) => void d.accept());
    await row.getByRole('button', { name: 'Delete' }).click();
    await row.waitFor({ state: 'detached' });
  });

  it('broke no rule of its Content-Security-Policy and threw no script error on any page', async () => {
    await admin.goto(`${http}/#/query`);
    await admin.getByLabel('Connection').waitFor();
    assert.deepEqual(
      JSON.parse((await admin.evaluate("sessionStorage.getItem('csp') || '[]'")) as string),
      [],
    );
    assert.deepEqual(pageErrors, []);
  });

  it('shows the first screen in under 1 s from a cold load', async () => {
    const context = await browser.newContext();
    await context.addCookies(await adminContext.cookies());
    const page = await context.newPage();
    const started = Date.now();
    await page.goto(`${http}/`);
    await page.getByLabel('Connection').waitFor();
    await page.getByRole('textbox', { name: 'SQL' }).waitFor();
    const ms = Date.now() - started;
    console.log(`# first screen from a cold load: ${ms} ms`);
    assert.ok(ms < 1_000, `first screen took ${ms} ms`);
    await context.close();
  });
});

function md5(text: string): string {
  return createHash('md5').update(text).digest('hex');
}
