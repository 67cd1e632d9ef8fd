-- The console's saved queries: a person's named statements, per connection, private to them.
CREATE TABLE pgward.console_saved_queries (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES pgward.user_info (user_id) ON DELETE CASCADE,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  connection_name text NOT NULL,
  sql text NOT NULL CHECK (length(sql) <= 1048576),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (user_id, name)
);
