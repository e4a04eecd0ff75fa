/*
 * entry.c - a cached answer's two shapes: a stream's chunks assembled into
 * one chat.completion (cache_collect_*), and a completion replayed as
 * chunks (cache_replay), so either kind of request is served from either.
 *
 * Pure apart from memory. Read cache_collect_chunk() first.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "util/alloc.h"

#define COLLECT_MAX_CHOICES 8

struct choice {
    struct buf content;   /* delta.content joined */
    json_t *tool_calls;   /* array by tool-call index, or NULL */
    char finish[32];      /* finish_reason, "" until it came */
    bool seen;
};

struct cache_collect {
    struct choice choice[COLLECT_MAX_CHOICES];
    size_t max_bytes;     /* answer text allowed */
    size_t bytes;         /* answer text so far */
    bool broken;          /* too large or unreadable: not cached */
};

struct cache_collect *cache_collect_new(size_t max_bytes)
{
    struct cache_collect *cc = rl_calloc(1, sizeof(*cc));
    cc->max_bytes = max_bytes;
    for (size_t i = 0; i < COLLECT_MAX_CHOICES; i++) {
        buf_init(&cc->choice[i].content, max_bytes);
    }
    return cc;
}

void cache_collect_free(struct cache_collect *cc)
{
    if (!cc) {
        return;
    }
    for (size_t i = 0; i < COLLECT_MAX_CHOICES; i++) {
        buf_free(&cc->choice[i].content);
        json_decref(cc->choice[i].tool_calls);
    }
    free(cc);
}

/* Appends s to the string member key of o. */
static void join(json_t *o, const char *key, json_t *s)
{
    const char *old = json_string_value(json_object_get(o, key));
    size_t olen = old ? strlen(old) : 0;
    size_t add = json_string_length(s);
    char *t = rl_malloc(olen + add + 1);
    memcpy(t, old ? old : "", olen);
    memcpy(t + olen, json_string_value(s), add);
    json_object_set_new(o, key, json_stringn(t, olen + add));
    free(t);
}

static void tool_delta(struct choice *c, json_t *calls)
{
    if (!c->tool_calls) {
        c->tool_calls = json_array();
    }
    size_t i;
    json_t *d;
    json_array_foreach(calls, i, d) {
        json_int_t at = json_integer_value(json_object_get(d, "index"));
        while (at >= 0 && at < 64 &&
               json_array_size(c->tool_calls) <= (size_t)at) {
            json_array_append_new(c->tool_calls,
                                  json_pack("{s:s,s:{}}", "type",
                                            "function", "function"));
        }
        json_t *t = json_array_get(c->tool_calls, (size_t)at);
        json_t *id = json_object_get(d, "id");
        if (!t) {
            continue;
        }
        if (json_is_string(id)) {
            json_object_set(t, "id", id);
        }
        json_t *fn = json_object_get(d, "function");
        json_t *tf = json_object_get(t, "function");
        json_t *name = json_object_get(fn, "name");
        json_t *args = json_object_get(fn, "arguments");
        if (json_is_string(name)) {
            join(tf, "name", name);
        }
        if (json_is_string(args)) {
            join(tf, "arguments", args);
        }
    }
}

void cache_collect_chunk(struct cache_collect *cc, struct str chunk)
{
    if (cc->broken) {
        return;
    }
    cc->bytes += chunk.len;
    json_t *o = json_loadb(chunk.p, chunk.len, 0, NULL);
    json_t *choices = json_object_get(o, "choices");
    if (!json_is_object(o) || cc->bytes > cc->max_bytes) {
        cc->broken = true;
    }
    size_t i;
    json_t *ch;
    json_array_foreach(choices, i, ch) {
        json_int_t at = json_integer_value(json_object_get(ch, "index"));
        if (at < 0 || at >= COLLECT_MAX_CHOICES) {
            cc->broken = true;
            break;
        }
        struct choice *c = &cc->choice[at];
        c->seen = true;
        json_t *delta = json_object_get(ch, "delta");
        json_t *text = json_object_get(delta, "content");
        if (json_is_string(text)) {
            buf_append(&c->content, json_string_value(text),
                       json_string_length(text));
        }
        json_t *calls = json_object_get(delta, "tool_calls");
        if (json_is_array(calls)) {
            tool_delta(c, calls);
        }
        const char *fin = json_string_value(json_object_get(ch,
                                                            "finish_reason"));
        if (fin) {
            snprintf(c->finish, sizeof(c->finish), "%s", fin);
        }
    }
    json_decref(o);
}

