-- 005 (PostgreSQL): rolls up the rows already in request_log into
-- request_rollup (migration 004), once, as the writer would have.
--
-- PostgreSQL: the log is locked against inserts (SHARE) for the backfill,
-- so that no batch commits between the snapshot read here and the table's
-- first use by a writer: every row is counted exactly once, by the backfill
-- or by its batch. Gateways of an older version, which do not keep the
-- rollup, must not write to the same database afterwards.

LOCK TABLE request_log IN SHARE MODE;

INSERT INTO request_rollup (hour, key_id, key_prefix, model, provider,
    requests, prompt_tokens, completion_tokens, cost_nusd, savings_nusd,
    cache_hits, errors_4xx, errors_5xx, latency_sum_us,
    lat_00, lat_01, lat_02, lat_03, lat_04, lat_05, lat_06, lat_07,
    lat_08, lat_09, lat_10, lat_11, lat_12, lat_13, lat_14, lat_15,
    lat_16, lat_17, lat_18, lat_19, lat_20, lat_21, lat_22, lat_23,
    lat_24, lat_25, lat_26, lat_27, lat_28, lat_29, lat_30, lat_31)
SELECT hour, key_id, key_prefix, model, provider, count(*),
    sum(prompt_tokens), sum(completion_tokens), sum(cost_nusd),
    sum(savings_nusd), sum(hit), sum(e4), sum(e5), sum(latency_us),
    sum(lat_00), sum(lat_01), sum(lat_02), sum(lat_03), sum(lat_04),
    sum(lat_05), sum(lat_06), sum(lat_07), sum(lat_08), sum(lat_09),
    sum(lat_10), sum(lat_11), sum(lat_12), sum(lat_13), sum(lat_14),
    sum(lat_15), sum(lat_16), sum(lat_17), sum(lat_18), sum(lat_19),
    sum(lat_20), sum(lat_21), sum(lat_22), sum(lat_23), sum(lat_24),
    sum(lat_25), sum(lat_26), sum(lat_27), sum(lat_28), sum(lat_29),
    sum(lat_30), sum(lat_31)
FROM (SELECT
    date_trunc('hour', ts AT TIME ZONE 'UTC')
        AT TIME ZONE 'UTC' AS hour, key_id, key_prefix, model, provider,
    prompt_tokens, completion_tokens, cost_nusd, savings_nusd, latency_us,
    CASE WHEN cache_status IN ('exact', 'semantic') THEN 1 ELSE 0 END AS hit,
    CASE WHEN status >= 400 AND status < 500 THEN 1 ELSE 0 END AS e4,
    CASE WHEN status >= 500 OR (status < 400 AND error_code IS NOT NULL)
        THEN 1 ELSE 0 END AS e5,
    CASE WHEN l < 1000 THEN 1 ELSE 0 END AS lat_00,
    CASE WHEN l >= 1000 AND l < 1414 THEN 1 ELSE 0 END AS lat_01,
    CASE WHEN l >= 1414 AND l < 2000 THEN 1 ELSE 0 END AS lat_02,
    CASE WHEN l >= 2000 AND l < 2828 THEN 1 ELSE 0 END AS lat_03,
    CASE WHEN l >= 2828 AND l < 4000 THEN 1 ELSE 0 END AS lat_04,
    CASE WHEN l >= 4000 AND l < 5657 THEN 1 ELSE 0 END AS lat_05,
    CASE WHEN l >= 5657 AND l < 8000 THEN 1 ELSE 0 END AS lat_06,
    CASE WHEN l >= 8000 AND l < 11314 THEN 1 ELSE 0 END AS lat_07,
    CASE WHEN l >= 11314 AND l < 16000 THEN 1 ELSE 0 END AS lat_08,
    CASE WHEN l >= 16000 AND l < 22627 THEN 1 ELSE 0 END AS lat_09,
    CASE WHEN l >= 22627 AND l < 32000 THEN 1 ELSE 0 END AS lat_10,
    CASE WHEN l >= 32000 AND l < 45255 THEN 1 ELSE 0 END AS lat_11,
    CASE WHEN l >= 45255 AND l < 64000 THEN 1 ELSE 0 END AS lat_12,
    CASE WHEN l >= 64000 AND l < 90510 THEN 1 ELSE 0 END AS lat_13,
    CASE WHEN l >= 90510 AND l < 128000 THEN 1 ELSE 0 END AS lat_14,
    CASE WHEN l >= 128000 AND l < 181019 THEN 1 ELSE 0 END AS lat_15,
    CASE WHEN l >= 181019 AND l < 256000 THEN 1 ELSE 0 END AS lat_16,
    CASE WHEN l >= 256000 AND l < 362039 THEN 1 ELSE 0 END AS lat_17,
    CASE WHEN l >= 362039 AND l < 512000 THEN 1 ELSE 0 END AS lat_18,
    CASE WHEN l >= 512000 AND l < 724077 THEN 1 ELSE 0 END AS lat_19,
    CASE WHEN l >= 724077 AND l < 1024000 THEN 1 ELSE 0 END AS lat_20,
    CASE WHEN l >= 1024000 AND l < 1448155 THEN 1 ELSE 0 END AS lat_21,
    CASE WHEN l >= 1448155 AND l < 2048000 THEN 1 ELSE 0 END AS lat_22,
    CASE WHEN l >= 2048000 AND l < 2896309 THEN 1 ELSE 0 END AS lat_23,
    CASE WHEN l >= 2896309 AND l < 4096000 THEN 1 ELSE 0 END AS lat_24,
    CASE WHEN l >= 4096000 AND l < 5792619 THEN 1 ELSE 0 END AS lat_25,
    CASE WHEN l >= 5792619 AND l < 8192000 THEN 1 ELSE 0 END AS lat_26,
    CASE WHEN l >= 8192000 AND l < 11585238 THEN 1 ELSE 0 END AS lat_27,
    CASE WHEN l >= 11585238 AND l < 16384000 THEN 1 ELSE 0 END AS lat_28,
    CASE WHEN l >= 16384000 AND l < 23170475 THEN 1 ELSE 0 END AS lat_29,
    CASE WHEN l >= 23170475 AND l < 32768000 THEN 1 ELSE 0 END AS lat_30,
    CASE WHEN l >= 32768000 THEN 1 ELSE 0 END AS lat_31
    FROM (SELECT request_log.*, latency_us AS l FROM request_log) x) r
GROUP BY hour, key_id, key_prefix, model, provider
ON CONFLICT (hour, key_id, key_prefix, model, provider) DO NOTHING;
