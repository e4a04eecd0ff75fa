/*
 * native.c - helpers shared by the native adapters (see native.h).
 *
 * Nothing here knows a provider: only OpenAI's shapes (chunks, completions,
 * usage, errors) and the parts of an OpenAI request that every translation
 * reads the same way. Read native_chunk_emit() first.
 */
#include "providers/native.h"
#include "util/alloc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------
 * Answers in OpenAI's shape
 * ------------------------------------------------------------------- */

static const char chunk_head[] =
    "{\"id\":\"\",\"object\":\"chat.completion.chunk\",\"model\":\"\",";

void native_chunk_emit(struct chunk_sink *sink, bool *role_sent,
                       struct str delta_members, const char *finish)
{
    struct buf b;
    buf_init(&b, NATIVE_MAX_CHUNK);
    buf_reserve(&b, delta_members.len + 192);
    buf_append_cstr(&b, chunk_head);
    buf_append_cstr(&b, "\"choices\":[{\"index\":0,\"delta\":{");
    if (!*role_sent) {
        buf_append_cstr(&b, "\"role\":\"assistant\"");
        if (delta_members.len) {
            buf_append_cstr(&b, ",");
        }
        *role_sent = true;
    }
    buf_append_str(&b, delta_members);
    buf_append_cstr(&b, "},\"logprobs\":null,\"finish_reason\":");
    if (finish) {
        buf_printf(&b, "\"%s\"", finish);
    } else {
        buf_append_cstr(&b, "null");
    }
    if (buf_append_cstr(&b, "}]}") == RL_OK) {
        sink->emit(sink, (struct str){b.p, b.len}, NULL);
    }
    buf_free(&b);
}

enum rl_err native_usage_append(struct buf *out, const struct usage *u)
{
    return buf_printf(out,
                      "{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                      "\"total_tokens\":%lld,\"prompt_tokens_details\":"
                      "{\"cached_tokens\":%lld},\"completion_tokens_details\":"
                      "{\"reasoning_tokens\":%lld}}",
                      (long long)u->prompt_tokens,
                      (long long)u->completion_tokens,
                      (long long)(u->prompt_tokens + u->completion_tokens),
                      (long long)u->cached_tokens,
                      (long long)u->reasoning_tokens);
}

void native_usage_emit(struct chunk_sink *sink)
{
    struct buf b;
    buf_init(&b, 1024);
    buf_append_cstr(&b, chunk_head);
    buf_append_cstr(&b, "\"choices\":[],\"usage\":");
    native_usage_append(&b, &sink->usage);
    if (buf_append_cstr(&b, "}") == RL_OK) {
        sink->emit(sink, (struct str){b.p, b.len}, NULL);
    }
    buf_free(&b);
}

enum rl_err native_completion_append(struct buf *out, const char *id,
                                     const char *text, json_t *tool_calls,
                                     const char *finish,
                                     const struct usage *u)
{
    json_t *msg = json_pack("{s:s,s:o,s:n}", "role", "assistant", "content",
                            text ? json_string(text) : json_null(),
                            "refusal");
    if (!msg) {
        return RL_E_UPSTREAM_PROTOCOL; /* text was not valid UTF-8 */
    }
    if (tool_calls && json_array_size(tool_calls)) {
        json_object_set(msg, "tool_calls", tool_calls);
    }
    json_t *obj = json_pack("{s:s,s:s,s:s,s:[{s:i,s:o,s:n,s:s}]}",
                            "id", id ? id : "", "object", "chat.completion",
                            "model", "", "choices", "index", 0, "message",
                            msg, "logprobs", "finish_reason", finish);
    char *text_out = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text_out) {
        return RL_E_UPSTREAM_PROTOCOL;
    }
    /* Usage is written as text, with the same spelling as in streams. */
    size_t len = strlen(text_out);
    enum rl_err err = buf_append(out, text_out, len - 1);
    free(text_out);
    if (err == RL_OK) {
        err = buf_append_cstr(out, ",\"usage\":");
    }
    if (err == RL_OK) {
        err = native_usage_append(out, u);
    }
    if (err == RL_OK) {
        err = buf_append_cstr(out, "}");
    }
    return err;
}

/* ---------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------- */

