/*
 * config.h - relay.yaml, loaded into an immutable, reference-counted
 * snapshot.
 *
 * A snapshot is never changed after config_load() returns it. Reload
 * (SIGHUP) loads a new snapshot and swaps it in; requests in flight keep the
 * snapshot they started with through their own reference, so nothing they
 * point into goes away under them.
 */
#ifndef RL_CONFIG_H
#define RL_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"

struct provider_ops;

/* One entry of `providers:`. */
struct provider_cfg {
    char *name;                     /* the key under providers: */
    char *kind;                     /* wire format: openai, anthropic, ... */
    const struct provider_ops *ops; /* the adapter for kind */
    char *base_url;                 /* without a trailing slash */
    char *api_key;                  /* may be empty (local servers) */
};

/* One entry of `models:`. */
struct model_cfg {
    char *name;                    /* what clients send as "model" */
    struct provider_cfg *provider; /* points into config.providers */
    char *upstream;                /* the provider's model id */
    int64_t input_nusd_per_mtok;   /* price of a million prompt tokens */
    int64_t output_nusd_per_mtok;  /* price of a million completion tokens */
    int64_t cached_nusd_per_mtok;  /* price of a million cached prompt tokens
                                      (read from a provider's prompt cache) */
    int64_t cache_write_nusd_per_mtok; /* price of a million prompt tokens
                                      written to the prompt cache (default:
                                      the input price) */
    int tier;                      /* quality tier, higher is better */
    int64_t context_tokens;        /* context window */
    uint32_t prior_ttft_ms;        /* latency prior: time to first token */
    uint32_t prior_tokens_per_s;   /* latency prior: decode rate */
    struct model_cfg **fallbacks;  /* tried in order when this one fails */
    size_t nfallbacks;
};

/* The routing engine's knobs (routing.latency, routing.deadline,
 * routing.hedge, routing.breaker in relay.yaml; docs/routing.md). */
/* The cache: section (docs/cache.md). */
struct cache_knobs {
    bool enabled;               /* cache.enabled; off by default */
    bool scope_global;          /* cache.scope: global (else key) */
    uint64_t ttl_s;             /* cache.ttl_s: an entry's life */
    size_t memory_bytes;        /* cache.memory_bytes: the in-process
                                   LRU's bound (keys and answers) */
    size_t max_entry_bytes;     /* cache.max_entry_bytes: larger answers
                                   are not cached */
    double max_temperature;     /* cache.max_temperature: above it, only
                                   a request's own cache.mode caches */
    uint64_t redis_timeout_ms;  /* cache.redis_timeout_ms, per command */
    char *model;                /* cache.model: the encoder's directory
                                   (semantic part); NULL: exact only */
    double threshold;           /* cache.threshold: least cosine
                                   similarity of a semantic hit */
    bool near_miss_guard;       /* cache.near_miss_guard: refuse close
                                   pairs that differ in meaning */
    size_t max_entries;         /* cache.max_entries: semantic entries
                                   indexed per process (oldest evicted) */
    int encoder_threads;        /* cache.encoder_threads: embedding
                                   threads; 0: half the cores, at least 1 */
    size_t encoder_queue;       /* cache.encoder_queue: embeds waiting at
                                   most; a full queue: exact only */
    uint64_t embed_timeout_ms;  /* cache.embed_timeout_ms: a slower embed
                                   lets the request go on, exact only */
    uint64_t sync_ms;           /* cache.sync_ms: how often Redis is read
                                   for other gateways' semantic entries */
};

struct routing_knobs {
    int percentile;               /* latency percentile predicted, 50..99 */
    int window;                   /* observations kept per model, 4..64 */
    uint64_t max_age_ms;          /* older observations are dropped */
    int64_t output_tokens_prior;  /* expected output tokens with neither
                                     max_tokens nor history */
    int safe_percentile;          /* a candidate that meets the bar at this
                                     percentile too is "safe" ... */
    int safe_extra_pct;           /* ... and goes first when it costs at
                                     most this much more than the cheapest;
                                     0: never */
    int bargain_percentile;       /* a cheaper candidate over the bar that
                                     meets it at this percentile ... */
    int bargain_ratio_pct;        /* ... goes first when the cheapest that
                                     meets the bar costs at least this much
                                     of it (300: 3x); 0: never */
    int overdue_waits;            /* this many waits past their prediction
                                     at once make a model slower (the
                                     least factor of them); 0: never */
    uint64_t explore_after_ms;    /* a cheaper model unmeasured this long
                                     is tried as primary, with a rescue;
                                     0: never */
    int first_token_margin_pct;   /* deadline: predicted first token plus
                                     this share of it ... */
    uint64_t first_token_margin_ms; /* ... plus this, capped by the target */
    int hedge_margin_pct;         /* hedge: predicted first token plus this
                                     share of it ... */
    uint64_t hedge_margin_ms;     /* ... plus this */
    int breaker_failures;         /* consecutive failures that open */
    int breaker_error_pct;        /* error rate (of the window) that opens */
    int breaker_min_requests;     /* attempts in the window before the
                                     error rate counts */
    uint64_t breaker_open_ms;     /* first open period; doubles on each
                                     failed probe, up to 16 times */
};

