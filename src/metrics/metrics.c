/*
 * metrics.c - the per-worker counters behind GET /metrics.
 *
 * Each worker has one struct metrics, found by its id in a process-wide
 * array of published pointers. A table holds METRICS_SERIES series, one
 * per (model, provider) pair, open-addressed by a hash of the pair; a
 * pair that finds the table full goes to the last series, labelled
 * model="other", provider="other". Only the worker writes its table, so
 * a counter is bumped with a relaxed load and a relaxed store (plain
 * instructions, no lock prefix); a scrape on another thread reads with
 * relaxed loads and may miss what is counted meanwhile, never tear a
 * value. This file does not format anything: expose.c does. Read
 * metrics_observe() first.
 */
#include "metrics/metrics.h"

#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

static _Atomic(struct metrics *) tables[METRICS_MAX_WORKERS];

/* Upper bounds of the latency and TTFT buckets, microseconds (5 ms to
 * 120 s: a cached answer to a long reasoning stream). */
const uint64_t metrics_lat_bounds_us[METRICS_LAT_BUCKETS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
    2500000, 5000000, 10000000, 15000000, 20000000, 30000000, 60000000,
    120000000,
};

/* Upper bounds of the overhead buckets, microseconds (50 us to 100 ms). */
const uint64_t metrics_ovh_bounds_us[METRICS_OVH_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
};

/* Adds n to a counter only this thread writes: no atomic
 * read-modify-write is needed, only a value a reader cannot see torn. */
static inline void bump(_Atomic uint64_t *c, uint64_t n)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, v + n, memory_order_relaxed);
}

struct metrics *metrics_worker(int id)
{
    if (id < 0 || id >= METRICS_MAX_WORKERS) {
        return NULL;
    }
    struct metrics *m = atomic_load_explicit(&tables[id],
                                             memory_order_acquire);
    if (m) {
        return m; /* a worker of the same id before (tests) */
    }
    m = rl_calloc(1, sizeof(*m));
    struct metrics_series *other = &m->series[METRICS_SERIES];
    memcpy(other->model, "other", 6);
    memcpy(other->provider, "other", 6);
    atomic_store_explicit(&other->used, true, memory_order_relaxed);
    atomic_store_explicit(&tables[id], m, memory_order_release);
    return m;
}

/* The workers' tables, for expose.c: the table of worker id, or NULL. */
struct metrics *metrics_table(int id)
{
    return atomic_load_explicit(&tables[id], memory_order_acquire);
}

void metrics_reset(void)
{
    for (int i = 0; i < METRICS_MAX_WORKERS; i++) {
        free(atomic_exchange(&tables[i], NULL));
    }
}

