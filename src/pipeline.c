/*
 * pipeline.c - the path of one chat completion, in order:
 *
 *   1 authenticate  auth/       who is calling
 *   2 rate limit    limits/     the key's rpm, tpm, concurrency, budget
 *   3 route         routing/    which models, in which order
 *   4 cache         cache/      exact, then semantic answers
 *   5 stream        providers/  the call, its fallbacks, its chunks
 *   6 account       accounting/ price and log, from req_free()
 *
 * Each step is one call into its folder; this file holds the order and the
 * callbacks that carry a provider's answer back to the client, nothing else.
 * Step 2 runs after step 3's plan, which is pure computation: the budget
 * hold is priced on the plan (docs/decisions.md 18).
 */
#include "pipeline.h"

#include <stdio.h>
#include <string.h>

#include "accounting/accounting.h"
#include "api/api.h"
#include "auth/auth.h"
#include "cache/cache.h"
#include "config/config.h"
#include "gateway/gateway.h"
#include "metrics/metrics.h"
#include "providers/provider.h"
#include "reply.h"
#include "request.h"
#include "routing/routing.h"
#include "server/server.h"
#include "util/clock.h"

/* The client went away before its answer was complete. */
static void on_client_gone(void *ctx)
{
    struct req *r = ctx;
    r->conn = NULL;
    r->client_gone = true;
    r->status = 499; /* nginx's "client closed request", even mid-stream */
    if (r->limits_pending) {
        /* Its callback will not come; a late admission is released. */
        limits_reserve_cancel(r->limits_pending);
        r->limits_pending = NULL;
    }
    if (r->cache_pending) {
        cache_lookup_cancel(r->cache_pending);
        r->cache_pending = NULL;
    }
    if (r->sem_pending) {
        cache_semantic_cancel(r->sem_pending);
        r->sem_pending = NULL;
    }
    if (r->call) {
        /* The call's own figures never come (it is cancelled): what was
         * spent waiting on the provider is all the time since it began. */
        r->upstream_us = clock_now_us() - r->call_start_us;
        provider_call_cancel(r->call);
        r->call = NULL;
    }
    /* We may be inside one of r's own callbacks: free it after them. */
    req_free_later(r);
}

/* The client fell behind its stream, or caught up: the provider's answer
 * waits for it, or goes on (docs/decisions.md 33). */
static void on_backlog(void *ctx, bool behind)
{
    struct req *r = ctx;
    if (r->call) {
        provider_call_pause(r->call, behind);
    }
}

static void on_first(void *ctx, const struct model_cfg *model, int attempts)
{
    struct req *r = ctx;
    r->model = model;
    r->attempts = attempts; /* the stream's head says it */
    if (r->chat.stream) {
        reply_stream_begin(r);
    }
}

static void on_chunk(void *ctx, struct str chunk,
                     const struct chunk_members *members)
{
    struct req *r = ctx;
    /* A client gone is on_client_gone's business. */
    if (r->cache_collect) {
        cache_collect_chunk(r->cache_collect, chunk);
    }
    reply_stream_chunk(r, chunk, members);
}

/* A complete, successful answer goes into the cache before its last
 * bytes go to the client: a client that has the answer and asks again
 * (perhaps on another worker) finds it. Cut streams and errors never
 * reach here. */
static void insert(struct req *r, struct str completion)
{
    if (!r->cache_key || !r->w->cache || r->client_gone ||
        (r->chat.stream && r->status != 200)) {
        return;
    }
    struct buf b;
    buf_init(&b, r->cfg->cache.max_entry_bytes);
    if (r->chat.stream) {
        if (!r->cache_collect ||
            !cache_collect_finish(r->cache_collect, &r->usage, &b)) {
            buf_free(&b);
            return;
        }
        completion = (struct str){b.p, b.len};
    }
    cache_insert(r->w->cache, r->cache_key, completion, r->model->name,
                 price_cost_nusd(r->model, &r->usage), &r->usage);
    if (r->cache_vec) {
        cache_semantic_insert(r->w->cache, r->cache_key, r->cache_vec,
                              r->cache_dim);
    }
    buf_free(&b);
}

static void on_done(void *ctx, struct call_result *res)
{
    struct req *r = ctx;
    r->call = NULL;
    if (r->conn) {
        server_on_backlog(r->conn, NULL, NULL);
    }
    r->model = res->model;
    r->usage = res->usage;
    r->attempts = res->attempts;
    r->upstream_us = res->upstream_us;
    r->ttft_us = res->ttft_us;
    r->nbriefs = res->nbriefs;
    memcpy(r->briefs, res->briefs, res->nbriefs * sizeof(res->briefs[0]));
    if (res->err == RL_OK) {
        insert(r, res->completion);
    }
    if (res->err != RL_OK) {
        reply_provider_error(r, &res->error);
    } else if (r->chat.stream) {
        reply_stream_done(r);
    } else {
        reply_completion(r, res->completion, &res->members);
    }
    r->end_us = clock_now_us();
    req_free(r);
}

