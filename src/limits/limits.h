/*
 * limits.h - step 2 of a request: per-key rate limits (requests and tokens
 * per sliding 60 s window), a concurrency cap and a spend budget, decided
 * atomically by one Lua script in Redis when Redis is configured, or by an
 * in-process limiter with the same semantics (limits/local.c) when it is
 * not, or when it is down and the policy is fail-open.
 *
 * The algorithm, the Redis key layout and the exactness argument are in
 * docs/internals/limits.md. In short:
 * - rpm, tpm: a request is admitted iff, in the last 60 000 ms, fewer than
 *   rpm requests were admitted and their reserved tokens plus this one's
 *   fit in tpm. Reconcile replaces the reservation by the real count.
 * - max_concurrent: admitted and not yet reconciled requests (entries
 *   older than LIMITS_STALE_MS are dropped: a dead instance cannot leak
 *   slots for ever).
 * - budget_nusd: spent in the period + held by requests in flight + this
 *   request's predicted cost must not exceed the budget; reconcile moves
 *   the hold to spent with the real cost.
 *
 * Threading: a struct limits belongs to one worker thread and its loop;
 * the in-process table behind it is shared by all workers of the process
 * (striped mutexes). Callbacks run on the loop's thread.
 * Read limits_reserve() in limits.c first.
 */
#ifndef RL_LIMITS_H
#define RL_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"

struct uv_loop_s;

#define LIMITS_WINDOW_MS 60000           /* the rpm/tpm sliding window */
#define LIMITS_STALE_MS 600000           /* in-flight entries dropped after */
#define LIMITS_CONCURRENCY_RETRY_MS 1000 /* Retry-After when at the cap */
#define LIMITS_KEY_ID_MAX 128            /* longest key_id, in bytes */

enum limits_policy {
    LIMITS_FAIL_OPEN,   /* Redis down: decide in-process (the default) */
    LIMITS_FAIL_CLOSED, /* Redis down: refuse with LIMITS_UNAVAILABLE */
};

struct limits_opts {
    const char *redis_url;     /* redis://...; NULL or "": in-process only */
    enum limits_policy policy;
    uint64_t redis_timeout_ms; /* per script call; 0: 50 ms */
};

enum limits_period {
    LIMITS_PERIOD_NONE,  /* no budget */
    LIMITS_PERIOD_DAY,   /* UTC calendar day */
    LIMITS_PERIOD_WEEK,  /* ISO week, Monday 00:00 UTC */
    LIMITS_PERIOD_MONTH, /* UTC calendar month */
    LIMITS_PERIOD_TOTAL, /* never resets */
};

/* One API key's limits; 0 means no limit. */
struct limits_rule {
    const char *key_id;     /* stable id of the key (no '{' or '}', at most
                               LIMITS_KEY_ID_MAX bytes): Redis key names */
    int64_t rpm;            /* requests per sliding 60 s */
    int64_t tpm;            /* reserved tokens per sliding 60 s */
    int32_t max_concurrent; /* requests in flight */
    int64_t budget_nusd;    /* spend per period, nano-dollars */
    enum limits_period period; /* of the budget */
};

/* One request asking to be admitted. Strings are copied by reserve. */
struct limits_ask {
    struct limits_rule rule;
    const char *request_id;  /* unique per request (Redis member names) */
    int64_t tokens;          /* estimate to reserve: prompt + max_tokens */
    int64_t cost_nusd;       /* predicted cost, held against the budget */
    int64_t spent_seed_nusd; /* spend already known for this period (from
                                the request log); used only when no counter
                                exists yet */
};

enum limits_outcome {
    LIMITS_ADMITTED = 0,
    LIMITS_OVER_RPM,         /* retry_after_ms: until a request slot frees */
    LIMITS_OVER_TPM,         /* retry_after_ms: until enough tokens free */
    LIMITS_TOO_LARGE,        /* tokens > tpm: no retry helps */
    LIMITS_OVER_CONCURRENCY, /* retry_after_ms: LIMITS_CONCURRENCY_RETRY_MS */
    LIMITS_OVER_BUDGET,      /* retry_after_ms: until the period ends, or 0
                                for LIMITS_PERIOD_TOTAL */
    LIMITS_UNAVAILABLE,      /* fail-closed and Redis down or failing */
};

/* The answer to a reserve, and what the x-ratelimit-* headers say. The
 * limit_* fields are 0 when that limit is not set. */
struct limits_verdict {
    enum limits_outcome outcome;
    uint64_t retry_after_ms;    /* when refused: until it would fit */
    int64_t limit_requests;     /* rpm */
    int64_t remaining_requests; /* rpm minus requests in the window */
    uint64_t reset_requests_ms; /* until the oldest request leaves it */
    int64_t limit_tokens;       /* tpm */
    int64_t remaining_tokens;   /* tpm minus tokens in the window */
    uint64_t reset_tokens_ms;   /* until the oldest request leaves it */
    int64_t budget_nusd;        /* the budget of the period */
    int64_t budget_remaining_nusd; /* budget - spent - held, >= 0 */
    bool local;                 /* decided in-process (no Redis configured,
                                   or Redis down under fail-open) */
};

