/**
 * The SQL of role provisioning. Every text here is a constant: the values a statement needs (the
 * login role's name, its mark holding the email, the wanted roles, the verifier) are set as
 * transaction-local settings from bind parameters and read back with current_setting(), so no
 * value can ever be read as SQL, whatever it holds. Identifiers are built with format('%I').
 */

/** Sets the values the sync reads, from bind parameters $1..$6, and clears its report. */
export const SET_SYNC_VALUES = `SELECT set_config('pgward.login', $1, true), set_config('pgward.mark', $2, true),
  set_config('pgward.wanted', $3, true), set_config('pgward.verifier', $4, true),
  set_config('pgward.valid_seconds', $5, true), set_config('pgward.known', $6, true),
  set_config('pgward.tampered', '', true)`;

/** What the sync found changed outside pgward (and repaired), comma separated; empty when nothing. */
export const READ_TAMPERED = `SELECT current_setting('pgward.tampered')`;

/** SQLSTATE the sync raises when the role's name is taken in the cluster (ours alone). */
export const ROLE_TAKEN = 'PGW01';

/**
 * Creates or checks the login role, makes its memberships exactly the wanted ones, gives it LOGIN,
 * the password and a VALID UNTIL a short while from now. An existing role is used only when it
 * carries the mark, or no comment at all (made by an administrator for pgward, or by pgward
 * before roles were marked) and no privileges pgward does not manage; it is then marked.
 * A role pgward knows as its own that was changed outside pgward (stored settings, attributes,
 * memberships granted by others, its comment) is repaired, and the change reported in
 * pgward.tampered.
 */
