/*
 * ollama.c - Ollama's native chat API: request to answer, answer to wire.
 *
 * ol_build() reads a `POST /api/chat` body (model, messages, tools, format,
 * options, stream — which defaults to TRUE in Ollama); the renderers write
 * NDJSON lines `{"model":...,"created_at":...,"message":{...},"done":false}`
 * and a final line with done true, done_reason and the counts and
 * durations, or one whole object, and Ollama's error body
 * `{"error":"..."}`. Tool calls carry their arguments as a JSON object and
 * are sent whole, in one line. Ollama has no keys: --require-key does not
 * apply. Also GET /api/tags and GET /api/version.
 *
 * Names here carry an `ol_` prefix: the unit tests include every format's
 * source into one file.
 *
 * Read first: ol_build(), then ol_line_head() and ol_done().
 */
#include "fakeprov.h"

#include <stdio.h>
#include <time.h>

/* ---------------------------------------------------------------------- */
/* Request                                                                */

static void ol_bad(struct answer *a, const char *msg)
{
    fake_answer_error(a, 400, "invalid_request_error", NULL, msg);
}

static bool ol_check(const json_t *req, int64_t *limit, struct answer *a)
{
    if (!json_is_object(req)) {
        ol_bad(a, "invalid request: the body must be a JSON object");
        return false;
    }
    const json_t *model = json_object_get(req, "model");
    if (!json_is_string(model) || json_string_length(model) == 0) {
        ol_bad(a, "model is required");
        return false;
    }
    (void)buf_append(&a->model, json_string_value(model),
                     json_string_length(model));
    const json_t *msgs = json_object_get(req, "messages");
    if (msgs && !json_is_array(msgs)) {
        ol_bad(a, "messages must be an array");
        return false;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const json_t *content = json_object_get(m, "content");
        if (!json_is_string(json_object_get(m, "role"))) {
            ol_bad(a, "every message needs a string role");
            return false;
        }
        if (content && !json_is_string(content)) {
            ol_bad(a, "message content must be a string");
            return false;
        }
    }
    const json_t *stream = json_object_get(req, "stream");
    if (stream && !json_is_boolean(stream) && !json_is_null(stream)) {
        ol_bad(a, "stream must be a boolean");
        return false;
    }
    a->stream = !stream || json_is_null(stream) || json_is_true(stream);
    const json_t *opts = json_object_get(req, "options");
    if (opts && !json_is_object(opts) && !json_is_null(opts)) {
        ol_bad(a, "options must be an object");
        return false;
    }
    const json_t *np = json_object_get(opts, "num_predict");
    *limit = -1;
    if (np && !json_is_null(np)) {
        if (!json_is_integer(np)) {
            ol_bad(a, "num_predict must be an integer");
            return false;
        }
        if (json_integer_value(np) >= 0) {
            *limit = json_integer_value(np); /* -1 and -2: no limit */
        }
    }
    return true;
}

/* Fills a's content per `format`; false (with a 400) when it is bad. */
static bool ol_content(const json_t *req, uint64_t seed, struct answer *a)
{
    const json_t *fmt = json_object_get(req, "format");
    size_t n = (size_t)a->completion_tokens;
    if (!fmt || json_is_null(fmt) ||
        (json_is_string(fmt) && json_string_length(fmt) == 0)) {
        fake_answer_words(a, seed, n, false);
    } else if (json_is_string(fmt) &&
               strcmp(json_string_value(fmt), "json") == 0) {
        fake_answer_words(a, seed, n, true);
    } else if (json_is_object(fmt)) {
        (void)fake_text_fill_schema(fmt, &a->content);
        fake_answer_split(a, 0, n);
    } else {
        ol_bad(a, "invalid format: expected \"json\" or a JSON schema");
        return false;
    }
    return true;
}

