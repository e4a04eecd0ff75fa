-- 001: the request log, one row per request (docs/internals/request-log.md).
--
-- The same text runs on PostgreSQL and SQLite: SQLite accepts the type
-- names (timestamptz keeps the ISO-8601 UTC text the gateway writes,
-- boolean keeps 0/1). Money is integer nano-dollars; times are integer
-- microseconds. Rows are only ever inserted, never updated.
--
-- ts is fixed when the request is accounted and travels with the row
-- through the journal, so a replayed row is identical to the first try.
-- That is what lets a later PostgreSQL migration partition this table by
-- range of ts (issue 9): the unique key then becomes (request_id, ts).

CREATE TABLE IF NOT EXISTS request_log (
    ts                 timestamptz NOT NULL,
    request_id         text        NOT NULL,
    key_prefix         text        NOT NULL DEFAULT '',
    model_requested    text        NOT NULL DEFAULT '',
    model              text        NOT NULL DEFAULT '',
    provider           text        NOT NULL DEFAULT '',
    status             integer     NOT NULL,
    error_type         text,
    error_code         text,
    stream             boolean     NOT NULL DEFAULT false,
    prompt_tokens      bigint      NOT NULL DEFAULT 0,
    completion_tokens  bigint      NOT NULL DEFAULT 0,
    cached_tokens      bigint      NOT NULL DEFAULT 0,
    cache_write_tokens bigint      NOT NULL DEFAULT 0,
    reasoning_tokens   bigint      NOT NULL DEFAULT 0,
    usage_estimated    boolean     NOT NULL DEFAULT false,
    cost_nusd          bigint      NOT NULL DEFAULT 0,
    savings_nusd       bigint      NOT NULL DEFAULT 0,
    cache_status       text        NOT NULL DEFAULT 'miss',
    cache_similarity   double precision,
    latency_us         bigint      NOT NULL DEFAULT 0,
    ttft_us            bigint      NOT NULL DEFAULT 0,
    upstream_us        bigint      NOT NULL DEFAULT 0,
    overhead_us        bigint      NOT NULL DEFAULT 0,
    attempts           integer     NOT NULL DEFAULT 0,
    client_gone        boolean     NOT NULL DEFAULT false,
    CONSTRAINT request_log_request_id_key UNIQUE (request_id)
);

CREATE INDEX IF NOT EXISTS request_log_ts ON request_log (ts);
CREATE INDEX IF NOT EXISTS request_log_key_ts ON request_log (key_prefix, ts);
CREATE INDEX IF NOT EXISTS request_log_model_ts ON request_log (model, ts);
