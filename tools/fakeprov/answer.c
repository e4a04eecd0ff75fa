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

#include <stdio.h>
#include <stdlib.h>

#include "util/alloc.h"

void fake_answer_init(struct answer *a)
{
    *a = (struct answer){0};
    buf_init(&a->model, 64 << 10);
    buf_init(&a->content, 8u << 20);
    buf_init(&a->tool_name, 4 << 10);
    buf_init(&a->err_code, 1 << 10);
    buf_init(&a->err_msg, 4 << 10);
}

void fake_answer_free(struct answer *a)
{
    buf_free(&a->model);
    buf_free(&a->content);
    buf_free(&a->tool_name);
    buf_free(&a->err_code);
    buf_free(&a->err_msg);
    free(a->cuts);
    a->cuts = NULL;
    a->cuts_cap = 0;
}

void fake_answer_reset(struct answer *a)
{
    a->kind = ANSWER_TEXT;
    a->id = 0;
    a->created_s = 0;
    a->stream = false;
    a->include_usage = false;
    buf_reset(&a->model);
    buf_reset(&a->content);
    buf_reset(&a->tool_name);
    buf_reset(&a->err_code);
    buf_reset(&a->err_msg);
    a->npieces = 0;
    a->finish = "stop";
    a->prompt_tokens = 0;
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
