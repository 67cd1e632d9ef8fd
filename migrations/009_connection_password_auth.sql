-- A connection may accept sending its vaulted password in cleartext or md5 over TLS pgward did
-- not verify. Off by default: such a target can be anyone who answers at its address.
ALTER TABLE pgward.connection ADD COLUMN allow_unverified_password_auth boolean NOT NULL DEFAULT false;
