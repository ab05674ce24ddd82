-- Checkpoints of a solve's stepping state: the newest one's object (key, SHA-256,
-- step), why none could be written, the step the last run resumed from, and how
-- often a worker handed the job back at its time limit to go on elsewhere.
ALTER TABLE jobs ADD COLUMN checkpoint_interval_s double precision;
ALTER TABLE jobs ADD COLUMN checkpoint_key text;
ALTER TABLE jobs ADD COLUMN checkpoint_sha256 text;
ALTER TABLE jobs ADD COLUMN checkpoint_step integer;
ALTER TABLE jobs ADD COLUMN checkpoint_at timestamptz;
ALTER TABLE jobs ADD COLUMN checkpoint_error text;
ALTER TABLE jobs ADD COLUMN resumed_step integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN continuations integer NOT NULL DEFAULT 0;
