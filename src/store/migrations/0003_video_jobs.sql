-- Video generation jobs (issue 3). Portable SQL only: TEXT, BIGINT, DOUBLE PRECISION, unix
-- milliseconds in BIGINT. One row per job; the job runner is the only writer of backend state,
-- handlers insert rows and cancel them.
CREATE TABLE IF NOT EXISTS video_jobs (
    id               TEXT PRIMARY KEY,
    model            TEXT NOT NULL,
    status           TEXT NOT NULL,
    progress         BIGINT NOT NULL DEFAULT 0,
    prompt           TEXT NOT NULL,
    seconds          TEXT,
    size             TEXT,
    request_body     TEXT NOT NULL,
    request_id       TEXT,
    client_key       TEXT,
    idempotency_key  TEXT,
    route_name       TEXT,
    mode             TEXT,
    backend_job_id   TEXT,
    submitted_at     BIGINT,
    resubmitted      BIGINT NOT NULL DEFAULT 0,
    poll_failures    BIGINT NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    completed_at     BIGINT,
    expires_at       BIGINT,
    updated_at       BIGINT NOT NULL,
    content_path     TEXT,
    content_type     TEXT,
    content_bytes    BIGINT,
    callback_url     TEXT,
    webhook_status   TEXT,
    webhook_attempts BIGINT NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      BIGINT
);
CREATE INDEX IF NOT EXISTS video_jobs_status_expiry ON video_jobs (status, expires_at);
CREATE INDEX IF NOT EXISTS video_jobs_webhook ON video_jobs (webhook_status);
CREATE UNIQUE INDEX IF NOT EXISTS video_jobs_idempotency_key ON video_jobs (idempotency_key);
