/**
 * The console's way to a target: a node-postgres client on an in-process connection to the
 * gateway's own PostgreSQL endpoint (no port, no TLS), signed in with the person's pgward
 * access token, application_name "pgward console". So every console statement goes through
 * the one connect path and the relay of inspectors, exactly as psql's do: access, policies,
 * audit, caps and cancel are the same code, and the audit names the browser's address.
 *
 * Results are read through a portal (Execute with a row count, pg-cursor), a page at a time;
 * Cancel is a real CancelRequest with the session's key; each run sets statement_timeout when it
 * changes. Values arrive as PostgreSQL's text: the browser shows what psql would.
 */
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import pg from 'pg';
import Cursor from 'pg-cursor';
import { PgwardError } from '../errors.js';
import { cancelRequest } from '../wire/encode.js';

/** Opens an in-process connection to the gateway's PostgreSQL endpoint, for `clientAddress`. */
export type EndpointConnector = (clientAddress: string) => Duplex;

export interface Column {
  name: string;
  /** The type's OID: the browser right-aligns numbers. */
  typeId: number;
  /** For the masking layer to set: the grid marks a masked column in its header. */
  masked?: boolean;
}

/** A PostgreSQL error as the console shows it (what psql shows). */
export interface SqlError {
  sqlstate: string;
  message: string;
  severity?: string | undefined;
  detail?: string | undefined;
  hint?: string | undefined;
  /** 1-based character position in the statement, when PostgreSQL gives one. */
  position?: number | undefined;
}

export interface Page {
  columns: Column[];
  rows: (string | null)[][];
  /** No more rows after these. */
  done: boolean;
  /** The command tag's verb and row count, once the statement has completed. */
  command?: string | undefined;
  rowCount?: number | undefined;
  durationMs: number;
  /** Notices the statement raised (a review's "held for review" arrives as one). */
  notices?: Notice[] | undefined;
}

export interface Notice {
  severity: string;
  message: string;
  detail?: string | undefined;
}

/** A table or view the person can see, with its columns (for the editor's completion). */
export interface CatalogEntry {
  schema: string;
  table: string;
  columns: string[];
}

/** Values stay PostgreSQL's text output; NULL stays null. */
const TEXT_TYPES = { getTypeParser: () => (value: string) => value };
const CONNECT_TIMEOUT_MS = 15_000;
/** A console session nobody used for this long is closed (its upstream goes back). */
const IDLE_MS = 15 * 60_000;
const MAX_PER_PERSON = 4;
const MAX_PAGE_ROWS = 5_000;
export const MAX_TIMEOUT_SECONDS = 3_600;
const CATALOG_LIMIT = 20_000;
const CATALOG_SQL = `SELECT table_schema, table_name, column_name FROM information_schema.columns
 WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
 ORDER BY table_schema, table_name, ordinal_position LIMIT ${CATALOG_LIMIT}`;

/** A pg error (DatabaseError) as the console's SqlError; anything else as a generic one. */
export function sqlError(err: unknown): SqlError {
  const e = err as Partial<pg.DatabaseError> & { message?: string };
  if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) {
    return {
      sqlstate: e.code,
      message: e.message ?? 'error',
      severity: e.severity,
      detail: e.detail,
      hint: e.hint,
      position: e.position === undefined ? undefined : Number(e.position),
    };
  }
  // Not PostgreSQL's words (a socket closed, a timeout): no detail that could name a host.
  return { sqlstate: '08006', message: 'the connection to the gateway was lost' };
}

interface Run {
  cursor: Cursor<(string | null)[]>;
  columns: Column[];
  startedAt: number;
}

/** One console session: a PostgreSQL session of the person through the gateway. */
export class BridgeSession {
  readonly id = randomUUID();
  lastUsed = Date.now();
  private run: Run | undefined;
  private timeoutSeconds = 0;
  /** Serializes requests on the one connection. */
  private queue: Promise<unknown> = Promise.resolve();
  ended = false;
  private notices: Notice[] = [];

  constructor(
    readonly userId: string,
    readonly connection: string,
    private readonly client: pg.Client,
    private readonly connector: EndpointConnector,
    private readonly clientAddress: string,
  ) {
    client.on('error', () => {
      this.ended = true;
    });
    client.on('end', () => {
      this.ended = true;
    });
    client.on('notice', (n) => {
      if (this.notices.length < 100) {
        this.notices.push({ severity: n.severity ?? 'NOTICE', message: n.message ?? '', detail: n.detail });
      }
    });
  }