/* How an attempt ended, in the router's words; false for outcomes that
 * say nothing of the model's speed or health (the request's own fault). */
static bool obs_kind(enum attempt_outcome o, enum routing_outcome *out)
{
    switch (o) {
    case ATTEMPT_OK: *out = ROUTING_OBS_OK; return true;
    case ATTEMPT_TIMEOUT: *out = ROUTING_OBS_TIMEOUT; return true;
    case ATTEMPT_RATE_LIMITED: *out = ROUTING_OBS_429; return true;
    case ATTEMPT_SERVER_ERROR: *out = ROUTING_OBS_5XX; return true;
    case ATTEMPT_CONNECT: *out = ROUTING_OBS_CONNECT; return true;
    case ATTEMPT_CUT: *out = ROUTING_OBS_CUT; return true;
    case ATTEMPT_CANCELLED: *out = ROUTING_OBS_ABANDONED; return true;
    default: return false; /* client error, content policy, context */
    }
}

/* The plan's candidate for model m, or NULL. */
static const struct routing_candidate *planned(const struct req *r,
                                               const struct model_cfg *m)
{
    for (size_t i = 0; r->route && i < r->route->ncand; i++) {
        if (r->route->cand[i].model == m) {
            return &r->route->cand[i];
        }
    }
    return NULL;
}

/* The plan's expected output of model, for an attempt that never said. */
static int64_t planned_out(const struct req *r, const struct model_cfg *m)
{
    const struct routing_candidate *c = planned(r, m);
    return c ? c->out_tokens : 0;
}

/* An attempt was sent: the router notes its wait against the plan's
 * prediction for it (routing_wait_begin). */
static uint32_t on_attempt_start(void *ctx, const struct model_cfg *model,
                                 int index)
{
    struct req *r = ctx;
    (void)index;
    const struct routing_candidate *c = planned(r, model);
    if (!c || !c->predicted) {
        return 0;
    }
    return routing_wait_begin(model->name, r->chat.stream ? c->ttft_ms : 0,
                              c->total_ms);
}

/* A streamed attempt's first token: the router learns it now. */
static void on_attempt_first(void *ctx, const struct model_cfg *model,
                             uint32_t wait, uint64_t ttft_us)
{
    struct req *r = ctx;
    routing_wait_first(model->name, wait, ttft_us, r->prompt_tokens_est);
}

/* One upstream attempt ended: it is counted, the router learns from it,
 * and what an attempt whose answer was not used cost (a hedge's loser:
 * its prompt; a cut stream that another attempt continued: its prompt
 * and what it streamed) is added to the request's cost. */
static void on_attempt(void *ctx, const struct model_cfg *model,
                       const struct attempt_report *a)
{
    struct req *r = ctx;
    metrics_attempt(r->w->metrics, model->name, model->provider->name,
                    (int)a->outcome);
    enum routing_outcome kind;
    bool known = obs_kind(a->outcome, &kind);
    if (known && kind == ROUTING_OBS_TIMEOUT && a->index == 0 &&
        r->route->first_token_deadline_ms &&
        a->total_us < r->cfg->first_byte_timeout_ms * 1000) {
        /* Cut at the plan's first-token deadline, not the provider's
         * failure: it was only slower than the target allowed. */
        kind = ROUTING_OBS_ABANDONED;
    }
    if (known) {
        int64_t out = a->usage.present ? a->usage.completion_tokens
                                       : a->completion_events;
        struct routing_obs o = {
            .kind = kind,
            .http_status = a->status,
            .retry_after_s = a->retry_after_s,
            .ttft_us = a->streamed ? a->ttft_us : 0,
            .ttft_learned = a->first_reported,
            .wait = a->wait,
            .total_us = a->total_us,
            .completion_tokens = kind == ROUTING_OBS_ABANDONED
                                     ? planned_out(r, model)
                                     : out,
            .prompt_tokens = r->prompt_tokens_est,
            .max_tokens_set = r->chat.max_tokens > 0,
            .stream = a->streamed,
            .bar_us = kind == ROUTING_OBS_ABANDONED
                          ? routing_plan_bar_us(r->route, r->chat.stream)
                          : 0,
            .provider = model->provider->name,
        };
        routing_observe(model->name, &o);
    } else {
        routing_wait_end(model->name, a->wait);
    }
    if (a->billable_prompt && !a->won) {
        /* Its prompt, and what it streamed before it was cut (a rescued
         * stream's first part; a hedge's loser streamed nothing). */
        struct usage u = {.prompt_tokens = a->usage.present
                                               ? a->usage.prompt_tokens
                                               : r->prompt_tokens_est,
                          .completion_tokens =
                              a->usage.present ? a->usage.completion_tokens
                                               : a->completion_events};
        r->unused_cost_nusd += price_cost_nusd(model, &u);
    }
}

