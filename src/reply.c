/*
 * reply.c - writing answers for a request (see reply.h).
 *
 * Chunks and completions get Relay's id and the configured model name, so
 * the client sees one consistent answer whatever provider and fallback
 * produced it. Read reply_stream_chunk() first.
 */
#include "reply.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "accounting/accounting.h"
#include "auth/auth.h"
#include "cache/cache.h"
#include "config/config.h"
#include "request.h"
#include "routing/routing.h"
#include "server/server.h"
#include "util/clock.h"
#include "util/jscan.h"

#define REPLY_MAX_MEMBERS 64 /* top-level members of one answer */

/* Appends the headers every answer carries. */
static void common_headers(struct req *r, struct buf *h)
{
    uint64_t now = clock_now_us();
    uint64_t overhead;
    if (r->call_start_us && r->streamed) {
        /* Streaming: what we spent before handing the call over; the rest
         * of the wait was the provider's. */
        overhead = r->call_start_us - r->start_us;
    } else {
        uint64_t total = now - r->start_us;
        overhead = total > r->upstream_us ? total - r->upstream_us : 0;
    }
    const char *model = r->model ? r->model->name : "none";
    const char *provider = r->model ? r->model->provider->name : "none";
    /* Appends, not printf: this runs for every answer. */
    buf_append_cstr(h, "x-request-id: ");
    buf_append_cstr(h, r->id);
    buf_append_cstr(h, "\r\nx-relay-model: ");
    buf_append_cstr(h, model);
    buf_append_cstr(h, "\r\nx-relay-provider: ");
    buf_append_cstr(h, provider);
    buf_append_cstr(h, "\r\nx-relay-overhead-ms: ");
    buf_append_fixed(h, (int64_t)overhead, 3);
    buf_append_cstr(h, "\r\nx-relay-attempts: ");
    buf_append_i64(h, r->attempts);
    buf_append_cstr(h, "\r\n");
    if (r->route) {
        buf_append_cstr(h, "x-relay-route: ");
        buf_append_cstr(h, req_route_text(r));
        buf_append_cstr(h, "\r\n");
    }
    if (r->has_verdict) {
        limits_headers(&r->verdict, h);
    }
    if (r->route) {
        buf_append_cstr(h, "x-relay-cache: ");
        buf_append_cstr(h, r->cache_status ? r->cache_status : "miss");
        buf_append_cstr(h, "\r\n");
    }
    if (r->cache_status && strcmp(r->cache_status, "semantic") == 0) {
        buf_append_cstr(h, "x-relay-cache-similarity: ");
        buf_append_fixed(h, (int64_t)(r->cache_similarity * 10000 + 0.5),
                         4);
        buf_append_cstr(h, "\r\n");
    }
    if (r->savings_nusd) {
        buf_append_cstr(h, "x-relay-savings-usd: ");
        buf_append_fixed(h, r->savings_nusd, 9);
        buf_append_cstr(h, "\r\n");
    }
}

static void send_error(struct req *r, struct api_error *e)
{
    r->status = e->status;
    r->error_type = e->type;
    r->error_code = e->code;
    if (!r->conn) {
        return;
    }
    struct buf h;
    buf_init(&h, 4096);
    common_headers(r, &h);
    server_on_abort(r->conn, NULL, NULL);
    errors_respond(r->conn, e, (struct str){h.p, h.len});
    buf_free(&h);
}

void reply_error(struct req *r, enum rl_err err, const char *message,
                 const char *param)
{
    struct api_error e;
    errors_from_rl(err, message, param, &e);
    send_error(r, &e);
}

void reply_api_error(struct req *r, struct api_error *e)
{
    send_error(r, e);
}

/* Seconds for Retry-After: rounded up, at least 1. */
static uint32_t retry_s(uint64_t ms)
{
    uint64_t s = (ms + 999) / 1000;
    return s ? (uint32_t)(s > 86400 * 31 ? 86400 * 31 : s) : 1;
}

