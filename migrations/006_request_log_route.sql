-- 006: how each request was routed, and its upstream attempts
-- (docs/routing.md, docs/internals/request-path.md).
--
-- route is the x-relay-route text the client received: the chosen model
-- with its predicted latency and cost, "target missed" when no candidate
-- was predicted to meet the target, and why each other candidate was
-- passed over. attempt_log is a JSON array, one object per upstream
-- attempt: {"model","outcome","status","ms","hedge"}. Both are '' for a
-- request that never reached routing (401, a bad body). Same text on
-- PostgreSQL and SQLite.

ALTER TABLE request_log ADD COLUMN route text NOT NULL DEFAULT '';
ALTER TABLE request_log ADD COLUMN attempt_log text NOT NULL DEFAULT '';