struct config {
    _Atomic long refs;          /* references held; freed at zero */
    char *path;                 /* the file it came from */
    char *listen_host;          /* address to bind */
    int listen_port;            /* port to bind */
    int workers;                /* event-loop threads */
    enum log_level log_level;   /* lowest level written */
    char *log_file;             /* NULL: standard error */
    unsigned char (*key_sha256)[32]; /* SHA-256 of each accepted key */
    char (*key_prefix)[16];     /* display prefix of each key */
    size_t nkeys;
    char *store;                /* DATABASE_URL, unused by the core */
    uint32_t log_retention_days; /* request_log.retention_days: PostgreSQL
                                   drops the log's day partitions older
                                   than this; 0 keeps every row */
    char *redis;                /* REDIS_URL, unused by the core */
    char *admin_key;            /* for the admin API, unused by the core */
    char *dashboard_host;       /* dashboard.listen's address; NULL: no
                                   dashboard listener */
    int dashboard_port;         /* dashboard.listen's port */
    char *dashboard_dir;        /* the built dashboard (dashboard.dir,
                                   default dashboard/dist) */
    bool dashboard_local_admin; /* the dashboard listener answers
                                   /admin/analytics without the admin key
                                   (loopback addresses only) */
    bool metrics_admin_key_required; /* GET /metrics wants the admin key
                                   (metrics.admin_key_required) */
    bool log_prompts;           /* the request line carries the messages
                                   (log_prompts; never on by default) */
    size_t max_body_bytes;      /* larger request bodies get 413 */
    size_t max_header_bytes;    /* larger request heads get 431 */
    uint64_t read_timeout_ms;   /* a request must arrive within this */
    uint64_t idle_timeout_ms;   /* idle keep-alive connections close */
    uint64_t shutdown_grace_ms; /* in-flight work allowed on SIGTERM */
    size_t output_high_water_bytes; /* a client this far behind a stream
                                       pauses its provider */
    uint64_t write_timeout_ms;  /* output untaken this long: client
                                   dropped */
    uint64_t connect_timeout_ms;    /* upstream TCP+TLS connect */
    uint64_t first_byte_timeout_ms; /* upstream silence before its answer */
    uint64_t stream_idle_timeout_ms; /* upstream silence inside a stream */
    uint64_t call_timeout_ms;   /* upstream.total_timeout_ms: a whole call,
                                   every attempt, retry and stream */
    int retries;                /* passes over the plan after the first */
    uint64_t retry_backoff_ms;  /* first retry's delay (x1..x2 jitter) */
    uint64_t retry_backoff_max_ms; /* the doubling delay's cap */
    uint64_t retry_max_wait_ms; /* longest Retry-After Relay waits out */
    uint64_t hedge_after_ms;    /* start the next candidate too when the
                                   first has no token by then; 0: off */
    size_t rescue_max_bytes;    /* text kept to rescue a cut stream; 0:
                                   never rescue */
    bool limits_fail_closed;         /* limits.on_redis_failure: closed */
    uint64_t limits_redis_timeout_ms; /* limits.redis_timeout_ms */
    int64_t limits_default_max_tokens; /* output tokens reserved when a
                                          request sets no max_tokens */
    int default_max_latency_ms;      /* routing.defaults */
    int default_min_quality_tier;    /* routing.defaults */
    int default_max_ttft_ms;         /* routing.defaults; 0: none */
    bool default_hedge;              /* routing.defaults */
    struct routing_knobs routing;    /* the engine's knobs */
    struct cache_knobs cache;        /* the cache: section */
    struct provider_cfg *providers;
    size_t nproviders;
    struct model_cfg *models;
    size_t nmodels;
};

/*
 * Loads and validates path. On success returns RL_OK and a snapshot with one
 * reference in *out. On failure returns RL_E_CONFIG (or RL_E_IO) and appends
 * one line per mistake, "file:line: field: what is wrong", to errors.
 * Variables ${VAR} and ${VAR:-default} expand from the environment, then
 * from a .env file beside the configuration, if any.
 */
enum rl_err config_load(const char *path, struct config **out,
                        struct buf *errors);

/* Takes one more reference to cfg and returns it. */
struct config *config_ref(struct config *cfg);
/* Drops one reference; the last one frees the snapshot. */
void config_unref(struct config *cfg);

/* Fills k with the cache: section's defaults (cache_knobs.c). */
void config_cache_knobs_default(struct cache_knobs *k);

/* Returns the model called name, or NULL. */
const struct model_cfg *config_model(const struct config *cfg,
                                     const char *name, size_t len);

/* Fills k with the routing knobs' defaults (those of an absent routing:
 * section). */
void config_routing_knobs_default(struct routing_knobs *k);

/* Parses "0.05" (USD per million tokens) into nano-dollars, exactly. */
bool config_parse_price(const char *s, int64_t *out_nusd);

/* Expands ${VAR} and ${VAR:-default} in s into out (using the env and the
 * dotenv buffer of KEY=VALUE lines, which may be NULL). */
enum rl_err config_expand(const char *s, const char *dotenv, struct buf *out);

#endif
