/*
 * openai.c - the OpenAI chat-completions wire format, for OpenAI and every
 * compatible API: Groq, Mistral, Ollama's /v1, vLLM, llama.cpp's server.
 *
 * Docs: https://platform.openai.com/docs/api-reference/chat. The request is
 * passed through with the model rewritten to the upstream id, Relay's own
 * fields (routing, cache) removed and, for streams, usage asked for. Vendors
 * differ only in small ways, kept as rows of the quirks table below rather
 * than as new files. Read build_request() first.
 */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "providers/provider.h"
#include "util/jscan.h"

#define OPENAI_MAX_MEMBERS 64 /* top-level fields of a request or chunk */

/* Fields of the client's body that are Relay's, never the provider's. */
static const char *const relay_fields[] = {"routing", "cache", NULL};

/* What one compatible vendor does differently, matched on the base URL. */
struct quirks {
    const char *host;             /* substring of base_url, NULL: default */
    bool stream_options;          /* accepts stream_options.include_usage */
    bool max_completion_tokens;   /* knows max_completion_tokens */
};

static const struct quirks quirk_table[] = {
    /* Mistral sends usage in its last chunk unasked and refuses
     * stream_options; it predates max_completion_tokens. */
    {"api.mistral.ai", false, false},
    {"api.groq.com", true, true},
    {"api.openai.com", true, true},
    /* Ollama's /v1 and other local servers know only max_tokens. */
    {":11434", true, false},
    {NULL, true, true},
};

static const struct quirks *quirks_for(const char *base_url)
{
    const struct quirks *q = quirk_table;
    while (q->host && !strstr(base_url, q->host)) {
        q++;
    }
    return q;
}

/* Appends "key":value for one member kept from the client's body. */
static void copy_member(struct buf *out, bool *first,
                        const struct jscan_item *it, const char *key)
{
    buf_append_cstr(out, *first ? "\"" : ",\"");
    *first = false;
    if (key) {
        buf_append_cstr(out, key);
    } else {
        buf_append_str(out, it->key);
    }
    buf_append_cstr(out, "\":");
    buf_append_str(out, it->value);
}

static enum rl_err build_request(const struct chat_req *req,
                                 const struct model_cfg *model,
                                 struct upstream_req *out,
                                 struct provider_error *err)
{
    const struct provider_cfg *p = model->provider;
    const struct quirks *q = quirks_for(p->base_url);
    /* The body is the client's own text with a few members replaced: no
     * tree is built, and numbers keep the exact spelling the client sent. */
    struct jscan_item items[OPENAI_MAX_MEMBERS];
    size_t n;
    if (!jscan_checked(req->raw, items, OPENAI_MAX_MEMBERS, &n)) {
        provider_error_set(err, 400, "invalid_request_error", NULL, false,
                           "the request has more than %d fields",
                           OPENAI_MAX_MEMBERS);
        return RL_E_INVALID_REQUEST;
    }
    struct buf *b = &out->body;
    bool first = true;
    /* Reserve once for the whole body: every append below then fits, and
     * a body over the cap fails here, as a whole. */
    size_t need = req->raw.len + strlen(model->upstream) * 6 + 128;
    if (buf_reserve(b, need) != RL_OK) {
        provider_error_set(err, 413, "invalid_request_error",
                           "request_too_large", false,
                           "the request is too large for the provider");
        return RL_E_BODY_TOO_LARGE;
    }
    enum rl_err result = buf_append_cstr(b, "{");
    for (size_t i = 0; i < n && result == RL_OK; i++) {
        const struct jscan_item *it = &items[i];
        bool relay_own = false;
        for (const char *const *f = relay_fields; *f; f++) {
            relay_own = relay_own || str_eq_lit(it->key, *f);
        }
        if (relay_own || str_eq_lit(it->key, "model") ||
            str_eq_lit(it->key, "stream_options")) {
            continue;
        }
        bool rename = str_eq_lit(it->key, "max_completion_tokens") &&
                      !q->max_completion_tokens;
        copy_member(b, &first, it, rename ? "max_tokens" : NULL);
    }
    buf_append_cstr(b, first ? "\"model\":\"" : ",\"model\":\"");
    buf_append_json_escaped(b, model->upstream, strlen(model->upstream));
    buf_append_cstr(b, "\"");
    if (req->stream && q->stream_options) {
        buf_append_cstr(b, ",\"stream_options\":{\"include_usage\":true}");
    }
    result = buf_append_cstr(b, "}");
    if (result != RL_OK) {
        provider_error_set(err, 413, "invalid_request_error",
                           "request_too_large", false,
                           "the request is too large for the provider");
        return RL_E_BODY_TOO_LARGE;
    }
    /* Appends, not printf: this runs for every request. */
    if (buf_append_cstr(&out->url, p->base_url) != RL_OK ||
        buf_append_cstr(&out->url, "/chat/completions") != RL_OK) {
        return RL_E_CAP;
    }
    if (p->api_key && p->api_key[0]) {
        buf_append_cstr(&out->headers, "Authorization: Bearer ");
        buf_append_cstr(&out->headers, p->api_key);
        buf_append_cstr(&out->headers, "\n");
    }
    return RL_OK;
}

