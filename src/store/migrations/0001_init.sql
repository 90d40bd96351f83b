-- Shared by SQLite and PostgreSQL: keep to portable SQL (TEXT, BIGINT, DOUBLE PRECISION,
-- unix-millisecond timestamps as BIGINT, no AUTOINCREMENT/SERIAL).
CREATE TABLE IF NOT EXISTS switchyard_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
