/*
 * native_harness.h - what test_anthropic.c, test_gemini.c and test_ollama.c
 * share: building a request through an adapter, and feeding a stream
 * fixture through the framer and on_event, whole and split at every byte.
 *
 * Header-only (static functions), included by one test file each. A
 * fixture tests/fixtures/<provider>/<case>.<ext> has a sibling
 * <case>.expected of lines (as in test_openai.c):
 *   # comment
 *   emit <json>               one chunk the sink must receive, in order
 *   result RL_OK|RL_E_...     what the feed returns (the first error)
 *   finished yes|no           sink.finished at the end
 *   usage P C CACHED REASON [CACHE_WRITE]   sink.usage, or "usage none"
 *   message <text>            sink.error.message
 *   status N                  sink.error.status
 * RELAY_FIXTURE_PRINT=1 prints what the adapter emits for a fixture
 * instead of checking it (to write a new .expected, then read it by eye).
 */
#ifndef RL_NATIVE_HARNESS_H
#define RL_NATIVE_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/api.h"
#include "config/config.h"
#include "providers/framing.h"
#include "providers/provider.h"
#include "util/alloc.h"
#include "util/jscan.h"

/* ---------------------------------------------------------------------
 * build_request
 * ------------------------------------------------------------------- */

struct built {
    enum rl_err err;
    struct provider_error perr;
    struct upstream_req ureq;
    json_t *sent; /* the upstream body, parsed; NULL if not JSON */
};

static struct built build_with(const struct provider_ops *ops,
                               const char *base_url, const char *api_key,
                               const char *upstream, const char *client_body)
{
    struct provider_cfg p = {
        .name = "up",
        .kind = (char *)ops->kind,
        .ops = ops,
        .base_url = (char *)base_url,
        .api_key = (char *)api_key,
    };
    struct model_cfg m = {
        .name = "small",
        .provider = &p,
        .upstream = (char *)upstream,
    };
    struct built b;
    memset(&b, 0, sizeof(b));
    struct chat_req req;
    struct api_problem problem;
    if (api_chat_parse(str_from(client_body), &req, &problem) != RL_OK) {
        fail_msg("test body refused: %s", problem.message);
    }
    buf_init(&b.ureq.url, 4096);
    buf_init(&b.ureq.headers, 16384);
    buf_init(&b.ureq.body, 1 << 20);
    b.err = ops->build_request(&req, &m, &b.ureq, &b.perr);
    if (b.ureq.body.p) {
        json_error_t jerr;
        b.sent = json_loadb(b.ureq.body.p, b.ureq.body.len, 0, &jerr);
    }
    return b;
}

static void built_free(struct built *b)
{
    json_decref(b->sent);
    buf_free(&b->ureq.url);
    buf_free(&b->ureq.headers);
    buf_free(&b->ureq.body);
}

/* Asserts that json_equal(got, the JSON text want), printing both. */
static void assert_json(json_t *got, const char *want)
{
    json_error_t jerr;
    json_t *w = json_loads(want, 0, &jerr);
    if (!w) {
        fail_msg("bad expected JSON: %s: %s", jerr.text, want);
    }
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
        fail_msg("got  %s\nwant %s", g ? g : "(null)", want);
    }
    json_decref(w);
}

/* Parses a whole answer; the caller frees out. */
static enum rl_err parse_with(const struct provider_ops *ops,
                              const char *body, struct buf *out,
                              struct usage *u, struct provider_error *pe,
                              json_t **parsed)
{
    buf_init(out, 1 << 20);
    memset(u, 0, sizeof(*u));
    memset(pe, 0, sizeof(*pe));
    struct answer_members members = {0};
    enum rl_err err = ops->parse_response(str_from(body), out, &members, u,
                                          pe);
    *parsed = NULL;
    if (err == RL_OK) {
        json_error_t jerr;
        *parsed = json_loadb(out->p, out->len, 0, &jerr);
        if (!json_is_object(*parsed)) {
            fail_msg("the completion is not a JSON object: %.300s", out->p);
        }
    }
    return err;
}

/* Parses a whole answer and returns the "function" of its first tool call
 * (a new reference: the caller decrefs it). */
static json_t *first_call_function(const struct provider_ops *ops,
                                   const char *body)
{
    struct buf out;
    struct usage u;
    struct provider_error pe;
    json_t *got = NULL;
    assert_int_equal(parse_with(ops, body, &out, &u, &pe, &got), RL_OK);
    json_t *msg = json_object_get(
        json_array_get(json_object_get(got, "choices"), 0), "message");
    json_t *fn = json_object_get(
        json_array_get(json_object_get(msg, "tool_calls"), 0), "function");
    json_incref(fn);
    json_decref(got);
    buf_free(&out);
    return fn;
}

/* ---------------------------------------------------------------------
 * on_event through the framer
 * ------------------------------------------------------------------- */

struct recorder {
    struct chunk_sink sink;
    const struct provider_ops *ops;
    void *state;
    json_t *chunks; /* array of what emit received, parsed */
    size_t bad;     /* emits that were not a JSON object */
};

