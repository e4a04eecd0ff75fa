/*
 * accounting.c - the end of every request: price it, hand its one row to
 * the request log (store/) and write its one log line. Runs exactly once
 * per request, from req_free().
 *
 * It also counts the request in its worker's metrics (metrics/), from the
 * same row, so the metrics and the request log agree.
 *
 * The line never holds the API key (only its display prefix) nor any
 * answer text; the prompt (the messages array) only when the operator
 * set log_prompts: true.
 */
#include "accounting/accounting.h"

#include <string.h>
#include <time.h>

#include "config/config.h"
#include "gateway/gateway.h"
#include "limits/limits.h"
#include "metrics/metrics.h"
#include "routing/routing.h"
#include "request.h"
#include "store/store.h"
#include "util/jscan.h"
#include "util/log.h"

/* Appends ,"key": then the value's text as given (numbers, literals). */
static void raw(struct buf *b, const char *key, const char *value)
{
    buf_append(b, ",\"", 2);
    buf_append_cstr(b, key);
    buf_append(b, "\":", 2);
    buf_append_cstr(b, value);
}

/* Appends ,"key":"value" with value escaped (NULL: null). */
static void text(struct buf *b, const char *key, const char *value)
{
    buf_append(b, ",\"", 2);
    buf_append_cstr(b, key);
    if (!value) {
        buf_append(b, "\":null", 6);
        return;
    }
    buf_append(b, "\":\"", 3);
    buf_append_json_escaped(b, value, strlen(value));
    buf_append(b, "\"", 1);
}

static void num(struct buf *b, const char *key, int64_t v)
{
    raw(b, key, "");
    buf_append_i64(b, v);
}

/* Microseconds, written as milliseconds with three decimals. */
static void ms(struct buf *b, const char *key, uint64_t us)
{
    raw(b, key, "");
    buf_append_fixed(b, (int64_t)us, 3);
}

/* Writes r's attempts as a JSON array into out (size n), whole objects
 * only: one that does not fit is left out and the array still closes. */
static void attempt_log(const struct req *r, char *out, size_t n)
{
    out[0] = '\0';
    if (r->nbriefs == 0 || n < 3) {
        return;
    }
    size_t at = 1;
    out[0] = '[';
    struct buf item;
    buf_init(&item, 1024);
    for (size_t i = 0; i < r->nbriefs; i++) {
        const struct attempt_brief *b = &r->briefs[i];
        const char *name = b->model ? b->model->name : "";
        buf_reset(&item);
        buf_append_cstr(&item, at > 1 ? ",{\"model\":\"" : "{\"model\":\"");
        buf_append_json_escaped(&item, name, strlen(name));
        /* Appends, not printf: this runs for every request. */
        buf_append_cstr(&item, "\",\"outcome\":\"");
        buf_append_cstr(&item, provider_outcome_name(b->outcome));
        buf_append_cstr(&item, "\",\"status\":");
        buf_append_i64(&item, b->status);
        buf_append_cstr(&item, ",\"ms\":");
        buf_append_u64(&item, b->ms);
        buf_append_cstr(&item, b->hedge ? ",\"hedge\":true}"
                                        : ",\"hedge\":false}");
        if (!item.p || at + item.len + 2 > n) {
            break;
        }
        memcpy(out + at, item.p, item.len);
        at += item.len;
    }
    buf_free(&item);
    out[at++] = ']';
    out[at] = '\0';
}

