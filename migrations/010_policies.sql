-- Policy documents, and what policies made of each audited statement.
-- `source`: 'config' rows mirror the configuration file's `policies:` (rewritten at each start);
-- 'api' rows are administrators' and take precedence over a config policy of the same name.
CREATE TABLE pgward.policy (
  name        text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
  source      text NOT NULL CHECK (source IN ('config', 'api')),
  document    jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  updated_by  text,
  PRIMARY KEY (name, source)
);

-- decided_by holds a JSON array as text: the audit writes it for every statement a policy applies
-- to, and text costs the store a copy where jsonb would cost a parse per row.
ALTER TABLE pgward.statement
  ADD COLUMN decision text CHECK (decision IN ('allowed', 'refused', 'observed')),
  ADD COLUMN decided_by text;
