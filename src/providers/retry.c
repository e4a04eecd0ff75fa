/*
 * retry.c - pure decisions of a call's retries and rescues (see retry.h).
 *
 * Kept apart from upstream.c so that the rules can be tested without a
 * loop or a provider. Read retry_outcome() and retry_prefix_match() first.
 */
#include "providers/retry.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util/jscan.h"

#define RETRY_MAX_MEMBERS 64 /* top-level members of a chunk or request */

const char *provider_outcome_name(enum attempt_outcome o)
{
    switch (o) {
    case ATTEMPT_OK: return "ok";
    case ATTEMPT_TIMEOUT: return "timeout";
    case ATTEMPT_RATE_LIMITED: return "rate_limited";
    case ATTEMPT_SERVER_ERROR: return "server_error";
    case ATTEMPT_CONNECT: return "connect";
    case ATTEMPT_CUT: return "cut";
    case ATTEMPT_CLIENT_ERROR: return "client_error";
    case ATTEMPT_CONTENT_POLICY: return "content_policy";
    case ATTEMPT_CONTEXT_LENGTH: return "context_length";
    case ATTEMPT_CANCELLED: return "cancelled";
    }
    return "?";
}

static bool code_is(const struct provider_error *pe, const char *code)
{
    return pe->code && strcmp(pe->code, code) == 0;
}

enum attempt_outcome retry_outcome(enum rl_err err,
                                   const struct provider_error *pe,
                                   long status)
{
    switch (err) {
    case RL_OK: return ATTEMPT_OK;
    case RL_E_UPSTREAM_TIMEOUT: return ATTEMPT_TIMEOUT;
    case RL_E_UPSTREAM_CONNECT: return ATTEMPT_CONNECT;
    case RL_E_UPSTREAM_CUT:
    case RL_E_UPSTREAM_PROTOCOL: return ATTEMPT_CUT;
    default: break;
    }
    if (code_is(pe, "context_length_exceeded")) {
        return ATTEMPT_CONTEXT_LENGTH;
    }
    if (code_is(pe, "content_policy_violation") ||
        code_is(pe, "content_filter")) {
        return ATTEMPT_CONTENT_POLICY;
    }
    if (status == 429 || pe->status == 429) {
        return ATTEMPT_RATE_LIMITED;
    }
    if (status >= 500 || pe->status >= 500 ||
        (err == RL_E_UPSTREAM && status >= 200 && status < 300)) {
        return ATTEMPT_SERVER_ERROR; /* including an error event mid-stream */
    }
    return ATTEMPT_CLIENT_ERROR;
}

uint64_t retry_backoff_ms(int round, uint64_t base_ms, uint64_t max_ms,
                          uint64_t rnd)
{
    uint64_t cap = max_ms > base_ms ? max_ms : base_ms;
    uint64_t d = base_ms;
    for (int i = 1; i < round && d < cap; i++) {
        d *= 2;
    }
    if (d > cap) {
        d = cap;
    }
    return d + rnd % (d + 1);
}

/* Finds the members of the object text holds; false if it is none. */
static bool members_of(struct str text, struct jscan_item *items, size_t *n)
{
    return jscan_checked(text, items, RETRY_MAX_MEMBERS, n) && text.len &&
           text.p[0] == '{';
}

/* Looks at one choice object (its delta and finish_reason). */
static bool look_choice(struct str choice, struct buf *text,
                        struct chunk_look *out)
{
    struct jscan_item items[RETRY_MAX_MEMBERS];
    size_t n;
    if (!members_of(choice, items, &n)) {
        return false;
    }
    const struct jscan_item *fin = jscan_find(items, n, "finish_reason");
    out->finish = fin && !jscan_is_null(fin);
    const struct jscan_item *delta = jscan_find(items, n, "delta");
    if (!delta || delta->type != '{') {
        return true;
    }
    struct jscan_item d[RETRY_MAX_MEMBERS];
    size_t nd;
    if (!members_of(delta->value, d, &nd)) {
        return false;
    }
    for (size_t i = 0; i < nd; i++) {
        bool is_content = str_eq_lit(d[i].key, "content");
        bool harmless = str_eq_lit(d[i].key, "role") || is_content ||
                        jscan_is_null(&d[i]);
        if (!harmless) {
            out->other = true; /* tool_calls, refusal, audio, ... */
        }
        if (!is_content || d[i].type != '"' || d[i].value.len <= 2) {
            continue;
        }
        if (!text) {
            out->text = true; /* "" is the only empty string's text */
            continue;
        }
        /* A decoded string is never longer than its JSON text. */
        if (buf_reserve(text, d[i].value.len) != RL_OK) {
            return false;
        }
        size_t len = 0;
        if (!jscan_string(d[i].value, text->p + text->len,
                          text->cap - text->len, &len)) {
            return false;
        }
        text->len += len;
        out->text = len > 0;
    }
    return true;
}