static void record_emit(struct chunk_sink *sink, struct str chunk,
                        const struct chunk_members *members)
{
    struct recorder *r = sink->ctx;
    (void)members;
    json_error_t jerr;
    json_t *c = json_loadb(chunk.p, chunk.len, 0, &jerr);
    if (!json_is_object(c)) {
        r->bad++;
    }
    json_array_append_new(r->chunks, c ? c : json_null());
}

static void recorder_init(struct recorder *r, const struct provider_ops *ops)
{
    memset(r, 0, sizeof(*r));
    r->ops = ops;
    r->sink.emit = record_emit;
    r->sink.ctx = r;
    r->chunks = json_array();
    r->state = rl_calloc(1, ops->stream_state_size ? ops->stream_state_size
                                                   : 1);
}

static void recorder_free(struct recorder *r)
{
    json_decref(r->chunks);
    free(r->state);
}

/* Feeds one event straight to on_event. */
static enum rl_err one_event(struct recorder *r, const char *event,
                             const char *data)
{
    return r->ops->on_event(r->state, str_from(event), str_from(data),
                            &r->sink);
}

struct feed_ctx {
    struct recorder *r;
    enum rl_err first_err;
};

static enum rl_err on_frame(void *ctx, struct str event, struct str data)
{
    struct feed_ctx *fc = ctx;
    enum rl_err err = fc->r->ops->on_event(fc->r->state, event, data,
                                           &fc->r->sink);
    if (err != RL_OK && fc->first_err == RL_OK) {
        fc->first_err = err;
    }
    return err;
}

/* Frames s, split at cut, into the adapter. */
static enum rl_err feed_stream(struct recorder *r, const char *s, size_t n,
                               size_t cut)
{
    struct framer f;
    framer_init(&f, r->ops->framing, 1 << 20);
    struct feed_ctx fc = {r, RL_OK};
    enum rl_err err = framer_feed(&f, s, cut, on_frame, &fc);
    if (err == RL_OK) {
        err = framer_feed(&f, s + cut, n - cut, on_frame, &fc);
    }
    if (err == RL_OK) {
        err = framer_finish(&f, on_frame, &fc);
    }
    framer_free(&f);
    return fc.first_err != RL_OK ? fc.first_err : err;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail_msg("cannot open %s (run from the repository root)", path);
    }
    struct buf b;
    buf_init(&b, 16u << 20);
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        buf_append(&b, tmp, n);
    }
    fclose(f);
    buf_append(&b, "", 0);
    return buf_steal(&b, len);
}

struct expected {
    json_t *emits; /* array */
    enum rl_err result;
    bool finished;
    bool usage_present;
    int64_t usage[5]; /* prompt, completion, cached, reasoning, written */
    char message[512];
    int status;
};

static enum rl_err err_by_name(const char *name)
{
    static const struct {
        const char *name;
        enum rl_err err;
    } names[] = {
        {"RL_OK", RL_OK},
        {"RL_E_UPSTREAM", RL_E_UPSTREAM},
        {"RL_E_UPSTREAM_PROTOCOL", RL_E_UPSTREAM_PROTOCOL},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(names[i].name, name) == 0) {
            return names[i].err;
        }
    }
    fail_msg("unknown result %s in an .expected file", name);
    return RL_E_INTERNAL;
}

static void read_expected(const char *path, struct expected *x)
{
    size_t len;
    char *text = slurp(path, &len);
    memset(x, 0, sizeof(*x));
    x->emits = json_array();
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        if (strncmp(line, "emit ", 5) == 0) {
            json_t *c = json_loads(line + 5, 0, &jerr);
            if (!c) {
                fail_msg("%s: bad emit line: %s", path, jerr.text);
            }
            json_array_append_new(x->emits, c);
        } else if (strncmp(line, "result ", 7) == 0) {
            x->result = err_by_name(line + 7);
        } else if (strncmp(line, "finished ", 9) == 0) {
            x->finished = strcmp(line + 9, "yes") == 0;
        } else if (strcmp(line, "usage none") == 0) {
            x->usage_present = false;
        } else if (strncmp(line, "usage ", 6) == 0) {
            long long v[5] = {0, 0, 0, 0, 0};
            int got = sscanf(line + 6, "%lld %lld %lld %lld %lld", &v[0],
                             &v[1], &v[2], &v[3], &v[4]);
            assert_true(got >= 4);
            x->usage_present = true;
            for (int i = 0; i < 5; i++) {
                x->usage[i] = v[i];
            }
        } else if (strncmp(line, "message ", 8) == 0) {
            snprintf(x->message, sizeof(x->message), "%s", line + 8);
        } else if (strncmp(line, "status ", 7) == 0) {
            x->status = (int)strtol(line + 7, NULL, 10);
        }
    }
    free(text);
}

