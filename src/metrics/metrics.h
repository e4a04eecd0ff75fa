/*
 * metrics.h - Prometheus metrics: per-worker counters (metrics.c), summed
 * across workers into the text format of GET /metrics (expose.c).
 *
 * A worker owns its table (struct metrics): only that worker's thread
 * writes it, with relaxed C11 atomics that compile to plain loads and
 * stores (one writer, so no read-modify-write is needed), and the scrape,
 * on whichever worker got it, reads every table. Nothing on the hot path
 * takes a lock. Labels come only from configured names (model, provider)
 * and closed vocabularies (status class, cache status, error class,
 * attempt outcome, limit reason): never a key, a prompt or anything else
 * a client sends. docs/metrics.md lists every metric.
 */
#ifndef RL_METRICS_H
#define RL_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"

#define METRICS_MAX_WORKERS 256 /* as config's workers: 1..256 */
#define METRICS_SERIES 128      /* (model, provider) pairs per worker, a
                                   power of two; one more is "other" */
#define METRICS_NAME_MAX 64     /* label bytes kept, with the NUL */
#define METRICS_LAT_BUCKETS 16  /* request latency and TTFT buckets */
#define METRICS_OVH_BUCKETS 11  /* gateway overhead buckets */

/* Status class of the answer: 1xx..5xx. */
enum metrics_status {
    METRICS_1XX = 0,
    METRICS_2XX,
    METRICS_3XX,
    METRICS_4XX,
    METRICS_5XX,
    METRICS_STATUS_N
};

/* Where the answer came from. */
enum metrics_cache {
    METRICS_CACHE_MISS = 0, /* a provider answered, or nobody did */
    METRICS_CACHE_EXACT,    /* the exact cache */
    METRICS_CACHE_SEMANTIC, /* the semantic cache */
    METRICS_CACHE_N
};

/* The closed vocabulary of error classes (docs/metrics.md). */
enum metrics_error {
    METRICS_ERR_NONE = 0, /* no error */
    METRICS_ERR_CALLER,   /* the client's request was wrong (4xx) */
    METRICS_ERR_POLICY,   /* the key's limits, budget, content policy */
    METRICS_ERR_PROVIDER, /* the upstream failed */
    METRICS_ERR_GATEWAY,  /* Relay itself (500, its own 503) */
    METRICS_ERR_N
};

/* Why step 2 refused a request: enum limits_outcome's refusals. */
#define METRICS_LIMIT_N 7 /* limits_outcome values, ADMITTED unused */

/* Outcomes of an upstream attempt: enum attempt_outcome's values. */
#define METRICS_ATTEMPT_N 10

/* One histogram: per-bucket (not cumulative) counts, their sum and
 * count. The bounds are the table's (metrics.c). */
struct metrics_hist {
    _Atomic uint64_t bucket[METRICS_LAT_BUCKETS + 1]; /* last: +Inf */
    _Atomic uint64_t sum_us;  /* sum of observations, microseconds */
    _Atomic uint64_t count;   /* observations */
};

/* Everything counted for one (model, provider) pair on one worker. */
struct metrics_series {
    _Atomic bool used;       /* published (release) once labels are set */
    char model[METRICS_NAME_MAX];    /* configured name, "none", "other" */
    char provider[METRICS_NAME_MAX]; /* configured name, "none", "other" */
    _Atomic uint64_t requests[METRICS_STATUS_N][METRICS_CACHE_N];
    _Atomic uint64_t errors[METRICS_ERR_N]; /* [NONE] unused */
    _Atomic uint64_t tokens_in;      /* prompt tokens */
    _Atomic uint64_t tokens_out;     /* completion tokens */
    _Atomic uint64_t cost_nusd;      /* nano-dollars */
    _Atomic uint64_t savings_nusd;   /* nano-dollars (cache hits) */
    _Atomic uint64_t attempts[METRICS_ATTEMPT_N]; /* by outcome */
    struct metrics_hist latency;     /* whole request */
    struct metrics_hist ttft;        /* first token, when one came */
    struct metrics_hist overhead;    /* latency minus upstream time */
};

/* One worker's table. */
struct metrics {
    struct metrics_series series[METRICS_SERIES + 1]; /* last: "other" */
    _Atomic uint64_t rate_limited[METRICS_LIMIT_N]; /* by limits_outcome */
    _Atomic int64_t in_flight;        /* chat completions being served */
    _Atomic uint64_t limits_redis;    /* decisions by the Redis script */
    _Atomic uint64_t limits_local;    /* decisions made in-process */
    _Atomic int redis_state;          /* 0: no Redis, 1: down, 2: up */
    _Atomic uint64_t redis_redirects[3]; /* the limiter's Redis Cluster
                                            MOVED, ASK, TRYAGAIN followed */
};

