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

ALTER TABLE pgward.statement
  ADD COLUMN decision text CHECK (decision IN ('allowed', 'refused', 'observed')),
  ADD COLUMN decided_by jsonb;
