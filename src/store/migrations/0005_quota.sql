-- Limits and budgets shared by replicas (issue 16). Portable SQL only.
-- One row per allowance (a key's rpm/tpm/budget of one period, an endpoint's rpm/tpm):
-- `level` is what no replica holds yet; rate limits refill it, budgets do not.
CREATE TABLE IF NOT EXISTS quota_buckets (
    scope TEXT PRIMARY KEY,
    capacity DOUBLE PRECISION NOT NULL,
    refill_per_ms DOUBLE PRECISION NOT NULL,
    level DOUBLE PRECISION NOT NULL,
    updated_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    ends_ms BIGINT
);
-- One row per replica holding a slice of an allowance; an expired row's amount goes back.
CREATE TABLE IF NOT EXISTS quota_leases (
    scope TEXT NOT NULL,
    holder TEXT NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, holder)
);