/* Moves the spans of an item from one copy of a text to another. */
static struct jscan_item rebased(struct jscan_item it, const char *from,
                                 const char *to)
{
    it.key.p = to + (it.key.p - from);
    it.value.p = to + (it.value.p - from);
    return it;
}

static enum rl_err parse_response(struct str body, struct buf *out,
                                  struct answer_members *members,
                                  struct usage *usage,
                                  struct provider_error *err)
{
    struct jscan_item items[OPENAI_MAX_MEMBERS];
    size_t n;
    const struct jscan_item *choices = NULL;
    if (jscan(body, items, OPENAI_MAX_MEMBERS, &n)) {
        choices = jscan_find(items, n, "choices");
    }
    size_t bad;
    if (!choices || choices->type != '[' || body.p[0] == '[' ||
        !jscan_utf8_valid(body.p, body.len, &bad)) {
        /* Passed on as it is, so it must be UTF-8 the client can parse. */
        provider_error_set(err, 502, "api_error", "upstream_protocol_error",
                           true, "the provider's answer is not a chat "
                           "completion");
        return RL_E_UPSTREAM_PROTOCOL;
    }
    const struct jscan_item *u = jscan_find(items, n, "usage");
    if (u && u->type == '{') {
        provider_usage_from_openai_text(u->value, usage);
    }
    size_t at = out->len;
    if (buf_append_str(out, body) != RL_OK) {
        return RL_E_CAP;
    }
    /* The answer goes on as it came: its members, moved to the copy, save
     * the reply a second scan. */
    if (members && at == 0 && n <= PROVIDER_ANSWER_MEMBERS) {
        for (size_t i = 0; i < n; i++) {
            members->items[i] = rebased(items[i], body.p, out->p + at);
        }
        members->n = n;
    }
    return RL_OK;
}

/* Copies an OpenAI error object's message into err. */
static void error_from_body(json_t *error, struct provider_error *err)
{
    const char *msg = json_string_value(json_object_get(error, "message"));
    if (!msg && json_is_string(error)) {
        msg = json_string_value(error);
    }
    if (msg) {
        snprintf(err->message, sizeof(err->message), "%s", msg);
    }
}

/*
 * True if any choice in the array text has a non-null finish_reason. The
 * text is valid JSON (jscan checked it), where a quote inside a string is
 * always escaped, so an unescaped "finish_reason" followed by a colon can
 * only be a key: a memmem finds it without walking every choice's content.
 */
static bool has_finish(struct str choices)
{
    static const char key[] = "\"finish_reason\"";
    const char *p = choices.p;
    const char *end = choices.p + choices.len;
    while (p < end) {
        /* By its '_', rare in the rest (a memmem cost twice as much). */
        const char *u = memchr(p, '_', (size_t)(end - p));
        if (!u) {
            return false;
        }
        const char *k = u - 7; /* "finish_reason": the '_' is its 8th */
        p = u + 1;
        if (k < choices.p || (size_t)(end - k) < sizeof(key) - 1 ||
            memcmp(k, key, sizeof(key) - 1) != 0) {
            continue;
        }
        p = k + sizeof(key) - 1;
        if (k > choices.p && k[-1] == '\\') {
            continue;
        }
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' ||
                           *p == '\r')) {
            p++;
        }
        if (p >= end || *p != ':') {
            continue; /* a value that happens to read "finish_reason" */
        }
        p++;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' ||
                           *p == '\r')) {
            p++;
        }
        if (p < end && *p == '"') {
            return true;
        }
    }
    return false;
}

/*
 * The events of one stream share their head: the members before "choices"
 * (id, object, created, model, system_fingerprint) are the same bytes in
 * every chunk. The head of the first event is kept with its members; a
 * later event that begins with the same bytes is checked from there on,
 * the head's members taken as they were (half of each event's scan).
 */
#define HEAD_MAX_BYTES 512
#define HEAD_MAX_MEMBERS 16

struct stream_state {
    char head[HEAD_MAX_BYTES];
    size_t head_len; /* 0: none kept */
    struct jscan_item members[HEAD_MAX_MEMBERS]; /* spans into head */
    size_t nmembers;
};

/* Keeps the head of a well-formed event: its members before "choices". */
static void keep_head(struct stream_state *st, struct str data,
                      const struct jscan_item *items, size_t n)
{
    st->head_len = 0;
    size_t k = 0;
    while (k < n && !str_eq_lit(items[k].key, "choices")) {
        k++;
    }
    if (k == 0 || k == n || k > HEAD_MAX_MEMBERS ||
        items[k].start > HEAD_MAX_BYTES) {
        return;
    }
    memcpy(st->head, data.p, items[k].start);
    for (size_t i = 0; i < k; i++) {
        st->members[i] = rebased(items[i], data.p, st->head);
    }
    st->nmembers = k;
    st->head_len = items[k].start;
}

