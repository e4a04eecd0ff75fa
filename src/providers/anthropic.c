/*
 * anthropic.c - Anthropic's Messages API (POST {base_url}/messages,
 * anthropic-version 2023-06-01, key in x-api-key).
 *
 * Docs: https://docs.anthropic.com/en/api/messages and
 * https://docs.anthropic.com/en/api/messages-streaming. The client's OpenAI
 * request is parsed (jansson: translation is not the hot path) and rebuilt
 * as a Messages request; answers, whole or streamed, are rebuilt as OpenAI
 * objects. The stream path reads events as spans (jscan) and copies text
 * deltas without decoding them.
 *
 * Not supported, and why (docs/providers.md has the table):
 * - JSON mode: Anthropic has none. response_format is emulated with an
 *   instruction added to the system prompt (the schema, for json_schema);
 *   the answer is not validated, so it is best effort.
 * - seed, frequency/presence penalties, logit_bias: no equivalent; dropped.
 * - n > 1, logprobs, audio: refused (native.c), the answer could not honour
 *   them.
 * - system and developer messages become the one `system` prompt, in order,
 *   wherever they stood in the conversation.
 * - thinking blocks (the client cannot ask for them through OpenAI's
 *   fields) and unknown event or block types are skipped, as Anthropic's
 *   versioning policy asks of clients.
 * Read build_request() first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "providers/native.h"
#include "providers/provider.h"
#include "util/jscan.h"

#define ANTHROPIC_VERSION "2023-06-01"
#define ANTHROPIC_DEFAULT_MAX_TOKENS 4096 /* Anthropic requires max_tokens */
#define ANTHROPIC_MAX_MEMBERS 32          /* members of one event object */
#define ANTHROPIC_MAX_BLOCKS 256          /* content blocks of one answer */

/* The per-stream state (zeroed by the core before the first event). */
struct stream_state {
    bool role_sent;        /* the first chunk, with the role, went out */
    bool stopped;          /* message_delta gave the stop reason */
    int ntools;            /* tool calls started so far */
    /* Content block index -> tool call index + 1 (0: not a tool call). */
    short tool_of_block[ANTHROPIC_MAX_BLOCKS];
    int64_t input_tokens;  /* not counting the cache */
    int64_t cache_read;    /* input tokens read from the prompt cache */
    int64_t cache_write;   /* input tokens written to the prompt cache */
    int64_t output_tokens;
};

/* ---------------------------------------------------------------------
 * build_request
 * ------------------------------------------------------------------- */

/* Anthropic wants consecutive turns of one role merged (all tool results
 * of a turn in one user message). */
static json_t *blocks_for(json_t *messages, const char *role)
{
    return native_turn(messages, role, "content");
}

/* Appends the image block for an OpenAI image_url part. */
static enum rl_err image_block(json_t *part, json_t *blocks, const char *what,
                               struct provider_error *err)
{
    json_t *iu = json_object_get(part, "image_url");
    const char *url = json_string_value(json_object_get(iu, "url"));
    if (!url && json_is_string(iu)) {
        url = json_string_value(iu);
    }
    if (!url) {
        return native_refuse(err, "%s: image_url has no url", what);
    }
    struct str mime;
    struct str data;
    json_t *source;
    if (native_data_url(url, &mime, &data)) {
        source = json_pack("{s:s,s:s%,s:s%}", "type", "base64",
                           "media_type", mime.p, mime.len, "data", data.p,
                           data.len);
    } else if (strncmp(url, "https://", 8) == 0 ||
               strncmp(url, "http://", 7) == 0) {
        source = json_pack("{s:s,s:s}", "type", "url", "url", url);
    } else {
        return native_refuse(err, "%s: an image must be an http(s) URL or "
                             "a base64 data URL", what);
    }
    json_array_append_new(blocks, json_pack("{s:s,s:o}", "type", "image",
                                            "source", source));
    return RL_OK;
}

/* Appends the blocks of an OpenAI content (string or parts) to blocks.
 * Empty texts are skipped: Anthropic refuses empty text blocks. */