void accounting_row(const struct req *r, int64_t now_wall_us,
                    struct store_row *row)
{
    uint64_t total = r->end_us > r->start_us ? r->end_us - r->start_us : 0;
    memset(row, 0, sizeof(*row));
    /* The arrival time, from the wall clock now and the monotonic
     * duration; fixed here so a replayed row is the same row. */
    row->ts_us = now_wall_us - (int64_t)total;
    store_copy_text(row->request_id, sizeof(row->request_id), r->id);
    store_copy_text(row->key_prefix, sizeof(row->key_prefix), r->key_prefix);
    store_copy_text(row->key_id, sizeof(row->key_id), r->key_id);
    if (r->route_text) {
        store_copy_text(row->route, sizeof(row->route), r->route_text);
    } else if (r->route) {
        routing_explain(r->route, row->route, sizeof(row->route));
    }
    attempt_log(r, row->attempt_log, sizeof(row->attempt_log));
    store_copy_text(row->model_requested, sizeof(row->model_requested),
                    r->model_requested);
    store_copy_text(row->model, sizeof(row->model),
                    r->model ? r->model->name : NULL);
    store_copy_text(row->provider, sizeof(row->provider),
                    r->model ? r->model->provider->name : NULL);
    store_copy_text(row->error_type, sizeof(row->error_type), r->error_type);
    store_copy_text(row->error_code, sizeof(row->error_code), r->error_code);
    store_copy_text(row->cache_status, sizeof(row->cache_status),
                    r->cache_status ? r->cache_status : "miss");
    row->savings_nusd = r->savings_nusd;
    row->has_similarity = r->cache_status &&
                          strcmp(r->cache_status, "semantic") == 0;
    row->cache_similarity = row->has_similarity ? r->cache_similarity : 0;
    row->status = r->status;
    row->attempts = r->attempts;
    row->prompt_tokens = r->usage.prompt_tokens;
    row->completion_tokens = r->usage.completion_tokens;
    row->cached_tokens = r->usage.cached_tokens;
    row->cache_write_tokens = r->usage.cache_write_tokens;
    row->reasoning_tokens = r->usage.reasoning_tokens;
    row->cost_nusd = r->cost_nusd;
    row->latency_us = total;
    row->ttft_us = r->ttft_us;
    row->upstream_us = r->upstream_us;
    row->overhead_us = total > r->upstream_us ? total - r->upstream_us : 0;
    row->stream = r->streamed;
    row->usage_estimated = r->usage_estimated;
    row->client_gone = r->client_gone;
}

void accounting_price(struct req *r)
{
    if (r->priced) {
        return;
    }
    r->priced = true;
    bool answered = r->status == 200 || (r->client_gone && r->streamed);
    if (r->model && !r->usage.present && answered) {
        /* The provider answered but said nothing of usage: estimate it
         * from what was asked and what was sent, and mark the row
         * estimated. A failed call is not billed. */
        r->usage.prompt_tokens = accounting_tokens_prompt(r->chat.raw);
        r->usage.completion_tokens = r->output_tokens_est;
        r->usage_estimated = true;
    }
    if (r->model && (r->usage.present || r->usage_estimated)) {
        r->cost_nusd = price_cost_nusd(r->model, &r->usage);
    }
    /* A hedge's loser (or another attempt cut off after the provider had
     * the request) was paid for its prompt, and a cut stream that a rescue
     * continued for what it streamed too: part of what this request cost,
     * though never billed as its completion. */
    r->cost_nusd += r->unused_cost_nusd;
}

/* The cache status of row as the metrics name it. */
static enum metrics_cache cache_of(const struct store_row *row)
{
    if (strcmp(row->cache_status, "exact") == 0) {
        return METRICS_CACHE_EXACT;
    }
    if (strcmp(row->cache_status, "semantic") == 0) {
        return METRICS_CACHE_SEMANTIC;
    }
    return METRICS_CACHE_MISS;
}

/* Counts r in its worker's metrics, from the row it is logged as, so the
 * metrics and the request log agree. */
static void count(const struct req *r, const struct store_row *row)
{
    int limited = r->has_verdict ? (int)r->verdict.outcome : 0;
    struct metrics_request o = {
        .model = row->model,
        .provider = row->provider,
        .status = row->status,
        .cache = cache_of(row),
        .error = metrics_error_class(row->status, r->provider_failed,
                                     limited, r->error_code),
        .limited = limited,
        .latency_us = row->latency_us,
        .ttft_us = row->ttft_us,
        .overhead_us = row->overhead_us,
        .tokens_in = row->prompt_tokens,
        .tokens_out = row->completion_tokens,
        .cost_nusd = row->cost_nusd,
        .savings_nusd = row->savings_nusd,
    };
    metrics_observe(r->w->metrics, &o);
}

