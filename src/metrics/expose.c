/*
 * expose.c - the text of GET /metrics (Prometheus text format 0.0.4).
 *
 * A scrape gathers every worker's used series (metrics.c), sorts them by
 * (model, provider), sums each pair's series across workers into one
 * group, and writes each metric family from the groups, then the figures
 * read outside the tables (store queue and journal, limits, breakers).
 * It runs on the worker that got the scrape and only reads the others'
 * tables. Money is kept in integer nano-dollars and written as dollars
 * here; times are kept in microseconds and written as seconds. Read
 * metrics_expose() first; docs/metrics.md describes each family.
 */
#include "metrics/metrics.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "providers/provider.h"
#include "routing/routing.h"
#include "store/store.h"
#include "util/alloc.h"

/* One histogram summed across workers. */
struct hist_sum {
    uint64_t bucket[METRICS_LAT_BUCKETS + 1];
    uint64_t sum_us;
    uint64_t count;
};

/* One (model, provider) pair summed across workers. */
struct group {
    const char *model;
    const char *provider;
    uint64_t requests[METRICS_STATUS_N][METRICS_CACHE_N];
    uint64_t nrequests;
    uint64_t errors[METRICS_ERR_N];
    uint64_t tokens_in, tokens_out, cost_nusd, savings_nusd;
    uint64_t attempts[METRICS_ATTEMPT_N];
    uint64_t nattempts;
    struct hist_sum latency, ttft, overhead;
};

/* The process-wide figures summed across workers. */
struct totals {
    uint64_t rate_limited[METRICS_LIMIT_N];
    int64_t in_flight;
    uint64_t limits_redis, limits_local;
    int nredis;    /* workers with Redis configured */
    int nredis_up; /* of those, with their link up */
    uint64_t redis_redirects[3]; /* MOVED, ASK, TRYAGAIN followed */
};

static const char *const status_names[METRICS_STATUS_N] = {
    "1xx", "2xx", "3xx", "4xx", "5xx",
};
static const char *const cache_names[METRICS_CACHE_N] = {
    "miss", "exact", "semantic",
};
static const char *const error_names[METRICS_ERR_N] = {
    "none", "caller", "policy", "provider", "gateway",
};
/* enum limits_outcome's refusals, by value. */
static const char *const limit_names[METRICS_LIMIT_N] = {
    "admitted", "rpm", "tpm", "too_large", "concurrency", "budget",
    "unavailable",
};

