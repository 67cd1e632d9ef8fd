"""psycopg2 through pgward: run by test/interop.test.ts with the DSN in argv[1]."""
import io
import sys

import psycopg2

conn = psycopg2.connect(sys.argv[1], application_name="psycopg2-interop")
cur = conn.cursor()
cur.execute("select current_user")
print("user=" + cur.fetchone()[0])
cur.execute("select username from users where id = %s", (1,))
print("param=" + cur.fetchone()[0])
# A named cursor is a server-side cursor (DECLARE ... FETCH).
named = conn.cursor(name="pgward_cursor")
named.execute("select g from generate_series(1, 1000) g")
print("cursor=" + str(sum(1 for _ in named)))
named.close()
buf = io.StringIO()
cur.copy_expert("copy (select username from users order by id limit 2) to stdout", buf)
print("copy=" + ",".join(buf.getvalue().split()))
try:
    cur.execute("select 1/0")
except psycopg2.Error as e:
    print("error=" + e.pgcode)
    conn.rollback()
cur.execute("select 42")
print("after-error=" + str(cur.fetchone()[0]))
conn.close()