/* Finds the members of an event, from the kept head when it starts the
 * event. False if the event is not a well-formed object. */
static bool event_members(struct stream_state *st, struct str data,
                          struct jscan_item *items, size_t *n)
{
    if (st->head_len && data.len > st->head_len &&
        memcmp(data.p, st->head, st->head_len) == 0) {
        for (size_t i = 0; i < st->nmembers; i++) {
            items[i] = rebased(st->members[i], st->head, data.p);
        }
        *n = st->nmembers;
        struct jscan_iter it;
        jscan_iter_at(&it, data, st->head_len);
        return jscan_rest(&it, items, OPENAI_MAX_MEMBERS, n);
    }
    if (!jscan(data, items, OPENAI_MAX_MEMBERS, n) || data.p[0] != '{') {
        return false;
    }
    keep_head(st, data, items, *n);
    return true;
}

static enum rl_err on_event(void *state, struct str event, struct str data,
                            struct chunk_sink *sink)
{
    (void)event;
    if (str_eq_lit(data, "[DONE]")) {
        return RL_OK; /* the core writes its own [DONE] */
    }
    struct jscan_item items[OPENAI_MAX_MEMBERS];
    size_t n;
    if (!event_members(state, data, items, &n)) {
        provider_error_set(&sink->error, 502, "api_error",
                           "upstream_protocol_error", true,
                           "the provider sent a malformed stream event");
        return RL_E_UPSTREAM_PROTOCOL;
    }
    const struct jscan_item *error = jscan_find(items, n, "error");
    if (error && !jscan_is_null(error)) {
        provider_error_set(&sink->error, 502, "api_error", "upstream_error",
                           true, "the provider failed during the stream");
        json_error_t jerr;
        json_t *e = json_loadb(error->value.p, error->value.len,
                               JSON_DECODE_ANY, &jerr);
        error_from_body(e, &sink->error);
        json_decref(e);
        return RL_E_UPSTREAM;
    }
    const struct jscan_item *usage = jscan_find(items, n, "usage");
    if (usage && usage->type == '{') {
        provider_usage_from_openai_text(usage->value, &sink->usage);
    }
    const struct jscan_item *choices = jscan_find(items, n, "choices");
    if (choices && choices->type == '[' && has_finish(choices->value)) {
        sink->finished = true;
    }
    struct chunk_members members = {items, n};
    sink->emit(sink, data, &members);
    return RL_OK;
}

static void map_error(long status, struct str body, uint32_t retry_after_s,
                      struct provider_error *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(body.p, body.len, 0, &jerr);
    json_t *error = json_object_get(root, "error");
    const char *code = json_string_value(json_object_get(error, "code"));
    if (status == 429) {
        provider_error_set(out, 429, "rate_limit_error",
                           "rate_limit_exceeded", true,
                           "the provider is rate limiting requests");
    } else if (status == 400 || status == 422) {
        /* Codes another candidate acts on are kept (static strings). */
        const char *kept = NULL;
        if (code && strcmp(code, "context_length_exceeded") == 0) {
            kept = "context_length_exceeded";
        } else if (code && strcmp(code, "content_policy_violation") == 0) {
            kept = "content_policy_violation";
        }
        provider_error_set(out, 400, "invalid_request_error", kept, false,
                           "the provider refused the request");
    } else if (status == 401 || status == 403) {
        provider_error_set(out, 502, "api_error", "upstream_auth_failed",
                           true, "the provider refused Relay's credentials; "
                           "check the provider's api_key in relay.yaml");
    } else if (status == 404) {
        provider_error_set(out, 502, "api_error", "upstream_model_not_found",
                           true, "the provider does not know this model's "
                           "upstream id; check models[].upstream");
    } else if (status == 413) {
        provider_error_set(out, 413, "invalid_request_error",
                           "request_too_large", false,
                           "the request is too large for the provider");
    } else if (status >= 500 && status <= 599) {
        provider_error_set(out, (int)status, "api_error", "upstream_error",
                           true, "the provider failed with status %ld",
                           status);
    } else {
        provider_error_set(out, 502, "api_error", "upstream_error", true,
                           "the provider answered with status %ld", status);
    }
    out->retry_after_s = retry_after_s;
    if (error && status != 401 && status != 403 && status != 404) {
        error_from_body(error, out);
    }
    json_decref(root);
}

const struct provider_ops openai_ops = {
    .kind = "openai",
    .framing = FRAMING_SSE,
    .stream_state_size = sizeof(struct stream_state),
    .build_request = build_request,
    .parse_response = parse_response,
    .on_event = on_event,
    .map_error = map_error,
};