static uint32_t hash_pair(const char *model, const char *provider)
{
    uint32_t h = 2166136261u; /* FNV-1a over "model\0provider" */
    for (const char *p = model; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    h = (h ^ 0xffu) * 16777619u;
    for (const char *p = provider; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    return h;
}

/* Copies s into a label field, cut to its size. */
static void set_label(char *dst, const char *s)
{
    size_t n = strlen(s);
    n = n < METRICS_NAME_MAX - 1 ? n : METRICS_NAME_MAX - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static bool same(const char *label, const char *s)
{
    return strncmp(label, s, METRICS_NAME_MAX - 1) == 0;
}

/* The series of (model, provider) in m, created on first use; the
 * "other" series when the table is full. */
static struct metrics_series *series_of(struct metrics *m, const char *model,
                                        const char *provider)
{
    model = model && *model ? model : "none";
    provider = provider && *provider ? provider : "none";
    uint32_t h = hash_pair(model, provider);
    for (uint32_t i = 0; i < METRICS_SERIES; i++) {
        struct metrics_series *s = &m->series[(h + i) & (METRICS_SERIES - 1)];
        if (!atomic_load_explicit(&s->used, memory_order_relaxed)) {
            /* Only this thread writes: set the labels, then publish. */
            set_label(s->model, model);
            set_label(s->provider, provider);
            atomic_store_explicit(&s->used, true, memory_order_release);
            return s;
        }
        if (same(s->model, model) && same(s->provider, provider)) {
            return s;
        }
    }
    return &m->series[METRICS_SERIES];
}

static void hist_add(struct metrics_hist *h, const uint64_t *bounds,
                     size_t nbounds, uint64_t v_us)
{
    size_t i = 0;
    while (i < nbounds && v_us > bounds[i]) {
        i++;
    }
    bump(&h->bucket[i], 1);
    bump(&h->sum_us, v_us);
    bump(&h->count, 1);
}

enum metrics_status metrics_status_class(int status)
{
    if (status >= 500 || status < 100) {
        return METRICS_5XX; /* an unset status is our failure */
    }
    return (enum metrics_status)(status / 100 - 1);
}

static uint64_t nonneg(int64_t v)
{
    return v > 0 ? (uint64_t)v : 0;
}

void metrics_observe(struct metrics *m, const struct metrics_request *o)
{
    if (!m) {
        return;
    }
    struct metrics_series *s = series_of(m, o->model, o->provider);
    enum metrics_cache cache = o->cache < METRICS_CACHE_N ? o->cache
                                                          : METRICS_CACHE_MISS;
    bump(&s->requests[metrics_status_class(o->status)][cache], 1);
    if (o->error != METRICS_ERR_NONE && o->error < METRICS_ERR_N) {
        bump(&s->errors[o->error], 1);
    }
    bump(&s->tokens_in, nonneg(o->tokens_in));
    bump(&s->tokens_out, nonneg(o->tokens_out));
    bump(&s->cost_nusd, nonneg(o->cost_nusd));
    bump(&s->savings_nusd, nonneg(o->savings_nusd));
    hist_add(&s->latency, metrics_lat_bounds_us, METRICS_LAT_BUCKETS,
             o->latency_us);
    if (o->ttft_us) {
        hist_add(&s->ttft, metrics_lat_bounds_us, METRICS_LAT_BUCKETS,
                 o->ttft_us);
    }
    hist_add(&s->overhead, metrics_ovh_bounds_us, METRICS_OVH_BUCKETS,
             o->overhead_us);
    if (o->limited > 0 && o->limited < METRICS_LIMIT_N) {
        bump(&m->rate_limited[o->limited], 1);
    }
}

void metrics_attempt(struct metrics *m, const char *model,
                     const char *provider, int outcome)
{
    if (!m || outcome < 0 || outcome >= METRICS_ATTEMPT_N) {
        return;
    }
    bump(&series_of(m, model, provider)->attempts[outcome], 1);
}

void metrics_in_flight_add(struct metrics *m, int delta)
{
    if (!m) {
        return;
    }
    int64_t v = atomic_load_explicit(&m->in_flight, memory_order_relaxed);
    atomic_store_explicit(&m->in_flight, v + delta, memory_order_relaxed);
}

void metrics_limits_note(struct metrics *m, bool redis_configured,
                         bool redis_up, uint64_t redis_decisions,
                         uint64_t local_decisions)
{
    if (!m) {
        return;
    }
    int state = !redis_configured ? 0 : redis_up ? 2 : 1;
    atomic_store_explicit(&m->redis_state, state, memory_order_relaxed);
    atomic_store_explicit(&m->limits_redis, redis_decisions,
                          memory_order_relaxed);
    atomic_store_explicit(&m->limits_local, local_decisions,
                          memory_order_relaxed);
}

void metrics_redis_note(struct metrics *m, uint64_t moved, uint64_t asked,
                        uint64_t tryagain)
{
    if (!m) {
        return;
    }
    uint64_t v[3] = {moved, asked, tryagain};
    for (int i = 0; i < 3; i++) {
        atomic_store_explicit(&m->redis_redirects[i], v[i],
                              memory_order_relaxed);
    }
}

/* Content-policy refusals are the key's (or the provider's) policy, not
 * a failure of the provider nor a mistake of the caller. */
static bool policy_code(const char *code)
{
    return code && (strcmp(code, "content_policy_violation") == 0 ||
                    strcmp(code, "content_filter") == 0);
}

enum metrics_error metrics_error_class(int status, bool provider_failed,
                                       int limited, const char *code)
{
    if (limited > 0) {
        /* Step 2: over a limit or budget; LIMITS_UNAVAILABLE (6) is our
         * own 503 (Redis down under fail-closed). */
        return limited == METRICS_LIMIT_N - 1 ? METRICS_ERR_GATEWAY
                                              : METRICS_ERR_POLICY;
    }
    if (policy_code(code)) {
        return METRICS_ERR_POLICY;
    }
    if (provider_failed) {
        /* A 4xx the provider gave for the request itself (context length,
         * a bad parameter) is the caller's; its 429 and 5xx are its own. */
        bool callers = status >= 400 && status < 500 && status != 429;
        return callers ? METRICS_ERR_CALLER : METRICS_ERR_PROVIDER;
    }
    if (status >= 400 && status < 500) {
        return status == 429 ? METRICS_ERR_POLICY : METRICS_ERR_CALLER;
    }
    if (status >= 500 || status < 100) {
        return METRICS_ERR_GATEWAY;
    }
    return METRICS_ERR_NONE;
}