/* Prints what the adapter makes of a fixture, as .expected lines. */
static void print_fixture(const struct provider_ops *ops, const char *s,
                          size_t n)
{
    struct recorder r;
    recorder_init(&r, ops);
    enum rl_err err = feed_stream(&r, s, n, n);
    size_t i;
    json_t *c;
    json_array_foreach(r.chunks, i, c) {
        char *t = json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("emit %s\n", t);
        free(t);
    }
    printf("result %s\nfinished %s\n", err == RL_OK ? "RL_OK"
                                       : err == RL_E_UPSTREAM
                                           ? "RL_E_UPSTREAM"
                                           : "RL_E_UPSTREAM_PROTOCOL",
           r.sink.finished ? "yes" : "no");
    const struct usage *u = &r.sink.usage;
    if (u->present) {
        printf("usage %lld %lld %lld %lld %lld\n", (long long)u->prompt_tokens,
               (long long)u->completion_tokens, (long long)u->cached_tokens,
               (long long)u->reasoning_tokens,
               (long long)u->cache_write_tokens);
    } else {
        printf("usage none\n");
    }
    if (err != RL_OK) {
        printf("status %d\nmessage %s\n", r.sink.error.status,
               r.sink.error.message);
    }
    recorder_free(&r);
}

/*
 * Checks tests/fixtures/<dir>/<name>.<ext> against its .expected, fed
 * whole and split at every byte boundary.
 */
static void check_fixture(const struct provider_ops *ops, const char *dir,
                          const char *name, const char *ext)
{
    char path[256];
    char exp_path[256];
    snprintf(path, sizeof(path), "tests/fixtures/%s/%s.%s", dir, name, ext);
    snprintf(exp_path, sizeof(exp_path), "tests/fixtures/%s/%s.expected",
             dir, name);
    size_t n;
    char *s = slurp(path, &n);
    const char *print = getenv("RELAY_FIXTURE_PRINT");
    if (print && strcmp(print, "1") == 0) {
        printf("# %s\n", path);
        print_fixture(ops, s, n);
        free(s);
        return;
    }
    struct expected x;
    read_expected(exp_path, &x);
    for (size_t cut = 0; cut <= n; cut++) {
        struct recorder r;
        recorder_init(&r, ops);
        enum rl_err err = feed_stream(&r, s, n, cut);
        if (err != x.result) {
            fail_msg("%s split at %zu: %s, expected %s", name, cut,
                     rl_strerror(err), rl_strerror(x.result));
        }
        assert_int_equal(r.bad, 0);
        if (!json_equal(r.chunks, x.emits)) {
            char *got = json_dumps(r.chunks, JSON_COMPACT);
            fail_msg("%s split at %zu: the sink got %zu chunks, expected "
                     "%zu: %.800s", name, cut, json_array_size(r.chunks),
                     json_array_size(x.emits), got);
        }
        if (r.sink.finished != x.finished) {
            fail_msg("%s split at %zu: finished %d", name, cut,
                     r.sink.finished);
        }
        const struct usage *u = &r.sink.usage;
        assert_int_equal(u->present, x.usage_present);
        assert_int_equal(u->prompt_tokens, x.usage[0]);
        assert_int_equal(u->completion_tokens, x.usage[1]);
        assert_int_equal(u->cached_tokens, x.usage[2]);
        assert_int_equal(u->reasoning_tokens, x.usage[3]);
        assert_int_equal(u->cache_write_tokens, x.usage[4]);
        if (x.message[0]) {
            assert_string_equal(r.sink.error.message, x.message);
        }
        if (x.status) {
            assert_int_equal(r.sink.error.status, x.status);
        }
        recorder_free(&r);
    }
    print_message("%s/%s: %zu chunks, checked at %zu splits\n", dir, name,
                  json_array_size(x.emits), n + 1);
    json_decref(x.emits);
    free(s);
}

/* Every stream's first chunk has the role, and one finish_reason at most
 * comes, in a chunk of its own kind; checks a recorded chunk list. */
static void assert_openai_stream_shape(json_t *chunks)
{
    size_t i;
    json_t *c;
    int finishes = 0;
    json_array_foreach(chunks, i, c) {
        assert_string_equal(json_string_value(json_object_get(c, "object")),
                            "chat.completion.chunk");
        json_t *choice = json_array_get(json_object_get(c, "choices"), 0);
        if (i == 0) {
            assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(choice, "delta"),
                                    "role")),
                                "assistant");
        }
        if (json_is_string(json_object_get(choice, "finish_reason"))) {
            finishes++;
        }
    }
    assert_true(finishes <= 1);
}

/* Runs map_error on a fixture file's body. */
static struct provider_error map_fixture(const struct provider_ops *ops,
                                         const char *dir, const char *name,
                                         long status)
{
    char path[256];
    snprintf(path, sizeof(path), "tests/fixtures/%s/%s", dir, name);
    size_t n;
    char *s = slurp(path, &n);
    struct provider_error pe;
    memset(&pe, 0, sizeof(pe));
    ops->map_error(status, (struct str){s, n}, 7, &pe);
    free(s);
    return pe;
}

#endif
