/*
 * ollama.c - Ollama's native chat API: POST {base_url}/api/chat, answers
 * as one JSON object or, streamed, as newline-delimited JSON objects.
 *
 * Docs: https://github.com/ollama/ollama/blob/main/docs/api.md. base_url is
 * the server's root (http://localhost:11434); one ending in /api is taken
 * as is. Ollama's OpenAI-compatible /v1 is served by openai.c (kind
 * openai); this adapter is for the native API, which also works with older
 * servers and gives JSON schema output through `format`. Ollama streams
 * unless told not to, so "stream" is always sent explicitly.
 *
 * Not supported, and why (docs/providers.md has the table):
 * - images by http(s) URL: Ollama takes base64 data only, and Relay does
 *   not fetch URLs for clients; refused with 400.
 * - tool_choice required or a named function: Ollama cannot force a call;
 *   refused with 400 rather than silently not forced. "none" sends no
 *   tools.
 * - n > 1, logprobs, audio: refused (native.c). user, logit_bias: dropped.
 * - Ollama's tool calls have no ids in older versions: Relay makes a
 *   deterministic one.
 * - `thinking` text of reasoning models is not passed on.
 * Read build_request() first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "providers/native.h"
#include "providers/provider.h"
#include "util/jscan.h"

#define OLLAMA_MAX_MEMBERS 32 /* members of one object of a line */

/* The per-stream state (zeroed by the core before the first event). */
struct stream_state {
    bool role_sent; /* the first chunk, with the role, went out */
    int ntools;     /* tool calls emitted so far */
};

/* ---------------------------------------------------------------------
 * build_request
 * ------------------------------------------------------------------- */

/* Fills an Ollama message's content and images from an OpenAI content. */
static enum rl_err content_of(json_t *content, json_t *msg, const char *what,
                              struct provider_error *err)
{
    if (!content || json_is_null(content) || json_is_string(content)) {
        json_object_set_new(msg, "content",
                            json_is_string(content) ? json_copy(content)
                                                    : json_string(""));
        return RL_OK;
    }
    if (!json_is_array(content)) {
        return native_refuse(err, "%s: content must be a string or an "
                             "array of parts", what);
    }
    struct buf text;
    buf_init(&text, 64u << 20);
    json_t *images = json_array();
    enum rl_err result = RL_OK;
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *t = json_object_get(part, "text");
        json_t *iu = json_object_get(part, "image_url");
        const char *url = json_string_value(json_object_get(iu, "url"));
        url = url ? url : json_string_value(iu);
        struct str mime;
        struct str data;
        if (type && !strcmp(type, "text") && json_is_string(t)) {
            if (text.len && json_string_length(t)) {
                buf_append_cstr(&text, "\n");
            }
            buf_append(&text, json_string_value(t), json_string_length(t));
        } else if (type && !strcmp(type, "image_url") && url &&
                   native_data_url(url, &mime, &data)) {
            json_array_append_new(images, json_stringn(data.p, data.len));
        } else if (type && !strcmp(type, "image_url")) {
            result = native_refuse(err, "%s: Ollama takes images as base64 "
                                   "data URLs only (data:image/png;base64,"
                                   "...), not by URL", what);
            break;
        } else {
            result = native_refuse(err, "%s: content part %zu of type %s is "
                                   "not supported by Ollama models", what,
                                   i, type ? type : "(none)");
            break;
        }
    }
    if (result == RL_OK) {
        json_object_set_new(msg, "content",
                            json_stringn(text.p ? text.p : "", text.len));
        if (json_array_size(images)) {
            json_object_set(msg, "images", images);
        }
    }
    json_decref(images);
    buf_free(&text);
    return result;
}

/* Copies an assistant message's tool calls, arguments as objects. */
static enum rl_err tool_calls_of(json_t *m, json_t *msg, const char *what,
                                 struct provider_error *err)
{
    json_t *calls = json_array();
    size_t i;
    json_t *call;
    json_array_foreach(json_object_get(m, "tool_calls"), i, call) {
        const char *name = json_string_value(json_object_get(
            json_object_get(call, "function"), "name"));
        json_t *args = native_tool_args(call);
        if (!name || !args) {
            json_decref(args);
            json_decref(calls);
            return native_refuse(err, "%s: tool_calls[%zu] needs a function "
                                 "name and arguments that are a JSON "
                                 "object", what, i);
        }
        json_array_append_new(calls, json_pack("{s:{s:s,s:o}}", "function",
                                               "name", name, "arguments",
                                               args));
    }
    if (json_array_size(calls)) {
        json_object_set(msg, "tool_calls", calls);
    }
    json_decref(calls);
    return RL_OK;
}

