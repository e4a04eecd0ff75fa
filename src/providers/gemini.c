/*
 * gemini.c - Google's Gemini API: POST
 * {base_url}/models/{model}:generateContent, and
 * :streamGenerateContent?alt=sse for streams; key in x-goog-api-key.
 *
 * Docs: https://ai.google.dev/api/generate-content. base_url is the API
 * version root, e.g. https://generativelanguage.googleapis.com/v1beta. The
 * model id goes into the URL path, percent-encoded (so the fake provider's
 * `?script` suffix survives). The client's OpenAI request is parsed with
 * jansson and rebuilt as `contents` of `parts`; answers, whole or streamed
 * (each SSE event is a whole GenerateContentResponse), become OpenAI
 * objects. The stream path reads events as spans (jscan).
 *
 * Not supported, and why (docs/providers.md has the table):
 * - n > 1, logprobs, audio: refused (native.c).
 * - user: Gemini has no end-user field; dropped. logit_bias: dropped.
 * - Gemini's function calls have no ids (newer models sometimes send one):
 *   Relay makes a deterministic one, and finds a tool result's function
 *   name from the assistant tool call with that id, as Gemini wants names.
 * - JSON Schema keys Gemini's Schema object refuses ($schema,
 *   additionalProperties, strict) are removed from tool parameters and
 *   response schemas.
 * - thought parts (Gemini 2.5 thinking) are not passed on; their tokens
 *   count as reasoning_tokens.
 * Read build_request() first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "providers/native.h"
#include "providers/provider.h"
#include "util/jscan.h"

#define GEMINI_MAX_MEMBERS 32 /* members of one object in an event */
#define GEMINI_MAX_PARTS 256  /* parts of one candidate in one event */

/* The per-stream state (zeroed by the core before the first event). */
struct stream_state {
    bool role_sent; /* the first chunk, with the role, went out */
    int ntools;     /* tool calls emitted so far */
};

/* ---------------------------------------------------------------------
 * build_request
 * ------------------------------------------------------------------- */

/* Removes, in place and at every depth, the JSON Schema keys Gemini's
 * Schema object refuses. */
static void clean_schema(json_t *schema)
{
    if (json_is_object(schema)) {
        json_object_del(schema, "$schema");
        json_object_del(schema, "additionalProperties");
        json_object_del(schema, "strict");
        const char *key;
        json_t *v;
        json_object_foreach(schema, key, v) {
            clean_schema(v);
        }
    } else if (json_is_array(schema)) {
        size_t i;
        json_t *v;
        json_array_foreach(schema, i, v) {
            clean_schema(v);
        }
    }
}

/* Returns a cleaned deep copy of schema. */
static json_t *schema_copy(json_t *schema)
{
    json_t *c = json_deep_copy(schema);
    clean_schema(c);
    return c;
}

/* Returns the parts array of the last content if it has role, else of a
 * new content with role (Gemini wants a turn's function responses
 * together). */
static json_t *parts_for(json_t *contents, const char *role)
{
    return native_turn(contents, role, "parts");
}

/* Guesses an image's media type from its URL (fileData requires one). */
static const char *mime_of_url(const char *url)
{
    static const char *const table[][2] = {
        {".png", "image/png"},   {".gif", "image/gif"},
        {".webp", "image/webp"}, {".heic", "image/heic"},
        {".heif", "image/heif"}, {".pdf", "application/pdf"},
    };
    const char *q = strpbrk(url, "?#");
    size_t len = q ? (size_t)(q - url) : strlen(url);
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        size_t n = strlen(table[i][0]);
        if (len >= n && strncasecmp(url + len - n, table[i][0], n) == 0) {
            return table[i][1];
        }
    }
    return "image/jpeg";
}