static enum rl_err content_blocks(json_t *content, json_t *blocks,
                                  const char *what,
                                  struct provider_error *err)
{
    if (!content || json_is_null(content)) {
        return RL_OK;
    }
    if (json_is_string(content)) {
        if (json_string_length(content)) {
            json_array_append_new(blocks, json_pack("{s:s,s:O}", "type",
                                                    "text", "text",
                                                    content));
        }
        return RL_OK;
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
        if (type && strcmp(type, "text") == 0 && json_is_string(text)) {
            if (json_string_length(text)) {
                json_array_append_new(blocks, json_pack("{s:s,s:O}", "type",
                                                        "text", "text",
                                                        text));
            }
        } else if (type && strcmp(type, "image_url") == 0) {
            enum rl_err e = image_block(part, blocks, what, err);
            if (e != RL_OK) {
                return e;
            }
        } else {
            return native_refuse(err, "%s: content part %zu of type %s is "
                                 "not supported by Anthropic models", what,
                                 i, type ? type : "(none)");
        }
    }
    return RL_OK;
}

/* Appends an assistant message: its text, then a tool_use block per call. */
static enum rl_err assistant_message(json_t *m, json_t *messages,
                                     const char *what,
                                     struct provider_error *err)
{
    json_t *blocks = blocks_for(messages, "assistant");
    enum rl_err e = content_blocks(json_object_get(m, "content"), blocks,
                                   what, err);
    size_t i;
    json_t *call;
    json_array_foreach(json_object_get(m, "tool_calls"), i, call) {
        if (e != RL_OK) {
            break;
        }
        const char *id = json_string_value(json_object_get(call, "id"));
        const char *name = json_string_value(json_object_get(
            json_object_get(call, "function"), "name"));
        json_t *args = native_tool_args(call);
        if (!id || !name || !args) {
            json_decref(args);
            return native_refuse(err, "%s: tool_calls[%zu] needs an id, a "
                                 "function name and arguments that are a "
                                 "JSON object", what, i);
        }
        json_array_append_new(blocks, json_pack("{s:s,s:s,s:s,s:o}", "type",
                                                "tool_use", "id", id, "name",
                                                name, "input", args));
    }
    return e;
}

/* Appends a tool result to the user turn that follows the tool calls. */
static enum rl_err tool_message(json_t *m, json_t *messages,
                                const char *what, struct provider_error *err)
{
    const char *id = json_string_value(json_object_get(m, "tool_call_id"));
    if (!id) {
        return native_refuse(err, "%s: a tool message needs tool_call_id",
                             what);
    }
    json_t *result = json_array();
    enum rl_err e = content_blocks(json_object_get(m, "content"), result,
                                   what, err);
    if (e != RL_OK) {
        json_decref(result);
        return e;
    }
    json_array_append_new(blocks_for(messages, "user"),
                          json_pack("{s:s,s:s,s:o}", "type", "tool_result",
                                    "tool_use_id", id, "content", result));
    return RL_OK;
}

/* Translates messages; system and developer text goes to *system. */
static enum rl_err translate_messages(json_t *in, json_t *messages,
                                      struct buf *system,
                                      struct provider_error *err)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(in, "messages"), i, m) {
        char what[48];
        snprintf(what, sizeof(what), "messages[%zu]", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        enum rl_err e = RL_OK;
        if (!role) {
            e = native_refuse(err, "%s has no role", what);
        } else if (!strcmp(role, "system") || !strcmp(role, "developer")) {
            e = native_content_text(content, "\n\n", system, what, err);
        } else if (!strcmp(role, "user")) {
            e = content_blocks(content, blocks_for(messages, "user"), what,
                               err);
        } else if (!strcmp(role, "assistant")) {
            e = assistant_message(m, messages, what, err);
        } else if (!strcmp(role, "tool")) {
            e = tool_message(m, messages, what, err);
        } else {
            e = native_refuse(err, "%s: role %s is not supported by "
                              "Anthropic models", what, role);
        }
        if (e != RL_OK) {
            return e;
        }
    }
    return RL_OK;
}