static const struct provider_call_cbs call_cbs = {
    .on_first = on_first,
    .on_chunk = on_chunk,
    .on_done = on_done,
    .on_attempt = on_attempt,
    .on_attempt_start = on_attempt_start,
    .on_attempt_first = on_attempt_first,
};

/* Step 5: hands the request to the providers. */
static void stream(struct req *r)
{
    const struct config *cfg = r->cfg;
    struct call_limits limits = {
        .connect_ms = cfg->connect_timeout_ms,
        .first_byte_ms = cfg->first_byte_timeout_ms,
        .idle_ms = cfg->stream_idle_timeout_ms,
        /* The plan's deadline and hedge time, else the configured ones. */
        .primary_first_token_ms = r->route->first_token_deadline_ms,
        .hedge_ms = r->route->hedge_after_ms ? r->route->hedge_after_ms
                                             : cfg->hedge_after_ms,
        .total_ms = cfg->call_timeout_ms,
        .retries = cfg->retries,
        .backoff_ms = cfg->retry_backoff_ms,
        .backoff_max_ms = cfg->retry_backoff_max_ms,
        .retry_max_wait_ms = cfg->retry_max_wait_ms,
        .rescue_max_bytes = cfg->rescue_max_bytes,
    };
    struct provider_error pe;
    r->call_start_us = clock_now_us();
    enum rl_err err = provider_call_start(r->w->upstream, &r->chat, r->plan,
                                          r->nplan, &limits, &call_cbs, r,
                                          &r->call, &pe);
    if (err != RL_OK) {
        r->call = NULL;
        r->model = r->plan[0];
        reply_provider_error(r, &pe);
        req_free(r);
        return;
    }
    if (r->chat.stream && r->conn) {
        server_on_backlog(r->conn, on_backlog, r);
    }
}

bool pipeline_authenticate(struct req *r, const struct http_request *http)
{
    struct auth_result *who = arena_alloc(&r->arena, sizeof(*who));
    if (auth_check(r->cfg, server_header(http, "authorization"), &r->arena,
                   who) != RL_OK) {
        char msg[256];
        auth_refusal_message(who->refusal, msg, sizeof(msg));
        reply_error(r, RL_E_UNAUTHORIZED, msg, NULL);
        return false;
    }
    r->who = who;
    memcpy(r->key_prefix, who->key_prefix, sizeof(r->key_prefix));
    memcpy(r->key_id, who->key_id, sizeof(r->key_id));
    memcpy(r->key_name, who->name, sizeof(r->key_name));
    r->key_models = who->models;
    r->nkey_models = who->nmodels;
    return true;
}

/* A concrete model the key may not use: 403 naming what it may use. */
/* The requested model as messages, the log line and the row name it: a
 * configured name (or "auto") whole, anything else cut short, as it may be
 * a key pasted into the wrong field (str_shown). Returns memory from
 * r->arena, or model itself. */
static const char *requested_name(struct req *r, const char *model)
{
    struct str m = str_from(model);
    if (str_eq_lit(m, "auto") || config_model(r->cfg, m.p, m.len)) {
        return model;
    }
    char shown[STR_SHOWN_MAX + 4];
    str_shown(m, shown, sizeof(shown));
    return arena_strndup(&r->arena, shown, strlen(shown));
}

static void refuse_model(struct req *r, const char *model)
{
    struct api_error e;
    errors_from_rl(RL_E_FORBIDDEN, NULL, "model", &e);
    e.code = "model_not_allowed";
    int k = snprintf(e.message, sizeof(e.message), "This API key may not "
                     "use the model '%s'. It may use: ", model);
    for (size_t i = 0; i < r->nkey_models && k > 0 &&
                       (size_t)k < sizeof(e.message); i++) {
        k += snprintf(e.message + k, sizeof(e.message) - (size_t)k, "%s%s",
                      i ? ", " : "", r->key_models[i]);
    }
    if (k > 0 && (size_t)k < sizeof(e.message)) {
        snprintf(e.message + k, sizeof(e.message) - (size_t)k,
                 " (or \"auto\").");
    }
    reply_api_error(r, &e);
}

