/*
 * answer.c - the format-independent answer: words, pieces, staged errors.
 *
 * A struct answer is embedded in its connection and reused request after
 * request; fake_answer_reset() empties it without freeing, so a warm connection
 * answers without touching the allocator. The content is cut into pieces
 * (one per streamed token or tool-argument fragment) by offsets, so every
 * wire format streams the same pieces at the same times.
 *
 * Read first: fake_answer_words().
 */
#include "fakeprov.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

void fake_answer_init(struct answer *a)
{
    *a = (struct answer){0};
    buf_init(&a->model, 64 << 10);
    buf_init(&a->content, 256u << 20); /* FAKE_MAX_TOKENS words */
    buf_init(&a->tool_name, 4 << 10);
    buf_init(&a->err_code, 1 << 10);
    buf_init(&a->err_msg, 4 << 10);
    buf_init(&a->stop_seq, 4 << 10);
}

void fake_answer_free(struct answer *a)
{
    buf_free(&a->model);
    buf_free(&a->content);
    buf_free(&a->tool_name);
    buf_free(&a->err_code);
    buf_free(&a->err_msg);
    buf_free(&a->stop_seq);
    free(a->cuts);
    a->cuts = NULL;
    a->cuts_cap = 0;
}

void fake_answer_reset(struct answer *a)
{
    a->kind = ANSWER_TEXT;
    a->id = 0;
    a->created_s = 0;
    a->created_ns = 0;
    a->stream = false;
    a->include_usage = false;
    buf_reset(&a->model);
    buf_reset(&a->content);
    buf_reset(&a->tool_name);
    buf_reset(&a->err_code);
    buf_reset(&a->err_msg);
    buf_reset(&a->stop_seq);
    a->err_code_scripted = false;
    a->npieces = 0;
    a->finish = "stop";
    a->prompt_tokens = 0;
    a->cache_read = 0;
    a->cache_write = 0;
    a->completion_tokens = 0;
    a->ttft_ms = 0;
    a->tps = 0;
    a->status = 200;
    a->err_type = NULL;
    a->retry_after_s = 0;
    a->fault = FAULT_NONE;
    a->after = 0;
}

void fake_answer_error(struct answer *a, int status, const char *type,
                       const char *code, const char *msg)
{
    a->kind = ANSWER_ERROR;
    a->status = status;
    a->err_type = type;
    buf_reset(&a->err_code);
    buf_reset(&a->err_msg);
    if (code) {
        (void)buf_append_cstr(&a->err_code, code);
    }
    (void)buf_append_cstr(&a->err_msg, msg);
}

void fake_answer_scripted_error(struct answer *a, const struct script *sc)
{
    char msg[256];
    int st = sc->status;
    switch (st) {
    case 400:
        fake_answer_error(a, st, "invalid_request_error", NULL,
                          "Invalid request (scripted by relay-fake).");
        break;
    case 401:
        fake_answer_error(a, st, "invalid_request_error", "invalid_api_key",
                          "Incorrect API key provided (scripted by "
                          "relay-fake).");
        break;
    case 404:
        snprintf(msg, sizeof(msg),
                 "The model `%.*s` does not exist or you do not have "
                 "access to it.",
                 (int)(sc->base.len > 128 ? 128 : sc->base.len), sc->base.p);
        fake_answer_error(a, st, "invalid_request_error", "model_not_found",
                          msg);
        break;
    case 429:
        fake_answer_error(a, st, "requests", "rate_limit_exceeded",
                          "Rate limit reached for requests (scripted by "
                          "relay-fake).");
        a->retry_after_s = sc->retry_after_s;
        break;
    case 500:
        fake_answer_error(a, st, "server_error", NULL,
                          "The server had an error while processing your "
                          "request (scripted by relay-fake).");
        break;
    case 503:
        fake_answer_error(a, st, "server_error", "overloaded",
                          "The server is overloaded, please try again later "
                          "(scripted by relay-fake).");
        break;
    default:
        snprintf(msg, sizeof(msg), "Scripted error %d from relay-fake.", st);
        fake_answer_error(a, st,
                          st >= 500 ? "server_error" : "invalid_request_error",
                          NULL, msg);
        break;
    }
    if (sc->code.len) {
        buf_reset(&a->err_code);
        (void)buf_append_str(&a->err_code, sc->code);
        a->err_code_scripted = true;
    }
}

void fake_answer_cut(struct answer *a, size_t end)
{
    if (a->npieces == a->cuts_cap) {
        a->cuts_cap = a->cuts_cap ? a->cuts_cap * 2 : 64;
        a->cuts = rl_realloc(a->cuts, a->cuts_cap * sizeof(*a->cuts));
    }
    a->cuts[a->npieces++] = end;
}

void fake_answer_split(struct answer *a, size_t from, size_t n)
{
    size_t len = a->content.len - from;
    if (n > len) {
        n = len;
    }
    if (n == 0) {
        n = 1;
    }
    size_t prev = from;
    for (size_t k = 1; k <= n; k++) {
        size_t end = from + len * k / n;
        if (end < prev) {
            end = prev;
        }
        /* Never cut inside a UTF-8 sequence: move past continuations. */
        while (end < a->content.len &&
               ((unsigned char)a->content.p[end] & 0xc0) == 0x80) {
            end++;
        }
        fake_answer_cut(a, end);
        prev = end;
    }
}

