/*
 * accounting.c - the end of every request: price it, write its one line to
 * the request log. Runs exactly once per request, from req_free().
 *
 * The line never holds the API key (only its display prefix) nor any
 * prompt or answer text.
 */
#include "accounting/accounting.h"

#include <string.h>

#include "config/config.h"
#include "request.h"
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

void accounting_finish(struct req *r)
{
    if (r->accounted) {
        return;
    }
    r->accounted = true;
    if (r->model && r->usage.present) {
        r->cost_nusd = price_cost_nusd(r->model, &r->usage);
    }
    if (!log_enabled(LOG_INFO)) {
        return;
    }
    uint64_t total = r->end_us > r->start_us ? r->end_us - r->start_us : 0;
    uint64_t overhead = total > r->upstream_us ? total - r->upstream_us : 0;
    /* Built by hand, not printf: this runs for every request. Path and
     * requested model come from the client and are escaped. */
    struct buf b;
    buf_init(&b, 8192);
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
    raw(&b, "cost_usd", "");
    buf_append_fixed(&b, r->cost_nusd, 9);
    ms(&b, "latency_ms", total);
    ms(&b, "ttft_ms", r->ttft_us);
    ms(&b, "upstream_ms", r->upstream_us);
    ms(&b, "overhead_ms", overhead);
    num(&b, "attempts", r->attempts);
    text(&b, "error_type", r->error_type);
    text(&b, "error_code", r->error_code);
    raw(&b, "client_gone", r->client_gone ? "true" : "false");
    log_write_fields(LOG_INFO, "request", (struct str){b.p, b.len});
    buf_free(&b);
}
