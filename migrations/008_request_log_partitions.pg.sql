-- 008 (PostgreSQL only): request_log becomes a table partitioned by range
-- of ts, one partition per UTC day, so that retention drops whole days
-- (request_log.retention_days; docs/internals/request-log.md) instead of
-- deleting rows, and a ts range reads only its days.
--
-- - request_log_YYYYMMDD holds [that day 00:00 UTC, the next day). The
--   writer makes today's and the next two days' at each connect and every
--   hour (src/store/partition.c); relay migrate does the same.
-- - request_log_default takes any row no partition covers (a journal
--   replayed days later, a clock far off): no row is ever refused. When a
--   day's partition is made, the default's rows of that day move into it.
-- - The unique key is (request_id, ts): a partitioned table's unique keys
--   must hold the partition key. ts is fixed by accounting_row() and
--   travels unchanged through the journal, so a replayed row still
--   conflicts with its first try, and the writer's ON CONFLICT DO NOTHING
--   still adds it once. The BRIN index on ts stays, one per partition.
-- - request_rollup (004) is a table of its own: dropping days of the log
--   keeps their hourly history.
--
-- An existing table is not copied: it is renamed to
-- request_log_before_YYYYMMDD (YYYYMMDD: the day after the migration) and
-- attached as the partition of everything before that day; rows already
-- dated from that day on (a clock ahead) move to the default partition.
-- Retention drops it whole once its last day is past retention. Lock: the
-- migration holds ACCESS EXCLUSIVE on request_log from start to end, for
-- one scan of the old table (the partition bound is checked) and the build
-- of its (request_id, ts) unique index: 3.3 s for a million rows on the
-- 2-core test machine (docs/decisions.md, 27). Meanwhile the writer's
-- batches wait (rows queue in its ring, then go to the journal: none is
-- lost) and the dashboard's reads wait. For a log of hundreds of millions
-- of rows, run `relay migrate` in a quiet hour. A table that is empty (a
-- new installation) is simply replaced.

DO $$
DECLARE
    tomorrow timestamptz := (date_trunc('day', now() AT TIME ZONE 'UTC')
                             + interval '1 day') AT TIME ZONE 'UTC';
    today timestamptz := tomorrow - interval '1 day';
    legacy text := 'request_log_before_'
                   || to_char(tomorrow AT TIME ZONE 'UTC', 'YYYYMMDD');
BEGIN
    IF (SELECT relkind FROM pg_class
        WHERE oid = to_regclass('request_log')) = 'p' THEN
        RETURN; -- partitioned already
    END IF;
    LOCK TABLE request_log IN ACCESS EXCLUSIVE MODE;
    ALTER TABLE request_log RENAME TO request_log_flat;
    ALTER INDEX IF EXISTS request_log_ts_brin RENAME TO request_log_flat_ts_brin;
    CREATE TABLE request_log (LIKE request_log_flat INCLUDING DEFAULTS)
        PARTITION BY RANGE (ts);
    ALTER TABLE request_log
        ADD CONSTRAINT request_log_request_id_ts_key UNIQUE (request_id, ts);
    CREATE INDEX request_log_ts_brin ON request_log USING brin (ts);
    CREATE TABLE request_log_default PARTITION OF request_log DEFAULT;
    IF NOT EXISTS (SELECT 1 FROM request_log_flat) THEN
        DROP TABLE request_log_flat;
        EXECUTE format('CREATE TABLE %I PARTITION OF request_log '
                       'FOR VALUES FROM (%L) TO (%L)',
                       'request_log_'
                       || to_char(today AT TIME ZONE 'UTC', 'YYYYMMDD'),
                       today, tomorrow);
        RETURN;
    END IF;
    INSERT INTO request_log_default
        SELECT * FROM request_log_flat WHERE ts >= tomorrow;
    DELETE FROM request_log_flat WHERE ts >= tomorrow;
    ALTER TABLE request_log_flat DROP CONSTRAINT request_log_request_id_key;
    EXECUTE format('ALTER TABLE request_log_flat RENAME TO %I', legacy);
    EXECUTE format('ALTER TABLE request_log ATTACH PARTITION %I '
                   'FOR VALUES FROM (MINVALUE) TO (%L)', legacy, tomorrow);
END $$;
