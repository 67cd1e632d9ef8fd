-- pgward's own sessions: the keys that sign its tokens, the sign-ins those tokens belong to, and
-- revoked token ids.

-- Signing keys rotate; a retired key stays published until every token it signed has expired.
CREATE TABLE pgward.signing_key (
  kid          text PRIMARY KEY,
  alg          text NOT NULL,
  public_jwk   jsonb NOT NULL,
  -- The private key, sealed with the gateway's secret key (bound to the kid).
  private_jwk  bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- One sign-in through an IdP: its refresh token (rotated at each use; the previous one is kept to
-- detect reuse) and the IdP's refresh token that re-reads the person's groups.
CREATE TABLE pgward.login_session (
  login_session_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id               uuid NOT NULL REFERENCES pgward.user_info ON DELETE CASCADE,
  provider_id           uuid NOT NULL REFERENCES pgward.provider ON DELETE CASCADE,
  client                text NOT NULL CHECK (client IN ('cli', 'browser', 'api')),
  refresh_hash          bytea NOT NULL UNIQUE,
  previous_refresh_hash bytea,
  idp_refresh_token     bytea,
  created_at            timestamptz NOT NULL DEFAULT now(),
  refreshed_at          timestamptz NOT NULL DEFAULT now(),
  expires_at            timestamptz NOT NULL,
  revoked_at            timestamptz,
  revoked_reason        text
);
CREATE INDEX login_session_user ON pgward.login_session (user_id);
CREATE INDEX login_session_previous ON pgward.login_session (previous_refresh_hash);

-- Access tokens revoked one by one, kept until they would have expired anyway.
CREATE TABLE pgward.revoked_token (
  jti         uuid PRIMARY KEY,
  expires_at  timestamptz NOT NULL
);

-- Mappings from the configuration file are re-synced at each start; those made through the API stay.
ALTER TABLE pgward.user_group_mapping
  ADD COLUMN source text NOT NULL DEFAULT 'api' CHECK (source IN ('config', 'api'));
-- Internal group names never contain ":", which marks a provider's own (namespaced) groups.
ALTER TABLE pgward.user_group ADD CONSTRAINT user_group_plain_name CHECK (position(':' in name) = 0);

-- Providers added through the API keep their client secret sealed (bound to the provider id).
ALTER TABLE pgward.provider ADD COLUMN client_secret bytea;
