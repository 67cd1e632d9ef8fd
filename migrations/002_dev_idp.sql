-- State of the dev IdP (sessions, grants, refresh tokens, device codes), so `pgward dev`
-- keeps people signed in across restarts. Unused outside the dev stack.
CREATE TABLE pgward.dev_idp_payload (
  model       text NOT NULL,
  id          text NOT NULL,
  payload     jsonb NOT NULL,
  grant_id    text,
  user_code   text,
  uid         text,
  expires_at  timestamptz,
  consumed_at timestamptz,
  PRIMARY KEY (model, id)
);
CREATE INDEX dev_idp_payload_grant ON pgward.dev_idp_payload (grant_id);
CREATE INDEX dev_idp_payload_user_code ON pgward.dev_idp_payload (user_code);
CREATE INDEX dev_idp_payload_uid ON pgward.dev_idp_payload (uid);