void reply_limited(struct req *r, const struct limits_verdict *v)
{
    struct api_error e;
    long long lim_r = (long long)v->limit_requests;
    long long lim_t = (long long)v->limit_tokens;
    switch (v->outcome) {
    case LIMITS_OVER_RPM:
        errors_from_rl(RL_E_RATE_LIMITED, NULL, NULL, &e);
        e.type = "requests";
        snprintf(e.message, sizeof(e.message), "Rate limit reached for this "
                 "API key on requests per min (RPM): Limit %lld, Used %lld, "
                 "Requested 1. Please try again in %us.", lim_r,
                 lim_r - (long long)v->remaining_requests,
                 retry_s(v->retry_after_ms));
        break;
    case LIMITS_OVER_TPM:
        errors_from_rl(RL_E_RATE_LIMITED, NULL, NULL, &e);
        e.type = "tokens";
        snprintf(e.message, sizeof(e.message), "Rate limit reached for this "
                 "API key on tokens per min (TPM): Limit %lld, Used %lld, "
                 "Requested %lld (prompt estimate plus max_tokens). Please "
                 "try again in %us.", lim_t,
                 lim_t - (long long)v->remaining_tokens,
                 (long long)(r->prompt_tokens_est +
                             (r->chat.max_tokens
                                  ? r->chat.max_tokens
                                  : r->cfg->limits_default_max_tokens)),
                 retry_s(v->retry_after_ms));
        break;
    case LIMITS_TOO_LARGE:
        errors_from_rl(RL_E_RATE_LIMITED, NULL, "max_tokens", &e);
        e.type = "tokens";
        snprintf(e.message, sizeof(e.message), "Request too large for this "
                 "API key on tokens per min (TPM): Limit %lld, Requested "
                 "%lld (prompt estimate plus max_tokens). Lower max_tokens "
                 "or shorten the prompt; waiting will not help.", lim_t,
                 (long long)(r->prompt_tokens_est +
                             (r->chat.max_tokens
                                  ? r->chat.max_tokens
                                  : r->cfg->limits_default_max_tokens)));
        send_error(r, &e);
        return; /* no Retry-After: no wait makes it fit */
    case LIMITS_OVER_CONCURRENCY:
        errors_from_rl(RL_E_RATE_LIMITED, NULL, NULL, &e);
        e.type = "requests";
        e.code = "concurrency_limit_exceeded";
        snprintf(e.message, sizeof(e.message), "This API key has %lld "
                 "requests in flight, its limit. Retry when one has "
                 "finished.", (long long)r->who->max_concurrent);
        break;
    case LIMITS_OVER_BUDGET:
        errors_from_rl(RL_E_OVER_BUDGET, NULL, NULL, &e);
        if (v->retry_after_ms == 0) {
            snprintf(e.message, sizeof(e.message), "This API key has spent "
                     "its budget. Raise the key's budget or use another "
                     "key.");
            send_error(r, &e);
            return;
        }
        break;
    default: /* LIMITS_UNAVAILABLE */
        errors_from_rl(RL_E_LIMITS_DOWN, NULL, NULL, &e);
        e.retry_after_s = 1;
        send_error(r, &e);
        return;
    }
    e.retry_after_s = retry_s(v->retry_after_ms);
    send_error(r, &e);
}

void reply_provider_error(struct req *r, const struct provider_error *pe)
{
    r->provider_failed = true; /* for the error class (metrics) */
    struct api_error e = {
        .status = pe->status ? pe->status : 502,
        .type = pe->type ? pe->type : "api_error",
        .code = pe->code,
        .retry_after_s = pe->retry_after_s,
    };
    snprintf(e.message, sizeof(e.message), "%s", pe->message);
    if (!r->streamed) {
        send_error(r, &e);
        return;
    }
    /* Output has reached the client: say so in the stream, and end it
     * without [DONE] so that nobody mistakes it for a complete answer. */
    r->error_type = e.type;
    r->error_code = e.code;
    if (!r->conn) {
        return;
    }
    server_on_abort(r->conn, NULL, NULL);
    buf_reset(&r->out);
    struct buf body;
    buf_init(&body, 4096);
    errors_body(&e, &body);
    sse_event(&r->out, (struct str){body.p, body.len});
    buf_free(&body);
    if (server_stream_write(r->conn, (struct str){r->out.p, r->out.len})) {
        server_stream_end(r->conn);
    }
}

/* Makes the "id" and "model" members once per answer (the model is known
 * once the first chunk or the whole answer has come). */
static void make_brand(struct req *r)
{
    buf_reset(&r->brand);
    buf_append_cstr(&r->brand, "\"id\":\"chatcmpl-");
    buf_append_cstr(&r->brand, r->id + 4);
    buf_append_cstr(&r->brand, "\"");
    r->brand_model_at = r->brand.len;
    buf_append_cstr(&r->brand, "\"model\":\"");
    buf_append_json_escaped(&r->brand, r->model->name,
                            strlen(r->model->name));
    buf_append_cstr(&r->brand, "\"");
}