/* Translates messages; system and developer stay in place as system. */
static enum rl_err translate_messages(json_t *in, json_t *out,
                                      struct provider_error *err)
{
    json_t *messages = json_object_get(in, "messages");
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        char what[48];
        snprintf(what, sizeof(what), "messages[%zu]", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role) {
            return native_refuse(err, "%s has no role", what);
        }
        bool system = !strcmp(role, "system") || !strcmp(role, "developer");
        if (!system && strcmp(role, "user") && strcmp(role, "assistant") &&
            strcmp(role, "tool")) {
            return native_refuse(err, "%s: role %s is not supported by "
                                 "Ollama models", what, role);
        }
        json_t *msg = json_pack("{s:s}", "role", system ? "system" : role);
        json_array_append_new(out, msg);
        enum rl_err e = content_of(json_object_get(m, "content"), msg, what,
                                   err);
        if (e == RL_OK && !strcmp(role, "assistant")) {
            e = tool_calls_of(m, msg, what, err);
        }
        if (e != RL_OK) {
            return e;
        }
        if (!strcmp(role, "tool")) {
            const char *id = json_string_value(json_object_get(
                m, "tool_call_id"));
            const char *name = native_tool_name(messages, i, id);
            if (name) {
                json_object_set_new(msg, "tool_name", json_string(name));
            }
        }
    }
    return RL_OK;
}

/* Copies tools (Ollama takes OpenAI's shape) after checking tool_choice. */
static enum rl_err translate_tools(json_t *in, json_t *body,
                                   struct provider_error *err)
{
    json_t *tools = json_object_get(in, "tools");
    json_t *choice = json_object_get(in, "tool_choice");
    const char *mode = json_string_value(choice);
    if (!json_array_size(tools) || (mode && !strcmp(mode, "none"))) {
        return RL_OK;
    }
    if (choice && !json_is_null(choice) && !(mode && !strcmp(mode, "auto"))) {
        return native_refuse(err, "tool_choice: Ollama cannot force a tool "
                             "call; use auto or none");
    }
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        const char *type = json_string_value(json_object_get(t, "type"));
        if (!type || strcmp(type, "function") != 0 ||
            !json_is_string(json_object_get(json_object_get(t, "function"),
                                            "name"))) {
            return native_refuse(err, "tools[%zu]: only function tools with "
                                 "a name are supported", i);
        }
    }
    json_object_set(body, "tools", tools);
    return RL_OK;
}

/* Builds options and format: sampling, length, stops, JSON mode. */
static enum rl_err translate_options(json_t *in, json_t *body,
                                     struct provider_error *err)
{
    json_t *opts = json_object();
    static const char *const map[][2] = {
        {"temperature", "temperature"},
        {"top_p", "top_p"},
        {"seed", "seed"},
        {"presence_penalty", "presence_penalty"},
        {"frequency_penalty", "frequency_penalty"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        json_t *v = json_object_get(in, map[i][0]);
        if (json_is_number(v)) {
            json_object_set(opts, map[i][1], v);
        }
    }
    json_int_t max = native_max_tokens(in);
    if (max) {
        json_object_set_new(opts, "num_predict", json_integer(max));
    }
    native_copy_stop(in, opts, "stop");
    if (json_object_size(opts)) {
        json_object_set(body, "options", opts);
    }
    json_decref(opts);
    json_t *rf = json_object_get(in, "response_format");
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!rf || json_is_null(rf) || (type && !strcmp(type, "text"))) {
        return RL_OK;
    }
    json_t *schema = json_object_get(json_object_get(rf, "json_schema"),
                                     "schema");
    if (type && !strcmp(type, "json_object")) {
        json_object_set_new(body, "format", json_string("json"));
    } else if (type && !strcmp(type, "json_schema") && schema) {
        json_object_set(body, "format", schema);
    } else {
        return native_refuse(err, "response_format must be text, "
                             "json_object or json_schema with a schema");
    }
    return RL_OK;
}

