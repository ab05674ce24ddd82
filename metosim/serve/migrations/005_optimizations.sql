-- Optimisations: an inverse-design run, one active unit on its key; each iteration
-- (forward + gradient + Adam step) a Ray task whose outcome is one row here and one
-- checkpoint in the object store; the final design's forward run an ordinary job.
CREATE TABLE optimizations (
    id               uuid PRIMARY KEY,
    key_id           uuid NOT NULL REFERENCES api_keys(id),
    status           text NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    problem          jsonb NOT NULL,
    steps            integer NOT NULL CHECK (steps >= 1),
    body_sha256      text NOT NULL,
    idempotency_key  text,
    request_id       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    error            text,
    -- The forward run of the final design (a job of this key, not listed on its own).
    result_job_id    uuid
);

CREATE UNIQUE INDEX optimizations_idempotency ON optimizations (key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX optimizations_by_key ON optimizations (key_id, created_at DESC);
CREATE INDEX optimizations_active ON optimizations (status) WHERE status = 'RUNNING';

-- One row per finished iteration; the primary key makes a replayed iteration a no-op.
CREATE TABLE optimization_iterations (
    optimization_id   uuid NOT NULL REFERENCES optimizations(id),
    iteration         integer NOT NULL CHECK (iteration >= 0),
    objective         double precision NOT NULL,
    beta              double precision NOT NULL,
    binarisation      double precision NOT NULL,
    seconds           double precision NOT NULL,
    -- The optimiser state after this iteration (density + Adam moments, .npz).
    checkpoint_key    text NOT NULL,
    checkpoint_sha256 text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (optimization_id, iteration)
);

ALTER TABLE jobs ADD COLUMN optimization_id uuid REFERENCES optimizations(id);
ALTER TABLE optimizations ADD CONSTRAINT optimizations_result_job FOREIGN KEY (result_job_id) REFERENCES jobs(id);
