/*
 * exact.c - the exact cache's key: the canonical text of the parts of a
 * request that change its answer, hashed with SHA-256 (docs/cache.md).
 *
 * Pure: no I/O, no clock. What is left out of the key (user, stream,
 * stream_options, routing, cache, metadata) is left out on purpose: two
 * requests differing only there get the same answer. Read cache_normalise().
 */
#include <jansson.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "cache/cache.h"
#include "cache/internal.h"
#include "config/config.h"

/* Members copied into the key as they are (canonically serialised). */
static const char *const answer_params[] = {
    "tools", "tool_choice", "response_format", "top_p", "n", "seed", "stop",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
    "top_logprobs", "parallel_tool_calls", "reasoning_effort", NULL,
};

/* Members of a message that change the answer. */
static const char *const message_members[] = {
    "role", "name", "tool_calls", "tool_call_id", "refusal", NULL,
};

/* A message's content: a string stays; an array of text parts only is
 * joined into one string (the same prompt); other parts are kept. */
static json_t *content_of(json_t *content)
{
    if (!json_is_array(content)) {
        return json_incref(content);
    }
    struct buf text;
    buf_init(&text, (size_t)64 << 20);
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *t = json_object_get(part, "text");
        if (!type || strcmp(type, "text") != 0 || !json_is_string(t)) {
            buf_free(&text);
            return json_incref(content);
        }
        buf_append(&text, json_string_value(t), json_string_length(t));
    }
    json_t *s = json_stringn(text.p ? text.p : "", text.len);
    buf_free(&text);
    return s ? s : json_incref(content);
}

static json_t *messages_of(json_t *messages)
{
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        json_t *o = json_object();
        for (size_t j = 0; message_members[j]; j++) {
            json_t *v = json_object_get(m, message_members[j]);
            if (v && !json_is_null(v)) {
                json_object_set(o, message_members[j], v);
            }
        }
        json_t *c = json_object_get(m, "content");
        if (c && !json_is_null(c)) {
            json_object_set_new(o, "content", content_of(c));
        }
        json_array_append_new(out, o);
    }
    return out;
}

json_t *cache_key_json(json_t *req, const char *model_class)
{
    json_t *key = json_object();
    json_object_set_new(key, "model", json_string(model_class));
    json_object_set_new(key, "messages",
                        messages_of(json_object_get(req, "messages")));
    for (size_t i = 0; answer_params[i]; i++) {
        json_t *v = json_object_get(req, answer_params[i]);
        if (v && !json_is_null(v)) {
            json_object_set(key, answer_params[i], v);
        }
    }
    json_t *t = json_object_get(req, "temperature");
    if (json_is_number(t)) {
        /* Bands of 0.1: 0.70 and 0.7 are one temperature. */
        long band = lround(json_number_value(t) * 10);
        json_object_set_new(key, "temperature_band", json_integer(band));
    }
    json_t *mt = json_object_get(req, "max_completion_tokens");
    if (!mt) {
        mt = json_object_get(req, "max_tokens");
    }
    if (json_is_integer(mt)) {
        json_object_set(key, "max_tokens", mt);
    }
    return key;
}

enum rl_err cache_key_text(json_t *key, struct buf *out)
{
    char *text = json_dumps(key, JSON_COMPACT | JSON_SORT_KEYS |
                                     JSON_ENSURE_ASCII);
    enum rl_err err = text ? buf_append_cstr(out, text) : RL_E_INTERNAL;
    free(text);
    return err;
}

enum rl_err cache_normalise(struct str raw, const char *model_class,
                            struct buf *out)
{
    json_t *req = json_loadb(raw.p, raw.len, 0, NULL);
    if (!json_is_object(req)) {
        json_decref(req);
        return RL_E_INVALID_REQUEST;
    }
    json_t *key = cache_key_json(req, model_class);
    enum rl_err err = cache_key_text(key, out);
    json_decref(key);
    json_decref(req);
    return err;
}

/* The request's own cache object: mode, ttl (seconds), threshold. */
struct own {
    const char *mode; /* "off", "exact", "semantic", or NULL */
    int64_t ttl_s;    /* 0: the configured one */
    double threshold; /* 0: the key's or the configured one */
    double temperature; /* -1: not set */
};

static void read_own(json_t *req, struct own *o)
{
    json_t *c = json_object_get(req, "cache");
    o->mode = json_string_value(json_object_get(c, "mode"));
    json_t *ttl = json_object_get(c, "ttl");
    o->ttl_s = json_is_integer(ttl) ? json_integer_value(ttl) : 0;
    json_t *th = json_object_get(c, "threshold");
    o->threshold = json_is_number(th) ? json_number_value(th) : 0;
    if (!(o->threshold > 0 && o->threshold <= 1)) {
        o->threshold = 0; /* api_chat_parse refused other values */
    }
    json_t *t = json_object_get(req, "temperature");
    o->temperature = json_is_number(t) ? json_number_value(t) : -1;
}

bool cache_key_make(const struct config *cfg, struct str raw,
                    const char *model_class, const char *scope,
                    bool any_temperature, struct cache_key *out)
{
    if (!cfg->cache.enabled) {
        return false;
    }
    json_t *req = json_loadb(raw.p, raw.len, 0, NULL);
    struct own o;
    read_own(req, &o);
    bool exact_only = o.mode && strcmp(o.mode, "exact") == 0;
    bool explicit_mode = exact_only ||
                         (o.mode && strcmp(o.mode, "semantic") == 0);
    bool off = o.mode && strcmp(o.mode, "off") == 0;
    json_decref(req);
    if (off || (!explicit_mode && !any_temperature &&
                o.temperature > cfg->cache.max_temperature)) {
        return false;
    }
    struct buf text;
    buf_init(&text, (size_t)64 << 20);
    if (cache_normalise(raw, model_class, &text) != RL_OK) {
        buf_free(&text);
        return false;
    }
    char hex[65];
    cache_sha256_hex(text.p, text.len, hex);
    buf_free(&text);
    memset(out, 0, sizeof(*out));
    snprintf(out->scope, sizeof(out->scope), "%.40s",
             cfg->cache.scope_global ? "global" : scope);
    snprintf(out->name, sizeof(out->name), "relay:{c:%s}:%s", out->scope,
             hex);
    out->ttl_s = o.ttl_s > 0 && o.ttl_s <= 86400 * 365 ? (uint64_t)o.ttl_s
                                                        : cfg->cache.ttl_s;
    out->explicit_mode = explicit_mode;
    out->semantic = !exact_only;
    out->threshold = o.threshold;
    return true;
}

void cache_sha256_hex(const char *p, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)p, len, md);
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[64] = '\0';
}

bool cache_hex_to_32(const char *hex, unsigned char out[32])
{
    for (size_t i = 0; i < 64; i++) {
        char c = hex[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                            : 16;
        if (d > 15) {
            return false;
        }
        out[i / 2] = (unsigned char)(i % 2 ? (out[i / 2] << 4) | d : d);
    }
    return true;
}
