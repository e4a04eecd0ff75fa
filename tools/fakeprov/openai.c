/*
 * openai.c - OpenAI chat completions: request to answer, answer to wire.
 *
 * build() reads a `POST /v1/chat/completions` body into a struct answer;
 * the render functions write `chat.completion` objects, the
 * `chat.completion.chunk` SSE events of a stream and OpenAI error bodies,
 * field for field as in the published schemas (the `CreateChatCompletion*`
 * and `ErrorResponse` components of openai-openapi). JSON is written by
 * hand into the connection's buffer: no jansson objects on the way out.
 * Only one choice is ever produced (`n` is ignored); logprobs are null.
 *
 * Read first: build(), then render_body() and render_piece().
 */
#include "fakeprov.h"

#include <stdio.h>
#include <time.h>

/* ---------------------------------------------------------------------- */
/* Small writers; the buffers' caps are far above any answer, so appends  */
/* cannot fail in practice and a failure only truncates the answer.       */

static void put(struct buf *b, const char *s)
{
    (void)buf_append_cstr(b, s);
}

static void put_esc(struct buf *b, const char *p, size_t n)
{
    (void)buf_append_json_escaped(b, p, n);
}

static void put_i64(struct buf *b, int64_t v)
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

/* ---------------------------------------------------------------------- */
/* Request                                                                */

static void bad(struct answer *a, const char *msg)
{
    fake_answer_error(a, 400, "invalid_request_error", NULL, msg);
}

/* Returns the tool chosen by tool_choice, NULL for none; sets a 400 on a
 * malformed tools list or an unknown tool name. */
static const json_t *pick_tool(const json_t *req, struct answer *a)
{
    const json_t *tools = json_object_get(req, "tools");
    const json_t *choice = json_object_get(req, "tool_choice");
    if (!tools || json_is_null(tools)) {
        return NULL;
    }
    if (!json_is_array(tools)) {
        bad(a, "'tools' must be an array.");
        return NULL;
    }
    if (json_array_size(tools) == 0 ||
        (json_is_string(choice) &&
         strcmp(json_string_value(choice), "none") == 0)) {
        return NULL;
    }
    const char *want = json_string_value(
        json_object_get(json_object_get(choice, "function"), "name"));
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const json_t *fn = json_object_get(t, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name) {
            bad(a, "Every tool needs function.name.");
            return NULL;
        }
        if (!want || strcmp(want, name) == 0) {
            return t;
        }
    }
    bad(a, "tool_choice names a function not in 'tools'.");
    return NULL;
}

/* Fills a with one call to tool (arguments from its parameters schema). */
static void build_tool(const json_t *tool, struct answer *a)
{
    const json_t *fn = json_object_get(tool, "function");
    const json_t *name = json_object_get(fn, "name");
    a->kind = ANSWER_TOOL;
    a->finish = "tool_calls";
    (void)buf_append(&a->tool_name, json_string_value(name),
                     json_string_length(name));
    (void)fake_text_fill_schema(json_object_get(fn, "parameters"), &a->content);
    fake_answer_cut(a, 0); /* piece 0: the call's id and name */
    fake_answer_split(a, 0, a->content.len >= 6 ? 3 : 2);
}

/* Fills a's content per response_format; false (with a 400) when the
 * format is unknown. */
static bool build_content(const json_t *req, uint64_t seed, size_t ntokens,
                          struct answer *a)
{
    const json_t *rf = json_object_get(req, "response_format");
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!rf || json_is_null(rf) || (type && strcmp(type, "text") == 0)) {
        fake_answer_words(a, seed, ntokens, false);
    } else if (type && strcmp(type, "json_object") == 0) {
        fake_answer_words(a, seed, ntokens, true);
    } else if (type && strcmp(type, "json_schema") == 0) {
        const json_t *js = json_object_get(rf, "json_schema");
        (void)fake_text_fill_schema(json_object_get(js, "schema"), &a->content);
        fake_answer_split(a, 0, ntokens);
    } else {
        bad(a, "Unknown response_format type.");
        return false;
    }
    return true;
}

/* Reads the completion limit; false (with a 400) when it is malformed. */
static bool read_limit(const json_t *req, int64_t *limit, struct answer *a)
{
    const json_t *m = json_object_get(req, "max_completion_tokens");
    if (!m || json_is_null(m)) {
        m = json_object_get(req, "max_tokens");
    }
    *limit = -1;
    if (!m || json_is_null(m)) {
        return true;
    }
    if (!json_is_integer(m) || json_integer_value(m) < 1) {
        bad(a, "max_tokens must be an integer >= 1.");
        return false;
    }
    *limit = json_integer_value(m);
    return true;
}