/*
 * Appends obj, an OpenAI completion or chunk as JSON text, with Relay's id
 * and the configured model name in place of the provider's, keeping every
 * other member as it came. For a chunk whose client did not ask for usage,
 * usage is left out, and a usage-only chunk is dropped (returns 0). Returns
 * 1 when appended, -1 when obj is not a JSON object. items/n: obj's
 * members if already scanned, else NULL.
 */
/* The members of an answer that rebrand() changes. */
struct branded {
    const struct jscan_item *id;    /* replaced */
    const struct jscan_item *model; /* replaced */
    const struct jscan_item *usage; /* dropped, when not asked for */
    bool created;                   /* present (else added) */
    bool usage_only;                /* a chunk with "choices": [] */
};

static void find_members(const struct jscan_item *items, size_t n,
                         bool drop_usage, struct branded *b)
{
    memset(b, 0, sizeof(*b));
    for (size_t i = 0; i < n; i++) {
        const struct jscan_item *it = &items[i];
        if (str_eq_lit(it->key, "id")) {
            b->id = it;
        } else if (str_eq_lit(it->key, "model")) {
            b->model = it;
        } else if (str_eq_lit(it->key, "usage")) {
            b->usage = drop_usage ? it : NULL;
        } else if (str_eq_lit(it->key, "created")) {
            b->created = true;
        } else if (drop_usage && str_eq_lit(it->key, "choices") &&
                   it->type == '[') {
            /* The text is checked JSON: the first byte after '[' and any
             * space says whether the array is empty. */
            const char *p = it->value.p + 1;
            while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') {
                p++;
            }
            b->usage_only = *p == ']';
        }
    }
}

/* Appends what the provider left out (id, model, created), right after the
 * opening brace; the caller appends the provider's members after them. */
static void add_missing(struct req *r, const struct branded *b, bool more,
                        struct buf *out)
{
    buf_append(out, "{", 1);
    if (!b->id) {
        buf_append_str(out, (struct str){r->brand.p, r->brand_model_at});
        buf_append(out, ",", 1);
    }
    if (!b->model) {
        buf_append_str(out, (struct str){r->brand.p + r->brand_model_at,
                                         r->brand.len - r->brand_model_at});
        buf_append(out, ",", 1);
    }
    if (!b->created) {
        buf_append_cstr(out, "\"created\":");
        buf_append_i64(out, (int64_t)time(NULL));
        buf_append(out, ",", 1);
    }
    if (!more && out->p[out->len - 1] == ',') {
        out->len--; /* nothing of the provider's follows */
    }
}

static int rebrand(struct req *r, struct str obj, bool chunk,
                   const struct jscan_item *items, size_t n, struct buf *out)
{
    struct jscan_item own[REPLY_MAX_MEMBERS];
    if (!items) {
        if (!jscan(obj, own, REPLY_MAX_MEMBERS, &n) || obj.p[0] != '{') {
            return -1;
        }
        items = own;
    }
    struct branded b;
    find_members(items, n, chunk && !r->chat.include_usage, &b);
    if (b.usage_only) {
        return 0;
    }
    if (r->brand.len == 0) {
        make_brand(r);
    }
    /* Every append below fits once this does (the object, with id and
     * model replaced by the brand, usage perhaps dropped, and at most the
     * brand and "created" added): a capped out never takes a cut answer. */
    if (buf_reserve(out, obj.len + 2 * r->brand.len + 64) != RL_OK) {
        return -1;
    }
    /* The text is copied in runs between the few places that change: the
     * values of id and model, and the usage member when it is dropped
     * (with the comma before it, or after it when it comes first). */
    struct str brand_id = {r->brand.p + 5, r->brand_model_at - 5};
    struct str brand_model = {r->brand.p + r->brand_model_at + 8,
                              r->brand.len - r->brand_model_at - 8};
    add_missing(r, &b, n > 0 && !(n == 1 && b.usage), out);
    size_t at = 1; /* just past the provider's '{' */
    for (size_t i = 0; i < n; i++) {
        const struct jscan_item *it = &items[i];
        size_t vfrom = (size_t)(it->value.p - obj.p);
        size_t from = vfrom;
        size_t to = vfrom + it->value.len;
        struct str with = it == b.id ? brand_id : brand_model;
        if (it == b.usage) {
            from = i > 0 ? items[i - 1].end : it->start;
            to = i > 0 || i + 1 == n ? it->end : items[i + 1].start;
            with = (struct str){"", 0};
        } else if (it != b.id && it != b.model) {
            continue;
        }
        buf_append(out, obj.p + at, from - at);
        buf_append_str(out, with);
        at = to;
    }
    buf_append(out, obj.p + at, obj.len - at);
    return 1;
}

