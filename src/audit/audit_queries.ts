/**
 * Reading the audit trail: sessions and statements, filtered by person, connection, time and
 * statement text, newest first and always bounded.
 */
import type pg from 'pg';
import type { SessionRecord, StatementRecord } from './audit_records.js';

export interface AuditFilter {
  userId?: string | undefined;
  email?: string | undefined;
  connection?: string | undefined;
  sessionId?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  /** Substring of the statement text (statements only). */
  text?: string | undefined;
  /** What policies made of it (statements only). */
  decision?: 'allowed' | 'refused' | 'observed' | undefined;
  limit: number;
}

/** How far back a listing of statements looks, widening step by step (then without bound). */
const LOOKBACK_MS = [60_000, 3_600_000, 86_400_000, 7 * 86_400_000, 31 * 86_400_000];
/** Slack around a session's start and end when its statements are looked for. */
const SESSION_MARGIN_MS = 1_000;

/** The later of a bound and a date (an absent bound is no bound). */
const later = (bound: Date | undefined, d: Date) => (bound !== undefined && bound >= d ? bound : d);
/** The earlier of a bound and a date. */
const earlier = (bound: Date | undefined, d: Date) => (bound !== undefined && bound <= d ? bound : d);

/** Escapes LIKE wildcards so the text filter matches literally. */
const literalLike = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** The filters both queries bind as $1..$6: person (id, email), connection, session, time range. */
const filterValues = (f: AuditFilter) => [
  f.userId ?? null,
  f.email ?? null,
  f.connection ?? null,
  f.sessionId ?? null,
  f.since ?? null,
  f.until ?? null,
];

export class AuditQueries {
  constructor(private readonly pool: pg.Pool) {}

  async sessions(f: AuditFilter): Promise<SessionRecord[]> {
    const { rows } = await this.pool.query<SessionRecord>(
      `SELECT session_id AS "sessionId", user_id AS "userId", email, provider, connection_name AS connection,
              login_role AS "loginRole", client_addr AS "clientAddr", application_name AS "applicationName",
              started_at AS "startedAt", ended_at AS "endedAt", bytes_in::float8 AS "bytesIn",
              bytes_out::float8 AS "bytesOut", end_reason AS "endReason"
         FROM pgward.session
        WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR lower(email COLLATE "C") = lower($2 COLLATE "C"))
          AND ($3::text IS NULL OR connection_name = $3) AND ($4::uuid IS NULL OR session_id = $4)
          AND ($5::timestamptz IS NULL OR started_at >= $5) AND ($6::timestamptz IS NULL OR started_at < $6)
        ORDER BY started_at DESC LIMIT $7`,
      [...filterValues(f), f.limit],
    );
    return rows;
  }

  /**
   * Statements, newest first. The table has only a BRIN index on time (an index entry per row
   * would cost the writer; see migration 007), which cannot hand rows out in order: an unbounded
   * listing would read and sort the whole table. So the listing looks back over a short window
   * first and widens it only while it has found fewer rows than asked for. A session's
   * statements are looked for within the session's lifetime; an unknown session has none.
   */
  async statements(f: AuditFilter): Promise<StatementRecord[]> {
    let { since, until } = f;
    if (f.sessionId !== undefined) {
      const { rows } = await this.pool.query<{ startedAt: Date; endedAt: Date | null }>(
        'SELECT started_at AS "startedAt", ended_at AS "endedAt" FROM pgward.session WHERE session_id = $1',
        [f.sessionId],
      );
      const session = rows[0];
      if (!session) return [];
      // A margin for timestamps taken a moment apart (and to the millisecond) by the gateway.
      since = later(since, new Date(session.startedAt.getTime() - SESSION_MARGIN_MS));
      if (session.endedAt) until = earlier(until, new Date(session.endedAt.getTime() + SESSION_MARGIN_MS));
    }
    const newest = (until ?? new Date()).getTime();
    for (const back of LOOKBACK_MS) {
      const from = later(since, new Date(newest - back));
      const rows = await this.statementsIn({ ...f, since: from, until });
      if (rows.length >= f.limit || from === since) return rows;
    }
    return this.statementsIn({ ...f, since, until });
  }

  private async statementsIn(f: AuditFilter): Promise<StatementRecord[]> {
    const { rows } = await this.pool.query<StatementRecord>(
      `SELECT st.session_id AS "sessionId", st.seq, st.kind, st.text, st.started_at AS "startedAt",
              st.duration_ms AS "durationMs", st.command_tag AS "commandTag", st.rows::float8 AS rows,
              st.sqlstate, st.decision, st.decided_by::jsonb AS "decidedBy", s.email, s.connection_name AS connection
         FROM pgward.statement st LEFT JOIN pgward.session s USING (session_id)
        WHERE ($1::uuid IS NULL OR s.user_id = $1) AND ($2::text IS NULL OR lower(s.email COLLATE "C") = lower($2 COLLATE "C"))
          AND ($3::text IS NULL OR s.connection_name = $3) AND ($4::uuid IS NULL OR st.session_id = $4)
          AND ($5::timestamptz IS NULL OR st.started_at >= $5) AND ($6::timestamptz IS NULL OR st.started_at < $6)
          AND ($7::text IS NULL OR st.text ILIKE $7) AND ($9::text IS NULL OR st.decision = $9)
        ORDER BY st.started_at DESC, st.seq DESC LIMIT $8`,
      [...filterValues(f), f.text === undefined ? null : literalLike(f.text), f.limit, f.decision ?? null],
    );
    return rows;
  }
}
