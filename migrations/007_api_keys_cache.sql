-- 007: a key's cache settings (docs/cache.md, "Thresholds"), a JSON
-- object like the routing defaults of 002: {"threshold": 0.95} is the
-- least cosine similarity of a semantic hit for this key's requests
-- (a request's own cache.threshold still wins); {}: cache.threshold.
-- Same text on PostgreSQL and SQLite.

ALTER TABLE api_keys ADD COLUMN cache text NOT NULL DEFAULT '{}';
