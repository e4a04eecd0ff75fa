/*
 * gemini.c - Google's Gemini API (generateContent): request to answer,
 * answer to wire.
 *
 * The model, with its script, is in the URL path:
 * `POST /v1beta/models/{model}:generateContent` or
 * `:streamGenerateContent?alt=sse`, percent-decoded (the official SDK
 * refuses `?` and `&` in a model name, so a script travels as
 * `m%3Ftokens%3D5`). gm_from_url() reads the model and the stream flag;
 * gm_build() reads the body (contents, systemInstruction, tools,
 * toolConfig, generationConfig). The renderers write a
 * GenerateContentResponse, its SSE stream (`data: {...}` events separated
 * by CRLF CRLF as Google sends them, no [DONE]; the last event carries
 * finishReason and usageMetadata) and Google's error body
 * `{"error":{"code":...,"message":...,"status":...}}`.
 *
 * Names here carry a `gm_` prefix: the unit tests include every format's
 * source into one file.
 *
 * Read first: gm_from_url(), gm_build(), then gm_candidate().
 */
#include "fakeprov.h"

#include <stdio.h>
#include <strings.h>
#include <time.h>

/* ---------------------------------------------------------------------- */
/* URL                                                                    */

#define GM_STREAM ":streamGenerateContent"
#define GM_WHOLE ":generateContent"

/* Returns the length of the API prefix of url ("/v1beta/models/"), 0 when
 * it has none. */
static size_t gm_prefix(struct str url)
{
    if (str_starts_with(url, "/v1beta/models/")) {
        return sizeof("/v1beta/models/") - 1;
    }
    if (str_starts_with(url, "/v1/models/")) {
        return sizeof("/v1/models/") - 1;
    }
    return 0;
}

/* Finds the method marker in url after from; sets *stream. NULL if none. */
static const char *gm_marker(struct str url, size_t from, bool *stream)
{
    const char *p = url.p + from;
    size_t n = url.len - from;
    const char *m = memmem(p, n, GM_STREAM, sizeof(GM_STREAM) - 1);
    if (m) {
        *stream = true;
        return m;
    }
    *stream = false;
    return memmem(p, n, GM_WHOLE, sizeof(GM_WHOLE) - 1);
}

bool fake_gemini_route(struct str url)
{
    bool stream;
    size_t pre = gm_prefix(url);
    return pre && gm_marker(url, pre, &stream);
}

static int gm_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Appends the percent-decoded s to out ('+' stays: this is a path). */
static void gm_decode(struct str s, struct buf *out)
{
    for (size_t i = 0; i < s.len; i++) {
        int hi = i + 2 < s.len ? gm_hex(s.p[i + 1]) : -1;
        int lo = i + 2 < s.len ? gm_hex(s.p[i + 2]) : -1;
        if (s.p[i] == '%' && hi >= 0 && lo >= 0) {
            char c = (char)(hi * 16 + lo);
            (void)buf_append(out, &c, 1);
            i += 2;
        } else {
            (void)buf_append(out, &s.p[i], 1);
        }
    }
}

/* True when the query q (after '?') has the pair `name=value`. */
static bool gm_query_has(struct str q, const char *pair)
{
    size_t n = strlen(pair);
    const char *p = q.p;
    const char *end = q.p + q.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        if ((size_t)(stop - p) == n && memcmp(p, pair, n) == 0) {
            return true;
        }
        p = amp ? amp + 1 : end;
    }
    return false;
}

static void gm_from_url(struct str url, struct answer *a)
{
    bool stream = false;
    size_t pre = gm_prefix(url);
    const char *m = gm_marker(url, pre, &stream);
    if (!pre || !m) {
        fake_answer_error(a, 404, "invalid_request_error", NULL,
                          "Unknown request URL.");
        return;
    }
    gm_decode((struct str){url.p + pre, (size_t)(m - url.p) - pre},
              &a->model);
    a->stream = stream;
    const char *after = m + (stream ? sizeof(GM_STREAM) : sizeof(GM_WHOLE)) - 1;
    struct str q = {"", 0};
    if (after < url.p + url.len && *after == '?') {
        q = (struct str){after + 1, (size_t)(url.p + url.len - after - 1)};
    }
    if (stream && !gm_query_has(q, "alt=sse")) {
        fake_answer_error(a, 400, "invalid_request_error", NULL,
                          "relay-fake streams Gemini answers only as SSE: "
                          "add ?alt=sse.");
    }
}

/* ---------------------------------------------------------------------- */
/* Request                                                                */

static void gm_bad(struct answer *a, const char *msg)
{
    fake_answer_error(a, 400, "invalid_request_error", NULL, msg);
}

