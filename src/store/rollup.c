/*
 * rollup.c - request_rollup, the hourly aggregate of request_log that the
 * analytics read (migrations/004_request_rollup.sql; 005 backfills it).
 *
 * The engines call store_rollup_add() inside the transaction of each batch,
 * with the rows that the batch actually inserted (a row whose request id
 * was stored already, by an earlier try of a journal replay, is not counted
 * again). It groups those rows by (hour, key_id, key_prefix, model,
 * provider) and adds each group with one UPSERT, so the rollup and the log
 * commit together or not at all. The groups are sent in a fixed order, so
 * two gateways adding to the same rows lock them in the same order.
 *
 * Also here: the latency histogram's bucket bounds (the same numbers as the
 * migration's CASE), and reading a quantile back from a histogram. Read
 * store_rollup_add() first; docs/internals/analytics.md has the design.
 */
#include "store/store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

/* Lower bound of each bucket: 0, then 1 ms * 2^((k-1)/2), rounded. */
const uint64_t store_latency_bounds_us[STORE_LAT_BUCKETS] = {
    0,        1000,     1414,     2000,     2828,     4000,     5657,
    8000,     11314,    16000,    22627,    32000,    45255,    64000,
    90510,    128000,   181019,   256000,   362039,   512000,   724077,
    1024000,  1448155,  2048000,  2896309,  4096000,  5792619,  8192000,
    11585238, 16384000, 23170475, 32768000,
};