/* Appends the part for an OpenAI image_url part. */
static enum rl_err image_part(json_t *part, json_t *parts, const char *what,
                              struct provider_error *err)
{
    json_t *iu = json_object_get(part, "image_url");
    const char *url = json_string_value(json_object_get(iu, "url"));
    if (!url && json_is_string(iu)) {
        url = json_string_value(iu);
    }
    struct str mime;
    struct str data;
    if (url && native_data_url(url, &mime, &data)) {
        json_array_append_new(parts, json_pack("{s:{s:s%,s:s%}}",
                                               "inlineData", "mimeType",
                                               mime.p, mime.len, "data",
                                               data.p, data.len));
    } else if (url && (strncmp(url, "https://", 8) == 0 ||
                       strncmp(url, "http://", 7) == 0)) {
        json_array_append_new(parts, json_pack("{s:{s:s,s:s}}", "fileData",
                                               "mimeType", mime_of_url(url),
                                               "fileUri", url));
    } else {
        return native_refuse(err, "%s: an image must be an http(s) URL or "
                             "a base64 data URL", what);
    }
    return RL_OK;
}

/* Appends the parts of an OpenAI content (string or parts). */
static enum rl_err content_parts(json_t *content, json_t *parts,
                                 const char *what, struct provider_error *err)
{
    if (!content || json_is_null(content)) {
        return RL_OK;
    }
    if (json_is_string(content)) {
        if (json_string_length(content)) {
            json_array_append_new(parts, json_pack("{s:O}", "text",
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
        enum rl_err e = RL_OK;
        if (type && !strcmp(type, "text") && json_is_string(text)) {
            json_array_append_new(parts, json_pack("{s:O}", "text", text));
        } else if (type && !strcmp(type, "image_url")) {
            e = image_part(part, parts, what, err);
        } else {
            e = native_refuse(err, "%s: content part %zu of type %s is not "
                              "supported by Gemini models", what, i,
                              type ? type : "(none)");
        }
        if (e != RL_OK) {
            return e;
        }
    }
    return RL_OK;
}

/* Appends a model turn: its text, then a functionCall part per call. */
static enum rl_err assistant_turn(json_t *m, json_t *contents,
                                  const char *what,
                                  struct provider_error *err)
{
    json_t *parts = parts_for(contents, "model");
    enum rl_err e = content_parts(json_object_get(m, "content"), parts, what,
                                  err);
    size_t i;
    json_t *call;
    json_array_foreach(json_object_get(m, "tool_calls"), i, call) {
        if (e != RL_OK) {
            break;
        }
        const char *name = json_string_value(json_object_get(
            json_object_get(call, "function"), "name"));
        json_t *args = native_tool_args(call);
        if (!name || !args) {
            json_decref(args);
            return native_refuse(err, "%s: tool_calls[%zu] needs a function "
                                 "name and arguments that are a JSON "
                                 "object", what, i);
        }
        json_array_append_new(parts, json_pack("{s:{s:s,s:o}}",
                                               "functionCall", "name", name,
                                               "args", args));
    }
    return e;
}

/* Appends a functionResponse; Gemini wants the function's name, found
 * from the assistant tool call the result answers. */
static enum rl_err tool_turn(json_t *messages, size_t i, json_t *contents,
                             const char *what, struct provider_error *err)
{
    json_t *m = json_array_get(messages, i);
    const char *id = json_string_value(json_object_get(m, "tool_call_id"));
    const char *name = native_tool_name(messages, i, id);
    if (!name) {
        return native_refuse(err, "%s: tool_call_id %s matches no earlier "
                             "assistant tool call (Gemini needs the "
                             "function's name)", what, id ? id : "(none)");
    }
    struct buf text;
    buf_init(&text, 16u << 20);
    enum rl_err e = native_content_text(json_object_get(m, "content"), "\n",
                                        &text, what, err);
    json_t *response = NULL;
    if (e == RL_OK) {
        json_error_t jerr;
        response = text.len ? json_loadb(text.p, text.len, 0, &jerr) : NULL;
        if (!json_is_object(response)) {
            /* Gemini's response is an object: a plain text result is
             * wrapped, as its docs do. */
            json_decref(response);
            response = json_pack("{s:s%}", "content", text.p ? text.p : "",
                                 text.len);
        }
        json_array_append_new(parts_for(contents, "user"),
                              json_pack("{s:{s:s,s:o}}", "functionResponse",
                                        "name", name, "response",
                                        response ? response : json_object()));
    }
    buf_free(&text);
    return e;
}

/* Translates messages; system and developer text goes to *system. */
static enum rl_err translate_messages(json_t *in, json_t *contents,
                                      struct buf *system,
                                      struct provider_error *err)
{
    json_t *messages = json_object_get(in, "messages");
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m) {
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
            e = content_parts(content, parts_for(contents, "user"), what,
                              err);
        } else if (!strcmp(role, "assistant")) {
            e = assistant_turn(m, contents, what, err);
        } else if (!strcmp(role, "tool")) {
            e = tool_turn(messages, i, contents, what, err);
        } else {
            e = native_refuse(err, "%s: role %s is not supported by Gemini "
                              "models", what, role);
        }
        if (e != RL_OK) {
            return e;
        }
    }
    return RL_OK;
}

/* Sets tools and toolConfig. */
static enum rl_err translate_tools(json_t *in, json_t *body,
                                   struct provider_error *err)
{
    json_t *decls = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(in, "tools"), i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *type = json_string_value(json_object_get(t, "type"));
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!type || strcmp(type, "function") != 0 || !name) {
            json_decref(decls);
            return native_refuse(err, "tools[%zu]: only function tools with "
                                 "a name are supported", i);
        }
        json_t *d = json_pack("{s:s}", "name", name);
        json_t *desc = json_object_get(fn, "description");
        if (json_is_string(desc)) {
            json_object_set(d, "description", desc);
        }
        /* Gemini refuses an object schema with no properties: a function
         * without parameters has none. */
        json_t *params = json_object_get(fn, "parameters");
        if (json_object_size(json_object_get(params, "properties"))) {
            json_object_set_new(d, "parameters", schema_copy(params));
        }
        json_array_append_new(decls, d);
    }
    if (json_array_size(decls) == 0) {
        json_decref(decls);
        return RL_OK;
    }
    json_object_set_new(body, "tools", json_pack("[{s:o}]",
                                                 "functionDeclarations",
                                                 decls));
    json_t *choice = json_object_get(in, "tool_choice");
    const char *mode = json_string_value(choice);
    json_t *fcc = NULL;
    if (!choice || json_is_null(choice) || (mode && !strcmp(mode, "auto"))) {
        fcc = json_pack("{s:s}", "mode", "AUTO");
    } else if (mode && !strcmp(mode, "none")) {
        fcc = json_pack("{s:s}", "mode", "NONE");
    } else if (mode && !strcmp(mode, "required")) {
        fcc = json_pack("{s:s}", "mode", "ANY");
    } else {
        const char *name = json_string_value(json_object_get(
            json_object_get(choice, "function"), "name"));
        if (!name) {
            return native_refuse(err, "tool_choice must be auto, none, "
                                 "required or a named function");
        }
        fcc = json_pack("{s:s,s:[s]}", "mode", "ANY",
                        "allowedFunctionNames", name);
    }
    json_object_set_new(body, "toolConfig",
                        json_pack("{s:o}", "functionCallingConfig", fcc));
    return RL_OK;
}