/* Sets tools and tool_choice. */
static enum rl_err translate_tools(json_t *in, json_t *body,
                                   struct provider_error *err)
{
    json_t *tools = json_object_get(in, "tools");
    json_t *choice = json_object_get(in, "tool_choice");
    json_t *out = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *type = json_string_value(json_object_get(t, "type"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!type || strcmp(type, "function") != 0 || !name) {
            json_decref(out);
            return native_refuse(err, "tools[%zu]: only function tools with "
                                 "a name are supported", i);
        }
        json_t *params = json_object_get(fn, "parameters");
        json_t *schema = json_is_object(params)
                             ? json_incref(params)
                             : json_pack("{s:s}", "type", "object");
        json_t *tool = json_pack("{s:s,s:o}", "name", name, "input_schema",
                                 schema);
        json_t *desc = json_object_get(fn, "description");
        if (json_is_string(desc)) {
            json_object_set(tool, "description", desc);
        }
        json_array_append_new(out, tool);
    }
    if (json_array_size(out) == 0) {
        json_decref(out);
        return RL_OK; /* tool_choice without tools means nothing */
    }
    json_object_set_new(body, "tools", out);
    json_t *tc = NULL;
    const char *mode = json_string_value(choice);
    if (!choice || json_is_null(choice) || (mode && !strcmp(mode, "auto"))) {
        tc = json_pack("{s:s}", "type", "auto");
    } else if (mode && !strcmp(mode, "none")) {
        tc = json_pack("{s:s}", "type", "none");
    } else if (mode && !strcmp(mode, "required")) {
        tc = json_pack("{s:s}", "type", "any");
    } else {
        const char *name = json_string_value(json_object_get(
            json_object_get(choice, "function"), "name"));
        if (!name) {
            return native_refuse(err, "tool_choice must be auto, none, "
                                 "required or a named function");
        }
        tc = json_pack("{s:s,s:s}", "type", "tool", "name", name);
    }
    if (json_is_false(json_object_get(in, "parallel_tool_calls"))) {
        json_object_set_new(tc, "disable_parallel_tool_use", json_true());
    }
    json_object_set_new(body, "tool_choice", tc);
    return RL_OK;
}

/* Anthropic has no JSON mode: the instruction added to the system prompt
 * for response_format (documented as best effort). */
static enum rl_err json_mode(json_t *in, struct buf *system,
                             struct provider_error *err)
{
    json_t *rf = json_object_get(in, "response_format");
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!rf || json_is_null(rf) || (type && !strcmp(type, "text"))) {
        return RL_OK;
    }
    if (system->len) {
        buf_append_cstr(system, "\n\n");
    }
    if (type && !strcmp(type, "json_object")) {
        buf_append_cstr(system, "Answer with one valid JSON object and "
                                "nothing else: no prose, no code fences.");
        return RL_OK;
    }
    json_t *schema = json_object_get(json_object_get(rf, "json_schema"),
                                     "schema");
    if (!type || strcmp(type, "json_schema") != 0 || !schema) {
        return native_refuse(err, "response_format must be text, "
                             "json_object or json_schema with a schema");
    }
    char *s = json_dumps(schema, JSON_COMPACT | JSON_SORT_KEYS);
    buf_printf(system, "Answer with one valid JSON object and nothing else "
                       "(no prose, no code fences) that matches this JSON "
                       "Schema: %s", s ? s : "{}");
    free(s);
    return RL_OK;
}

