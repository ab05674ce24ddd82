-- Batches: N member jobs that count as one active unit on their key.
ALTER TABLE api_keys ADD COLUMN max_parallel integer NOT NULL DEFAULT 8 CHECK (max_parallel >= 1);

CREATE TABLE batches (
    id               uuid PRIMARY KEY,
    key_id           uuid NOT NULL REFERENCES api_keys(id),
    status           text NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    size             integer NOT NULL CHECK (size >= 1),
    max_parallel     integer NOT NULL CHECK (max_parallel >= 1),
    parameters       jsonb NOT NULL DEFAULT '[]',
    body_sha256      text NOT NULL,
    idempotency_key  text,
    request_id       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    error            text,
    -- The batch's zarr dataset export (POST /v1/batches/{id}/dataset).
    dataset_status   text CHECK (dataset_status IN ('RUNNING', 'COMPLETED', 'FAILED')),
    dataset_monitors jsonb,
    dataset_key      text,
    dataset_sha256   text,
    dataset_bytes    bigint,
    dataset_error    text
);

CREATE UNIQUE INDEX batches_idempotency ON batches (key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX batches_by_key ON batches (key_id, created_at DESC);
CREATE INDEX batches_active ON batches (status) WHERE status = 'RUNNING';

ALTER TABLE jobs ADD COLUMN batch_id uuid REFERENCES batches(id);
ALTER TABLE jobs ADD COLUMN member text;
ALTER TABLE jobs ADD COLUMN member_index integer;
ALTER TABLE jobs ADD COLUMN parameters jsonb;
CREATE UNIQUE INDEX jobs_batch_member ON jobs (batch_id, member) WHERE batch_id IS NOT NULL;
CREATE INDEX jobs_by_batch ON jobs (batch_id, member_index) WHERE batch_id IS NOT NULL;