int store_latency_bucket(uint64_t latency_us)
{
    int lo = 0;
    int hi = STORE_LAT_BUCKETS - 1;
    while (lo < hi) { /* the last bound <= latency_us */
        int mid = (lo + hi + 1) / 2;
        if (store_latency_bounds_us[mid] <= latency_us) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return lo;
}

double store_latency_quantile_ms(const int64_t hist[STORE_LAT_BUCKETS],
                                 double q)
{
    int64_t total = 0;
    for (int k = 0; k < STORE_LAT_BUCKETS; k++) {
        total += hist[k];
    }
    if (total <= 0) {
        return 0.0;
    }
    double rank = q * (double)total;
    int64_t below = 0;
    for (int k = 0; k < STORE_LAT_BUCKETS; k++) {
        if (hist[k] <= 0 || (double)(below + hist[k]) < rank) {
            below += hist[k] > 0 ? hist[k] : 0;
            continue;
        }
        double lo = (double)store_latency_bounds_us[k];
        double hi = k + 1 < STORE_LAT_BUCKETS
                        ? (double)store_latency_bounds_us[k + 1]
                        : lo * M_SQRT2;
        double f = (rank - (double)below) / (double)hist[k];
        return (lo + f * (hi - lo)) / 1000.0;
    }
    return (double)store_latency_bounds_us[STORE_LAT_BUCKETS - 1] / 1000.0;
}

bool store_row_cache_hit(const struct store_row *r)
{
    return strcmp(r->cache_status, "exact") == 0 ||
           strcmp(r->cache_status, "semantic") == 0;
}

bool store_row_server_error(const struct store_row *r)
{
    return r->status >= 500 || (r->status < 400 && r->error_code[0]);
}

/* ---------------------------------------------------------------------
 * Grouping a batch
 * ------------------------------------------------------------------- */

#define NSUMS 9              /* requests .. latency_sum_us */
#define NVALS (5 + NSUMS + STORE_LAT_BUCKETS)
#define CHUNK_GROUPS 100     /* groups per UPSERT statement */

static const char *const sum_cols[NSUMS] = {
    "requests",   "prompt_tokens", "completion_tokens",
    "cost_nusd",  "savings_nusd",  "cache_hits",
    "errors_4xx", "errors_5xx",    "latency_sum_us",
};

struct item {
    int64_t hour_us;
    const struct store_row *row;
};

struct group {
    int64_t hour_us;
    const struct store_row *row; /* its key, model and provider */
    int64_t sums[NSUMS];
    int64_t hist[STORE_LAT_BUCKETS];
};

static int cmp_item(const void *a, const void *b)
{
    const struct item *x = a;
    const struct item *y = b;
    if (x->hour_us != y->hour_us) {
        return x->hour_us < y->hour_us ? -1 : 1;
    }
    int c = strcmp(x->row->key_id, y->row->key_id);
    if (c == 0) {
        c = strcmp(x->row->key_prefix, y->row->key_prefix);
    }
    if (c == 0) {
        c = strcmp(x->row->model, y->row->model);
    }
    return c ? c : strcmp(x->row->provider, y->row->provider);
}

static void add_row(struct group *g, const struct store_row *r)
{
    g->sums[0] += 1;
    g->sums[1] += r->prompt_tokens;
    g->sums[2] += r->completion_tokens;
    g->sums[3] += r->cost_nusd;
    g->sums[4] += r->savings_nusd;
    g->sums[5] += store_row_cache_hit(r);
    g->sums[6] += r->status >= 400 && r->status < 500;
    g->sums[7] += store_row_server_error(r);
    g->sums[8] += (int64_t)r->latency_us;
    g->hist[store_latency_bucket(r->latency_us)]++;
}

/* Returns the groups of the stored rows, in key order, in a new array
 * (the caller frees it; it points into rows). */
static struct group *group_rows(const struct store_row *rows,
                                const bool *stored, size_t n, size_t *ngroups)
{
    struct item *items = rl_malloc((n ? n : 1) * sizeof(*items));
    size_t nitems = 0;
    for (size_t i = 0; i < n; i++) {
        if (stored && !stored[i]) {
            continue;
        }
        int64_t ts = rows[i].ts_us;
        int64_t hour = ts - ((ts % STORE_HOUR_US) + STORE_HOUR_US) %
                                STORE_HOUR_US;
        items[nitems++] = (struct item){hour, &rows[i]};
    }
    qsort(items, nitems, sizeof(*items), cmp_item);
    struct group *groups = rl_calloc(nitems ? nitems : 1, sizeof(*groups));
    size_t ng = 0;
    for (size_t i = 0; i < nitems; i++) {
        if (ng == 0 || cmp_item(&items[i - 1], &items[i]) != 0) {
            groups[ng].hour_us = items[i].hour_us;
            groups[ng].row = items[i].row;
            ng++;
        }
        add_row(&groups[ng - 1], items[i].row);
    }
    free(items);
    *ngroups = ng;
    return groups;
}

/* ---------------------------------------------------------------------
 * The UPSERT
 * ------------------------------------------------------------------- */

static void col_name(char out[24], int i)
{
    if (i < NSUMS) {
        snprintf(out, 24, "%s", sum_cols[i]);
    } else {
        snprintf(out, 24, "lat_%02d", i - NSUMS);
    }
}

/* The statement for ngroups groups: $1.. in NVALS per group. */
static void upsert_sql(struct buf *b, size_t ngroups)
{
    char name[24];
    buf_append_cstr(b, "INSERT INTO request_rollup (hour, key_id, "
                       "key_prefix, model, provider");
    for (int i = 0; i < NSUMS + STORE_LAT_BUCKETS; i++) {
        col_name(name, i);
        buf_printf(b, ", %s", name);
    }
    buf_append_cstr(b, ") VALUES ");
    int p = 1;
    for (size_t g = 0; g < ngroups; g++) {
        buf_printf(b, "%s($%d, $%d, $%d, $%d, $%d", g ? ", " : "", p,
                   p + 1, p + 2, p + 3, p + 4);
        p += 5;
        for (int i = 0; i < NSUMS + STORE_LAT_BUCKETS; i++) {
            buf_printf(b, ", CAST($%d AS bigint)", p++);
        }
        buf_append_cstr(b, ")");
    }
    buf_append_cstr(b, " ON CONFLICT (hour, key_id, key_prefix, model, "
                       "provider) DO UPDATE SET ");
    for (int i = 0; i < NSUMS + STORE_LAT_BUCKETS; i++) {
        col_name(name, i);
        buf_printf(b, "%s%s = request_rollup.%s + excluded.%s", i ? ", " : "",
                   name, name, name);
    }
}

/* Sends groups [0, ngroups) in one statement. */
static enum rl_err upsert(const struct store_engine *e, struct store_conn *c,
                          const struct group *groups, size_t ngroups,
                          char *err, size_t errn)
{
    struct buf sql;
    buf_init(&sql, 4u << 20);
    upsert_sql(&sql, ngroups);
    buf_append(&sql, "", 1);
    size_t nparams = ngroups * NVALS;
    const char **params = rl_malloc(nparams * sizeof(*params));
    char (*text)[32] = rl_malloc(nparams * sizeof(*text));
    for (size_t g = 0; g < ngroups; g++) {
        const struct group *gr = &groups[g];
        size_t at = g * NVALS;
        store_ts_format(gr->hour_us, text[at]);
        params[at] = text[at];
        params[at + 1] = gr->row->key_id;
        params[at + 2] = gr->row->key_prefix;
        params[at + 3] = gr->row->model;
        params[at + 4] = gr->row->provider;
        for (int i = 0; i < NSUMS + STORE_LAT_BUCKETS; i++) {
            size_t k = at + 5 + (size_t)i;
            int64_t v = i < NSUMS ? gr->sums[i] : gr->hist[i - NSUMS];
            snprintf(text[k], sizeof(text[k]), "%lld", (long long)v);
            params[k] = text[k];
        }
    }
    enum rl_err result = e->query(c, sql.p, params, (int)nparams, NULL, NULL,
                                  err, errn);
    free(text);
    free(params);
    buf_free(&sql);
    return result;
}

enum rl_err store_rollup_add(const struct store_engine *e,
                             struct store_conn *c,
                             const struct store_row *rows, const bool *stored,
                             size_t n, char *err, size_t errn)
{
    size_t ngroups = 0;
    struct group *groups = group_rows(rows, stored, n, &ngroups);
    enum rl_err result = RL_OK;
    for (size_t at = 0; at < ngroups && result == RL_OK;
         at += CHUNK_GROUPS) {
        size_t k = ngroups - at < CHUNK_GROUPS ? ngroups - at : CHUNK_GROUPS;
        result = upsert(e, c, groups + at, k, err, errn);
    }
    free(groups);
    return result;
}