/* Copies the sampling parameters Anthropic shares with OpenAI. */
static void translate_params(json_t *in, json_t *body)
{
    json_int_t max = native_max_tokens(in);
    json_object_set_new(body, "max_tokens",
                        json_integer(max ? max
                                         : ANTHROPIC_DEFAULT_MAX_TOKENS));
    static const char *const same[] = {"temperature", "top_p", NULL};
    for (const char *const *k = same; *k; k++) {
        json_t *v = json_object_get(in, *k);
        if (json_is_number(v)) {
            json_object_set(body, *k, v);
        }
    }
    native_copy_stop(in, body, "stop_sequences");
    json_t *user = json_object_get(in, "user");
    if (json_is_string(user)) {
        json_object_set_new(body, "metadata",
                            json_pack("{s:O}", "user_id", user));
    }
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
    json_t *body = json_pack("{s:s,s:[]}", "model", model->upstream,
                             "messages");
    struct buf system;
    buf_init(&system, 4u << 20);
    enum rl_err result = native_check_common(in, "Anthropic", err);
    if (result == RL_OK) {
        result = translate_messages(in, json_object_get(body, "messages"),
                                    &system, err);
    }
    if (result == RL_OK) {
        result = translate_tools(in, body, err);
    }
    if (result == RL_OK) {
        result = json_mode(in, &system, err);
    }
    if (result != RL_OK) {
        goto out;
    }
    translate_params(in, body);
    if (system.len) {
        json_t *s = json_stringn(system.p, system.len);
        json_object_set_new(body, "system", s ? s : json_string(""));
    }
    if (req->stream) {
        json_object_set_new(body, "stream", json_true());
    }
    result = native_body_dump(body, out, err);
    if (result != RL_OK) {
        goto out;
    }
    buf_printf(&out->url, "%s/messages", p->base_url);
    buf_append_cstr(&out->headers,
                    "anthropic-version: " ANTHROPIC_VERSION "\n");
    if (p->api_key && p->api_key[0]) {
        buf_printf(&out->headers, "x-api-key: %s\n", p->api_key);
    }
out:
    buf_free(&system);
    json_decref(body);
    json_decref(in);
    return result;
}

/* ---------------------------------------------------------------------
 * Answers: stop reasons and usage
 * ------------------------------------------------------------------- */

/* Returns OpenAI's finish_reason for an Anthropic stop_reason. */
static const char *finish_of(const char *stop_reason)
{
    if (!stop_reason) {
        return "stop";
    }
    if (!strcmp(stop_reason, "max_tokens") ||
        !strcmp(stop_reason, "model_context_window_exceeded")) {
        return "length";
    }
    if (!strcmp(stop_reason, "tool_use")) {
        return "tool_calls";
    }
    if (!strcmp(stop_reason, "refusal")) {
        return "content_filter";
    }
    return "stop"; /* end_turn, stop_sequence, pause_turn */
}

/* Anthropic counts cached input apart; OpenAI's prompt_tokens includes
 * it. */
static void usage_set(struct usage *u, int64_t input, int64_t cache_read,
                      int64_t cache_write, int64_t output)
{
    u->present = true;
    u->prompt_tokens = input + cache_read + cache_write;
    u->cached_tokens = cache_read;
    u->cache_write_tokens = cache_write;
    u->completion_tokens = output;
}


/* ---------------------------------------------------------------------
 * parse_response
 * ------------------------------------------------------------------- */

static enum rl_err parse_response(struct str body, struct buf *out,
                                  struct answer_members *members,
                                  struct usage *usage,
                                  struct provider_error *err)
{
    (void)members; /* the answer is built here: its reply scans it */
    json_error_t jerr;
    json_t *msg = json_loadb(body.p, body.len, 0, &jerr);
    json_t *content = json_object_get(msg, "content");
    if (!json_is_object(msg) || !json_is_array(content)) {
        json_decref(msg);
        provider_error_set(err, 502, "api_error", "upstream_protocol_error",
                           true, "the provider's answer is not a message");
        return RL_E_UPSTREAM_PROTOCOL;
    }
    struct buf text;
    buf_init(&text, body.len + 1);
    json_t *calls = json_array();
    bool has_text = false;
    size_t i;
    json_t *block;
    json_array_foreach(content, i, block) {
        const char *type = json_string_value(json_object_get(block, "type"));
        json_t *t = json_object_get(block, "text");
        if (type && !strcmp(type, "text") && json_is_string(t)) {
            buf_append(&text, json_string_value(t), json_string_length(t));
            has_text = true;
        } else if (type && !strcmp(type, "tool_use")) {
            json_t *input = json_object_get(block, "input");
            char *args = native_args_text(input);
            json_array_append_new(
                calls, json_pack("{s:s?,s:s,s:{s:s?,s:s}}", "id",
                                 json_string_value(json_object_get(block,
                                                                   "id")),
                                 "type", "function", "function", "name",
                                 json_string_value(json_object_get(block,
                                                                   "name")),
                                 "arguments", args ? args : "{}"));
            free(args);
        }
    }
    json_t *u = json_object_get(msg, "usage");
    usage_set(usage, native_count(u, "input_tokens"),
              native_count(u, "cache_read_input_tokens"),
              native_count(u, "cache_creation_input_tokens"),
              native_count(u, "output_tokens"));
    const char *finish = finish_of(json_string_value(
        json_object_get(msg, "stop_reason")));
    enum rl_err result = native_completion_append(
        out, json_string_value(json_object_get(msg, "id")),
        has_text || json_array_size(calls) == 0 ? (text.p ? text.p : "")
                                                : NULL,
        calls, finish, usage);
    if (result == RL_E_UPSTREAM_PROTOCOL) {
        provider_error_set(err, 502, "api_error", "upstream_protocol_error",
                           true, "the provider's answer is not a message");
    }
    buf_free(&text);
    json_decref(calls);
    json_decref(msg);
    return result;
}

