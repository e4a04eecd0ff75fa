/*
 * analytics.c - GET /admin/analytics?range=1h|24h|7d|30d, behind the
 * master key (admin_key), and the JSON it answers (docs/api.md).
 *
 * The figures come from store/analytics.c (the hourly rollup plus the raw
 * rows of the partial hours at the ends). The store calls block, so the
 * query is a job on libuv's thread pool with a store connection of its
 * own, answered from the after-work callback on the loop, as /admin/keys
 * does. The dashboard's own listener may serve it without the key when it
 * is configured for local use (gateway.c decides; see docs/dashboard.md).
 * Read admin_analytics_serve() first; admin_analytics_json() is pure.
 */
#include "admin/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "reply.h"
#include "request.h"
#include "server/server.h"
#include "util/alloc.h"

struct ajob {
    struct admin_job base;   /* first: the job frees the whole struct */
    const char *range;       /* static name of the range */
    int64_t span_us;         /* its length */
};

static const struct {
    const char *name;
    int64_t span_us;
} ranges[] = {
    {"1h", STORE_HOUR_US},
    {"24h", 24 * STORE_HOUR_US},
    {"7d", 7 * 24 * STORE_HOUR_US},
    {"30d", 30 * 24 * STORE_HOUR_US},
};

bool admin_range_parse(struct str query, const char **name, int64_t *span_us)
{
    struct str value = {NULL, 0};
    const char *p = query.p;
    const char *end = query.p ? query.p + query.len : NULL;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if (stop - p >= 6 && memcmp(p, "range=", 6) == 0) {
            value = (struct str){p + 6, (size_t)(stop - p - 6)};
        }
        p = amp ? amp + 1 : NULL;
    }
    if (!value.p) {
        value = STR_LIT("24h");
    }
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        if (str_eq(value, str_from(ranges[i].name))) {
            *name = ranges[i].name;
            *span_us = ranges[i].span_us;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------
 * The answer (pure)
 * ------------------------------------------------------------------- */

static json_t *usd(int64_t nusd)
{
    return json_real((double)nusd / 1e9);
}

static json_t *ts_json(int64_t us)
{
    char ts[32];
    store_ts_format(us, ts);
    return json_string(ts);
}

static double ratio(int64_t a, int64_t b)
{
    return b > 0 ? (double)a / (double)b : 0.0;
}

static json_t *totals_json(const struct store_an_sums *s)
{
    int64_t errors = s->errors_4xx + s->errors_5xx;
    json_t *o = json_object();
    json_object_set_new(o, "requests", json_integer(s->requests));
    json_object_set_new(o, "prompt_tokens", json_integer(s->prompt_tokens));
    json_object_set_new(o, "completion_tokens",
                        json_integer(s->completion_tokens));
    json_object_set_new(o, "tokens", json_integer(s->prompt_tokens +
                                                  s->completion_tokens));
    json_object_set_new(o, "spend_nusd", json_integer(s->cost_nusd));
    json_object_set_new(o, "spend_usd", usd(s->cost_nusd));
    json_object_set_new(o, "savings_nusd", json_integer(s->savings_nusd));
    json_object_set_new(o, "savings_usd", usd(s->savings_nusd));
    json_object_set_new(o, "cache_hits", json_integer(s->cache_hits));
    json_object_set_new(o, "cache_hit_rate",
                        json_real(ratio(s->cache_hits, s->requests)));
    json_object_set_new(o, "avg_latency_ms",
                        json_real(ratio(s->latency_sum_us, s->requests) /
                                  1000.0));
    json_object_set_new(o, "errors", json_integer(errors));
    json_object_set_new(o, "errors_4xx", json_integer(s->errors_4xx));
    json_object_set_new(o, "errors_5xx", json_integer(s->errors_5xx));
    json_object_set_new(o, "error_rate",
                        json_real(ratio(errors, s->requests)));
    return o;
}

static json_t *hours_json(const struct store_an_hour *h, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "hour", ts_json(h[i].hour_us));
        json_object_set_new(o, "requests", json_integer(h[i].s.requests));
        json_object_set_new(o, "spend_nusd", json_integer(h[i].s.cost_nusd));
        json_object_set_new(o, "spend_usd", usd(h[i].s.cost_nusd));
        json_object_set_new(o, "savings_nusd",
                            json_integer(h[i].s.savings_nusd));
        json_object_set_new(o, "savings_usd", usd(h[i].s.savings_nusd));
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *groups_json(const struct store_analytics *a, json_t *out)
{
    json_t *prov = json_array();
    for (size_t i = 0; i < a->nproviders; i++) {
        const struct store_an_provider *p = &a->providers[i];
        json_array_append_new(prov, json_pack(
            "{s:s, s:I, s:I, s:o}", "provider", p->provider, "requests",
            (json_int_t)p->requests, "spend_nusd", (json_int_t)p->cost_nusd,
            "spend_usd", usd(p->cost_nusd)));
    }
    json_object_set_new(out, "providers", prov);
    json_t *models = json_array();
    for (size_t i = 0; i < a->nmodels; i++) {
        const struct store_an_model *m = &a->models[i];
        json_array_append_new(models, json_pack(
            "{s:s, s:I, s:f, s:f}", "model", m->model, "requests",
            (json_int_t)m->requests, "p50_ms",
            store_latency_quantile_ms(m->hist, 0.50), "p95_ms",
            store_latency_quantile_ms(m->hist, 0.95)));
    }
    json_object_set_new(out, "models", models);
    json_t *top = json_array();
    size_t active = 0;
    for (size_t i = 0; i < a->nkeys; i++) {
        const struct store_an_key *k = &a->keys[i];
        active += k->key_id[0] || k->prefix[0];
        if (json_array_size(top) >= ADMIN_TOP_KEYS) {
            continue;
        }
        json_array_append_new(top, json_pack(
            "{s:s, s:s, s:s, s:b, s:I, s:I, s:o}", "key_id", k->key_id,
            "prefix", k->prefix, "name", k->name, "demo", k->demo,
            "requests", (json_int_t)k->requests, "spend_nusd",
            (json_int_t)k->cost_nusd, "spend_usd", usd(k->cost_nusd)));
    }
    json_object_set_new(out, "keys", json_pack("{s:I, s:o}", "active",
                                               (json_int_t)active, "top",
                                               top));
    return out;
}

json_t *admin_analytics_json(const struct store_analytics *a,
                             const char *range)
{
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("analytics"));
    json_object_set_new(o, "range", json_string(range));
    json_object_set_new(o, "start", ts_json(a->start_us));
    json_object_set_new(o, "end", ts_json(a->end_us));
    json_object_set_new(o, "demo", json_boolean(a->demo));
    json_object_set_new(o, "totals", totals_json(&a->total));
    json_object_set_new(o, "hours", hours_json(a->hours, a->nhours));
    groups_json(a, o);
    const struct store_an_sums *c = &a->cache_total;
    json_t *cache = json_object();
    json_object_set_new(cache, "window_hours",
                        json_integer(STORE_CACHE_PANEL_US / STORE_HOUR_US));
    json_object_set_new(cache, "saved_nusd", json_integer(c->savings_nusd));
    json_object_set_new(cache, "saved_usd", usd(c->savings_nusd));
    json_object_set_new(cache, "spend_nusd", json_integer(c->cost_nusd));
    json_object_set_new(cache, "spend_usd", usd(c->cost_nusd));
    json_object_set_new(cache, "spend_avoided",
                        json_real(ratio(c->savings_nusd,
                                        c->cost_nusd + c->savings_nusd)));
    json_object_set_new(cache, "hits", json_integer(c->cache_hits));
    json_object_set_new(cache, "hours",
                        hours_json(a->cache_hours, a->ncache_hours));
    json_object_set_new(o, "cache", cache);
    return o;
}