/* Returns the function declaration to call, NULL for a text answer; sets a
 * 400 on malformed tools. */
static const json_t *gm_pick_tool(const json_t *req, struct answer *a)
{
    const json_t *tools = json_object_get(req, "tools");
    if (!tools || json_is_null(tools)) {
        return NULL;
    }
    if (!json_is_array(tools)) {
        gm_bad(a, "Invalid JSON payload received. 'tools' must be a list.");
        return NULL;
    }
    const json_t *fcc = json_object_get(json_object_get(req, "toolConfig"),
                                        "functionCallingConfig");
    const char *mode = json_string_value(json_object_get(fcc, "mode"));
    if (mode && strcasecmp(mode, "NONE") == 0) {
        return NULL;
    }
    const json_t *allowed = json_object_get(fcc, "allowedFunctionNames");
    size_t i, j;
    const json_t *t;
    const json_t *d;
    json_array_foreach(tools, i, t) {
        json_array_foreach(json_object_get(t, "functionDeclarations"), j, d) {
            const char *name = json_string_value(json_object_get(d, "name"));
            if (!name) {
                gm_bad(a, "* GenerateContentRequest.tools[0]."
                          "function_declarations[0].name: Name cannot be "
                          "empty.");
                return NULL;
            }
            bool ok = json_array_size(allowed) == 0;
            size_t k;
            const json_t *n;
            json_array_foreach(allowed, k, n) {
                const char *s = json_string_value(n);
                ok = ok || (s && strcmp(s, name) == 0);
            }
            if (ok) {
                return d;
            }
        }
    }
    if (json_array_size(allowed)) {
        gm_bad(a, "allowedFunctionNames names no declared function.");
    }
    return NULL;
}

/* Checks contents and counts the prompt; false (with a 400) when bad. */
static bool gm_prompt(const json_t *req, struct answer *a, uint64_t *seed)
{
    const json_t *contents = json_object_get(req, "contents");
    if (!json_is_array(contents) || json_array_size(contents) == 0) {
        gm_bad(a, "* GenerateContentRequest.contents: contents is not "
                  "specified");
        return false;
    }
    *seed = TEXT_FNV_OFFSET;
    const json_t *last_user = NULL;
    size_t i;
    const json_t *c;
    json_array_foreach(contents, i, c) {
        const json_t *parts = json_object_get(c, "parts");
        const char *role = json_string_value(json_object_get(c, "role"));
        if (!json_is_array(parts)) {
            gm_bad(a, "* GenerateContentRequest.contents.parts: contents."
                      "parts must not be empty.");
            return false;
        }
        if (role && strcmp(role, "user") != 0 && strcmp(role, "model") != 0 &&
            strcmp(role, "function") != 0 && strcmp(role, "tool") != 0) {
            gm_bad(a, "Please use a valid role: user, model.");
            return false;
        }
        if (!role || strcmp(role, "user") == 0) {
            last_user = parts;
        }
        size_t chars = 0;
        fake_text_parts_scan(parts, NULL, &chars);
        a->prompt_tokens += fake_text_message_tokens(chars);
    }
    const json_t *si = json_object_get(req, "systemInstruction");
    if (si) {
        size_t chars = 0;
        fake_text_parts_scan(json_object_get(si, "parts"), NULL, &chars);
        a->prompt_tokens += fake_text_message_tokens(chars);
    }
    fake_text_parts_scan(last_user, seed, NULL);
    return true;
}

/* Fills a's content per generationConfig's response type. */
static bool gm_content(const json_t *gc, uint64_t seed, struct answer *a)
{
    const char *mime = json_string_value(json_object_get(gc,
                                                         "responseMimeType"));
    size_t n = (size_t)a->completion_tokens;
    if (!mime || strcmp(mime, "text/plain") == 0) {
        fake_answer_words(a, seed, n, false);
        return true;
    }
    if (strcmp(mime, "application/json") != 0) {
        gm_bad(a, "responseMimeType: only text/plain and application/json "
                  "are supported by relay-fake.");
        return false;
    }
    const json_t *schema = json_object_get(gc, "responseJsonSchema");
    if (!schema) {
        schema = json_object_get(gc, "responseSchema");
    }
    if (json_is_object(schema)) {
        (void)fake_text_fill_schema(schema, &a->content);
        fake_answer_split(a, 0, n);
    } else {
        fake_answer_words(a, seed, n, true);
    }
    return true;
}

