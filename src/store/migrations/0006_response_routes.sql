-- Responses API (issue 15): which route produced a response its backend stored, so that a
-- follow-up with previous_response_id reaches the same backend from any replica.
-- Rows expire (RESPONSE_ROUTES_TTL_DAYS); portable SQL only.
CREATE TABLE IF NOT EXISTS response_routes (
    response_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    route TEXT NOT NULL,
    api_key_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS response_routes_created ON response_routes (created_at);