/* ---------------------------------------------------------------------
 * The job
 * ------------------------------------------------------------------- */

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* On the pool thread: the range's figures as JSON text. */
static void run(struct admin_job *base, struct store_db *db)
{
    struct ajob *j = (struct ajob *)base;
    struct store_analytics a;
    base->err = store_analytics_query(db, j->span_us, wall_us(), &a,
                                      base->message, sizeof(base->message));
    if (base->err == RL_OK) {
        json_t *o = admin_analytics_json(&a, j->range);
        base->body = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_decref(o);
        store_analytics_free(&a);
    }
}

void admin_analytics_serve(struct gw_worker *w, struct conn *c,
                           struct http_request *http, bool trusted)
{
    struct req *r = req_new(w, c, http);
    /* Reads of the log are not requests to it: the dashboard polls, and
     * its polls must not move the figures it shows (as the probes). */
    r->accounted = true;
    if (!trusted && !admin_authorized(r, http)) {
        req_free(r);
        return;
    }
    if (http->method != SERVER_GET && http->method != SERVER_HEAD) {
        reply_error(r, RL_E_METHOD, "Use GET /admin/analytics?range=24h.",
                    NULL);
        req_free(r);
        return;
    }
    struct ajob *j = rl_calloc(1, sizeof(*j));
    j->base.r = r;
    if (!admin_range_parse(http->query, &j->range, &j->span_us)) {
        reply_error(r, RL_E_INVALID_REQUEST, "range must be one of 1h, 24h, "
                    "7d or 30d, as in /admin/analytics?range=24h.", "range");
        free(j);
        req_free(r);
        return;
    }
    j->base.run = run;
    j->base.failure = "The request log could not be read";
    admin_job_start(w, c, &j->base);
}
