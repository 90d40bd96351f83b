-- Scale-out (issue 7): several routers share one database. Portable SQL only.
-- Which router served each request (REPLICA_ID, default <hostname>:<port>); NULL on older rows.
ALTER TABLE api_logs ADD COLUMN replica TEXT;
-- A runner renews and checks its own claims every few seconds.
CREATE INDEX IF NOT EXISTS video_jobs_lease_owner ON video_jobs (lease_owner);