void fake_answer_words(struct answer *a, uint64_t seed, size_t ntokens,
                       bool as_json)
{
    if (as_json) {
        (void)buf_append_cstr(&a->content, "{\"answer\":\"");
    }
    for (size_t i = 0; i < ntokens; i++) {
        struct str w = fake_text_word(seed, (uint32_t)i);
        if (as_json && i > 0) {
            (void)buf_append_cstr(&a->content, " ");
        }
        (void)buf_append_str(&a->content, w);
        if (!as_json) {
            (void)buf_append_cstr(&a->content, " ");
        }
        if (!as_json || i + 1 < ntokens) {
            fake_answer_cut(a, a->content.len);
        }
    }
    if (as_json) {
        (void)buf_append_cstr(&a->content, "\"}");
        fake_answer_cut(a, a->content.len);
    }
}

/* ---------------------------------------------------------------------- */
/* Shared steps of every format's build()                                 */

/* Number behind every format's ids, across workers. */
static _Atomic uint64_t answer_next_id = 1;

uint64_t fake_answer_next_id(void)
{
    return atomic_fetch_add(&answer_next_id, 1);
}

bool fake_answer_begin(struct answer *a, const struct fake_opts *o,
                       int64_t limit, struct script *sc)
{
    char why[160];
    struct str model = {a->model.p ? a->model.p : "", a->model.len};
    if (fake_script_parse(model, sc, why, sizeof(why)) != RL_OK) {
        fake_answer_error(a, 400, "invalid_request_error", NULL, why);
        return false;
    }
    int64_t ntokens = sc->tokens >= 0 ? sc->tokens : o->tokens;
    if (limit >= 0 && limit < ntokens) {
        ntokens = limit;
        a->finish = "length";
    }
    a->ttft_ms = (uint64_t)(sc->ttft_ms >= 0 ? sc->ttft_ms : o->ttft_ms) +
                 (uint64_t)fake_script_slow_ms(sc, model);
    a->tps = sc->tps >= 0 ? sc->tps : o->tps;
    a->completion_tokens = ntokens;
    a->cache_read = sc->cache_read;
    a->cache_write = sc->cache_write;
    a->no_usage = sc->usage == 0;
    return true;
}

/* Cuts a plain-text answer at offset at; at is inside the content. */
static void cut_at(struct answer *a, size_t at)
{
    size_t kept = 0;
    while (kept < a->npieces && a->cuts[kept] < at) {
        kept++;
    }
    a->npieces = kept;
    if (at > (kept ? a->cuts[kept - 1] : 0)) {
        fake_answer_cut(a, at); /* the partial piece before the match */
    }
    a->content.len = at;
    a->completion_tokens = (int64_t)a->npieces;
}

bool fake_answer_stop_at(struct answer *a, const json_t *stops)
{
    if (a->kind != ANSWER_TEXT || a->content.len == 0) {
        return false;
    }
    const json_t *best = NULL;
    size_t best_at = a->content.len;
    size_t i;
    const json_t *s;
    const json_t *one = json_is_string(stops) ? stops : NULL;
    for (i = 0; one ? i < 1 : i < json_array_size(stops); i++) {
        s = one ? one : json_array_get(stops, i);
        if (!json_is_string(s) || json_string_length(s) == 0) {
            continue;
        }
        size_t n = json_string_length(s);
        const char *hit = memmem(a->content.p, a->content.len,
                                 json_string_value(s), n);
        if (hit && (size_t)(hit - a->content.p) < best_at) {
            best_at = (size_t)(hit - a->content.p);
            best = s;
        }
    }
    if (!best) {
        return false;
    }
    cut_at(a, best_at);
    a->finish = "stop_sequence";
    buf_reset(&a->stop_seq);
    (void)buf_append(&a->stop_seq, json_string_value(best),
                     json_string_length(best));
    return true;
}

bool fake_answer_continue(struct answer *a, struct str prefill)
{
    size_t at = prefill.len;
    if (a->kind != ANSWER_TEXT || at == 0 || at > a->content.len ||
        memcmp(a->content.p, prefill.p, at) != 0) {
        return false;
    }
    size_t kept = 0;
    for (size_t i = 0; i < a->npieces; i++) {
        if (a->cuts[i] > at) {
            a->cuts[kept++] = a->cuts[i] - at;
        }
    }
    a->npieces = kept;
    memmove(a->content.p, a->content.p + at, a->content.len - at);
    a->content.len -= at;
    a->completion_tokens = (int64_t)kept;
    return true;
}

void fake_answer_stage(struct answer *a, const struct script *sc)
{
    struct str model = {a->model.p ? a->model.p : "", a->model.len};
    if (a->kind == ANSWER_ERROR || !fake_script_failure_applies(sc, model)) {
        return;
    }
    if (sc->status) {
        fake_answer_scripted_error(a, sc);
        return;
    }
    a->fault = sc->fault;
    a->after = sc->after >= 0 ? (size_t)sc->after : a->npieces / 2;
    if (a->fault == FAULT_SAFETY || a->fault == FAULT_BLOCKED) {
        a->kind = ANSWER_TEXT;
        buf_reset(&a->content);
        buf_reset(&a->tool_name);
        a->npieces = 0;
        a->completion_tokens = 0;
        a->finish = "content_filter";
    }
}

/* ---------------------------------------------------------------------- */
/* Writers                                                                */

void fake_put(struct buf *b, const char *s)
{
    (void)buf_append_cstr(b, s);
}

void fake_put_esc(struct buf *b, const char *p, size_t n)
{
    (void)buf_append_json_escaped(b, p, n);
}

void fake_put_i64(struct buf *b, int64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        tmp[--i] = '-';
    }
    (void)buf_append(b, tmp + i, sizeof(tmp) - i);
}
