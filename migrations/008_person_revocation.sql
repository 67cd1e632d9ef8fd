-- Revoking a person (`pgward admin revoke user`) records when: every token issued before it, the
-- IdP's included, is refused from then on, and so is a token that does not say when it was issued.
ALTER TABLE pgward.user_info ADD COLUMN revoked_before timestamptz;
