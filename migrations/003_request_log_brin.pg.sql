-- 003 (PostgreSQL only): request_log is an append-only log whose ts grows
-- with the physical order of its rows, so one BRIN index on ts (a few
-- kilobytes, a summary per 128 pages) serves every ts range: the budget
-- seed (ts >= the period's start, grouped by key_id) and the dashboard's
-- ranges grouped by key and model. It replaces the btrees on (ts),
-- (key_prefix, ts), (model, ts) and (key_id, ts), which cost the server
-- about 2.5 us of CPU per inserted row, as much as the rest of the insert
-- (docs/decisions.md). The unique request_id index stays: it is what makes
-- a journal replay harmless.
--
-- SQLite keeps its btrees (it has no BRIN). Dropping and building take a
-- lock that holds inserts back for the build: one scan of the table, a
-- few seconds per ten million rows; the writer's rows wait in its queue.

DROP INDEX IF EXISTS request_log_ts;
DROP INDEX IF EXISTS request_log_key_ts;
DROP INDEX IF EXISTS request_log_model_ts;
DROP INDEX IF EXISTS request_log_key_id_ts;
CREATE INDEX IF NOT EXISTS request_log_ts_brin ON request_log
    USING brin (ts);