void reply_completion(struct req *r, struct str completion,
                      const struct chunk_members *members)
{
    /* The whole answer, as long as the transport let it be: r->out is
     * sized for one stream chunk. */
    struct buf body;
    buf_init(&body, completion.len + 4096);
    bool known = members && members->n > 0;
    if (rebrand(r, completion, false, known ? members->items : NULL,
                known ? members->n : 0, &body) < 0) {
        buf_free(&body);
        reply_error(r, RL_E_UPSTREAM_PROTOCOL, NULL, NULL);
        return;
    }
    r->status = 200;
    if (!r->usage.present) {
        r->output_tokens_est = accounting_tokens_output(completion);
    }
    if (!r->conn) {
        buf_free(&body);
        return;
    }
    accounting_price(r);
    struct buf h;
    buf_init(&h, 4096);
    common_headers(r, &h);
    buf_append_cstr(&h, "x-relay-cost-usd: ");
    buf_append_fixed(&h, r->cost_nusd, 9);
    buf_append_cstr(&h, "\r\n");
    server_on_abort(r->conn, NULL, NULL);
    server_respond(r->conn, 200, "application/json",
                   (struct str){h.p, h.len}, (struct str){body.p, body.len});
    buf_free(&h);
    buf_free(&body);
}

void reply_stream_begin(struct req *r)
{
    r->streamed = true;
    r->status = 200;
    if (!r->conn) {
        return;
    }
    struct buf h;
    buf_init(&h, 4096);
    common_headers(r, &h);
    server_stream_begin(r->conn, 200, (struct str){h.p, h.len});
    buf_free(&h);
}

bool reply_stream_chunk(struct req *r, struct str chunk,
                        const struct chunk_members *members)
{
    /* Counted for every chunk: a provider's usage, if any, comes last.
     * Only its choices are searched when the adapter scanned it. */
    const struct jscan_item *choices =
        members ? jscan_find(members->items, members->n, "choices") : NULL;
    r->output_tokens_est +=
        accounting_tokens_chunk(choices ? choices->value : chunk);
    buf_reset(&r->out);
    buf_append(&r->out, "data: ", 6);
    int kept = rebrand(r, chunk, true, members ? members->items : NULL,
                       members ? members->n : 0, &r->out);
    if (kept <= 0 || !r->conn) {
        return r->conn != NULL;
    }
    buf_append(&r->out, "\n\n", 2);
    return server_stream_write(r->conn, (struct str){r->out.p, r->out.len});
}

void reply_stream_done(struct req *r)
{
    if (!r->conn) {
        return;
    }
    server_on_abort(r->conn, NULL, NULL);
    buf_reset(&r->out);
    sse_done(&r->out);
    if (server_stream_write(r->conn, (struct str){r->out.p, r->out.len})) {
        server_stream_end(r->conn);
    }
}

void reply_json(struct req *r, int status, struct str body)
{
    r->status = status;
    if (!r->conn) {
        return;
    }
    struct buf h;
    buf_init(&h, 4096);
    common_headers(r, &h);
    server_on_abort(r->conn, NULL, NULL);
    server_respond(r->conn, status, "application/json",
                   (struct str){h.p, h.len}, body);
    buf_free(&h);
}

static void emit_cached(void *ctx, struct str chunk)
{
    reply_stream_chunk(ctx, chunk, NULL);
}

void reply_cached(struct req *r, const struct cache_hit *hit)
{
    const struct model_cfg *m = config_model(r->cfg, hit->model,
                                             strlen(hit->model));
    r->model = m ? m : r->plan[0];
    r->cache_status = hit->semantic ? "semantic" : "exact";
    r->cache_similarity = hit->similarity;
    r->usage = (struct usage){.present = true}; /* no provider tokens */
    r->savings_nusd = hit->cost_nusd > 0
                          ? hit->cost_nusd
                          : price_cost_nusd(r->plan[0], &hit->usage);
    if (!r->chat.stream) {
        reply_completion(r, hit->completion, NULL);
        return;
    }
    reply_stream_begin(r);
    cache_replay(hit->completion, emit_cached, r);
    reply_stream_done(r);
}