/* Step 4 found no answer: step 5, collecting a stream for the insert. */
static void miss(struct req *r)
{
    if (r->chat.stream) {
        r->cache_collect = cache_collect_new(r->cfg->cache.max_entry_bytes);
    }
    stream(r);
}

static void serve_hit(struct req *r, const struct cache_hit *hit)
{
    reply_cached(r, hit);
    r->end_us = clock_now_us();
    req_free(r);
}

/* The semantic lookup's answer; the embedding is kept for the insert. */
static void on_semantic(void *ctx, const struct cache_hit *hit,
                        const float *vec, size_t dim)
{
    struct req *r = ctx;
    r->sem_pending = NULL;
    if (vec && !hit) {
        r->cache_vec = arena_alloc(&r->arena, dim * sizeof(float));
        memcpy(r->cache_vec, vec, dim * sizeof(float));
        r->cache_dim = dim;
    }
    if (hit) {
        serve_hit(r, hit);
    } else {
        miss(r);
    }
}

/* Step 4's exact answer: a hit is served (and accounted); a miss asks
 * the semantic cache when the request may be answered by a neighbour. */
static void on_cached(void *ctx, const struct cache_hit *hit)
{
    struct req *r = ctx;
    r->cache_pending = NULL;
    if (hit) {
        serve_hit(r, hit);
        return;
    }
    if (!r->cache_key->semantic) {
        miss(r);
        return;
    }
    /* on_semantic may run before this returns and free r. */
    struct cache_sem_pending *p = NULL;
    cache_semantic_lookup(r->w->cache, r->cache_key, on_semantic, r, &p);
    if (p) {
        r->sem_pending = p;
    }
}

/* Step 4: looks the request up when the cache takes part in it. */
static void lookup(struct req *r)
{
    if (!r->cache_key || !r->w->cache) {
        stream(r);
        return;
    }
    /* on_cached may run before this returns and free r. */
    struct cache_pending *p = NULL;
    cache_lookup(r->w->cache, r->cache_key, on_cached, r, &p);
    if (p) {
        r->cache_pending = p;
    }
}

/* The cache's key for r: its model class ("auto" with the plan's quality
 * floor, or the model by name) within its scope (the key). */
static void cache_plan(struct req *r, const char *model)
{
    if (!r->cfg->cache.enabled) {
        return;
    }
    char cls[300];
    if (strcmp(model, "auto") == 0) {
        snprintf(cls, sizeof(cls), "auto>=%d", r->route->min_quality_tier);
    } else {
        snprintf(cls, sizeof(cls), "%s", model);
    }
    struct cache_key *k = arena_alloc(&r->arena, sizeof(*k));
    const char *scope = r->key_id[0] ? r->key_id : r->key_prefix;
    if (cache_key_make(r->cfg, r->chat.raw, cls, scope,
                       r->who->cache_any_temperature, k)) {
        cache_semantic_prepare(r->cfg, k, r->chat.raw, cls,
                               r->who->cache_threshold, &r->arena);
        r->cache_key = k;
    }
}

/* Step 2's answer: stream if admitted, else say which limit and when. */
static void on_verdict(void *ctx, const struct limits_verdict *v,
                       struct limits_hold *hold)
{
    struct req *r = ctx;
    r->limits_pending = NULL;
    r->verdict = *v;
    r->has_verdict = true;
    r->hold = hold;
    if (v->outcome == LIMITS_ADMITTED) {
        lookup(r);
        return;
    }
    reply_limited(r, v);
    req_free(r);
}

static enum limits_period period_of(enum auth_period p)
{
    switch (p) {
    case AUTH_PERIOD_DAY: return LIMITS_PERIOD_DAY;
    case AUTH_PERIOD_WEEK: return LIMITS_PERIOD_WEEK;
    case AUTH_PERIOD_MONTH: return LIMITS_PERIOD_MONTH;
    case AUTH_PERIOD_TOTAL: return LIMITS_PERIOD_TOTAL;
    default: return LIMITS_PERIOD_NONE;
    }
}

/* Step 2: reserves the request against the key's limits: its estimated
 * tokens (prompt + output cap) and, against a budget, the cost of the
 * dearest candidate of the plan, so a fallback cannot overshoot it. */