bool cache_collect_finish(struct cache_collect *cc, const struct usage *u,
                          struct buf *out)
{
    if (cc->broken || !cc->choice[0].seen) {
        return false;
    }
    json_t *choices = json_array();
    bool ok = true;
    for (size_t i = 0; i < COLLECT_MAX_CHOICES && cc->choice[i].seen; i++) {
        struct choice *c = &cc->choice[i];
        ok = ok && c->finish[0];
        json_t *msg = json_pack("{s:s}", "role", "assistant");
        json_object_set_new(msg, "content",
                            c->content.len || !c->tool_calls
                                ? json_stringn(c->content.p ? c->content.p
                                                            : "",
                                               c->content.len)
                                : json_null());
        if (c->tool_calls) {
            json_object_set(msg, "tool_calls", c->tool_calls);
        }
        json_array_append_new(choices,
                              json_pack("{s:I,s:o,s:s}", "index",
                                        (json_int_t)i, "message", msg,
                                        "finish_reason", c->finish));
    }
    json_t *comp = json_pack("{s:s,s:o}", "object", "chat.completion",
                             "choices", choices);
    if (u->present) {
        json_object_set_new(comp, "usage", json_pack(
            "{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)u->prompt_tokens,
            "completion_tokens", (json_int_t)u->completion_tokens,
            "total_tokens",
            (json_int_t)(u->prompt_tokens + u->completion_tokens)));
    }
    char *text = json_dumps(comp, JSON_COMPACT);
    json_decref(comp);
    ok = ok && text && buf_append_cstr(out, text) == RL_OK;
    free(text);
    return ok;
}

/* Emits o as JSON text and frees it. */
static void emit_obj(json_t *o, void (*emit)(void *, struct str), void *ctx)
{
    json_object_set_new(o, "object", json_string("chat.completion.chunk"));
    char *text = json_dumps(o, JSON_COMPACT);
    if (text) {
        emit(ctx, (struct str){text, strlen(text)});
    }
    free(text);
    json_decref(o);
}

/* One chunk of choice index with delta d (taken). */
static json_t *chunk_of(json_int_t index, json_t *d, json_t *finish)
{
    return json_pack("{s:[{s:I,s:o,s:O}]}", "choices", "index", index,
                     "delta", d, "finish_reason",
                     finish ? finish : json_null());
}

static void replay_choice(json_t *ch, void (*emit)(void *, struct str),
                          void *ctx)
{
    json_int_t index = json_integer_value(json_object_get(ch, "index"));
    json_t *msg = json_object_get(ch, "message");
    emit_obj(chunk_of(index, json_pack("{s:s}", "role", "assistant"), NULL),
             emit, ctx);
    json_t *content = json_object_get(msg, "content");
    if (json_is_string(content) && json_string_length(content)) {
        emit_obj(chunk_of(index, json_pack("{s:O}", "content", content),
                          NULL), emit, ctx);
    }
    json_t *calls = json_object_get(msg, "tool_calls");
    if (json_is_array(calls)) {
        json_t *deltas = json_array();
        size_t i;
        json_t *t;
        json_array_foreach(calls, i, t) {
            json_t *d = json_deep_copy(t);
            json_object_set_new(d, "index", json_integer((json_int_t)i));
            json_array_append_new(deltas, d);
        }
        emit_obj(chunk_of(index, json_pack("{s:o}", "tool_calls", deltas),
                          NULL), emit, ctx);
    }
    /* chunk_of takes its own reference to the reason ("O"): a default
     * made here is ours to drop (it leaked before; fuzz_redis). */
    json_t *fin = json_object_get(ch, "finish_reason");
    json_t *stop = fin ? NULL : json_string("stop");
    emit_obj(chunk_of(index, json_object(), fin ? fin : stop), emit, ctx);
    json_decref(stop);
}

bool cache_replay(struct str completion,
                  void (*emit)(void *ctx, struct str chunk), void *ctx)
{
    json_t *c = json_loadb(completion.p, completion.len, 0, NULL);
    json_t *choices = json_object_get(c, "choices");
    if (!json_is_array(choices)) {
        json_decref(c);
        return false;
    }
    size_t i;
    json_t *ch;
    json_array_foreach(choices, i, ch) {
        replay_choice(ch, emit, ctx);
    }
    json_t *usage = json_object_get(c, "usage");
    if (json_is_object(usage)) {
        emit_obj(json_pack("{s:[],s:O}", "choices", "usage", usage), emit,
                 ctx);
    }
    json_decref(c);
    return true;
}