static uint64_t ld(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---------------------------------------------------------------------
 * Gathering
 * ------------------------------------------------------------------- */

static int cmp_series(const void *a, const void *b)
{
    const struct metrics_series *x = *(const struct metrics_series *const *)a;
    const struct metrics_series *y = *(const struct metrics_series *const *)b;
    int c = strcmp(x->model, y->model);
    return c ? c : strcmp(x->provider, y->provider);
}

static void hist_load(struct hist_sum *d, const struct metrics_hist *h)
{
    for (size_t i = 0; i <= METRICS_LAT_BUCKETS; i++) {
        d->bucket[i] += ld(&h->bucket[i]);
    }
    d->sum_us += ld(&h->sum_us);
    d->count += ld(&h->count);
}

static void group_add(struct group *g, const struct metrics_series *s)
{
    for (int i = 0; i < METRICS_STATUS_N; i++) {
        for (int j = 0; j < METRICS_CACHE_N; j++) {
            uint64_t n = ld(&s->requests[i][j]);
            g->requests[i][j] += n;
            g->nrequests += n;
        }
    }
    for (int i = 0; i < METRICS_ERR_N; i++) {
        g->errors[i] += ld(&s->errors[i]);
    }
    g->tokens_in += ld(&s->tokens_in);
    g->tokens_out += ld(&s->tokens_out);
    g->cost_nusd += ld(&s->cost_nusd);
    g->savings_nusd += ld(&s->savings_nusd);
    for (int i = 0; i < METRICS_ATTEMPT_N; i++) {
        uint64_t n = ld(&s->attempts[i]);
        g->attempts[i] += n;
        g->nattempts += n;
    }
    hist_load(&g->latency, &s->latency);
    hist_load(&g->ttft, &s->ttft);
    hist_load(&g->overhead, &s->overhead);
}

static void totals_add(struct totals *t, struct metrics *m)
{
    for (int i = 0; i < METRICS_LIMIT_N; i++) {
        t->rate_limited[i] += ld(&m->rate_limited[i]);
    }
    t->in_flight += atomic_load_explicit(&m->in_flight,
                                         memory_order_relaxed);
    t->limits_redis += ld(&m->limits_redis);
    t->limits_local += ld(&m->limits_local);
    int rs = atomic_load_explicit(&m->redis_state, memory_order_relaxed);
    t->nredis += rs != 0;
    t->nredis_up += rs == 2;
    for (int i = 0; i < 3; i++) {
        t->redis_redirects[i] += ld(&m->redis_redirects[i]);
    }
}

/* Fills *out with the groups (sorted by model, provider) of every table
 * and t with the totals; returns the number of groups. The labels point
 * into the tables, which live until metrics_reset(). */
static size_t gather(struct group **out, struct totals *t)
{
    size_t cap = 0;
    for (int i = 0; i < METRICS_MAX_WORKERS; i++) {
        cap += metrics_table(i) ? METRICS_SERIES + 1 : 0;
    }
    const struct metrics_series **all = rl_calloc(cap ? cap : 1,
                                                  sizeof(*all));
    size_t n = 0;
    for (int i = 0; i < METRICS_MAX_WORKERS; i++) {
        struct metrics *m = metrics_table(i);
        for (size_t j = 0; m && j <= METRICS_SERIES; j++) {
            if (atomic_load_explicit(&m->series[j].used,
                                     memory_order_acquire)) {
                all[n++] = &m->series[j];
            }
        }
        if (m) {
            totals_add(t, m);
        }
    }
    qsort(all, n, sizeof(*all), cmp_series);
    struct group *g = rl_calloc(n ? n : 1, sizeof(*g));
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        if (ng == 0 || cmp_series(&all[i - 1], &all[i]) != 0) {
            g[ng].model = all[i]->model;
            g[ng].provider = all[i]->provider;
            ng++;
        }
        group_add(&g[ng - 1], all[i]);
    }
    free(all);
    *out = g;
    return ng;
}

/* ---------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------- */

static void family(struct buf *b, const char *name, const char *type,
                   const char *help)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Appends a label value, escaped as the text format wants. */
static void label_value(struct buf *b, const char *v)
{
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"') {
            buf_append(b, "\\", 1);
            buf_append(b, p, 1);
        } else if (*p == '\n') {
            buf_append(b, "\\n", 2);
        } else {
            buf_append(b, p, 1);
        }
    }
}

/* Appends name{model="..",provider=".." (without the closing brace). */
static void pair_open(struct buf *b, const char *name, const struct group *g)
{
    buf_append_cstr(b, name);
    buf_append_cstr(b, "{model=\"");
    label_value(b, g->model);
    buf_append_cstr(b, "\",provider=\"");
    label_value(b, g->provider);
    buf_append_cstr(b, "\"");
}

/* Microseconds (or nano-dollars with scale 1e9) as a decimal number. */
static void decimal(struct buf *b, uint64_t v, uint64_t scale, int digits)
{
    buf_printf(b, "%" PRIu64 ".%0*" PRIu64, v / scale, digits, v % scale);
}

/* A bucket bound in seconds, without trailing zeros ("0.005", "120"). */
static void bound(struct buf *b, uint64_t us)
{
    char frac[8];
    int n = 6;
    uint64_t f = us % 1000000;
    for (int i = 5; i >= 0; i--, f /= 10) {
        frac[i] = (char)('0' + f % 10);
    }
    while (n > 0 && frac[n - 1] == '0') {
        n--;
    }
    buf_printf(b, "%" PRIu64 "%s%.*s", us / 1000000, n ? "." : "", n, frac);
}

static void hist_write(struct buf *b, const char *name, const struct group *g,
                       const struct hist_sum *h, const uint64_t *bounds,
                       size_t nbounds)
{
    char bucket[96], sum[96], count[96];
    snprintf(bucket, sizeof(bucket), "%s_bucket", name);
    snprintf(sum, sizeof(sum), "%s_sum", name);
    snprintf(count, sizeof(count), "%s_count", name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= nbounds; i++) {
        cum += h->bucket[i];
        pair_open(b, bucket, g);
        buf_append_cstr(b, ",le=\"");
        if (i < nbounds) {
            bound(b, bounds[i]);
        } else {
            buf_append_cstr(b, "+Inf");
        }
        buf_printf(b, "\"} %" PRIu64 "\n", cum);
    }
    pair_open(b, sum, g);
    buf_append_cstr(b, "} ");
    decimal(b, h->sum_us, 1000000, 6);
    buf_append(b, "\n", 1);
    /* The count is the +Inf bucket's, not h->count: a scrape that reads
     * while the worker counts still writes a consistent histogram. */
    pair_open(b, count, g);
    buf_printf(b, "} %" PRIu64 "\n", cum);
}