static void limit(struct req *r)
{
    const struct auth_result *who = r->who;
    int64_t out = r->chat.max_tokens ? r->chat.max_tokens
                                     : r->cfg->limits_default_max_tokens;
    struct usage u = {.prompt_tokens = r->prompt_tokens_est,
                      .completion_tokens = out};
    int64_t cost = 0;
    for (size_t i = 0; who->budget_nusd && i < r->nplan; i++) {
        int64_t c = price_cost_nusd(r->plan[i], &u);
        cost = c > cost ? c : cost;
    }
    struct limits_ask ask = {
        .rule = {.key_id = who->key_id, .rpm = who->rpm, .tpm = who->tpm,
                 .max_concurrent = (int32_t)who->max_concurrent,
                 .budget_nusd = who->budget_nusd,
                 .period = period_of(who->budget_period)},
        .request_id = r->id,
        .tokens = r->prompt_tokens_est + out,
        .cost_nusd = cost,
        .spent_seed_nusd = who->spent_nusd,
    };
    /* on_verdict may run before this returns (decided in-process) and
     * free r: only a pending reserve (Redis asked) is written to r. */
    struct limits_pending *pending = NULL;
    if (limits_reserve(r->w->limiter, &ask, on_verdict, r, &pending) !=
        RL_OK) {
        reply_error(r, RL_E_INTERNAL, NULL, NULL);
        req_free(r);
        return;
    }
    if (pending) {
        r->limits_pending = pending;
    }
}

/* Step 3: plans r's candidates into r->route (and r->plan, r->nplan).
 * False when the request is refused: the reply is sent, r is not freed. */
static bool route(struct req *r, const char *model)
{
    r->prompt_tokens_est = accounting_tokens_prompt(r->chat.raw);
    const struct auth_routing *kr = &r->who->routing;
    struct routing_key rk = {
        .allow = r->key_models,
        .nallow = r->nkey_models,
        .min_quality_tier = kr->min_quality_tier > 0 ? kr->min_quality_tier
                                                     : -1,
        .max_latency_ms = kr->max_latency_ms,
        .max_ttft_ms = kr->max_ttft_ms,
        .hedge = kr->hedge,
    };
    struct routing_request rq = {
        .model = model,
        .routing = r->chat.routing,
        .prompt_tokens = r->prompt_tokens_est,
        .max_tokens = r->chat.max_tokens,
        .stream = r->chat.stream,
    };
    struct routing_plan *plan = arena_alloc(&r->arena, sizeof(*plan));
    enum rl_err err = routing_plan(r->cfg, &rq, &rk, &r->arena, plan);
    if (err == RL_E_FORBIDDEN) {
        reply_error(r, err, "This API key may use none of the models this "
                    "gateway serves. Ask for a key with a models list that "
                    "names configured models (GET /v1/models).", "model");
        return false;
    }
    if (err == RL_E_INVALID_REQUEST) {
        reply_error(r, err, plan->message, plan->param);
        return false;
    }
    if (err != RL_OK) {
        char msg[400];
        snprintf(msg, sizeof(msg), "The model '%s' does not exist. "
                 "GET /v1/models lists the models this gateway serves; "
                 "\"auto\" lets it choose.", r->model_requested);
        reply_error(r, err, msg, "model");
        return false;
    }
    r->route = plan;
    r->plan = plan->order;
    r->nplan = plan->norder;
    return true;
}

void pipeline_chat(struct gw_worker *w, struct conn *c,
                   struct http_request *http)
{
    struct req *r = req_new(w, c, http);
    server_on_abort(c, on_client_gone, r);
    r->in_flight = true; /* until req_free */
    metrics_in_flight_add(w->metrics, 1);

    /* 1. Authenticate. */
    if (!pipeline_authenticate(r, http)) {
        req_free(r);
        return;
    }

    struct api_problem problem;
    enum rl_err err = api_chat_parse((struct str){http->body.p ? http->body.p
                                                               : "",
                                                  http->body.len},
                                     &r->chat, &problem);
    if (err != RL_OK) {
        reply_error(r, err, problem.message,
                    problem.param[0] ? problem.param : NULL);
        req_free(r);
        return;
    }
    const char *model = r->chat.model;
    r->model_requested = requested_name(r, model);
    /* The key's allow list: a model by name is checked here; for "auto"
     * the routing step filters its candidates with r->key_models. */
    if (!auth_model_allowed(r->who, model)) {
        refuse_model(r, r->model_requested);
        req_free(r);
        return;
    }

    /* 3. Route. */
    if (!route(r, model)) {
        req_free(r);
        return;
    }

    /* 2. Rate limit; then 4. cache, 5. stream, and 6. account (in
     * req_free, when the call is done). */
    cache_plan(r, model);
    limit(r);
}
