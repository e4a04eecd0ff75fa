-- 007: a key's cache settings (docs/cache.md, "The decision"), a JSON
-- object like the routing defaults of 002: {"threshold": 0.95} is the
-- least cosine similarity of a semantic hit for this key's requests
-- (a request's own cache.threshold still wins); {}: cache.threshold.
-- IF NOT EXISTS: api_keys outlives a request_log that is dropped and
-- migrated again (002 creates it IF NOT EXISTS too). SQLite: the
-- .sqlite.sql twin (no IF NOT EXISTS for columns there).

ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS cache text NOT NULL DEFAULT '{}';