enum rl_err native_refuse(struct provider_error *err, const char *fmt, ...)
{
    char msg[sizeof(err->message)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    provider_error_set(err, 400, "invalid_request_error", NULL, false, "%s",
                       msg);
    return RL_E_INVALID_REQUEST;
}

json_t *native_parse_body(const struct chat_req *req,
                          struct provider_error *err)
{
    json_error_t jerr;
    json_t *in = json_loadb(req->raw.p, req->raw.len, 0, &jerr);
    if (!json_is_object(in)) {
        json_decref(in);
        native_refuse(err, "the request body is not a JSON object: %s",
                      jerr.text);
        return NULL;
    }
    return in;
}

enum rl_err native_check_common(json_t *in, const char *provider,
                                struct provider_error *err)
{
    json_t *n = json_object_get(in, "n");
    if (json_is_integer(n) && json_integer_value(n) != 1) {
        return native_refuse(err, "%s models answer with one choice: n "
                             "must be 1", provider);
    }
    if (json_is_true(json_object_get(in, "logprobs")) ||
        json_is_integer(json_object_get(in, "top_logprobs"))) {
        return native_refuse(err, "%s models do not return logprobs",
                             provider);
    }
    json_t *mod = json_object_get(in, "modalities");
    size_t i;
    json_t *m;
    json_array_foreach(mod, i, m) {
        if (json_is_string(m) && strcmp(json_string_value(m), "text")) {
            return native_refuse(err, "%s models through Relay answer in "
                                 "text only (modalities)", provider);
        }
    }
    if (json_object_get(in, "audio") &&
        !json_is_null(json_object_get(in, "audio"))) {
        return native_refuse(err, "%s models through Relay answer in text "
                             "only (audio)", provider);
    }
    json_array_foreach(json_object_get(in, "messages"), i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "function") == 0) {
            return native_refuse(err, "messages[%zu]: the function role is "
                                 "not supported for %s models; use tools "
                                 "and the tool role", i, provider);
        }
    }
    return RL_OK;
}

json_int_t native_max_tokens(json_t *in)
{
    json_t *v = json_object_get(in, "max_completion_tokens");
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        v = json_object_get(in, "max_tokens");
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        return 0;
    }
    return json_integer_value(v);
}

enum rl_err native_content_text(json_t *content, const char *sep,
                                struct buf *out, const char *what,
                                struct provider_error *err)
{
    if (json_is_null(content) || !content) {
        return RL_OK;
    }
    if (json_is_string(content)) {
        if (out->len && json_string_length(content)) {
            buf_append_cstr(out, sep);
        }
        return buf_append(out, json_string_value(content),
                          json_string_length(content));
    }
    if (!json_is_array(content)) {
        return native_refuse(err, "%s: content must be a string or an "
                             "array of parts", what);
    }
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *text = json_object_get(part, "text");
        if (!type || strcmp(type, "text") != 0 || !json_is_string(text)) {
            return native_refuse(err, "%s: only text parts are accepted "
                                 "here (part %zu is %s)", what, i,
                                 type ? type : "untyped");
        }
        if (out->len && json_string_length(text)) {
            buf_append_cstr(out, sep);
        }
        buf_append(out, json_string_value(text), json_string_length(text));
    }
    return RL_OK;
}

bool native_data_url(const char *url, struct str *mime, struct str *data)
{
    if (strncmp(url, "data:", 5) != 0) {
        return false;
    }
    const char *m = url + 5;
    const char *comma = strchr(m, ',');
    if (!comma) {
        return false;
    }
    static const char b64[] = ";base64";
    size_t head = (size_t)(comma - m);
    if (head < sizeof(b64) - 1 ||
        memcmp(comma - (sizeof(b64) - 1), b64, sizeof(b64) - 1) != 0) {
        return false;
    }
    *mime = (struct str){m, head - (sizeof(b64) - 1)};
    *data = str_from(comma + 1);
    return mime->len > 0 && data->len > 0;
}

const char *native_tool_name(json_t *messages, size_t before,
                             const char *id)
{
    while (id && before-- > 0) {
        json_t *calls = json_object_get(json_array_get(messages, before),
                                        "tool_calls");
        size_t i;
        json_t *call;
        json_array_foreach(calls, i, call) {
            const char *cid = json_string_value(json_object_get(call, "id"));
            if (cid && strcmp(cid, id) == 0) {
                return json_string_value(json_object_get(
                    json_object_get(call, "function"), "name"));
            }
        }
    }
    return NULL;
}

json_t *native_tool_args(json_t *tool_call)
{
    json_t *args = json_object_get(json_object_get(tool_call, "function"),
                                   "arguments");
    if (!args || json_is_null(args) ||
        (json_is_string(args) && json_string_length(args) == 0)) {
        return json_object();
    }
    if (json_is_object(args)) {
        return json_incref(args); /* some clients send an object */
    }
    if (!json_is_string(args)) {
        return NULL;
    }
    json_error_t jerr;
    json_t *obj = json_loadb(json_string_value(args),
                             json_string_length(args), 0, &jerr);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

char *native_args_text(json_t *args)
{
    if (!args) {
        /* No json_object() here: json_dumps does not take ownership, so a
         * fresh {} would leak (found by fuzz_response_*). */
        return rl_strndup("{}", 2);
    }
    return json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
}

enum rl_err native_body_dump(json_t *body, struct upstream_req *out,
                             struct provider_error *err)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (!text) {
        return native_refuse(err, "the request could not be translated");
    }
    enum rl_err result = buf_append_cstr(&out->body, text);
    free(text);
    if (result != RL_OK) {
        provider_error_set(err, 413, "invalid_request_error",
                           "request_too_large", false,
                           "the request is too large for the provider");
        return RL_E_BODY_TOO_LARGE;
    }
    return RL_OK;
}

