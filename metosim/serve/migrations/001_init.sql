-- API keys: only the SHA-256 of a key is stored; the key is shown once at creation.
CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    key_sha256  text NOT NULL UNIQUE,
    prefix      text NOT NULL,
    quota       integer NOT NULL DEFAULT 1 CHECK (quota >= 1),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    key_id           uuid NOT NULL REFERENCES api_keys(id),
    status           text NOT NULL CHECK (status IN ('QUEUED', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    config           jsonb NOT NULL,
    body_sha256      text NOT NULL,
    idempotency_key  text,
    request_id       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    heartbeat_at     timestamptz,
    step             integer NOT NULL DEFAULT 0,
    total_steps      integer NOT NULL DEFAULT 0,
    cells_per_second double precision,
    dispatches       integer NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    error            text,
    result_key       text,
    result_sha256    text,
    result_bytes     bigint,
    provider         text,
    node             text,
    worker_pid       integer
);

CREATE UNIQUE INDEX jobs_idempotency ON jobs (key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_by_key ON jobs (key_id, created_at DESC);
CREATE INDEX jobs_active ON jobs (status) WHERE status IN ('QUEUED', 'RUNNING');
