-- `pgward login --browser`: after the browser signs in, the gateway sends a one-time code to the
-- CLI's loopback listener. The code (only its hash is kept) is bound to the CLI's PKCE challenge
-- and redirect URI, lives one minute and is deleted by the exchange that uses it.
CREATE TABLE pgward.cli_login_code (
  code_hash         bytea PRIMARY KEY,
  login_session_id  uuid NOT NULL REFERENCES pgward.login_session ON DELETE CASCADE,
  code_challenge    text NOT NULL,
  redirect_uri      text NOT NULL,
  -- The grant the exchange hands out, sealed with the gateway's secret key (bound to the hash).
  grant_sealed      bytea NOT NULL,
  expires_at        timestamptz NOT NULL
);
CREATE INDEX cli_login_code_expiry ON pgward.cli_login_code (expires_at);
