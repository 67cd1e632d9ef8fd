-- Connections to target databases, who may use them as which database roles, the login roles
-- pgward provisions per person, and the audit trail of sessions and statements.

CREATE TABLE pgward.connection (
  connection_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id          uuid NOT NULL REFERENCES pgward.tenant,
  name               text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
  host               text NOT NULL CHECK (length(host) BETWEEN 1 AND 255),
  port               int NOT NULL CHECK (port BETWEEN 1 AND 65535),
  database           text NOT NULL CHECK (length(database) BETWEEN 1 AND 63),
  sslmode            text NOT NULL DEFAULT 'prefer'
                       CHECK (sslmode IN ('disable', 'prefer', 'require', 'verify-ca', 'verify-full')),
  ssl_ca             text,
  role_mode          text NOT NULL DEFAULT 'provision' CHECK (role_mode IN ('provision', 'shared')),
  credential_user    text NOT NULL CHECK (length(credential_user) BETWEEN 1 AND 63),
  -- AES-256-GCM under the gateway's secret key; never returned by any API.
  credential_secret  bytea NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pgward.connection_access (
  connection_id  uuid NOT NULL REFERENCES pgward.connection ON DELETE CASCADE,
  group_name     text NOT NULL,
  db_roles       text[] NOT NULL CHECK (cardinality(db_roles) BETWEEN 1 AND 64),
  PRIMARY KEY (connection_id, group_name)
);

CREATE TABLE pgward.login_role (
  connection_id  uuid NOT NULL REFERENCES pgward.connection ON DELETE CASCADE,
  user_id        uuid NOT NULL REFERENCES pgward.user_info ON DELETE CASCADE,
  role_name      text NOT NULL,
  secret         bytea NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connection_id, user_id),
  UNIQUE (connection_id, role_name)
);

CREATE TABLE pgward.session (
  session_id        uuid PRIMARY KEY,
  user_id           uuid REFERENCES pgward.user_info ON DELETE SET NULL,
  email             text,
  provider          text,
  connection_name   text,
  login_role        text,
  client_addr       text,
  application_name  text,
  started_at        timestamptz NOT NULL,
  ended_at          timestamptz,
  bytes_in          bigint NOT NULL DEFAULT 0,
  bytes_out         bigint NOT NULL DEFAULT 0,
  end_reason        text
);
CREATE INDEX session_user_started ON pgward.session (user_id, started_at DESC);
CREATE INDEX session_started ON pgward.session (started_at DESC);

CREATE TABLE pgward.statement (
  session_id   uuid NOT NULL,
  seq          int NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('simple', 'extended', 'function')),
  text         text NOT NULL,
  started_at   timestamptz NOT NULL,
  duration_ms  double precision,
  command_tag  text,
  rows         bigint,
  sqlstate     text,
  PRIMARY KEY (session_id, seq)
);
-- Statements arrive in time order: BRIN serves time-range filters at a fraction of a btree's
-- write cost, which matters on the audit path.
CREATE INDEX statement_started ON pgward.statement USING brin (started_at);
