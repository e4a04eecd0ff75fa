/*
 * analytics.c - the figures of /admin/analytics for a range, from the
 * hourly rollup and the request log, in PostgreSQL and SQLite alike.
 *
 * A range [start, end) is read in three parts: the whole hours from
 * ceil(start) to floor(end) come from request_rollup (a few rows per hour
 * and key and model, however many requests), and the two partial hours at
 * the ends, [start, ceil(start)) and [floor(end), end), from request_log
 * itself (a ts range, on its BRIN or btree index). Both are put in the
 * same shape (the raw rows projected as rollup rows of one request each)
 * and joined with UNION ALL, so each panel is one grouped query, and the
 * figures equal the log's own sums for any end, not only on the hour.
 * Blocking calls: the admin API runs this on libuv's thread pool. Read
 * store_analytics_query() first.
 */
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

/* How the two engines spell what differs. */
struct dialect {
    const char *ts_param;   /* a text parameter as a timestamp */
    const char *raw_hour;   /* request_log.ts truncated to its hour */
    const char *hour_epoch; /* hour as Unix seconds */
};

static const struct dialect pg_dialect = {
    .ts_param = "CAST($%d AS timestamptz)",
    .raw_hour = "date_trunc('hour', ts AT TIME ZONE 'UTC') AT TIME ZONE "
                "'UTC'",
    .hour_epoch = "CAST(extract(epoch FROM hour) AS bigint)",
};

static const struct dialect sqlite_dialect = {
    .ts_param = "$%d",
    .raw_hour = "substr(ts, 1, 13) || ':00:00.000000Z'",
    .hour_epoch = "CAST(strftime('%s', substr(hour, 1, 19)) AS integer)",
};

static const char *const sum_names[] = {
    "requests",   "prompt_tokens", "completion_tokens",
    "cost_nusd",  "savings_nusd",  "cache_hits",
    "errors_4xx", "errors_5xx",    "latency_sum_us",
};
#define NSUMS 9

/* The raw row's value of each sum, in the order of sum_names. */
static const char *const sum_raw[] = {
    "1",
    "prompt_tokens",
    "completion_tokens",
    "cost_nusd",
    "savings_nusd",
    "CASE WHEN cache_status IN ('exact', 'semantic') THEN 1 ELSE 0 END",
    "CASE WHEN status >= 400 AND status < 500 THEN 1 ELSE 0 END",
    /* store_row_server_error(): a stream that failed after its 200 too
     * (in parentheses: one literal on two lines, which clang would take
     * for a missing comma, -Wstring-concatenation, failing make fuzz) */
    ("CASE WHEN status >= 500 OR (status < 400 AND error_code IS NOT NULL) "
     "THEN 1 ELSE 0 END"),
    "latency_us",
};

static void ts_param(struct buf *b, const struct dialect *d, int n)
{
    buf_printf(b, d->ts_param, n);
}

/* Appends the range's rows in the rollup's shape as "(...) s": $1 start,
 * $2 ceil(start), $3 floor(end), $4 end. hist adds lat_00..lat_31. */
static void source(struct buf *b, const struct dialect *d, bool hist)
{
    buf_append_cstr(b, "(SELECT hour, key_id, key_prefix, model, provider");
    for (int i = 0; i < NSUMS; i++) {
        buf_printf(b, ", %s", sum_names[i]);
    }
    for (int k = 0; hist && k < STORE_LAT_BUCKETS; k++) {
        buf_printf(b, ", lat_%02d", k);
    }
    buf_append_cstr(b, " FROM request_rollup WHERE hour >= ");
    ts_param(b, d, 2);
    buf_append_cstr(b, " AND hour < ");
    ts_param(b, d, 3);
    buf_printf(b, " UNION ALL SELECT %s, key_id, key_prefix, model, "
                  "provider", d->raw_hour);
    for (int i = 0; i < NSUMS; i++) {
        buf_printf(b, ", %s", sum_raw[i]);
    }
    for (int k = 0; hist && k < STORE_LAT_BUCKETS; k++) {
        uint64_t lo = store_latency_bounds_us[k];
        if (k + 1 < STORE_LAT_BUCKETS) {
            buf_printf(b, ", CASE WHEN latency_us >= %llu AND latency_us < "
                          "%llu THEN 1 ELSE 0 END", (unsigned long long)lo,
                       (unsigned long long)store_latency_bounds_us[k + 1]);
        } else {
            buf_printf(b, ", CASE WHEN latency_us >= %llu THEN 1 ELSE 0 END",
                       (unsigned long long)lo);
        }
    }
    buf_append_cstr(b, " FROM request_log WHERE (ts >= ");
    ts_param(b, d, 1);
    buf_append_cstr(b, " AND ts < ");
    ts_param(b, d, 2);
    buf_append_cstr(b, ") OR (ts >= ");
    ts_param(b, d, 3);
    buf_append_cstr(b, " AND ts < ");
    ts_param(b, d, 4);
    buf_append_cstr(b, ")) s");
}