static void gm_build(const json_t *req, const struct fake_opts *o,
                     struct answer *a)
{
    a->id = fake_answer_next_id();
    a->created_s = (int64_t)time(NULL);
    if (!json_is_object(req)) {
        gm_bad(a, "Invalid JSON payload received: the body must be an "
                  "object.");
        return;
    }
    const json_t *gc = json_object_get(req, "generationConfig");
    if (gc && !json_is_object(gc)) {
        gm_bad(a, "generationConfig must be an object.");
        return;
    }
    const json_t *mt = json_object_get(gc, "maxOutputTokens");
    int64_t limit = -1;
    if (mt) {
        if (!json_is_integer(mt) || json_integer_value(mt) < 1) {
            gm_bad(a, "generationConfig.maxOutputTokens must be a positive "
                      "integer.");
            return;
        }
        limit = json_integer_value(mt);
    }
    if (a->model.len == 0) {
        gm_bad(a, "The model in the URL is empty.");
        return;
    }
    struct script sc;
    uint64_t seed = 0;
    if (!fake_answer_begin(a, o, limit, &sc) || !gm_prompt(req, a, &seed)) {
        return;
    }
    const json_t *tool = gm_pick_tool(req, a);
    if (a->kind == ANSWER_ERROR) {
        return;
    }
    if (tool) {
        const json_t *name = json_object_get(tool, "name");
        const json_t *params = json_object_get(tool, "parametersJsonSchema");
        if (!params) {
            params = json_object_get(tool, "parameters");
        }
        a->kind = ANSWER_TOOL;
        a->finish = "tool_calls";
        (void)buf_append(&a->tool_name, json_string_value(name),
                         json_string_length(name));
        (void)fake_text_fill_schema(params, &a->content);
        fake_answer_cut(a, a->content.len); /* one piece: the whole call */
    } else {
        if (!gm_content(gc, seed, a)) {
            return;
        }
        if (fake_answer_stop_at(a, json_object_get(gc, "stopSequences"))) {
            a->finish = "stop"; /* Gemini says STOP for a stop sequence */
        }
    }
    fake_answer_stage(a, &sc);
}

/* ---------------------------------------------------------------------- */
/* Rendering                                                              */

static const char *gm_finish(const struct answer *a)
{
    if (a->fault == FAULT_SAFETY) {
        return "SAFETY";
    }
    return strcmp(a->finish, "length") == 0 ? "MAX_TOKENS" : "STOP";
}

static const char gm_ratings[] =
    "\"safetyRatings\":[{\"category\":\"HARM_CATEGORY_DANGEROUS_CONTENT\","
    "\"probability\":\"HIGH\",\"blocked\":true}]";

/* Appends usageMetadata; cached tokens are counted inside the prompt. */
static void gm_usage(const struct answer *a, struct buf *b)
{
    int64_t prompt = a->prompt_tokens + a->cache_read;
    fake_put(b, "\"usageMetadata\":{\"promptTokenCount\":");
    fake_put_i64(b, prompt);
    if (a->fault != FAULT_BLOCKED) {
        fake_put(b, ",\"candidatesTokenCount\":");
        fake_put_i64(b, a->completion_tokens);
    }
    fake_put(b, ",\"totalTokenCount\":");
    fake_put_i64(b, prompt + a->completion_tokens);
    if (a->cache_read > 0) {
        fake_put(b, ",\"cachedContentTokenCount\":");
        fake_put_i64(b, a->cache_read);
    }
    fake_put(b, ",\"promptTokensDetails\":[{\"modality\":\"TEXT\","
                "\"tokenCount\":");
    fake_put_i64(b, prompt);
    fake_put(b, "}]}");
}

static void gm_tail(const struct answer *a, struct buf *b)
{
    fake_put(b, ",\"modelVersion\":\"");
    fake_put_esc(b, a->model.p, a->model.len);
    fake_put(b, "\",\"responseId\":\"fake-");
    fake_put_i64(b, (int64_t)a->id);
    fake_put(b, "\"}");
}

/* Appends a candidate whose parts hold content[from, from+len) (or the
 * call); finish NULL leaves finishReason out. */
static void gm_candidate(const struct answer *a, size_t from, size_t len,
                         const char *finish, struct buf *b)
{
    fake_put(b, "{\"candidates\":[{");
    if (a->fault == FAULT_SAFETY) {
        fake_put(b, gm_ratings);
        fake_put(b, ",");
    } else {
        fake_put(b, "\"content\":{\"parts\":[");
        if (a->kind == ANSWER_TOOL && len) {
            fake_put(b, "{\"functionCall\":{\"name\":\"");
            fake_put_esc(b, a->tool_name.p, a->tool_name.len);
            fake_put(b, "\",\"args\":");
            (void)buf_append(b, a->content.p, a->content.len);
            fake_put(b, "}}");
        } else {
            fake_put(b, "{\"text\":\"");
            fake_put_esc(b, a->content.p + from, len);
            fake_put(b, "\"}");
        }
        fake_put(b, "],\"role\":\"model\"},");
    }
    if (finish) {
        fake_put(b, "\"finishReason\":\"");
        fake_put(b, finish);
        fake_put(b, "\",");
    }
    fake_put(b, "\"index\":0}]");
}