/* Counters of one struct limits (one worker), read on its thread. */
struct limits_stats {
    uint64_t redis_decisions;   /* reserves answered by the script */
    uint64_t local_decisions;   /* reserves answered in-process */
    uint64_t unavailable;       /* LIMITS_UNAVAILABLE answers */
    uint64_t redis_failures;    /* script calls that failed or timed out */
    uint64_t redis_downs;       /* times Redis was seen going down */
    uint64_t reconciles_lost;   /* Redis reconciles given up (queue full) */
    uint64_t redis_moved;       /* Redis Cluster MOVED answers followed */
    uint64_t redis_asked;       /* ASK answers followed */
    uint64_t redis_tryagain;    /* TRYAGAIN answers retried */
};

struct limits;         /* one per worker */
struct limits_hold;    /* an admitted reservation, owned by the caller */
struct limits_pending; /* a reserve waiting on Redis */

/* Called exactly once per reserve that returned RL_OK. v is valid during
 * the call only. hold is NULL unless admitted; the caller then owns it and
 * must pass it to limits_reconcile() exactly once. */
typedef void (*limits_cb)(void *ctx, const struct limits_verdict *v,
                          struct limits_hold *hold);

/*
 * Creates the limiter of one worker on loop (and its Redis connection,
 * which starts connecting at once). RL_E_CONFIG, logged with the reason,
 * when the URL is invalid or its host does not resolve. The caller owns
 * *out: limits_free().
 */
enum rl_err limits_new(struct uv_loop_s *loop, const struct limits_opts *opts,
                       struct limits **out);

/*
 * Frees l at worker shutdown. Reserves still waiting on Redis get their
 * callback from inside this call, with LIMITS_UNAVAILABLE. Holds not yet
 * reconciled must not be passed to l afterwards; in Redis they vanish by
 * the window and LIMITS_STALE_MS. Run the loop afterwards so that libuv
 * closes the Redis handles. NULL is a no-op.
 */
void limits_free(struct limits *l);

/*
 * Asks to admit one request. The ask is copied. On RL_OK cb is called
 * exactly once: before this returns when decided in-process (no limits
 * set, no Redis, Redis down), else later from the loop, and *pending (if
 * pending is not NULL) is set for limits_reserve_cancel() (NULL when the
 * callback has already run). RL_E_INVALID_REQUEST (cb not called) when
 * limits are set but key_id or request_id is missing or key_id is bad.
 */
enum rl_err limits_reserve(struct limits *l, const struct limits_ask *ask,
                           limits_cb cb, void *ctx,
                           struct limits_pending **pending);

/*
 * The caller went away before the answer: cb will not be called, and a
 * reservation admitted later is released at once (reconciled with zero
 * usage). p is invalid afterwards.
 */
void limits_reserve_cancel(struct limits_pending *p);

/*
 * Settles hold with the real usage, after the answer whatever it was
 * (success, error, cancellation, cache hit: pass 0 when nothing was
 * used). Takes ownership of hold. Fire and forget: a Redis hold is
 * reconciled by one script call, retried once Redis is back if it is down
 * (up to a bounded queue); a local hold in-process, at once.
 */
void limits_reconcile(struct limits *l, struct limits_hold *hold,
                      int64_t tokens_used, int64_t cost_nusd);

/*
 * Appends OpenAI's rate-limit headers for v as "Name: value\r\n" lines:
 * x-ratelimit-limit-requests, -remaining-requests, -reset-requests when
 * rpm is set, x-ratelimit-limit-tokens, -remaining-tokens, -reset-tokens
 * when tpm is set. Resets use OpenAI's duration format ("1s", "6m0s",
 * "20ms"). Stops at the first append error (the buffer's cap).
 */
void limits_headers(const struct limits_verdict *v, struct buf *out);

/* Formats ms as OpenAI does (Go's time.Duration): "0s", "20ms", "1.5s",
 * "6m0s", "1h2m3.004s". Returns the length; out gets at most n - 1 bytes
 * and a NUL. */
size_t limits_duration_format(uint64_t ms, char *out, size_t n);

/*
 * Names the budget period containing wall_ms (UTC): "d20260131",
 * "w2026W05" (ISO week), "m202601", "t" (total), "" (none), into out (n
 * bytes, 16 is enough); sets *end_ms to the period's end, 0 when it never
 * ends. Pure; used in Redis key names.
 */
void limits_period_name(enum limits_period p, uint64_t wall_ms, char *out,
                        size_t n, uint64_t *end_ms);

/* True when Redis is configured and its connection is up (for health
 * checks and tests); false when in-process only. */
bool limits_redis_up(const struct limits *l);

/* Copies the counters of l into out. */
void limits_stats_get(const struct limits *l, struct limits_stats *out);

/* For tests: the wall clock (ms since the epoch) used by the in-process
 * limiter and for budget periods; NULL restores the system clock. Set it
 * before any worker runs. */
void limits_clock_set(uint64_t (*wall_ms)(void));

#endif