/* ---------------------------------------------------------------------
 * on_event
 * ------------------------------------------------------------------- */

/* Reads the usage members an event carries (message_start's are the
 * input; message_delta's are cumulative and may repeat them). */
static void read_usage(struct stream_state *st, struct str usage_text,
                       struct chunk_sink *sink)
{
    struct jscan_item items[ANTHROPIC_MAX_MEMBERS];
    size_t n;
    if (!jscan(usage_text, items, ANTHROPIC_MAX_MEMBERS, &n) ||
        usage_text.p[0] != '{') {
        return;
    }
    static const char *const keys[] = {"input_tokens",
                                       "cache_read_input_tokens",
                                       "cache_creation_input_tokens",
                                       "output_tokens"};
    int64_t *fields[] = {&st->input_tokens, &st->cache_read,
                         &st->cache_write, &st->output_tokens};
    for (size_t k = 0; k < 4; k++) {
        const struct jscan_item *it = jscan_find(items, n, keys[k]);
        int64_t v = it ? native_int(it->value) : -1;
        if (v >= 0) {
            *fields[k] = v;
        }
    }
    usage_set(&sink->usage, st->input_tokens, st->cache_read,
              st->cache_write, st->output_tokens);
}

/* Scans a member that must be an object into items. */
static bool sub_object(const struct jscan_item *items, size_t n,
                       const char *key, struct jscan_item *sub, size_t *m)
{
    const struct jscan_item *it = jscan_find(items, n, key);
    return it && it->type == '{' &&
           jscan(it->value, sub, ANTHROPIC_MAX_MEMBERS, m);
}

/* The content block index of an event, or -1. */
static int block_index(const struct jscan_item *items, size_t n)
{
    const struct jscan_item *it = jscan_find(items, n, "index");
    int64_t v = it ? native_int(it->value) : -1;
    return v >= 0 && v < ANTHROPIC_MAX_BLOCKS ? (int)v : -1;
}

static enum rl_err block_start(struct stream_state *st,
                               const struct jscan_item *items, size_t n,
                               struct chunk_sink *sink)
{
    struct jscan_item cb[ANTHROPIC_MAX_MEMBERS];
    size_t m;
    int index = block_index(items, n);
    if (index < 0 || !sub_object(items, n, "content_block", cb, &m)) {
        return native_bad_event(sink, "content_block_start");
    }
    const struct jscan_item *type = jscan_find(cb, m, "type");
    struct buf d;
    buf_init(&d, NATIVE_MAX_CHUNK);
    if (type && native_str_is(type->value, "tool_use")) {
        const struct jscan_item *id = jscan_find(cb, m, "id");
        const struct jscan_item *name = jscan_find(cb, m, "name");
        if (!id || id->type != '"' || !name || name->type != '"') {
            buf_free(&d);
            return native_bad_event(sink, "tool_use without id or name");
        }
        st->tool_of_block[index] = (short)(++st->ntools);
        buf_printf(&d, "\"tool_calls\":[{\"index\":%d,\"id\":", st->ntools - 1);
        buf_append_str(&d, id->value);
        buf_append_cstr(&d, ",\"type\":\"function\",\"function\":{\"name\":");
        buf_append_str(&d, name->value);
        buf_append_cstr(&d, ",\"arguments\":\"\"}}]");
        native_chunk_emit(sink, &st->role_sent, (struct str){d.p, d.len},
                          NULL);
    } else if (type && native_str_is(type->value, "text")) {
        const struct jscan_item *text = jscan_find(cb, m, "text");
        if (text && text->type == '"' && text->value.len > 2) {
            buf_append_cstr(&d, "\"content\":");
            buf_append_str(&d, text->value);
            native_chunk_emit(sink, &st->role_sent,
                              (struct str){d.p, d.len}, NULL);
        }
    }
    buf_free(&d);
    return RL_OK; /* thinking and unknown blocks are skipped */
}