/* ---------------------------------------------------------------------
 * Stream events
 * ------------------------------------------------------------------- */

int64_t native_int(struct str value)
{
    if (value.len == 0 || value.len > 18) {
        return -1;
    }
    int64_t v = 0;
    for (size_t i = 0; i < value.len; i++) {
        char c = value.p[i];
        if (c < '0' || c > '9') {
            return -1;
        }
        v = v * 10 + (c - '0');
    }
    return v;
}

bool native_str_is(struct str value, const char *lit)
{
    size_t n = strlen(lit);
    return value.len == n + 2 && value.p[0] == '"' &&
           memcmp(value.p + 1, lit, n) == 0 && value.p[n + 1] == '"';
}

enum rl_err native_bad_event(struct chunk_sink *sink, const char *what)
{
    provider_error_set(&sink->error, 502, "api_error",
                       "upstream_protocol_error", true,
                       "the provider sent a malformed stream event (%s)",
                       what);
    return RL_E_UPSTREAM_PROTOCOL;
}

/* ---------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------- */

void native_error_set(struct provider_error *out, enum native_fail kind,
                      long status, const char *message,
                      uint32_t retry_after_s)
{
    switch (kind) {
    case NATIVE_FAIL_RATE:
        provider_error_set(out, 429, "rate_limit_error",
                           "rate_limit_exceeded", true,
                           "the provider is rate limiting requests");
        break;
    case NATIVE_FAIL_OVERLOADED:
        provider_error_set(out, 503, "api_error", "provider_overloaded",
                           true, "the provider is overloaded");
        break;
    case NATIVE_FAIL_SERVER:
        provider_error_set(out, (int)status, "api_error", "upstream_error",
                           true, "the provider failed with status %ld",
                           status);
        break;
    case NATIVE_FAIL_CONTEXT:
        provider_error_set(out, 400, "invalid_request_error",
                           "context_length_exceeded", false,
                           "the prompt is longer than the model's context");
        break;
    case NATIVE_FAIL_INVALID:
        provider_error_set(out, 400, "invalid_request_error", NULL, false,
                           "the provider refused the request");
        break;
    case NATIVE_FAIL_SAFETY:
        provider_error_set(out, 400, "invalid_request_error",
                           "content_filter", false,
                           "the provider's safety filter blocked the "
                           "request");
        break;
    case NATIVE_FAIL_AUTH:
        provider_error_set(out, 502, "api_error", "upstream_auth_failed",
                           true, "the provider refused Relay's credentials; "
                           "check the provider's api_key in relay.yaml");
        break;
    case NATIVE_FAIL_NOT_FOUND:
        provider_error_set(out, 502, "api_error", "upstream_model_not_found",
                           true, "the provider does not know this model's "
                           "upstream id; check models[].upstream");
        break;
    case NATIVE_FAIL_TOO_LARGE:
        provider_error_set(out, 413, "invalid_request_error",
                           "request_too_large", false,
                           "the request is too large for the provider");
        break;
    case NATIVE_FAIL_OTHER:
    default:
        provider_error_set(out, 502, "api_error", "upstream_error", true,
                           "the provider answered with status %ld", status);
        break;
    }
    out->retry_after_s = retry_after_s;
    bool ours = kind == NATIVE_FAIL_AUTH || kind == NATIVE_FAIL_NOT_FOUND;
    if (message && message[0] && !ours) {
        snprintf(out->message, sizeof(out->message), "%s", message);
    }
}

bool native_contains(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; s && *s; s++) {
        if (strncasecmp(s, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

int64_t native_count(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0
               ? (int64_t)json_integer_value(v)
               : 0;
}

void native_call_id(char out[24], int index, struct str name,
                    struct str args)
{
    uint32_t h = 2166136261u; /* FNV-1a over the name, then the arguments */
    const struct str parts[] = {name, args};
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; i < parts[k].len; i++) {
            h = (h ^ (unsigned char)parts[k].p[i]) * 16777619u;
        }
    }
    snprintf(out, 24, "call_%d_%08x", index, h);
}

json_t *native_turn(json_t *turns, const char *role, const char *list)
{
    size_t n = json_array_size(turns);
    json_t *last = n ? json_array_get(turns, n - 1) : NULL;
    const char *last_role = json_string_value(json_object_get(last, "role"));
    if (last_role && strcmp(last_role, role) == 0) {
        return json_object_get(last, list);
    }
    json_t *t = json_pack("{s:s,s:[]}", "role", role, list);
    json_array_append_new(turns, t);
    return json_object_get(t, list);
}

void native_copy_stop(json_t *in, json_t *out, const char *key)
{
    json_t *stop = json_object_get(in, "stop");
    if (json_is_string(stop)) {
        json_object_set_new(out, key, json_pack("[O]", stop));
    } else if (json_is_array(stop) && json_array_size(stop)) {
        json_object_set(out, key, stop);
    }
}