/* Builds generationConfig: sampling, length, stops, JSON mode. */
static enum rl_err generation_config(json_t *in, json_t *gc,
                                     struct provider_error *err)
{
    static const char *const map[][2] = {
        {"temperature", "temperature"},
        {"top_p", "topP"},
        {"seed", "seed"},
        {"presence_penalty", "presencePenalty"},
        {"frequency_penalty", "frequencyPenalty"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        json_t *v = json_object_get(in, map[i][0]);
        if (json_is_number(v)) {
            json_object_set(gc, map[i][1], v);
        }
    }
    json_int_t max = native_max_tokens(in);
    if (max) {
        json_object_set_new(gc, "maxOutputTokens", json_integer(max));
    }
    native_copy_stop(in, gc, "stopSequences");
    json_t *rf = json_object_get(in, "response_format");
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!rf || json_is_null(rf) || (type && !strcmp(type, "text"))) {
        return RL_OK;
    }
    json_t *schema = json_object_get(json_object_get(rf, "json_schema"),
                                     "schema");
    if (type && !strcmp(type, "json_object")) {
        json_object_set_new(gc, "responseMimeType",
                            json_string("application/json"));
    } else if (type && !strcmp(type, "json_schema") && schema) {
        json_object_set_new(gc, "responseMimeType",
                            json_string("application/json"));
        json_object_set_new(gc, "responseSchema", schema_copy(schema));
    } else {
        return native_refuse(err, "response_format must be text, "
                             "json_object or json_schema with a schema");
    }
    return RL_OK;
}

