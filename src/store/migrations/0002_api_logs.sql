-- One row per request (issue 4). Shared by SQLite and PostgreSQL: portable SQL only.
-- `id` is the router's own record id (UUIDv7, time-ordered), so a request id the client sent
-- twice still gives two rows, and replaying the spill file twice inserts nothing twice.
CREATE TABLE IF NOT EXISTS api_logs (
    id                TEXT PRIMARY KEY,
    request_id        TEXT NOT NULL,
    ts_ms             BIGINT NOT NULL,
    model_id          TEXT,
    model_type        TEXT,
    op                TEXT NOT NULL,
    route             TEXT,
    endpoint          TEXT,
    api_key_id        TEXT,
    status_code       BIGINT NOT NULL,
    outcome           TEXT NOT NULL,
    stream            BIGINT NOT NULL,
    latency_ms        DOUBLE PRECISION NOT NULL,
    ttfb_ms           DOUBLE PRECISION,
    upstream_ms       DOUBLE PRECISION,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    cached_tokens     BIGINT,
    total_tokens      BIGINT,
    usage_estimated   BIGINT NOT NULL,
    audio_seconds     DOUBLE PRECISION,
    images            BIGINT,
    video_seconds     DOUBLE PRECISION,
    cost_usd          DOUBLE PRECISION,
    attempts          BIGINT NOT NULL,
    error_code        TEXT,
    error             TEXT
);
CREATE INDEX IF NOT EXISTS api_logs_ts ON api_logs (ts_ms);
CREATE INDEX IF NOT EXISTS api_logs_model_ts ON api_logs (model_id, ts_ms);
CREATE INDEX IF NOT EXISTS api_logs_key_ts ON api_logs (api_key_id, ts_ms);
CREATE INDEX IF NOT EXISTS api_logs_request_id ON api_logs (request_id);
