-- The IdP session of each SAML sign-in (its NameID and SessionIndex): single logout names it, in
-- either direction, and an IdP's LogoutRequest ends exactly the sign-ins of that session.
CREATE TABLE pgward.saml_sign_in (
  login_session_id  uuid PRIMARY KEY REFERENCES pgward.login_session ON DELETE CASCADE,
  provider          text NOT NULL,
  name_id           text NOT NULL,
  name_id_format    text,
  name_qualifier    text,
  sp_name_qualifier text,
  session_index     text
);
CREATE INDEX saml_sign_in_name ON pgward.saml_sign_in (provider, name_id);
