-- 002: API keys kept in the store (docs/internals/keys.md), and the key
-- each request_log row was made with.
--
-- The same text runs on PostgreSQL and SQLite, as 001 does. Only the key's
-- SHA-256 (hex) and a display prefix are stored, never the key. Money is
-- integer nano-dollars (0: no budget); rpm, tpm and max_concurrent are 0
-- when there is no limit. models is a JSON array of model names ([]: all),
-- routing a JSON object of routing defaults ({}: none).
--
-- version is bumped to max(version) + 1 by every change (create, revoke),
-- by writers that are serialised (a table lock on PostgreSQL, BEGIN
-- IMMEDIATE on SQLite), so that a reader polling `version > last` in order
-- never misses a change. Rows are never deleted: a revoked key keeps its
-- row, with revoked_at set, so it can be told from an unknown one.

CREATE TABLE IF NOT EXISTS api_keys (
    id             text        NOT NULL PRIMARY KEY,
    name           text        NOT NULL,
    prefix         text        NOT NULL,
    sha256         text        NOT NULL,
    rpm            bigint      NOT NULL DEFAULT 0,
    tpm            bigint      NOT NULL DEFAULT 0,
    max_concurrent bigint      NOT NULL DEFAULT 0,
    budget_nusd    bigint      NOT NULL DEFAULT 0,
    budget_period  text        NOT NULL DEFAULT '',
    models         text        NOT NULL DEFAULT '[]',
    routing        text        NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    version        bigint      NOT NULL,
    CONSTRAINT api_keys_sha256_key UNIQUE (sha256)
);

CREATE INDEX IF NOT EXISTS api_keys_version ON api_keys (version);
CREATE INDEX IF NOT EXISTS api_keys_prefix ON api_keys (prefix);

ALTER TABLE request_log ADD COLUMN key_id text NOT NULL DEFAULT '';
-- The budget seed: a key's spend since the start of its period.
CREATE INDEX IF NOT EXISTS request_log_key_id_ts ON request_log (key_id, ts);