static enum rl_err build_request(const struct chat_req *req,
                                 const struct model_cfg *model,
                                 struct upstream_req *out,
                                 struct provider_error *err)
{
    const struct provider_cfg *p = model->provider;
    json_t *in = native_parse_body(req, err);
    if (!in) {
        return RL_E_INVALID_REQUEST;
    }
    json_t *body = json_pack("{s:s,s:[],s:b}", "model", model->upstream,
                             "messages", "stream", req->stream);
    enum rl_err result = native_check_common(in, "Ollama", err);
    if (result == RL_OK) {
        result = translate_messages(in, json_object_get(body, "messages"),
                                    err);
    }
    if (result == RL_OK) {
        result = translate_tools(in, body, err);
    }
    if (result == RL_OK) {
        result = translate_options(in, body, err);
    }
    if (result == RL_OK) {
        result = native_body_dump(body, out, err);
    }
    if (result == RL_OK) {
        size_t n = strlen(p->base_url);
        bool api = n >= 4 && strcmp(p->base_url + n - 4, "/api") == 0;
        buf_printf(&out->url, "%s%s", p->base_url,
                   api ? "/chat" : "/api/chat");
        if (p->api_key && p->api_key[0]) {
            buf_printf(&out->headers, "Authorization: Bearer %s\n",
                       p->api_key);
        }
    }
    json_decref(body);
    json_decref(in);
    return result;
}

/* ---------------------------------------------------------------------
 * Answers: finish reasons, usage, tool call ids
 * ------------------------------------------------------------------- */

/* Returns OpenAI's finish_reason for a done_reason. */
static const char *finish_of(const char *reason, bool tool_calls)
{
    if (reason && !strcmp(reason, "length")) {
        return "length";
    }
    return tool_calls ? "tool_calls" : "stop"; /* stop, load, unload */
}

/* Ollama leaves prompt_eval_count out when the whole prompt came from its
 * cache; it reports no cached count, so cached_tokens stays 0. */
static void usage_set(struct usage *u, int64_t prompt, int64_t completion)
{
    u->present = true;
    u->prompt_tokens = prompt;
    u->completion_tokens = completion;
}



static enum rl_err parse_response(struct str body, struct buf *out,
                                  struct answer_members *members,
                                  struct usage *usage,
                                  struct provider_error *err)
{
    (void)members; /* the answer is built here: its reply scans it */
    json_error_t jerr;
    json_t *root = json_loadb(body.p, body.len, 0, &jerr);
    json_t *msg = json_object_get(root, "message");
    json_t *content = json_object_get(msg, "content");
    if (!json_is_object(msg) || (content && !json_is_string(content) &&
                                 !json_is_null(content))) {
        json_decref(root);
        provider_error_set(err, 502, "api_error", "upstream_protocol_error",
                           true, "the provider's answer is not a chat "
                           "response");
        return RL_E_UPSTREAM_PROTOCOL;
    }
    json_t *calls = json_array();
    size_t i;
    json_t *call;
    json_array_foreach(json_object_get(msg, "tool_calls"), i, call) {
        json_t *fn = json_object_get(call, "function");
        json_t *args = json_object_get(fn, "arguments");
        char *text = native_args_text(args);
        const char *name = json_string_value(json_object_get(fn, "name"));
        const char *given = json_string_value(json_object_get(call, "id"));
        char id[24];
        native_call_id(id, (int)i, str_from(name), str_from(text));
        json_array_append_new(
            calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", given ? given : id,
                             "type", "function", "function", "name",
                             name ? name : "", "arguments",
                             text ? text : "{}"));
        free(text);
    }
    usage_set(usage, native_count(root, "prompt_eval_count"),
              native_count(root, "eval_count"));
    const char *text = json_string_value(content);
    const char *finish = finish_of(json_string_value(json_object_get(
                                       root, "done_reason")),
                                   json_array_size(calls) > 0);
    bool null_text = (!text || !text[0]) && json_array_size(calls);
    enum rl_err result = native_completion_append(
        out, NULL, null_text ? NULL : (text ? text : ""), calls, finish,
        usage);
    if (result == RL_E_UPSTREAM_PROTOCOL) {
        provider_error_set(err, 502, "api_error", "upstream_protocol_error",
                           true, "the provider's answer is not valid");
    }
    json_decref(calls);
    json_decref(root);
    return result;
}