  /** The notices gathered since the last answer, on the answer. */
  private withNotices<T extends object>(answer: T): T & { notices?: Notice[] } {
    const notices = this.notices;
    this.notices = [];
    return notices.length > 0 ? { ...answer, notices } : answer;
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    this.lastUsed = Date.now();
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Tables and columns the person sees in this connection's catalog. */
  catalog(): Promise<CatalogEntry[]> {
    return this.serial(async () => {
      await this.closeRun();
      const res = await this.client.query({ text: CATALOG_SQL, rowMode: 'array', types: TEXT_TYPES });
      const entries = new Map<string, CatalogEntry>();
      for (const [schema, table, column] of res.rows as string[][]) {
        const key = `${schema}.${table}`;
        let entry = entries.get(key);
        if (!entry) {
          entry = { schema: schema!, table: table!, columns: [] };
          entries.set(key, entry);
        }
        entry.columns.push(column!);
      }
      return [...entries.values()];
    });
  }

  /** Starts a statement and reads its first page. */
  start(sql: string, timeoutSeconds: number, pageRows: number): Promise<Page | { error: SqlError }> {
    return this.serial(async () => {
      await this.closeRun();
      this.notices = [];
      if (timeoutSeconds !== this.timeoutSeconds) {
        try {
          await this.client.query(`SET statement_timeout = ${Math.trunc(timeoutSeconds) * 1000}`);
          this.timeoutSeconds = timeoutSeconds;
        } catch (err) {
          // A policy may refuse SET: the statement still runs, and the person is told.
          const e = sqlError(err);
          this.notices.push({
            severity: 'WARNING',
            message: `the statement timeout could not be set: ${e.message}`,
            detail: `SQLSTATE ${e.sqlstate}`,
          });
        }
      }
      const cursor = this.client.query(
        new Cursor<(string | null)[]>(sql, undefined, { rowMode: 'array', types: TEXT_TYPES }),
      );
      const run: Run = { cursor, columns: [], startedAt: performance.now() };
      this.run = run;
      return this.withNotices(await this.readPage(run, pageRows));
    });
  }

  /** The next page of the running statement. */
  more(pageRows: number): Promise<Page | { error: SqlError }> {
    return this.serial(async () => {
      const run = this.run;
      if (!run) throw new PgwardError('NOT_FOUND', 'no statement is running in this console session');
      return this.withNotices(await this.readPage(run, pageRows));
    });
  }

  private async readPage(run: Run, pageRows: number): Promise<Page | { error: SqlError }> {
    const n = Math.max(1, Math.min(MAX_PAGE_ROWS, pageRows));
    try {
      const rows = await run.cursor.read(n);
      const result = (run.cursor as unknown as { _result: pg.QueryResult })._result;
      if (run.columns.length === 0 && result.fields) {
        run.columns = result.fields.map((f) => ({ name: f.name, typeId: f.dataTypeID }));
      }
      const done = rows.length < n || result.command !== null;
      const page: Page = {
        columns: run.columns,
        rows,
        done,
        durationMs: Math.round(performance.now() - run.startedAt),
      };
      if (done) {
        if (result.command) page.command = result.command;
        if (result.rowCount !== null) page.rowCount = result.rowCount;
        await this.closeRun();
      }
      return page;
    } catch (err) {
      this.run = undefined;
      return { error: sqlError(err) };
    }
  }

  /** Closes the open portal (the statement stops being read). */
  private async closeRun(): Promise<void> {
    const run = this.run;
    this.run = undefined;
    if (run) await run.cursor.close().catch(() => undefined);
  }

  /**
   * A CancelRequest with this session's key, on a connection of its own to the endpoint, as
   * libpq's PQcancel sends it: the gateway forwards it to the target serving the statement.
   * Not serialized: it must reach the gateway while a read waits.
   */
  cancel(): Promise<void> {
    const { processID, secretKey } = this.client as unknown as { processID: number; secretKey: number };
    const key = Buffer.alloc(4);
    key.writeInt32BE(secretKey);
    return new Promise((resolve) => {
      const stream = this.connector(this.clientAddress);
      const done = () => {
        clearTimeout(timer);
        stream.destroy();
        resolve();
      };
      const timer = setTimeout(done, 5_000);
      stream.on('error', done);
      stream.on('close', done);
      stream.resume();
      stream.end(cancelRequest(processID, key));
    });
  }

  async end(): Promise<void> {
    this.ended = true;
    await this.client.end().catch(() => undefined);
  }
}

/** A person's console sessions, by id; each bound to the person who opened it. */
export class QueryBridge {
  private readonly sessions = new Map<string, BridgeSession>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly connector: EndpointConnector) {
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  /** A pg client through the gateway as `email` with `token` (the console's access cookie). */
  async connectAs(
    email: string,
    token: string,
    connection: string,
    clientAddress: string,
  ): Promise<pg.Client> {
    const client = new pg.Client({
      stream: () => this.connector(clientAddress) as unknown as import('node:net').Socket,
      user: email,
      database: connection,
      password: token,
      ssl: false,
      application_name: 'pgward console',
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    });
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  /** Opens a console session (a PostgreSQL session through the gateway) on `connection`. */
  async open(
    person: { userId: string; email: string },
    token: string,
    connection: string,
    clientAddress: string,
  ): Promise<BridgeSession | { error: SqlError }> {
    const mine = [...this.sessions.values()].filter((s) => s.userId === person.userId);
    if (mine.length >= MAX_PER_PERSON) {
      // The oldest gives way: a person with many tabs keeps working.
      const oldest = mine.sort((a, b) => a.lastUsed - b.lastUsed)[0]!;
      this.sessions.delete(oldest.id);
      await oldest.end();
    }
    let client: pg.Client;
    try {
      client = await this.connectAs(person.email, token, connection, clientAddress);
    } catch (err) {
      return { error: sqlError(err) };
    }
    const session = new BridgeSession(person.userId, connection, client, this.connector, clientAddress);
    this.sessions.set(session.id, session);
    return session;
  }

  /** The caller's session `id`; another person's is as unknown as a missing one. */
  get(id: string, userId: string): BridgeSession {
    const session = this.sessions.get(id);
    if (!session || session.userId !== userId || session.ended) {
      if (session?.ended) this.sessions.delete(id);
      throw new PgwardError('NOT_FOUND', 'this console session is over', {
        hint: 'pick the connection again to open a new one',
      });
    }
    return session;
  }

  async close(id: string, userId: string): Promise<void> {
    const session = this.get(id, userId);
    this.sessions.delete(id);
    await session.end();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, s] of this.sessions) {
      if (s.ended || now - s.lastUsed > IDLE_MS) {
        this.sessions.delete(id);
        void s.end();
      }
    }
  }

  async shutdown(): Promise<void> {
    clearInterval(this.sweeper);
    await Promise.all([...this.sessions.values()].map((s) => s.end()));
    this.sessions.clear();
  }
}