/* Checks the fields every request needs; false (with a 400) otherwise. */
static bool check_request(const json_t *req, struct answer *a)
{
    if (!json_is_object(req)) {
        bad(a, "The request body must be a JSON object.");
        return false;
    }
    const json_t *model = json_object_get(req, "model");
    if (!json_is_string(model) || json_string_length(model) == 0) {
        bad(a, "You must provide a model parameter.");
        return false;
    }
    (void)buf_append(&a->model, json_string_value(model),
                     json_string_length(model));
    const json_t *msgs = json_object_get(req, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        bad(a, "'messages' must be a non-empty array.");
        return false;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_string(json_object_get(m, "role"))) {
            bad(a, "Every message needs a string 'role'.");
            return false;
        }
    }
    const json_t *stream = json_object_get(req, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        bad(a, "'stream' must be a boolean.");
        return false;
    }
    a->stream = json_is_true(stream);
    a->include_usage = a->stream && json_is_true(json_object_get(
        json_object_get(req, "stream_options"), "include_usage"));
    return true;
}

static void build(const json_t *req, const struct fake_opts *o,
                  struct answer *a)
{
    a->id = fake_answer_next_id();
    a->created_s = (int64_t)time(NULL);
    int64_t limit = -1;
    struct script sc;
    if (!check_request(req, a) || !read_limit(req, &limit, a) ||
        !fake_answer_begin(a, o, limit, &sc)) {
        return;
    }
    if (a->no_usage) {
        a->include_usage = false; /* usage=0: a server that never counts */
    }
    const json_t *msgs = json_object_get(req, "messages");
    a->prompt_tokens = fake_text_prompt_tokens(msgs);
    const json_t *tool = pick_tool(req, a);
    if (a->kind == ANSWER_ERROR) {
        return;
    }
    if (tool) {
        build_tool(tool, a);
    } else if (!build_content(req, fake_text_prompt_seed(msgs),
                              (size_t)a->completion_tokens, a)) {
        return;
    }
    fake_answer_stage(a, &sc);
}

/* ---------------------------------------------------------------------- */
/* Rendering                                                              */