/* ---------------------------------------------------------------------
 * on_event
 * ------------------------------------------------------------------- */

/* Emits the tool calls of a streamed message (each arrives whole). */
static enum rl_err stream_calls(struct stream_state *st, struct str calls,
                                struct chunk_sink *sink)
{
    struct jscan_iter it;
    struct jscan_item call;
    int r;
    if (!jscan_iter_init(&it, calls) || calls.p[0] != '[') {
        return native_bad_event(sink, "tool_calls is not an array");
    }
    while ((r = jscan_iter_next(&it, &call)) == 1) {
        struct jscan_item c[OLLAMA_MAX_MEMBERS];
        struct jscan_item fn[OLLAMA_MAX_MEMBERS];
        size_t nc;
        size_t nf;
        const struct jscan_item *f = NULL;
        if (call.type == '{' && jscan(call.value, c, OLLAMA_MAX_MEMBERS, &nc)) {
            f = jscan_find(c, nc, "function");
        }
        if (!f || f->type != '{' ||
            !jscan(f->value, fn, OLLAMA_MAX_MEMBERS, &nf)) {
            return native_bad_event(sink, "a tool call without a function");
        }
        const struct jscan_item *name = jscan_find(fn, nf, "name");
        const struct jscan_item *args = jscan_find(fn, nf, "arguments");
        const struct jscan_item *id = jscan_find(c, nc, "id");
        if (!name || name->type != '"') {
            return native_bad_event(sink, "a tool call without a name");
        }
        struct str a = args ? args->value : STR_LIT("{}");
        int index = st->ntools++;
        struct buf d;
        buf_init(&d, NATIVE_MAX_CHUNK);
        buf_printf(&d, "\"tool_calls\":[{\"index\":%d,\"id\":", index);
        if (id && id->type == '"') {
            buf_append_str(&d, id->value);
        } else {
            char made[24];
            char nm[256];
            size_t nlen = 0;
            if (!jscan_string(name->value, nm, sizeof(nm), &nlen)) {
                nlen = 0;
            }
            native_call_id(made, index, (struct str){nm, nlen}, a);
            buf_printf(&d, "\"%s\"", made);
        }
        buf_append_cstr(&d, ",\"type\":\"function\",\"function\":{\"name\":");
        buf_append_str(&d, name->value);
        buf_append_cstr(&d, ",\"arguments\":");
        if (a.p[0] == '"') {
            buf_append_str(&d, a); /* already a string of JSON */
        } else {
            buf_append_cstr(&d, "\"");
            buf_append_json_escaped(&d, a.p, a.len);
            buf_append_cstr(&d, "\"");
        }
        buf_append_cstr(&d, "}}]");
        native_chunk_emit(sink, &st->role_sent, (struct str){d.p, d.len},
                          NULL);
        buf_free(&d);
    }
    return r < 0 ? native_bad_event(sink, "tool_calls") : RL_OK;
}

/* Handles the message of one line: text, then tool calls. */
static enum rl_err stream_message(struct stream_state *st,
                                  const struct jscan_item *msg,
                                  struct chunk_sink *sink)
{
    struct jscan_item items[OLLAMA_MAX_MEMBERS];
    size_t n;
    if (msg->type != '{' || !jscan(msg->value, items, OLLAMA_MAX_MEMBERS, &n)) {
        return native_bad_event(sink, "message is not an object");
    }
    const struct jscan_item *content = jscan_find(items, n, "content");
    if (content && content->type == '"' &&
        (content->value.len > 2 || !st->role_sent)) {
        struct buf d;
        buf_init(&d, NATIVE_MAX_CHUNK);
        buf_append_cstr(&d, "\"content\":");
        buf_append_str(&d, content->value);
        native_chunk_emit(sink, &st->role_sent, (struct str){d.p, d.len},
                          NULL);
        buf_free(&d);
    } else if (content && content->type != '"' && !jscan_is_null(content)) {
        return native_bad_event(sink, "content is not a string");
    }
    const struct jscan_item *calls = jscan_find(items, n, "tool_calls");
    if (calls && !jscan_is_null(calls)) {
        return stream_calls(st, calls->value, sink);
    }
    return RL_OK;
}