bool retry_chunk_look(struct str chunk, const struct chunk_members *members,
                      struct buf *text, struct chunk_look *out)
{
    memset(out, 0, sizeof(*out));
    struct jscan_item own[RETRY_MAX_MEMBERS];
    const struct jscan_item *items = members ? members->items : own;
    size_t n = members ? members->n : 0;
    if (!members && !members_of(chunk, own, &n)) {
        return false;
    }
    const struct jscan_item *choices = jscan_find(items, n, "choices");
    if (!choices || choices->type != '[') {
        return true; /* a usage-only chunk, say */
    }
    struct jscan_item el[2];
    size_t nel;
    if (!jscan_checked(choices->value, el, 2, &nel)) {
        out->other = true; /* more than two choices */
        return true;
    }
    if (nel > 1) {
        out->other = true;
    }
    return nel == 0 || look_choice(el[0].value, text, out);
}

bool retry_deterministic(struct str raw)
{
    struct jscan_iter it;
    struct jscan_item item;
    if (!jscan_iter_checked(&it, raw)) {
        return false;
    }
    bool yes = false;
    while (jscan_iter_next(&it, &item) == 1) {
        if (str_eq_lit(item.key, "seed") && !jscan_is_null(&item)) {
            yes = true;
        } else if (str_eq_lit(item.key, "temperature") &&
                   (item.type == '-' ||
                    (item.type >= '0' && item.type <= '9'))) {
            char num[32];
            size_t len = item.value.len < 31 ? item.value.len : 31;
            memcpy(num, item.value.p, len);
            num[len] = '\0';
            yes = yes || strtod(num, NULL) == 0.0;
        }
    }
    return yes;
}

enum retry_match retry_prefix_match(struct str sent, size_t *matched,
                                    struct str text, size_t *rest)
{
    size_t left = sent.len - *matched;
    size_t n = text.len < left ? text.len : left;
    if (memcmp(sent.p + *matched, text.p, n) != 0) {
        return RETRY_MATCH_DIVERGED;
    }
    *matched += n;
    if (*matched < sent.len) {
        return RETRY_MATCH_MORE;
    }
    *rest = n;
    return RETRY_MATCH_DONE;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

size_t retry_trailing_space(struct str text)
{
    size_t n = 0;
    while (n < text.len && is_space(text.p[text.len - 1 - n])) {
        n++;
    }
    return n;
}

bool retry_prefill_request(struct str raw, struct str text, struct buf *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(raw.p, raw.len, 0, &jerr);
    json_t *messages = json_object_get(root, "messages");
    bool ok = json_is_array(messages);
    if (ok) {
        json_array_append_new(messages,
                              json_pack("{s:s,s:s%}", "role", "assistant",
                                        "content", text.p, text.len));
        char *s = json_dumps(root, JSON_COMPACT);
        buf_reset(out);
        ok = s && buf_append(out, s, strlen(s)) == RL_OK;
        free(s);
    }
    json_decref(root);
    return ok;
}

size_t retry_skip_space(struct str ws, size_t *matched, struct str piece,
                        bool *done)
{
    size_t n = 0;
    while (*matched < ws.len && n < piece.len &&
           piece.p[n] == ws.p[*matched]) {
        n++;
        (*matched)++;
    }
    *done = *matched == ws.len || n < piece.len;
    return n;
}
