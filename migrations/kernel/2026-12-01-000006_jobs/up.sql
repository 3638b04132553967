-- One row per run of a scheduled job. The first replica to insert (job, tick) runs it; the
-- others' inserts do nothing.
CREATE TABLE job_runs (
    job text NOT NULL,
    tick timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    attempts integer NOT NULL DEFAULT 1,
    claimed_by text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    last_error text,
    next_attempt_at timestamptz,
    PRIMARY KEY (job, tick)
);
CREATE INDEX job_runs_retry_idx ON job_runs (next_attempt_at) WHERE status = 'failed';
GRANT SELECT, INSERT, UPDATE ON job_runs TO harmony_app;