/* Each group's value of one counter, written by the field's offset. */
static void per_pair(struct buf *b, const struct group *g, size_t ng,
                     const char *name, size_t field, bool usd)
{
    for (size_t i = 0; i < ng; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&g[i] + field, sizeof(v));
        pair_open(b, name, &g[i]);
        buf_append_cstr(b, "} ");
        if (usd) {
            decimal(b, v, 1000000000, 9);
            buf_append(b, "\n", 1);
        } else {
            buf_printf(b, "%" PRIu64 "\n", v);
        }
    }
}

static void write_requests(struct buf *b, const struct group *g, size_t ng)
{
    family(b, "gateway_requests_total", "counter",
           "Requests answered, by model, provider, status class and cache "
           "status; one per request log row.");
    for (size_t i = 0; i < ng; i++) {
        for (int s = 0; s < METRICS_STATUS_N; s++) {
            for (int c = 0; c < METRICS_CACHE_N; c++) {
                if (!g[i].requests[s][c]) {
                    continue;
                }
                pair_open(b, "gateway_requests_total", &g[i]);
                buf_printf(b, ",status_class=\"%s\",cache=\"%s\"} %" PRIu64
                           "\n", status_names[s], cache_names[c],
                           g[i].requests[s][c]);
            }
        }
    }
    family(b, "gateway_errors_total", "counter",
           "Requests that ended in an error, by error class (caller, "
           "policy, provider, gateway).");
    for (size_t i = 0; i < ng; i++) {
        for (int e = METRICS_ERR_CALLER; e < METRICS_ERR_N; e++) {
            if (g[i].errors[e]) {
                pair_open(b, "gateway_errors_total", &g[i]);
                buf_printf(b, ",error_class=\"%s\"} %" PRIu64 "\n",
                           error_names[e], g[i].errors[e]);
            }
        }
    }
    family(b, "gateway_cache_hits_total", "counter",
           "Requests answered from the cache, by cache status.");
    for (size_t i = 0; i < ng; i++) {
        for (int c = METRICS_CACHE_EXACT; c < METRICS_CACHE_N; c++) {
            uint64_t n = 0;
            for (int s = 0; s < METRICS_STATUS_N; s++) {
                n += g[i].requests[s][c];
            }
            pair_open(b, "gateway_cache_hits_total", &g[i]);
            buf_printf(b, ",cache=\"%s\"} %" PRIu64 "\n", cache_names[c], n);
        }
    }
}

/* The per-pair counters, one family each. */
static const struct {
    const char *name;
    const char *help;
    size_t field; /* offset of the uint64_t in struct group */
    bool usd;     /* nano-dollars, written as dollars */
} pair_counters[] = {
    {"gateway_input_tokens_total",
     "Prompt tokens, as reported by the provider (or estimated).",
     offsetof(struct group, tokens_in), false},
    {"gateway_output_tokens_total",
     "Completion tokens, as reported by the provider (or estimated).",
     offsetof(struct group, tokens_out), false},
    {"gateway_cost_usd_total",
     "What the requests cost, in US dollars (from integer nano-dollars).",
     offsetof(struct group, cost_nusd), true},
    {"gateway_savings_usd_total", "What cache hits saved, in US dollars.",
     offsetof(struct group, savings_nusd), true},
};

static void write_money(struct buf *b, const struct group *g, size_t ng)
{
    for (size_t i = 0; i < sizeof(pair_counters) / sizeof(pair_counters[0]);
         i++) {
        family(b, pair_counters[i].name, "counter", pair_counters[i].help);
        per_pair(b, g, ng, pair_counters[i].name, pair_counters[i].field,
                 pair_counters[i].usd);
    }
}

