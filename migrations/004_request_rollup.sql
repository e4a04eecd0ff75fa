-- 004: the hourly rollup of request_log that /admin/analytics reads, so
-- that a range of 30 days over ten million rows is answered from a few
-- thousand rows (docs/internals/analytics.md). One row per (hour, key_id,
-- key_prefix, model, provider): counts, token, cost and savings sums
-- (integer nano-dollars), cache hits, errors by class, the latency sum and
-- a histogram of latency_us in 32 log-spaced buckets (lat_00: under 1 ms;
-- lat_k, k = 1..30: from 1 ms * 2^((k-1)/2) to 1 ms * 2^(k/2), rounded to
-- whole microseconds; lat_31: 32.768 s and more), from which p50 and p95
-- are read. The bounds are store_latency_bounds_us in src/store/rollup.c.
--
-- The writer keeps it, in the same transaction as each batch of rows, from
-- the rows that batch actually inserted (src/store/rollup.c); migration
-- 005 (one file per engine) rolls up the rows already in the log once, the
-- backfill of `relay migrate` on an existing log. On SQLite hour is text
-- in the format of request_log.ts ('2024-11-25T02:00:00.000000Z'), so
-- ranges compare as text.

CREATE TABLE IF NOT EXISTS request_rollup (
    hour              timestamptz NOT NULL,
    key_id            text        NOT NULL,
    key_prefix        text        NOT NULL,
    model             text        NOT NULL,
    provider          text        NOT NULL,
    requests          bigint      NOT NULL,
    prompt_tokens     bigint      NOT NULL,
    completion_tokens bigint      NOT NULL,
    cost_nusd         bigint      NOT NULL,
    savings_nusd      bigint      NOT NULL,
    cache_hits        bigint      NOT NULL,
    errors_4xx        bigint      NOT NULL,
    errors_5xx        bigint      NOT NULL,
    latency_sum_us    bigint      NOT NULL,
    lat_00            bigint      NOT NULL DEFAULT 0,
    lat_01            bigint      NOT NULL DEFAULT 0,
    lat_02            bigint      NOT NULL DEFAULT 0,
    lat_03            bigint      NOT NULL DEFAULT 0,
    lat_04            bigint      NOT NULL DEFAULT 0,
    lat_05            bigint      NOT NULL DEFAULT 0,
    lat_06            bigint      NOT NULL DEFAULT 0,
    lat_07            bigint      NOT NULL DEFAULT 0,
    lat_08            bigint      NOT NULL DEFAULT 0,
    lat_09            bigint      NOT NULL DEFAULT 0,
    lat_10            bigint      NOT NULL DEFAULT 0,
    lat_11            bigint      NOT NULL DEFAULT 0,
    lat_12            bigint      NOT NULL DEFAULT 0,
    lat_13            bigint      NOT NULL DEFAULT 0,
    lat_14            bigint      NOT NULL DEFAULT 0,
    lat_15            bigint      NOT NULL DEFAULT 0,
    lat_16            bigint      NOT NULL DEFAULT 0,
    lat_17            bigint      NOT NULL DEFAULT 0,
    lat_18            bigint      NOT NULL DEFAULT 0,
    lat_19            bigint      NOT NULL DEFAULT 0,
    lat_20            bigint      NOT NULL DEFAULT 0,
    lat_21            bigint      NOT NULL DEFAULT 0,
    lat_22            bigint      NOT NULL DEFAULT 0,
    lat_23            bigint      NOT NULL DEFAULT 0,
    lat_24            bigint      NOT NULL DEFAULT 0,
    lat_25            bigint      NOT NULL DEFAULT 0,
    lat_26            bigint      NOT NULL DEFAULT 0,
    lat_27            bigint      NOT NULL DEFAULT 0,
    lat_28            bigint      NOT NULL DEFAULT 0,
    lat_29            bigint      NOT NULL DEFAULT 0,
    lat_30            bigint      NOT NULL DEFAULT 0,
    lat_31            bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, key_id, key_prefix, model, provider)
);
