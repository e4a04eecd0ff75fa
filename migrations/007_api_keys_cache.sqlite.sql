-- 007: a key's cache settings: see 007_api_keys_cache.pg.sql.

ALTER TABLE api_keys ADD COLUMN cache text NOT NULL DEFAULT '{}';