static enum rl_err on_event(void *state, struct str event, struct str data,
                            struct chunk_sink *sink)
{
    struct stream_state *st = state;
    struct jscan_item items[OLLAMA_MAX_MEMBERS];
    size_t n;
    (void)event;
    if (!jscan(data, items, OLLAMA_MAX_MEMBERS, &n) || data.p[0] != '{') {
        return native_bad_event(sink, "not a JSON object");
    }
    const struct jscan_item *error = jscan_find(items, n, "error");
    if (error && !jscan_is_null(error)) {
        char msg[400];
        size_t mlen;
        if (!jscan_string(error->value, msg, sizeof(msg), &mlen)) {
            snprintf(msg, sizeof(msg), "the provider failed during the "
                                       "stream");
        }
        native_error_set(&sink->error, NATIVE_FAIL_OTHER, 502, msg, 0);
        return RL_E_UPSTREAM;
    }
    const struct jscan_item *msg = jscan_find(items, n, "message");
    const struct jscan_item *done = jscan_find(items, n, "done");
    if (!done || (done->type != 't' && done->type != 'f')) {
        return native_bad_event(sink, "a line without done");
    }
    if (msg) {
        enum rl_err e = stream_message(st, msg, sink);
        if (e != RL_OK) {
            return e;
        }
    }
    if (done->type != 't') {
        return RL_OK;
    }
    const struct jscan_item *pe = jscan_find(items, n, "prompt_eval_count");
    const struct jscan_item *ev = jscan_find(items, n, "eval_count");
    int64_t p = pe ? native_int(pe->value) : 0;
    int64_t c = ev ? native_int(ev->value) : 0;
    usage_set(&sink->usage, p < 0 ? 0 : p, c < 0 ? 0 : c);
    const struct jscan_item *dr = jscan_find(items, n, "done_reason");
    char reason[64];
    size_t rlen;
    if (!dr || !jscan_string(dr->value, reason, sizeof(reason), &rlen)) {
        reason[0] = '\0';
    }
    native_chunk_emit(sink, &st->role_sent, STR_LIT(""),
                      finish_of(reason, st->ntools > 0));
    native_usage_emit(sink);
    sink->finished = true;
    return RL_OK;
}

/* ---------------------------------------------------------------------
 * map_error
 * ------------------------------------------------------------------- */

static void map_error(long status, struct str body, uint32_t retry_after_s,
                      struct provider_error *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(body.p, body.len, 0, &jerr);
    json_t *error = json_object_get(root, "error");
    const char *msg = json_string_value(error);
    if (!msg) {
        msg = json_string_value(json_object_get(error, "message"));
    }
    enum native_fail kind = NATIVE_FAIL_OTHER;
    if (status == 429) {
        kind = NATIVE_FAIL_RATE;
    } else if (status == 503) {
        kind = NATIVE_FAIL_OVERLOADED; /* "server busy": its queue is full */
    } else if (status == 401 || status == 403) {
        kind = NATIVE_FAIL_AUTH;
    } else if (status == 404) {
        kind = NATIVE_FAIL_NOT_FOUND;
    } else if (status == 413) {
        kind = NATIVE_FAIL_TOO_LARGE;
    } else if (status == 400 || status == 422) {
        bool ctx = native_contains(msg, "context length") ||
                   native_contains(msg, "context window") ||
                   native_contains(msg, "exceeds the context");
        kind = ctx ? NATIVE_FAIL_CONTEXT : NATIVE_FAIL_INVALID;
    } else if (status >= 500 && status <= 599) {
        kind = NATIVE_FAIL_SERVER;
    }
    native_error_set(out, kind, status, msg, retry_after_s);
    json_decref(root);
}

const struct provider_ops ollama_ops = {
    .kind = "ollama",
    .framing = FRAMING_NDJSON,
    .stream_state_size = sizeof(struct stream_state),
    .build_request = build_request,
    .parse_response = parse_response,
    .on_event = on_event,
    .map_error = map_error,
};