static void ol_build(const json_t *req, const struct fake_opts *o,
                     struct answer *a)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    a->id = fake_answer_next_id();
    a->created_s = (int64_t)ts.tv_sec;
    a->created_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    int64_t limit = -1;
    struct script sc;
    if (!ol_check(req, &limit, a) || !fake_answer_begin(a, o, limit, &sc)) {
        return;
    }
    const json_t *msgs = json_object_get(req, "messages");
    a->prompt_tokens = fake_text_prompt_tokens(msgs);
    const json_t *tools = json_object_get(req, "tools");
    if (tools && !json_is_array(tools) && !json_is_null(tools)) {
        ol_bad(a, "tools must be an array");
        return;
    }
    const json_t *fn = json_object_get(json_array_get(tools, 0), "function");
    if (json_array_size(tools) && !json_is_string(json_object_get(fn,
                                                                   "name"))) {
        ol_bad(a, "every tool needs function.name");
        return;
    }
    if (fn) {
        const json_t *name = json_object_get(fn, "name");
        a->kind = ANSWER_TOOL;
        a->finish = "tool_calls";
        (void)buf_append(&a->tool_name, json_string_value(name),
                         json_string_length(name));
        (void)fake_text_fill_schema(json_object_get(fn, "parameters"),
                                    &a->content);
        fake_answer_cut(a, a->content.len); /* one line: the whole call */
    } else {
        if (!ol_content(req, fake_text_prompt_seed(msgs), a)) {
            return;
        }
        if (fake_answer_stop_at(a, json_object_get(json_object_get(req,
                                                                   "options"),
                                                   "stop"))) {
            a->finish = "stop";
        }
    }
    fake_answer_stage(a, &sc);
}

/* ---------------------------------------------------------------------- */
/* Rendering                                                              */

/* Appends `{"model":"...","created_at":"...",`. */
static void ol_line_head(const struct answer *a, struct buf *b)
{
    char when[64];
    time_t s = (time_t)(a->created_ns / 1000000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof(when) - n, ".%09lldZ",
             (long long)(a->created_ns % 1000000000));
    fake_put(b, "{\"model\":\"");
    fake_put_esc(b, a->model.p, a->model.len);
    fake_put(b, "\",\"created_at\":\"");
    fake_put(b, when);
    fake_put(b, "\",");
}

static void ol_tool_calls(const struct answer *a, struct buf *b)
{
    fake_put(b, ",\"tool_calls\":[{\"function\":{\"name\":\"");
    fake_put_esc(b, a->tool_name.p, a->tool_name.len);
    fake_put(b, "\",\"arguments\":");
    (void)buf_append(b, a->content.p, a->content.len);
    fake_put(b, "}}]");
}

/* Appends `"done":true,...` with the counts and durations (ns). */
static void ol_done(const struct answer *a, struct buf *b)
{
    int64_t load = 1000000;
    int64_t prompt_eval = a->ttft_ms ? (int64_t)a->ttft_ms * 1000000
                                     : a->prompt_tokens * 10000;
    int64_t eval = a->tps > 0
                       ? (int64_t)((double)a->completion_tokens * 1e9 / a->tps)
                       : a->completion_tokens * 100000;
    fake_put(b, "\"done_reason\":\"");
    fake_put(b, strcmp(a->finish, "length") == 0 ? "length" : "stop");
    fake_put(b, "\",\"done\":true,\"total_duration\":");
    fake_put_i64(b, load + prompt_eval + eval);
    fake_put(b, ",\"load_duration\":");
    fake_put_i64(b, load);
    fake_put(b, ",\"prompt_eval_count\":");
    fake_put_i64(b, a->prompt_tokens);
    fake_put(b, ",\"prompt_eval_duration\":");
    fake_put_i64(b, prompt_eval);
    fake_put(b, ",\"eval_count\":");
    fake_put_i64(b, a->completion_tokens);
    fake_put(b, ",\"eval_duration\":");
    fake_put_i64(b, eval);
    fake_put(b, "}");
}

static void ol_body(const struct answer *a, struct buf *b)
{
    ol_line_head(a, b);
    fake_put(b, "\"message\":{\"role\":\"assistant\",\"content\":\"");
    if (a->kind != ANSWER_TOOL) {
        fake_put_esc(b, a->content.p, a->content.len);
    }
    fake_put(b, "\"");
    if (a->kind == ANSWER_TOOL) {
        ol_tool_calls(a, b);
    }
    fake_put(b, "},");
    ol_done(a, b);
}