/* ---------------------------------------------------------------------
 * Reading result rows
 * ------------------------------------------------------------------- */

static int64_t num(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

static void read_sums(const char *const *cols, struct store_an_sums *s)
{
    s->requests = num(cols[0]);
    s->prompt_tokens = num(cols[1]);
    s->completion_tokens = num(cols[2]);
    s->cost_nusd = num(cols[3]);
    s->savings_nusd = num(cols[4]);
    s->cache_hits = num(cols[5]);
    s->errors_4xx = num(cols[6]);
    s->errors_5xx = num(cols[7]);
    s->latency_sum_us = num(cols[8]);
}

static void add_sums(struct store_an_sums *to, const struct store_an_sums *s)
{
    to->requests += s->requests;
    to->prompt_tokens += s->prompt_tokens;
    to->completion_tokens += s->completion_tokens;
    to->cost_nusd += s->cost_nusd;
    to->savings_nusd += s->savings_nusd;
    to->cache_hits += s->cache_hits;
    to->errors_4xx += s->errors_4xx;
    to->errors_5xx += s->errors_5xx;
    to->latency_sum_us += s->latency_sum_us;
}

struct hours_ctx {
    struct store_an_hour *hours; /* nhours, from first_us on */
    size_t nhours;
    int64_t first_us;
    struct store_an_sums *total;
};

static void on_hour(void *arg, const char *const *cols, int ncols)
{
    struct hours_ctx *h = arg;
    if (ncols < 1 + NSUMS) {
        return;
    }
    int64_t hour_us = num(cols[0]) * 1000000;
    struct store_an_sums s;
    read_sums(cols + 1, &s);
    add_sums(h->total, &s);
    int64_t i = (hour_us - h->first_us) / STORE_HOUR_US;
    if (hour_us >= h->first_us && i < (int64_t)h->nhours) {
        add_sums(&h->hours[i].s, &s);
    }
}

static void on_provider(void *arg, const char *const *cols, int ncols)
{
    struct store_analytics *a = arg;
    /* Requests refused before any provider (401, 429, a bad body) are
     * in the totals, not in the provider mix. */
    if (ncols < 3 || !cols[0] || !cols[0][0]) {
        return;
    }
    a->providers = rl_realloc(a->providers,
                              (a->nproviders + 1) * sizeof(*a->providers));
    struct store_an_provider *p = &a->providers[a->nproviders++];
    memset(p, 0, sizeof(*p));
    store_copy_text(p->provider, sizeof(p->provider), cols[0]);
    p->requests = num(cols[1]);
    p->cost_nusd = num(cols[2]);
}

static void on_model(void *arg, const char *const *cols, int ncols)
{
    struct store_analytics *a = arg;
    if (ncols < 2 + STORE_LAT_BUCKETS || !cols[0] || !cols[0][0]) {
        return; /* requests that reached no model have no latency row */
    }
    a->models = rl_realloc(a->models, (a->nmodels + 1) * sizeof(*a->models));
    struct store_an_model *m = &a->models[a->nmodels++];
    memset(m, 0, sizeof(*m));
    store_copy_text(m->model, sizeof(m->model), cols[0]);
    m->requests = num(cols[1]);
    for (int k = 0; k < STORE_LAT_BUCKETS; k++) {
        m->hist[k] = num(cols[2 + k]);
    }
}

static void on_key(void *arg, const char *const *cols, int ncols)
{
    struct store_analytics *a = arg;
    if (ncols < 5) {
        return;
    }
    a->keys = rl_realloc(a->keys, (a->nkeys + 1) * sizeof(*a->keys));
    struct store_an_key *k = &a->keys[a->nkeys++];
    memset(k, 0, sizeof(*k));
    store_copy_text(k->key_id, sizeof(k->key_id), cols[0]);
    store_copy_text(k->prefix, sizeof(k->prefix), cols[1]);
    k->requests = num(cols[2]);
    k->cost_nusd = num(cols[3]);
    const char *name = cols[4] ? cols[4] : "";
    size_t plen = strlen(STORE_DEMO_PREFIX);
    k->demo = strncmp(name, STORE_DEMO_PREFIX, plen) == 0;
    store_copy_text(k->name, sizeof(k->name), k->demo ? name + plen : name);
}

/* ---------------------------------------------------------------------
 * The queries
 * ------------------------------------------------------------------- */

struct range {
    char text[4][32]; /* $1..$4 as ISO-8601 UTC */
    const char *params[4];
    int64_t first_hour_us; /* floor(start) */
    size_t nhours;         /* floor(start) .. floor(end - 1) */
};

static int64_t floor_hour(int64_t us)
{
    return us - ((us % STORE_HOUR_US) + STORE_HOUR_US) % STORE_HOUR_US;
}

static void range_init(struct range *r, int64_t start_us, int64_t end_us)
{
    int64_t ceil_start = floor_hour(start_us);
    if (ceil_start < start_us) {
        ceil_start += STORE_HOUR_US;
    }
    int64_t floor_end = floor_hour(end_us);
    if (ceil_start > floor_end) { /* under an hour: all from the log */
        ceil_start = floor_end = end_us;
    }
    int64_t bounds[4] = {start_us, ceil_start, floor_end, end_us};
    for (int i = 0; i < 4; i++) {
        store_ts_format(bounds[i], r->text[i]);
        r->params[i] = r->text[i];
    }
    r->first_hour_us = floor_hour(start_us);
    int64_t last = floor_hour(end_us - 1);
    r->nhours = last >= r->first_hour_us
                    ? (size_t)((last - r->first_hour_us) / STORE_HOUR_US) + 1
                    : 0;
}

/* Runs "SELECT <head> FROM <source> <tail>" for range r. */
static enum rl_err run(struct store_db *db, const struct range *r,
                       const char *head, bool hist, const char *tail,
                       store_row_fn fn, void *arg, char *err, size_t n)
{
    const struct dialect *d = db->engine == &store_pg ? &pg_dialect
                                                     : &sqlite_dialect;
    struct buf sql;
    buf_init(&sql, 1u << 20);
    buf_printf(&sql, "SELECT %s FROM ", head);
    source(&sql, d, hist);
    buf_printf(&sql, " %s", tail);
    buf_append(&sql, "", 1);
    enum rl_err e = db->engine->query(db->conn, sql.p, r->params, 4, fn, arg,
                                      err, n);
    buf_free(&sql);
    return e;
}

static enum rl_err query_hours(struct store_db *db, int64_t start_us,
                               int64_t end_us, struct store_an_hour **hours,
                               size_t *nhours, struct store_an_sums *total,
                               char *err, size_t n)
{
    struct range r;
    range_init(&r, start_us, end_us);
    struct hours_ctx h = {
        .hours = rl_calloc(r.nhours ? r.nhours : 1, sizeof(*h.hours)),
        .nhours = r.nhours,
        .first_us = r.first_hour_us,
        .total = total,
    };
    for (size_t i = 0; i < r.nhours; i++) {
        h.hours[i].hour_us = r.first_hour_us + (int64_t)i * STORE_HOUR_US;
    }
    const struct dialect *d = db->engine == &store_pg ? &pg_dialect
                                                     : &sqlite_dialect;
    char head[512];
    snprintf(head, sizeof(head), "%s, sum(requests), sum(prompt_tokens), "
             "sum(completion_tokens), sum(cost_nusd), sum(savings_nusd), "
             "sum(cache_hits), sum(errors_4xx), sum(errors_5xx), "
             "sum(latency_sum_us)", d->hour_epoch);
    enum rl_err e = run(db, &r, head, false, "GROUP BY hour", on_hour, &h,
                        err, n);
    *hours = h.hours;
    *nhours = h.nhours;
    return e;
}

static int by_provider(const void *a, const void *b)
{
    const struct store_an_provider *x = a;
    const struct store_an_provider *y = b;
    if (x->requests != y->requests) {
        return x->requests > y->requests ? -1 : 1;
    }
    return strcmp(x->provider, y->provider);
}

static int by_model(const void *a, const void *b)
{
    const struct store_an_model *x = a;
    const struct store_an_model *y = b;
    if (x->requests != y->requests) {
        return x->requests > y->requests ? -1 : 1;
    }
    return strcmp(x->model, y->model);
}

static int by_spend(const void *a, const void *b)
{
    const struct store_an_key *x = a;
    const struct store_an_key *y = b;
    if (x->cost_nusd != y->cost_nusd) {
        return x->cost_nusd > y->cost_nusd ? -1 : 1;
    }
    if (x->requests != y->requests) {
        return x->requests > y->requests ? -1 : 1;
    }
    return strcmp(x->prefix, y->prefix);
}

/* The providers, models and keys of the range. */
static enum rl_err query_groups(struct store_db *db, struct store_analytics *a,
                                char *err, size_t n)
{
    struct range r;
    range_init(&r, a->start_us, a->end_us);
    enum rl_err e = run(db, &r, "provider, sum(requests), sum(cost_nusd)",
                        false, "GROUP BY provider", on_provider, a, err, n);
    char head[1024] = "model, sum(requests)";
    for (int k = 0; k < STORE_LAT_BUCKETS; k++) {
        size_t len = strlen(head);
        snprintf(head + len, sizeof(head) - len, ", sum(lat_%02d)", k);
    }
    if (e == RL_OK) {
        e = run(db, &r, head, true, "GROUP BY model", on_model, a, err, n);
    }
    if (e == RL_OK) {
        e = run(db, &r, "g.key_id, g.key_prefix, g.requests, g.cost, k.name "
                "FROM (SELECT key_id, key_prefix, sum(requests) AS requests, "
                "sum(cost_nusd) AS cost", false,
                "GROUP BY key_id, key_prefix) g LEFT JOIN api_keys k ON "
                "k.id = g.key_id AND g.key_id <> ''", on_key, a, err, n);
    }
    /* qsort wants a real array even for none (UBSan says so). */
    if (a->nproviders) {
        qsort(a->providers, a->nproviders, sizeof(*a->providers),
              by_provider);
    }
    if (a->nmodels) {
        qsort(a->models, a->nmodels, sizeof(*a->models), by_model);
    }
    if (a->nkeys) {
        qsort(a->keys, a->nkeys, sizeof(*a->keys), by_spend);
    }
    return e;
}

/* Demo: some requests came through demo keys, and every request made with
 * a key (a store key or a static one) did. */
static bool all_demo(const struct store_analytics *a)
{
    int64_t demo = 0;
    int64_t keyed = 0;
    for (size_t i = 0; i < a->nkeys; i++) {
        const struct store_an_key *k = &a->keys[i];
        if (k->key_id[0] || k->prefix[0]) {
            keyed += k->requests;
            demo += k->demo ? k->requests : 0;
        }
    }
    return demo > 0 && demo == keyed;
}

enum rl_err store_analytics_query(struct store_db *db, int64_t span_us,
                                  int64_t end_us, struct store_analytics *out,
                                  char *err, size_t n)
{
    memset(out, 0, sizeof(*out));
    out->start_us = end_us - span_us;
    out->end_us = end_us;
    enum rl_err e = query_hours(db, out->start_us, end_us, &out->hours,
                                &out->nhours, &out->total, err, n);
    if (e == RL_OK) {
        e = query_groups(db, out, err, n);
    }
    if (e == RL_OK) {
        e = query_hours(db, end_us - STORE_CACHE_PANEL_US, end_us,
                        &out->cache_hours, &out->ncache_hours,
                        &out->cache_total, err, n);
    }
    if (e != RL_OK) {
        store_analytics_free(out);
        return RL_E_IO;
    }
    out->demo = all_demo(out);
    return RL_OK;
}

void store_analytics_free(struct store_analytics *a)
{
    free(a->hours);
    free(a->providers);
    free(a->models);
    free(a->keys);
    free(a->cache_hours);
    memset(a, 0, sizeof(*a));
}