/* Appends the model id to url, percent-encoding all but unreserved bytes;
 * a leading "models/" is dropped (the path has it already). */
static void append_model(struct buf *url, const char *model)
{
    static const char hex[] = "0123456789ABCDEF";
    if (strncmp(model, "models/", 7) == 0) {
        model += 7;
    }
    for (const unsigned char *c = (const unsigned char *)model; *c; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' ||
                     *c == '_' || *c == '~';
        if (plain) {
            buf_append(url, c, 1);
        } else {
            char e[3] = {'%', hex[*c >> 4], hex[*c & 15]};
            buf_append(url, e, 3);
        }
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
    json_t *body = json_pack("{s:[],s:{}}", "contents", "generationConfig");
    struct buf system;
    buf_init(&system, 4u << 20);
    enum rl_err result = native_check_common(in, "Gemini", err);
    if (result == RL_OK) {
        result = translate_messages(in, json_object_get(body, "contents"),
                                    &system, err);
    }
    if (result == RL_OK) {
        result = translate_tools(in, body, err);
    }
    if (result == RL_OK) {
        result = generation_config(
            in, json_object_get(body, "generationConfig"), err);
    }
    if (result != RL_OK) {
        goto out;
    }
    if (system.len) {
        json_t *s = json_stringn(system.p, system.len);
        json_object_set_new(body, "systemInstruction",
                            json_pack("{s:[{s:o}]}", "parts", "text",
                                      s ? s : json_string("")));
    }
    result = native_body_dump(body, out, err);
    if (result != RL_OK) {
        goto out;
    }
    buf_printf(&out->url, "%s/models/", p->base_url);
    append_model(&out->url, model->upstream);
    buf_append_cstr(&out->url, req->stream
                                   ? ":streamGenerateContent?alt=sse"
                                   : ":generateContent");
    if (p->api_key && p->api_key[0]) {
        buf_printf(&out->headers, "x-goog-api-key: %s\n", p->api_key);
    }
out:
    buf_free(&system);
    json_decref(body);
    json_decref(in);
    return result;
}

/* ---------------------------------------------------------------------
 * Answers: finish reasons, usage, tool call ids
 * ------------------------------------------------------------------- */

/* Returns OpenAI's finish_reason for a Gemini finishReason. */
static const char *finish_of(const char *reason, bool tool_calls)
{
    static const char *const filtered[] = {
        "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
        "IMAGE_SAFETY", NULL,
    };
    for (const char *const *f = filtered; reason && *f; f++) {
        if (!strcmp(reason, *f)) {
            return "content_filter";
        }
    }
    if (reason && !strcmp(reason, "MAX_TOKENS")) {
        return "length";
    }
    return tool_calls ? "tool_calls" : "stop";
}

/* Gemini's promptTokenCount includes the cached tokens, as OpenAI's does;
 * thinking tokens are billed as output: OpenAI counts them in
 * completion_tokens. */
static void usage_set(struct usage *u, int64_t prompt, int64_t candidates,
                      int64_t thoughts, int64_t cached)
{
    u->present = true;
    u->prompt_tokens = prompt;
    u->completion_tokens = candidates + thoughts;
    u->reasoning_tokens = thoughts;
    u->cached_tokens = cached;
}



/* Adds one functionCall part to calls, in OpenAI's shape. */
static void add_call(json_t *calls, json_t *fc)
{
    json_t *args = json_object_get(fc, "args");
    char *text = native_args_text(args);
    const char *name = json_string_value(json_object_get(fc, "name"));
    const char *given = json_string_value(json_object_get(fc, "id"));
    char id[24];
    native_call_id(id, (int)json_array_size(calls), str_from(name),
                 str_from(text));
    json_array_append_new(calls,
                          json_pack("{s:s,s:s,s:{s:s,s:s}}", "id",
                                    given ? given : id, "type", "function",
                                    "function", "name", name ? name : "",
                                    "arguments", text ? text : "{}"));
    free(text);
}

static enum rl_err parse_response(struct str body, struct buf *out,
                                  struct answer_members *members,
                                  struct usage *usage,
                                  struct provider_error *err)
{
    (void)members; /* the answer is built here: its reply scans it */
    json_error_t jerr;
    json_t *root = json_loadb(body.p, body.len, 0, &jerr);
    json_t *cands = json_object_get(root, "candidates");
    json_t *block = json_object_get(json_object_get(root, "promptFeedback"),
                                    "blockReason");
    if (!json_is_object(root) || (!json_is_array(cands) && !block)) {
        json_decref(root);
        provider_error_set(err, 502, "api_error", "upstream_protocol_error",
                           true, "the provider's answer is not a "
                           "GenerateContentResponse");
        return RL_E_UPSTREAM_PROTOCOL;
    }
    json_t *cand = json_array_get(cands, 0);
    struct buf text;
    buf_init(&text, body.len + 1);
    json_t *calls = json_array();
    bool has_text = false;
    size_t i;
    json_t *part;
    json_array_foreach(json_object_get(json_object_get(cand, "content"),
                                       "parts"), i, part) {
        json_t *t = json_object_get(part, "text");
        json_t *fc = json_object_get(part, "functionCall");
        if (json_is_true(json_object_get(part, "thought"))) {
            continue;
        }
        if (json_is_string(t)) {
            buf_append(&text, json_string_value(t), json_string_length(t));
            has_text = true;
        } else if (json_is_object(fc)) {
            add_call(calls, fc);
        }
    }
    json_t *um = json_object_get(root, "usageMetadata");
    usage_set(usage, native_count(um, "promptTokenCount"),
              native_count(um, "candidatesTokenCount"),
              native_count(um, "thoughtsTokenCount"),
              native_count(um, "cachedContentTokenCount"));
    const char *finish =
        block && !cand ? "content_filter"
                       : finish_of(json_string_value(json_object_get(
                                       cand, "finishReason")),
                                   json_array_size(calls) > 0);
    enum rl_err result = native_completion_append(
        out, json_string_value(json_object_get(root, "responseId")),
        has_text || json_array_size(calls) == 0 ? (text.p ? text.p : "")
                                                : NULL,
        calls, finish, usage);
    if (result == RL_E_UPSTREAM_PROTOCOL) {
        provider_error_set(err, 502, "api_error", "upstream_protocol_error",
                           true, "the provider's answer is not valid");
    }
    buf_free(&text);
    json_decref(calls);
    json_decref(root);
    return result;
}

/* ---------------------------------------------------------------------
 * on_event
 * ------------------------------------------------------------------- */

/* Scans the object value of a member into sub. */
static bool sub_object(const struct jscan_item *items, size_t n,
                       const char *key, struct jscan_item *sub, size_t *m)
{
    const struct jscan_item *it = jscan_find(items, n, key);
    return it && it->type == '{' && jscan(it->value, sub, GEMINI_MAX_MEMBERS,
                                          m);
}

/* Emits one part of a streamed candidate: text or a function call. */
static enum rl_err stream_part(struct stream_state *st, struct str part,
                               struct chunk_sink *sink)
{
    struct jscan_item items[GEMINI_MAX_MEMBERS];
    size_t n;
    if (!jscan(part, items, GEMINI_MAX_MEMBERS, &n) || part.p[0] != '{') {
        return native_bad_event(sink, "a part that is not an object");
    }
    const struct jscan_item *thought = jscan_find(items, n, "thought");
    const struct jscan_item *text = jscan_find(items, n, "text");
    struct jscan_item fc[GEMINI_MAX_MEMBERS];
    size_t m;
    if (thought && thought->type == 't') {
        return RL_OK;
    }
    if (text && text->type == '"' && text->value.len == 2 && st->role_sent) {
        return RL_OK; /* an empty text part, as in a finishing event */
    }
    struct buf d;
    buf_init(&d, NATIVE_MAX_CHUNK);
    if (text && text->type == '"') {
        buf_append_cstr(&d, "\"content\":");
        buf_append_str(&d, text->value);
    } else if (sub_object(items, n, "functionCall", fc, &m)) {
        const struct jscan_item *name = jscan_find(fc, m, "name");
        const struct jscan_item *args = jscan_find(fc, m, "args");
        const struct jscan_item *id = jscan_find(fc, m, "id");
        if (!name || name->type != '"') {
            buf_free(&d);
            return native_bad_event(sink, "a functionCall without a name");
        }
        struct str a = args ? args->value : STR_LIT("{}");
        int index = st->ntools++;
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
        buf_append_cstr(&d, ",\"arguments\":\"");
        buf_append_json_escaped(&d, a.p, a.len);
        buf_append_cstr(&d, "\"}}]");
    }
    if (d.len) {
        native_chunk_emit(sink, &st->role_sent, (struct str){d.p, d.len},
                          NULL);
    }
    buf_free(&d);
    return RL_OK;
}

/* Reads usageMetadata (each event repeats the totals so far). */
static void stream_usage(const struct jscan_item *items, size_t n,
                         struct chunk_sink *sink)
{
    struct jscan_item um[GEMINI_MAX_MEMBERS];
    size_t m;
    if (!sub_object(items, n, "usageMetadata", um, &m)) {
        return;
    }
    int64_t v[4];
    static const char *const keys[] = {"promptTokenCount",
                                       "candidatesTokenCount",
                                       "thoughtsTokenCount",
                                       "cachedContentTokenCount"};
    for (size_t k = 0; k < 4; k++) {
        const struct jscan_item *it = jscan_find(um, m, keys[k]);
        v[k] = it ? native_int(it->value) : 0;
        v[k] = v[k] < 0 ? 0 : v[k];
    }
    usage_set(&sink->usage, v[0], v[1], v[2], v[3]);
}

/* Ends the stream: the finish chunk, then usage. */
static void stream_finish(struct stream_state *st, const char *finish,
                          struct chunk_sink *sink)
{
    native_chunk_emit(sink, &st->role_sent, STR_LIT(""), finish);
    if (sink->usage.present) {
        native_usage_emit(sink);
    }
    sink->finished = true;
}

static enum native_fail classify(json_t *error, long status, bool *ctx);

/* Fills sink->error from a Gemini error object's text. */
static enum rl_err stream_error(struct str error, struct chunk_sink *sink)
{
    json_error_t jerr;
    json_t *e = json_loadb(error.p, error.len, JSON_DECODE_ANY, &jerr);
    json_t *code = json_object_get(e, "code");
    long status = json_is_integer(code) ? (long)json_integer_value(code) : 0;
    bool ctx = false;
    enum native_fail kind = classify(e, status, &ctx);
    const char *msg = json_string_value(json_object_get(e, "message"));
    native_error_set(&sink->error, kind, status,
                     msg ? msg : "the provider failed during the stream", 0);
    json_decref(e);
    return RL_E_UPSTREAM;
}

static enum rl_err on_event(void *state, struct str event, struct str data,
                            struct chunk_sink *sink)
{
    struct stream_state *st = state;
    struct jscan_item items[GEMINI_MAX_MEMBERS];
    size_t n;
    (void)event;
    if (!jscan(data, items, GEMINI_MAX_MEMBERS, &n) || data.p[0] != '{') {
        return native_bad_event(sink, "not a JSON object");
    }
    const struct jscan_item *error = jscan_find(items, n, "error");
    if (error && !jscan_is_null(error)) {
        return stream_error(error->value, sink);
    }
    stream_usage(items, n, sink);
    const struct jscan_item *cands = jscan_find(items, n, "candidates");
    struct jscan_item cand[GEMINI_MAX_MEMBERS];
    size_t m = 0;
    if (cands) {
        struct jscan_iter it;
        struct jscan_item first;
        if (cands->type != '[' || !jscan_iter_init(&it, cands->value)) {
            return native_bad_event(sink, "candidates is not an array");
        }
        int r = jscan_iter_next(&it, &first);
        if (r < 0 || (r == 1 && (first.type != '{' ||
                                 !jscan(first.value, cand,
                                        GEMINI_MAX_MEMBERS, &m)))) {
            return native_bad_event(sink, "a candidate is not an object");
        }
    }
    struct jscan_item content[GEMINI_MAX_MEMBERS];
    size_t nc;
    if (m && sub_object(cand, m, "content", content, &nc)) {
        const struct jscan_item *parts = jscan_find(content, nc, "parts");
        struct jscan_iter it;
        struct jscan_item part;
        int r = 0;
        if (parts && jscan_iter_init(&it, parts->value)) {
            while ((r = jscan_iter_next(&it, &part)) == 1) {
                enum rl_err e = stream_part(st, part.value, sink);
                if (e != RL_OK) {
                    return e;
                }
            }
        }
        if (parts && (parts->type != '[' || r < 0)) {
            return native_bad_event(sink, "parts is not an array");
        }
    }
    const struct jscan_item *fr = m ? jscan_find(cand, m, "finishReason")
                                    : NULL;
    if (fr && fr->type == '"') {
        char reason[64];
        size_t rlen;
        if (!jscan_string(fr->value, reason, sizeof(reason), &rlen)) {
            reason[0] = '\0';
        }
        stream_finish(st, finish_of(reason, st->ntools > 0), sink);
        return RL_OK;
    }
    struct jscan_item pf[GEMINI_MAX_MEMBERS];
    size_t npf;
    if (!m && sub_object(items, n, "promptFeedback", pf, &npf) &&
        jscan_find(pf, npf, "blockReason")) {
        stream_finish(st, "content_filter", sink); /* the prompt blocked */
        return RL_OK;
    }
    if (!cands && !jscan_find(items, n, "usageMetadata")) {
        return native_bad_event(sink, "no candidates");
    }
    return RL_OK;
}

/* ---------------------------------------------------------------------
 * map_error
 * ------------------------------------------------------------------- */

/* Classifies a Gemini error object ({"code","message","status"}). */
static enum native_fail classify(json_t *error, long status, bool *ctx)
{
    const char *s = json_string_value(json_object_get(error, "status"));
    const char *msg = json_string_value(json_object_get(error, "message"));
    char *details = json_dumps(json_object_get(error, "details"),
                               JSON_COMPACT | JSON_ENCODE_ANY);
    bool bad_key = native_contains(details, "API_KEY_INVALID") ||
                   native_contains(msg, "API key not valid");
    free(details);
    *ctx = native_contains(msg, "exceeds the maximum number of tokens") ||
           native_contains(msg, "input token count");
    if (status == 429 || (s && !strcmp(s, "RESOURCE_EXHAUSTED"))) {
        return NATIVE_FAIL_RATE;
    }
    if (bad_key || status == 401 || status == 403 ||
        (s && (!strcmp(s, "UNAUTHENTICATED") ||
               !strcmp(s, "PERMISSION_DENIED")))) {
        return NATIVE_FAIL_AUTH;
    }
    if (status == 404 || (s && !strcmp(s, "NOT_FOUND"))) {
        return NATIVE_FAIL_NOT_FOUND;
    }
    if (status == 503 || (s && !strcmp(s, "UNAVAILABLE"))) {
        return NATIVE_FAIL_OVERLOADED;
    }
    if (status == 413) {
        return NATIVE_FAIL_TOO_LARGE;
    }
    if (status == 400 || (s && !strcmp(s, "INVALID_ARGUMENT"))) {
        if (native_contains(msg, "safety")) {
            return NATIVE_FAIL_SAFETY;
        }
        return *ctx ? NATIVE_FAIL_CONTEXT : NATIVE_FAIL_INVALID;
    }
    if (status >= 500 && status <= 599) {
        return NATIVE_FAIL_SERVER;
    }
    return NATIVE_FAIL_OTHER;
}

static void map_error(long status, struct str body, uint32_t retry_after_s,
                      struct provider_error *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(body.p, body.len, 0, &jerr);
    /* The streaming endpoint without alt=sse answers errors in an array. */
    json_t *top = json_is_array(root) ? json_array_get(root, 0) : root;
    json_t *error = json_object_get(top, "error");
    bool ctx = false;
    enum native_fail kind = classify(error, status, &ctx);
    native_error_set(out, kind, status,
                     json_string_value(json_object_get(error, "message")),
                     retry_after_s);
    json_decref(root);
}

const struct provider_ops gemini_ops = {
    .kind = "gemini",
    .framing = FRAMING_SSE,
    .stream_state_size = sizeof(struct stream_state),
    .build_request = build_request,
    .parse_response = parse_response,
    .on_event = on_event,
    .map_error = map_error,
};