static void ol_stream_head(const struct answer *a, struct buf *b)
{
    (void)a;
    (void)b; /* Ollama's first line is the first token */
}

static void ol_piece(const struct answer *a, size_t k, struct buf *b)
{
    size_t from = k ? a->cuts[k - 1] : 0;
    ol_line_head(a, b);
    fake_put(b, "\"message\":{\"role\":\"assistant\",\"content\":\"");
    if (a->kind == ANSWER_TOOL) {
        fake_put(b, "\"");
        ol_tool_calls(a, b);
    } else {
        fake_put_esc(b, a->content.p + from, a->cuts[k] - from);
        fake_put(b, "\"");
    }
    fake_put(b, "},\"done\":false}\n");
}

static void ol_stream_end(const struct answer *a, bool done, struct buf *b)
{
    if (!done) {
        return; /* nodone: no final line */
    }
    ol_line_head(a, b);
    fake_put(b, "\"message\":{\"role\":\"assistant\",\"content\":\"\"},");
    ol_done(a, b);
    fake_put(b, "\n");
}

static void ol_malformed(const struct answer *a, struct buf *b)
{
    ol_line_head(a, b);
    fake_put(b, "\"message\":{\n");
}

static void ol_error(const struct answer *a, struct buf *b)
{
    fake_put(b, "{\"error\":\"");
    if (a->status == 404 && !a->err_code_scripted &&
        a->err_code.len == sizeof("model_not_found") - 1 &&
        memcmp(a->err_code.p, "model_not_found", a->err_code.len) == 0) {
        const char *q = memchr(a->model.p ? a->model.p : "", '?',
                               a->model.len);
        size_t base = q ? (size_t)(q - a->model.p) : a->model.len;
        fake_put(b, "model '");
        fake_put_esc(b, a->model.p, base);
        fake_put(b, "' not found");
    } else {
        fake_put_esc(b, a->err_msg.p, a->err_msg.len);
    }
    fake_put(b, "\"}");
}

void fake_ollama_tags(struct buf *out)
{
    static const char *const names[] = {"fake-small", "fake-large",
                                        "fake-tools"};
    fake_put(out, "{\"models\":[");
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        fake_put(out, i ? ",{\"name\":\"" : "{\"name\":\"");
        fake_put(out, names[i]);
        fake_put(out, ":latest\",\"model\":\"");
        fake_put(out, names[i]);
        fake_put(out, ":latest\",\"modified_at\":\"2025-01-01T00:00:00Z\","
                      "\"size\":4661224676,\"digest\":\"");
        char digest[65];
        uint64_t h = fake_text_fnv1a(TEXT_FNV_OFFSET, names[i],
                                     strlen(names[i]));
        for (int k = 0; k < 4; k++) {
            snprintf(digest + 16 * k, 17, "%016llx",
                     (unsigned long long)(h + (uint64_t)k));
        }
        fake_put(out, digest);
        fake_put(out, "\",\"details\":{\"parent_model\":\"\",\"format\":"
                      "\"gguf\",\"family\":\"llama\",\"families\":[\"llama\"],"
                      "\"parameter_size\":\"8.0B\",\"quantization_level\":"
                      "\"Q4_K_M\"}}");
    }
    fake_put(out, "]}");
}

void fake_ollama_version(struct buf *out)
{
    fake_put(out, "{\"version\":\"0.12.0\"}");
}

const struct fake_format fake_ollama_format = {
    .name = "ollama",
    .stream_type = "application/x-ndjson",
    .auth = AUTH_NONE,
    .need_header = NULL,
    .from_url = NULL,
    .build = ol_build,
    .body = ol_body,
    .stream_head = ol_stream_head,
    .stream_piece = ol_piece,
    .stream_end = ol_stream_end,
    .stream_malformed = ol_malformed,
    .error_body = ol_error,
};