static void put_usage(const struct answer *a, struct buf *b)
{
    /* Cached tokens are counted inside prompt_tokens, as OpenAI does. */
    int64_t prompt = a->prompt_tokens + a->cache_read;
    put(b, "{\"prompt_tokens\":");
    put_i64(b, prompt);
    put(b, ",\"completion_tokens\":");
    put_i64(b, a->completion_tokens);
    put(b, ",\"total_tokens\":");
    put_i64(b, prompt + a->completion_tokens);
    put(b, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    put_i64(b, a->cache_read);
    put(b, ",\"audio_tokens\":0},\"completion_tokens_details\":{"
           "\"reasoning_tokens\":0,\"audio_tokens\":0,"
           "\"accepted_prediction_tokens\":0,"
           "\"rejected_prediction_tokens\":0}}");
}

/* Appends `{"id":...,"model":"..."` shared by objects and chunks. */
static void put_head(const struct answer *a, const char *object,
                     struct buf *b)
{
    put(b, "{\"id\":\"chatcmpl-fake-");
    put_i64(b, (int64_t)a->id);
    put(b, "\",\"object\":\"");
    put(b, object);
    put(b, "\",\"created\":");
    put_i64(b, a->created_s);
    put(b, ",\"model\":\"");
    put_esc(b, a->model.p, a->model.len);
    put(b, "\",\"system_fingerprint\":\"fp_fake\"");
}

static void put_call_id(const struct answer *a, struct buf *b)
{
    put(b, "\"id\":\"call_fake_");
    put_i64(b, (int64_t)a->id);
    put(b, "\",\"type\":\"function\"");
}

static void render_body(const struct answer *a, struct buf *b)
{
    put_head(a, "chat.completion", b);
    put(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",");
    if (a->kind == ANSWER_TOOL) {
        put(b, "\"content\":null,\"refusal\":null,\"tool_calls\":[{");
        put_call_id(a, b);
        put(b, ",\"function\":{\"name\":\"");
        put_esc(b, a->tool_name.p, a->tool_name.len);
        put(b, "\",\"arguments\":\"");
        put_esc(b, a->content.p, a->content.len);
        put(b, "\"}}]");
    } else {
        put(b, "\"content\":\"");
        put_esc(b, a->content.p, a->content.len);
        put(b, "\",\"refusal\":null");
    }
    put(b, ",\"annotations\":[]},\"logprobs\":null,\"finish_reason\":\"");
    put(b, a->finish);
    if (a->no_usage) {
        put(b, "\"}]}"); /* as some compatible servers answer */
        return;
    }
    put(b, "\"}],\"usage\":");
    put_usage(a, b);
    put(b, "}");
}

/* Appends one chunk event whose delta is the JSON delta and whose
 * finish_reason is finish (NULL = null). */
static void put_chunk(const struct answer *a, const char *delta,
                      const char *finish, struct buf *b)
{
    put(b, "data: ");
    put_head(a, "chat.completion.chunk", b);
    put(b, ",\"choices\":[{\"index\":0,\"delta\":");
    put(b, delta);
    put(b, ",\"logprobs\":null,\"finish_reason\":");
    if (finish) {
        put(b, "\"");
        put(b, finish);
        put(b, "\"");
    } else {
        put(b, "null");
    }
    put(b, a->include_usage ? "}],\"usage\":null}\n\n" : "}]}\n\n");
}

static void render_head(const struct answer *a, struct buf *b)
{
    put_chunk(a,
              a->kind == ANSWER_TOOL
                  ? "{\"role\":\"assistant\",\"content\":null}"
                  : "{\"role\":\"assistant\",\"content\":\"\"}",
              NULL, b);
}

static void render_piece(const struct answer *a, size_t k, struct buf *b)
{
    size_t from = k ? a->cuts[k - 1] : 0;
    size_t len = a->cuts[k] - from;
    put(b, "data: ");
    put_head(a, "chat.completion.chunk", b);
    put(b, ",\"choices\":[{\"index\":0,\"delta\":{");
    if (a->kind != ANSWER_TOOL) {
        put(b, "\"content\":\"");
        put_esc(b, a->content.p + from, len);
        put(b, "\"");
    } else if (k == 0) {
        put(b, "\"tool_calls\":[{\"index\":0,");
        put_call_id(a, b);
        put(b, ",\"function\":{\"name\":\"");
        put_esc(b, a->tool_name.p, a->tool_name.len);
        put(b, "\",\"arguments\":\"\"}}]");
    } else {
        put(b, "\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"");
        put_esc(b, a->content.p + from, len);
        put(b, "\"}}]");
    }
    put(b, "},\"logprobs\":null,\"finish_reason\":null}]");
    put(b, a->include_usage ? ",\"usage\":null}\n\n" : "}\n\n");
}

static void render_end(const struct answer *a, bool done, struct buf *b)
{
    put_chunk(a, "{}", a->finish, b);
    if (a->include_usage) {
        put(b, "data: ");
        put_head(a, "chat.completion.chunk", b);
        put(b, ",\"choices\":[],\"usage\":");
        put_usage(a, b);
        put(b, "}\n\n");
    }
    if (done) {
        put(b, "data: [DONE]\n\n");
    }
}

static void render_malformed(const struct answer *a, struct buf *b)
{
    put(b, "data: {\"id\":\"chatcmpl-fake-");
    put_i64(b, (int64_t)a->id);
    put(b, "\",\"object\":\"chat.completion.chunk\",\"choices\":[{\n\n");
}

static void render_error(const struct answer *a, struct buf *b)
{
    put(b, "{\"error\":{\"message\":\"");
    put_esc(b, a->err_msg.p, a->err_msg.len);
    put(b, "\",\"type\":\"");
    put(b, a->err_type ? a->err_type : "server_error");
    put(b, "\",\"param\":null,\"code\":");
    if (a->err_code.len) {
        put(b, "\"");
        put_esc(b, a->err_code.p, a->err_code.len);
        put(b, "\"}}");
    } else {
        put(b, "null}}");
    }
}

void fake_openai_models(struct buf *out)
{
    static const char *const ids[] = {"fake-small", "fake-large",
                                      "fake-tools"};
    put(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < sizeof(ids) / sizeof(*ids); i++) {
        put(out, i ? ",{\"id\":\"" : "{\"id\":\"");
        put(out, ids[i]);
        put(out, "\",\"object\":\"model\",\"created\":1700000000,"
                 "\"owned_by\":\"relay-fake\"}");
    }
    put(out, "]}");
}

const struct fake_format fake_openai_format = {
    .name = "openai",
    .stream_type = "text/event-stream",
    .build = build,
    .body = render_body,
    .stream_head = render_head,
    .stream_piece = render_piece,
    .stream_end = render_end,
    .stream_malformed = render_malformed,
    .error_body = render_error,
};