export const SYNC_ROLE = `DO $pgward$
DECLARE
  login text := current_setting('pgward.login');
  mark text := current_setting('pgward.mark');
  wanted text[] := ARRAY(SELECT json_array_elements_text(current_setting('pgward.wanted')::json));
  verifier text := current_setting('pgward.verifier');
  known boolean := current_setting('pgward.known') = 'on';
  valid_until text := (now() + make_interval(secs => current_setting('pgward.valid_seconds')::int))::text;
  me oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
  tampered text[] := '{}';
  existing record;
  setting record;
  login_oid oid;
  w text;
  r text;
BEGIN
  SELECT oid, rolsuper, rolcreaterole, rolreplication, rolbypassrls, rolcreatedb, rolinherit, rolconnlimit,
         shobj_description(oid, 'pg_authid') AS note INTO existing
    FROM pg_roles WHERE rolname = login;
  IF NOT FOUND THEN
    EXECUTE format('CREATE ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS '
      'PASSWORD %L VALID UNTIL %L', login, verifier, valid_until);
    EXECUTE format('COMMENT ON ROLE %I IS %L', login, mark);
  ELSIF existing.note IS DISTINCT FROM mark AND existing.note IS NOT NULL
      AND (NOT known OR existing.note LIKE 'pgward login role: %') THEN
    RAISE EXCEPTION 'role % belongs to another connection, person or owner', login USING ERRCODE = '${ROLE_TAKEN}';
  ELSIF existing.rolsuper OR existing.rolcreaterole OR existing.rolreplication OR existing.rolbypassrls THEN
    RAISE EXCEPTION 'login role % exists with privileges pgward does not manage', login USING ERRCODE = '42501';
  ELSE
    IF existing.note IS DISTINCT FROM mark THEN
      IF existing.note IS NOT NULL THEN
        tampered := tampered || 'its comment'::text;
      END IF;
      EXECUTE format('COMMENT ON ROLE %I IS %L', login, mark);
    END IF;
    -- Each attribute alone: changing CREATEDB needs CREATEDB, which pgward's credential may lack.
    IF existing.rolcreatedb OR NOT existing.rolinherit OR existing.rolconnlimit <> -1 THEN
      tampered := tampered || 'its attributes'::text;
    END IF;
    IF existing.rolcreatedb THEN
      EXECUTE format('ALTER ROLE %I NOCREATEDB', login);
    END IF;
    IF NOT existing.rolinherit THEN
      EXECUTE format('ALTER ROLE %I INHERIT', login);
    END IF;
    IF existing.rolconnlimit <> -1 THEN
      EXECUTE format('ALTER ROLE %I CONNECTION LIMIT -1', login);
    END IF;
    -- Settings stored on the role (ALTER ROLE ... SET), in every database: pgward stores none.
    FOR setting IN SELECT s.setdatabase, d.datname FROM pg_db_role_setting s
        LEFT JOIN pg_database d ON d.oid = s.setdatabase WHERE s.setrole = existing.oid LOOP
      IF setting.setdatabase = 0 THEN
        EXECUTE format('ALTER ROLE %I RESET ALL', login);
      ELSIF setting.datname IS NOT NULL THEN
        EXECUTE format('ALTER ROLE %I IN DATABASE %I RESET ALL', login, setting.datname);
      END IF;
      IF NOT ('stored settings' = ANY (tampered)) THEN
        tampered := tampered || 'stored settings'::text;
      END IF;
    END LOOP;
    -- The password is set again each time: one the person set themselves lasts until then.
    EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L VALID UNTIL %L', login, verifier, valid_until);
  END IF;
  FOREACH w IN ARRAY wanted LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = w) THEN
      RAISE EXCEPTION 'database role % does not exist', w USING ERRCODE = '42704';
    END IF;
  END LOOP;
  -- Memberships no longer wanted: pgward's own grants go quietly (the person's groups changed);
  -- one granted by someone else is a change made outside pgward.
  FOR r IN SELECT DISTINCT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
      JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = login AND NOT (g.rolname = ANY (wanted))
      AND m.grantor <> me LOOP
    tampered := tampered || format('a membership in %s granted by someone else', r);
  END LOOP;
  FOR r IN SELECT DISTINCT g.rolname FROM pg_auth_members m
      JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
      WHERE u.rolname = login LOOP
    IF NOT (r = ANY (wanted)) THEN
      EXECUTE format('REVOKE %I FROM %I', r, login);  -- a no-op (warning) for grants by others
    END IF;
  END LOOP;
  -- A membership granted by someone else that pgward cannot revoke: never serve it.
  SELECT string_agg(DISTINCT g.rolname, ', ') INTO r FROM pg_auth_members m
    JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
    WHERE u.rolname = login AND NOT (g.rolname = ANY (wanted));
  IF r IS NOT NULL THEN
    tampered := tampered || format('memberships pgward cannot revoke: %s (a database administrator must)', r);
  END IF;
  -- Privileges granted to the login role itself by someone else (not an owner's own) would come
  -- on top of the mapped roles: refuse rather than serve them. This database's objects only.
  SELECT oid INTO login_oid FROM pg_roles WHERE rolname = login;
  SELECT string_agg(what, ', ' ORDER BY what) INTO r FROM (
    SELECT DISTINCT format('%s %s',
        CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
          WHEN 'f' THEN 'foreign table' ELSE 'table' END, c.oid::regclass) AS what
      FROM pg_class c, aclexplode(c.relacl) a WHERE a.grantee = login_oid AND a.grantor <> login_oid
    UNION
    SELECT format('column %s.%I', t.attrelid::regclass, t.attname)
      FROM pg_attribute t, aclexplode(t.attacl) a WHERE a.grantee = login_oid AND a.grantor <> login_oid
    UNION
    SELECT format('schema %I', n.nspname)
      FROM pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = login_oid AND a.grantor <> login_oid
    UNION
    SELECT format('function %s', p.oid::regprocedure)
      FROM pg_proc p, aclexplode(p.proacl) a WHERE a.grantee = login_oid AND a.grantor <> login_oid
    UNION
    SELECT format('database %I', d.datname)
      FROM pg_database d, aclexplode(d.datacl) a
      WHERE d.datname = current_database() AND a.grantee = login_oid AND a.grantor <> login_oid
  ) direct;
  IF r IS NOT NULL THEN
    RAISE EXCEPTION 'login role % holds privileges granted to it directly, which pgward does not manage: %', login, r
      USING ERRCODE = '42501';
  END IF;
  FOREACH w IN ARRAY wanted LOOP
    IF NOT EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
                   WHERE u.rolname = login AND g.rolname = w) THEN
      EXECUTE format('GRANT %I TO %I', w, login);
    END IF;
  END LOOP;
  PERFORM set_config('pgward.tampered', array_to_string(tampered, ', '), true);
END
$pgward$`;

/** Sets the values DISABLE_ROLE reads, from bind parameters $1 (login role) and $2 (mark). */
export const SET_DISABLE_VALUES = `SELECT set_config('pgward.login', $1, true), set_config('pgward.mark', $2, true)`;

/** Takes LOGIN away from the login role while it is still pgward's (carries the mark). */
export const DISABLE_ROLE = `DO $pgward$
DECLARE
  login text := current_setting('pgward.login');
BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = login
             AND shobj_description(oid, 'pg_authid') = current_setting('pgward.mark')) THEN
    -- NOLOGIN alone: a login is then told "not permitted to log in", which says what happened.
    EXECUTE format('ALTER ROLE %I NOLOGIN', login);
  END IF;
END
$pgward$`;