static enum rl_err block_delta(struct stream_state *st,
                               const struct jscan_item *items, size_t n,
                               struct chunk_sink *sink)
{
    struct jscan_item dl[ANTHROPIC_MAX_MEMBERS];
    size_t m;
    int index = block_index(items, n);
    if (index < 0 || !sub_object(items, n, "delta", dl, &m)) {
        return native_bad_event(sink, "content_block_delta");
    }
    const struct jscan_item *type = jscan_find(dl, m, "type");
    const struct jscan_item *v = NULL;
    bool tool = false;
    struct buf d;
    buf_init(&d, NATIVE_MAX_CHUNK);
    if (type && native_str_is(type->value, "text_delta")) {
        v = jscan_find(dl, m, "text");
        buf_append_cstr(&d, "\"content\":");
    } else if (type && native_str_is(type->value, "input_json_delta")) {
        v = jscan_find(dl, m, "partial_json");
        tool = true;
        if (!st->tool_of_block[index]) {
            buf_free(&d);
            return native_bad_event(sink, "arguments for no tool call");
        }
        buf_printf(&d, "\"tool_calls\":[{\"index\":%d,\"function\":"
                       "{\"arguments\":", st->tool_of_block[index] - 1);
    } else {
        buf_free(&d);
        return RL_OK; /* thinking, signature, citations: skipped */
    }
    if (!v || v->type != '"') {
        buf_free(&d);
        return native_bad_event(sink, "a delta without its text");
    }
    buf_append_str(&d, v->value);
    if (tool) {
        buf_append_cstr(&d, "}}]");
    }
    native_chunk_emit(sink, &st->role_sent, (struct str){d.p, d.len}, NULL);
    buf_free(&d);
    return RL_OK;
}

static enum rl_err message_delta(struct stream_state *st,
                                 const struct jscan_item *items, size_t n,
                                 struct chunk_sink *sink)
{
    struct jscan_item dl[ANTHROPIC_MAX_MEMBERS];
    size_t m;
    if (!sub_object(items, n, "delta", dl, &m)) {
        return native_bad_event(sink, "message_delta");
    }
    const struct jscan_item *u = jscan_find(items, n, "usage");
    if (u && u->type == '{') {
        read_usage(st, u->value, sink);
    }
    const struct jscan_item *sr = jscan_find(dl, m, "stop_reason");
    if (!sr || jscan_is_null(sr)) {
        return RL_OK;
    }
    char reason[64];
    size_t rlen;
    if (!jscan_string(sr->value, reason, sizeof(reason), &rlen)) {
        reason[0] = '\0';
    }
    st->stopped = true;
    native_chunk_emit(sink, &st->role_sent, STR_LIT(""), finish_of(reason));
    return RL_OK;
}

/* Fills sink->error from an error object's text. */
static enum rl_err stream_error(struct str error, struct chunk_sink *sink)
{
    json_error_t jerr;
    json_t *e = json_loadb(error.p, error.len, 0, &jerr);
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    enum native_fail kind = NATIVE_FAIL_OTHER;
    if (type && !strcmp(type, "overloaded_error")) {
        kind = NATIVE_FAIL_OVERLOADED;
    } else if (type && !strcmp(type, "rate_limit_error")) {
        kind = NATIVE_FAIL_RATE;
    } else if (type && !strcmp(type, "api_error")) {
        kind = NATIVE_FAIL_SERVER;
    }
    native_error_set(&sink->error, kind, kind == NATIVE_FAIL_SERVER ? 500 : 502,
                     msg ? msg : "the provider failed during the stream", 0);
    json_decref(e);
    return RL_E_UPSTREAM;
}

