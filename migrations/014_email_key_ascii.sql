-- Emails are matched with ASCII-only case folding (as pgward's emailKey does): under a linguistic
-- collation lower() would fold look-alikes such as the Kelvin sign into ASCII letters, and a
-- look-alike address would match a real person's.
CREATE INDEX user_info_email_ascii ON pgward.user_info (lower(email COLLATE "C"));
DROP INDEX pgward.user_info_email;
