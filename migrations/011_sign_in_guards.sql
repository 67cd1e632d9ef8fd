-- Guards of password and SAML sign-ins, shared by every gateway on the store: wrong LDAP
-- passwords per user name (its hash, never the name itself), so guesses spread over gateways
-- still lock it; and the SAML assertions already accepted, until they expire (a replay at any
-- gateway is refused).
CREATE TABLE pgward.sign_in_failure (
  provider      text NOT NULL,
  username_hash bytea NOT NULL,
  failures      integer NOT NULL,
  since         timestamptz NOT NULL,
  locked_until  timestamptz,
  PRIMARY KEY (provider, username_hash)
);

CREATE TABLE pgward.saml_assertion_seen (
  provider     text NOT NULL,
  assertion_id text NOT NULL,
  until        timestamptz NOT NULL,
  PRIMARY KEY (provider, assertion_id)
);
CREATE INDEX saml_assertion_seen_until ON pgward.saml_assertion_seen (until);