/* The per-pair histograms, one family each. */
static const struct {
    const char *name;
    const char *help;
    size_t field;          /* offset of the struct hist_sum in a group */
    const uint64_t *bounds; /* upper bounds, microseconds */
    size_t nbounds;
} pair_hists[] = {
    {"gateway_request_latency_seconds",
     "Time from a request's arrival to the end of its answer.",
     offsetof(struct group, latency), metrics_lat_bounds_us,
     METRICS_LAT_BUCKETS},
    {"gateway_ttft_seconds",
     "Time from a request's arrival to its first token, for answers that "
     "had one.", offsetof(struct group, ttft), metrics_lat_bounds_us,
     METRICS_LAT_BUCKETS},
    {"gateway_overhead_seconds",
     "The gateway's own time per request: latency minus the time spent "
     "waiting on providers.", offsetof(struct group, overhead),
     metrics_ovh_bounds_us, METRICS_OVH_BUCKETS},
};

static void write_histograms(struct buf *b, const struct group *g, size_t ng)
{
    for (size_t k = 0; k < sizeof(pair_hists) / sizeof(pair_hists[0]); k++) {
        family(b, pair_hists[k].name, "histogram", pair_hists[k].help);
        for (size_t i = 0; i < ng; i++) {
            const struct hist_sum *h = (const struct hist_sum *)(
                (const char *)&g[i] + pair_hists[k].field);
            hist_write(b, pair_hists[k].name, &g[i], h, pair_hists[k].bounds,
                       pair_hists[k].nbounds);
        }
    }
}

/* One family of attempts by outcome; errors_only leaves out ok and
 * cancelled (neither is the provider's failure). */
static void attempts_family(struct buf *b, const struct group *g, size_t ng,
                            const char *name, bool errors_only)
{
    for (size_t i = 0; i < ng; i++) {
        for (int o = 0; o < METRICS_ATTEMPT_N; o++) {
            bool skip = errors_only &&
                        (o == ATTEMPT_OK || o == ATTEMPT_CANCELLED);
            if (!skip && g[i].attempts[o]) {
                pair_open(b, name, &g[i]);
                buf_printf(b, ",outcome=\"%s\"} %" PRIu64 "\n",
                           provider_outcome_name((enum attempt_outcome)o),
                           g[i].attempts[o]);
            }
        }
    }
}

static void write_attempts(struct buf *b, const struct group *g, size_t ng)
{
    family(b, "gateway_upstream_attempts_total", "counter",
           "Upstream requests made (retries, fallbacks and hedges "
           "included), by outcome.");
    attempts_family(b, g, ng, "gateway_upstream_attempts_total", false);
    family(b, "gateway_provider_errors_total", "counter",
           "Upstream attempts that failed, by outcome (every outcome but "
           "ok and cancelled).");
    attempts_family(b, g, ng, "gateway_provider_errors_total", true);
}

