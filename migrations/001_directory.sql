-- The directory of seed 004: tenants, identity providers, people, their identities at each
-- provider, pgward groups, direct memberships and mappings from IdP groups/roles to groups.

CREATE TABLE pgward.tenant (
  tenant_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
  name        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pgward.tenant (code, name) VALUES ('default', 'Default');

CREATE TABLE pgward.provider (
  provider_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  code           text NOT NULL UNIQUE,
  name           text NOT NULL,
  provider_type  text NOT NULL DEFAULT 'oidc',
  configuration  jsonb NOT NULL DEFAULT '{}',
  -- 'config' rows mirror the configuration file/environment; 'api' rows were added at run time.
  source         text NOT NULL DEFAULT 'api' CHECK (source IN ('config', 'api')),
  is_active      boolean NOT NULL DEFAULT true,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pgward.user_info (
  user_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id   uuid NOT NULL REFERENCES pgward.tenant,
  email       text NOT NULL,
  name        text,
  is_active   boolean NOT NULL DEFAULT true,
  is_admin    boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_info_email ON pgward.user_info (lower(email));

CREATE TABLE pgward.user_identity (
  user_identity_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id           uuid NOT NULL REFERENCES pgward.user_info ON DELETE CASCADE,
  provider_id       uuid NOT NULL REFERENCES pgward.provider ON DELETE CASCADE,
  provider_user_id  text NOT NULL,
  provider_groups   text[] NOT NULL DEFAULT '{}',
  provider_roles    text[] NOT NULL DEFAULT '{}',
  provider_data     jsonb NOT NULL DEFAULT '{}',
  is_active         boolean NOT NULL DEFAULT true,
  is_last_used      boolean NOT NULL DEFAULT false,
  last_login_at     timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (provider_id, provider_user_id)
);
-- At most one last-used identity per person.
CREATE UNIQUE INDEX user_identity_last_used ON pgward.user_identity (user_id) WHERE is_last_used;

CREATE TABLE pgward.user_group (
  group_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id    uuid NOT NULL REFERENCES pgward.tenant,
  name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description  text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, name)
);

CREATE TABLE pgward.user_group_member (
  group_id    uuid NOT NULL REFERENCES pgward.user_group ON DELETE CASCADE,
  user_id     uuid NOT NULL REFERENCES pgward.user_info ON DELETE CASCADE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, user_id)
);

CREATE TABLE pgward.user_group_mapping (
  mapping_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  provider_id     uuid NOT NULL REFERENCES pgward.provider ON DELETE CASCADE,
  external_group  text,
  external_role   text,
  group_id        uuid NOT NULL REFERENCES pgward.user_group ON DELETE CASCADE,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CHECK ((external_group IS NULL) <> (external_role IS NULL)),
  UNIQUE NULLS NOT DISTINCT (provider_id, external_group, external_role, group_id)
);