static void gm_blocked(const struct answer *a, struct buf *b)
{
    fake_put(b, "{\"promptFeedback\":{\"blockReason\":\"SAFETY\",");
    fake_put(b, gm_ratings);
    fake_put(b, "},");
    gm_usage(a, b);
    gm_tail(a, b);
}

static void gm_body(const struct answer *a, struct buf *b)
{
    if (a->fault == FAULT_BLOCKED) {
        gm_blocked(a, b);
        return;
    }
    gm_candidate(a, 0, a->content.len, gm_finish(a), b);
    fake_put(b, ",");
    gm_usage(a, b);
    gm_tail(a, b);
}

static void gm_stream_head(const struct answer *a, struct buf *b)
{
    (void)a;
    (void)b; /* Gemini sends nothing before the first piece */
}

static void gm_piece(const struct answer *a, size_t k, struct buf *b)
{
    size_t from = k ? a->cuts[k - 1] : 0;
    fake_put(b, "data: ");
    gm_candidate(a, from, a->cuts[k] - from, NULL, b);
    gm_tail(a, b);
    fake_put(b, "\r\n\r\n");
}

static void gm_stream_end(const struct answer *a, bool done, struct buf *b)
{
    if (!done) {
        return; /* nodone: no event with finishReason and usage */
    }
    fake_put(b, "data: ");
    if (a->fault == FAULT_BLOCKED) {
        gm_blocked(a, b);
    } else {
        /* A tool call was sent whole as a piece: the end has empty text. */
        struct answer tail = *a;
        tail.kind = ANSWER_TEXT;
        gm_candidate(&tail, a->content.len, 0, gm_finish(a), b);
        fake_put(b, ",");
        gm_usage(a, b);
        gm_tail(a, b);
    }
    fake_put(b, "\r\n\r\n");
}

static void gm_malformed(const struct answer *a, struct buf *b)
{
    (void)a;
    fake_put(b, "data: {\"candidates\":[{\"content\":{\r\n\r\n");
}

/* Google's canonical status name for an HTTP status. */
static const char *gm_status(int status)
{
    switch (status) {
    case 400: return "INVALID_ARGUMENT";
    case 401: return "UNAUTHENTICATED";
    case 403: return "PERMISSION_DENIED";
    case 404: return "NOT_FOUND";
    case 409: return "ABORTED";
    case 429: return "RESOURCE_EXHAUSTED";
    case 499: return "CANCELLED";
    case 500: return "INTERNAL";
    case 501: return "UNIMPLEMENTED";
    case 503: return "UNAVAILABLE";
    case 504: return "DEADLINE_EXCEEDED";
    default: return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
    }
}

static void gm_error(const struct answer *a, struct buf *b)
{
    fake_put(b, "{\"error\":{\"code\":");
    fake_put_i64(b, a->status);
    fake_put(b, ",\"message\":\"");
    fake_put_esc(b, a->err_msg.p, a->err_msg.len);
    fake_put(b, "\",\"status\":\"");
    if (a->err_code_scripted) {
        fake_put_esc(b, a->err_code.p, a->err_code.len);
    } else {
        fake_put(b, gm_status(a->status));
    }
    fake_put(b, "\"");
    if (a->err_code.len == sizeof("API_KEY_INVALID") - 1 &&
        memcmp(a->err_code.p, "API_KEY_INVALID", a->err_code.len) == 0) {
        fake_put(b, ",\"details\":[{\"@type\":\"type.googleapis.com/"
                    "google.rpc.ErrorInfo\",\"reason\":\"API_KEY_INVALID\","
                    "\"domain\":\"googleapis.com\"}]");
    }
    fake_put(b, "}}");
}

const struct fake_format fake_gemini_format = {
    .name = "gemini",
    .stream_type = "text/event-stream",
    .auth = AUTH_GOOGLE,
    .need_header = NULL,
    .from_url = gm_from_url,
    .build = gm_build,
    .body = gm_body,
    .stream_head = gm_stream_head,
    .stream_piece = gm_piece,
    .stream_end = gm_stream_end,
    .stream_malformed = gm_malformed,
    .error_body = gm_error,
};