/* A family of one unlabelled sample. */
static void single(struct buf *b, const char *name, const char *type,
                   const char *help, uint64_t v)
{
    family(b, name, type, help);
    buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void write_totals(struct buf *b, const struct totals *t)
{
    family(b, "gateway_rate_limited_total", "counter",
           "Requests refused by the key's limits (step 2), by reason.");
    for (int i = 1; i < METRICS_LIMIT_N; i++) {
        buf_printf(b, "gateway_rate_limited_total{reason=\"%s\"} %" PRIu64
                   "\n", limit_names[i], t->rate_limited[i]);
    }
    single(b, "gateway_in_flight_requests", "gauge",
           "Chat completions being served now.",
           t->in_flight > 0 ? (uint64_t)t->in_flight : 0);
    family(b, "gateway_limits_decisions_total", "counter",
           "Limit checks, by where they were decided.");
    buf_printf(b, "gateway_limits_decisions_total{backend=\"redis\"} %" PRIu64
               "\ngateway_limits_decisions_total{backend=\"local\"} %" PRIu64
               "\n", t->limits_redis, t->limits_local);
    if (t->nredis) {
        single(b, "gateway_redis_up", "gauge",
               "1 when every worker's Redis connection is up.",
               t->nredis_up == t->nredis);
        family(b, "gateway_redis_redirects_total", "counter",
               "Redis Cluster answers the limiter followed, by kind.");
        buf_printf(b, "gateway_redis_redirects_total{kind=\"moved\"} %" PRIu64
                   "\ngateway_redis_redirects_total{kind=\"ask\"} %" PRIu64
                   "\ngateway_redis_redirects_total{kind=\"tryagain\"} %"
                   PRIu64 "\n", t->redis_redirects[0], t->redis_redirects[1],
                   t->redis_redirects[2]);
    }
}

static void write_extra(struct buf *b, const struct metrics_extra *x)
{
    family(b, "gateway_circuit_breaker_state", "gauge",
           "Circuit breakers: 0 closed, 1 open, 2 half-open.");
    for (size_t i = 0; i < x->nbreakers; i++) {
        const struct metrics_breaker *k = &x->breakers[i];
        int st = k->state >= 0 && k->state <= 2 ? k->state : 0;
        buf_printf(b, "gateway_circuit_breaker_state{scope=\"%s\",name=\"",
                   k->provider ? "provider" : "model");
        label_value(b, k->name);
        buf_printf(b, "\"} %d\n", st);
    }
    if (x->semantic_on) {
        single(b, "gateway_cache_semantic_entries", "gauge",
               "Entries in this process's semantic cache index.",
               x->semantic_entries);
        family(b, "gateway_cache_semantic_skipped_total", "counter",
               "Semantic lookups that went on exact-only, by reason.");
        static const char *const why[] = {"queue_full", "timeout",
                                          "too_long"};
        for (size_t i = 0; i < 3; i++) {
            buf_printf(b, "gateway_cache_semantic_skipped_total{reason=\"%s"
                       "\"} %" PRIu64 "\n", why[i], x->semantic_skipped[i]);
        }
    }
    if (!x->store_open) {
        return;
    }
    single(b, "gateway_log_queue_depth", "gauge",
           "Request log rows waiting for the writer thread.", x->queue_rows);
    single(b, "gateway_log_queue_capacity", "gauge",
           "Rows the writer's queue holds before rows go to the journal.",
           x->queue_capacity);
    single(b, "gateway_journal_bytes", "gauge",
           "Bytes in the request log's journal files (rows waiting for "
           "the store).", x->journal_bytes);
    single(b, "gateway_log_rows_journaled_total", "counter",
           "Request log rows written to the journal.", x->rows_journaled);
    single(b, "gateway_log_rows_lost_total", "counter",
           "Request log rows neither stored nor journaled.", x->rows_lost);
}

enum rl_err metrics_expose(const struct metrics_extra *x, struct buf *out)
{
    struct group *g = NULL;
    struct totals t = {0};
    size_t ng = gather(&g, &t);
    /* Pairs that never counted anything (the empty "other") say nothing. */
    size_t n = 0;
    for (size_t i = 0; i < ng; i++) {
        if (g[i].nrequests || g[i].nattempts) {
            g[n++] = g[i];
        }
    }
    write_requests(out, g, n);
    write_money(out, g, n);
    write_histograms(out, g, n);
    write_attempts(out, g, n);
    write_totals(out, &t);
    write_extra(out, x);
    free(g);
    /* An append fails only at the cap, and no line is near 1 KiB long: a
     * buffer that ended that close to its cap lost a line. */
    return out->max - out->len < 1024 ? RL_E_CAP : RL_OK;
}

void metrics_extra_collect(struct metrics_extra *x,
                           struct metrics_breaker *space, size_t cap)
{
    memset(x, 0, sizeof(*x));
    struct store_stats st = store_stats_get();
    x->store_open = store_queue_capacity() > 0;
    x->queue_rows = store_queue_depth();
    x->queue_capacity = store_queue_capacity();
    x->journal_bytes = store_journal_bytes();
    x->rows_lost = st.lost;
    x->rows_journaled = st.journaled;
    struct routing_breaker_info info[256];
    size_t n = routing_breakers_list(info, cap < 256 ? cap : 256);
    for (size_t i = 0; i < n; i++) {
        space[i] = (struct metrics_breaker){
            .provider = info[i].provider,
            .name = info[i].name,
            .state = info[i].state,
        };
    }
    x->breakers = space;
    x->nbreakers = n;
    struct cache_semantic_stats cs;
    cache_semantic_stats(&cs);
    x->semantic_on = cs.on;
    x->semantic_entries = cs.entries;
    x->semantic_skipped[0] = cs.queue_full;
    x->semantic_skipped[1] = cs.timeouts;
    x->semantic_skipped[2] = cs.too_long;
}