static enum rl_err on_event(void *state, struct str event, struct str data,
                            struct chunk_sink *sink)
{
    struct stream_state *st = state;
    struct jscan_item items[ANTHROPIC_MAX_MEMBERS];
    size_t n;
    (void)event; /* the data's "type" says the same */
    if (!jscan(data, items, ANTHROPIC_MAX_MEMBERS, &n) || data.p[0] != '{') {
        return native_bad_event(sink, "not a JSON object");
    }
    const struct jscan_item *type = jscan_find(items, n, "type");
    if (!type || type->type != '"') {
        return native_bad_event(sink, "no type");
    }
    struct str t = type->value;
    if (native_str_is(t, "content_block_delta")) {
        return block_delta(st, items, n, sink);
    }
    if (native_str_is(t, "content_block_start")) {
        return block_start(st, items, n, sink);
    }
    if (native_str_is(t, "message_start")) {
        struct jscan_item msg[ANTHROPIC_MAX_MEMBERS];
        size_t m;
        if (!sub_object(items, n, "message", msg, &m)) {
            return native_bad_event(sink, "message_start");
        }
        const struct jscan_item *u = jscan_find(msg, m, "usage");
        if (u && u->type == '{') {
            read_usage(st, u->value, sink);
        }
        if (!st->role_sent) {
            native_chunk_emit(sink, &st->role_sent,
                              STR_LIT("\"content\":\"\""), NULL);
        }
        return RL_OK;
    }
    if (native_str_is(t, "message_delta")) {
        return message_delta(st, items, n, sink);
    }
    if (native_str_is(t, "message_stop")) {
        if (!st->stopped) {
            native_chunk_emit(sink, &st->role_sent, STR_LIT(""), "stop");
        }
        if (!sink->finished && sink->usage.present) {
            native_usage_emit(sink);
        }
        sink->finished = true;
        return RL_OK;
    }
    if (native_str_is(t, "error")) {
        const struct jscan_item *e = jscan_find(items, n, "error");
        return stream_error(e ? e->value : STR_LIT("{}"), sink);
    }
    return RL_OK; /* ping, content_block_stop, and future event types */
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
    const char *type = json_string_value(json_object_get(error, "type"));
    const char *msg = json_string_value(json_object_get(error, "message"));
    enum native_fail kind = NATIVE_FAIL_OTHER;
    if (status == 429 || (type && !strcmp(type, "rate_limit_error"))) {
        kind = NATIVE_FAIL_RATE;
    } else if (status == 529 || (type && !strcmp(type, "overloaded_error"))) {
        kind = NATIVE_FAIL_OVERLOADED;
    } else if (status == 401 || status == 403) {
        kind = NATIVE_FAIL_AUTH;
    } else if (status == 404) {
        kind = NATIVE_FAIL_NOT_FOUND;
    } else if (status == 413) {
        kind = NATIVE_FAIL_TOO_LARGE;
    } else if (status == 400 || status == 422) {
        bool ctx = native_contains(msg, "prompt is too long") ||
                   native_contains(msg, "context window") ||
                   native_contains(msg, "context length");
        kind = ctx ? NATIVE_FAIL_CONTEXT : NATIVE_FAIL_INVALID;
    } else if (status >= 500 && status <= 599) {
        kind = NATIVE_FAIL_SERVER;
    }
    native_error_set(out, kind, status, msg, retry_after_s);
    json_decref(root);
}

const struct provider_ops anthropic_ops = {
    .kind = "anthropic",
    .framing = FRAMING_SSE,
    .stream_state_size = sizeof(struct stream_state),
    .prefill = true, /* a final assistant turn is continued */
    .build_request = build_request,
    .parse_response = parse_response,
    .on_event = on_event,
    .map_error = map_error,
};
