-- Issue 17: every api_logs row wrote its primary key and four indexes. The per-model and
-- per-key indexes go: `switchyard logs`, `switchyard usage` and GET /admin/usage read the
-- newest rows or a time range (api_logs_ts) and filter model and key within it, which costs
-- those rare reads a scan of the range, while the two indexes cost every insert two more
-- B-tree writes of text keys. api_logs_ts and api_logs_request_id (one request's rows) stay.
DROP INDEX IF EXISTS api_logs_model_ts;
DROP INDEX IF EXISTS api_logs_key_ts;