/* One finished request, as accounting_finish() reports it. Strings are
 * configured names (or NULL: none), only read during the call. */
struct metrics_request {
    const char *model;       /* the model that answered or failed */
    const char *provider;    /* its provider */
    int status;              /* HTTP status sent */
    enum metrics_cache cache;
    enum metrics_error error;
    int limited;             /* enum limits_outcome when step 2 refused
                                it, else 0 */
    uint64_t latency_us;     /* arrival to the end of the answer */
    uint64_t ttft_us;        /* to the first token; 0: none */
    uint64_t overhead_us;    /* latency minus time spent upstream */
    int64_t tokens_in;       /* prompt tokens */
    int64_t tokens_out;      /* completion tokens */
    int64_t cost_nusd;       /* what it cost */
    int64_t savings_nusd;    /* what a cache hit saved */
};

/* Returns the table of worker id (0 <= id < METRICS_MAX_WORKERS),
 * creating it on first use; it lives until metrics_reset(). Call from the
 * worker's thread at its start. */
struct metrics *metrics_worker(int id);

/* Counts one finished request in m. Called once per request, by
 * accounting_finish(), on m's worker. */
void metrics_observe(struct metrics *m, const struct metrics_request *o);

/* Counts one upstream attempt of model on provider that ended with
 * outcome (enum attempt_outcome). Called by the pipeline's on_attempt. */
void metrics_attempt(struct metrics *m, const char *model,
                     const char *provider, int outcome);

/* Adds delta (+1 at a chat completion's start, -1 at its end). */
void metrics_in_flight_add(struct metrics *m, int delta);

/* Notes the worker's limiter: Redis configured and up, and its decision
 * counters (copied from limits_stats). Called from the worker's tick. */
void metrics_limits_note(struct metrics *m, bool redis_configured,
                         bool redis_up, uint64_t redis_decisions,
                         uint64_t local_decisions);

/* Notes the Redis Cluster answers the worker's limiter followed (MOVED,
 * ASK, TRYAGAIN; from limits_stats). Called from the worker's tick. */
void metrics_redis_note(struct metrics *m, uint64_t moved, uint64_t asked,
                        uint64_t tryagain);

/* The error class of an answer (docs/metrics.md has the table).
 * provider_failed: the answer is the provider's failure passed on;
 * limited: step 2 refused it (enum limits_outcome, 0: admitted);
 * code: the OpenAI error code sent, or NULL. */
enum metrics_error metrics_error_class(int status, bool provider_failed,
                                       int limited, const char *code);

/* The status class of status. */
enum metrics_status metrics_status_class(int status);

/* For expose.c: the table of worker id, or NULL; the buckets' upper
 * bounds, microseconds. */
struct metrics *metrics_table(int id);
extern const uint64_t metrics_lat_bounds_us[METRICS_LAT_BUCKETS];
extern const uint64_t metrics_ovh_bounds_us[METRICS_OVH_BUCKETS];

/* ---- expose.c ---- */

/* One circuit breaker, for the exposition. */
struct metrics_breaker {
    bool provider;           /* a provider's breaker, else a model's */
    const char *name;        /* configured name */
    int state;               /* 0 closed, 1 open, 2 half-open */
};

/* What is read at scrape time outside the workers' tables. */
struct metrics_extra {
    bool store_open;              /* a request log store is open */
    uint64_t queue_rows;          /* rows waiting in the writer's queue */
    uint64_t queue_capacity;      /* the queue's capacity, rows */
    uint64_t journal_bytes;       /* bytes in the journal folder's files */
    uint64_t rows_lost;           /* rows neither stored nor journaled */
    uint64_t rows_journaled;      /* rows written to the journal */
    const struct metrics_breaker *breakers;
    size_t nbreakers;
    bool semantic_on;             /* the semantic cache has an encoder */
    uint64_t semantic_entries;    /* entries in its index */
    uint64_t semantic_skipped[3]; /* lookups gone on exact-only: queue
                                     full, too slow, prompt too long */
};

/* Fills x from the store and the routing table (x->breakers points into
 * space, of cap entries, which the caller owns). */
void metrics_extra_collect(struct metrics_extra *x,
                           struct metrics_breaker *space, size_t cap);

/* Appends the whole exposition (text format 0.0.4) of every worker's
 * table, summed, and of x to out. Returns RL_E_CAP when out's cap is
 * reached. Any thread may call it: the workers' tables are read with
 * relaxed loads (a scrape may miss a request counted meanwhile). */
enum rl_err metrics_expose(const struct metrics_extra *x, struct buf *out);

/* Frees every table. For tests: no worker may be running. */
void metrics_reset(void);

#endif