/* Appends ,"messages":<the client's messages array> when the operator
 * turned log_prompts on; the body was checked as JSON already. */
static void prompt(const struct req *r, struct buf *b)
{
    struct jscan_iter it;
    struct jscan_item item;
    if (!r->cfg->log_prompts || !r->chat.raw.len ||
        !jscan_iter_init(&it, r->chat.raw)) {
        return;
    }
    while (jscan_iter_next(&it, &item) == 1) {
        if (str_eq_lit(item.key, "messages")) {
            buf_append_cstr(b, ",\"messages\":");
            buf_append_str(b, item.value);
            return;
        }
    }
}

/* Writes r's one log line (row: its request log row). */
static void log_line(const struct req *r, const struct store_row *row)
{
    /* Built by hand, not printf: this runs for every request. Path and
     * requested model come from the client and are escaped. */
    struct buf b;
    buf_init(&b, r->cfg->log_prompts ? (size_t)16 << 20 : 8192);
    buf_append_cstr(&b, "\"request_id\":\"");
    buf_append_cstr(&b, r->id);
    buf_append(&b, "\"", 1);
    text(&b, "method", r->method);
    text(&b, "path", r->path);
    num(&b, "status", r->status);
    text(&b, "key", r->key_prefix);
    text(&b, "model_requested", r->model_requested ? r->model_requested : "");
    text(&b, "model", r->model ? r->model->name : "");
    text(&b, "provider", r->model ? r->model->provider->name : "");
    raw(&b, "stream", r->streamed ? "true" : "false");
    num(&b, "prompt_tokens", r->usage.prompt_tokens);
    num(&b, "completion_tokens", r->usage.completion_tokens);
    num(&b, "cached_tokens", r->usage.cached_tokens);
    raw(&b, "usage_reported", r->usage.present ? "true" : "false");
    raw(&b, "usage_estimated", r->usage_estimated ? "true" : "false");
    raw(&b, "cost_usd", "");
    buf_append_fixed(&b, r->cost_nusd, 9);
    text(&b, "cache_status", row->cache_status);
    if (row->has_similarity) {
        raw(&b, "cache_similarity", "");
        buf_append_fixed(&b, (int64_t)(row->cache_similarity * 10000 + 0.5),
                         4);
    }
    raw(&b, "savings_usd", "");
    buf_append_fixed(&b, row->savings_nusd, 9);
    ms(&b, "latency_ms", row->latency_us);
    ms(&b, "ttft_ms", r->ttft_us);
    ms(&b, "upstream_ms", r->upstream_us);
    ms(&b, "overhead_ms", row->overhead_us);
    num(&b, "attempts", r->attempts);
    text(&b, "error_type", r->error_type);
    text(&b, "error_code", r->error_code);
    text(&b, "route", row->route);
    raw(&b, "attempt_log", row->attempt_log[0] ? row->attempt_log : "[]");
    raw(&b, "client_gone", r->client_gone ? "true" : "false");
    prompt(r, &b);
    log_write_fields(LOG_INFO, "request", (struct str){b.p, b.len});
    buf_free(&b);
}

void accounting_finish(struct req *r)
{
    if (r->accounted) {
        return;
    }
    r->accounted = true;
    accounting_price(r);
    req_route_text(r); /* made once: the header may have made it */
    if (r->hold) {
        /* The reservation settles with what the call really used; a
         * failed or cancelled call used nothing billable. */
        limits_reconcile(r->w->limiter, r->hold,
                         r->usage.prompt_tokens + r->usage.completion_tokens,
                         r->cost_nusd);
        r->hold = NULL;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct store_row row;
    accounting_row(r, (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000,
                   &row);
    store_enqueue(&row);
    count(r, &row);
    if (log_enabled(LOG_INFO)) {
        log_line(r, &row);
    }
}
