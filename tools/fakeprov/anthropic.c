/*
 * anthropic.c - Anthropic's Messages API: request to answer, answer to wire.
 *
 * an_build() reads a `POST /v1/messages` body into a struct answer; the
 * renderers write the `message` object, the named SSE events of a stream
 * (message_start, ping, content_block_start, content_block_delta,
 * content_block_stop, message_delta, message_stop) and Anthropic's error
 * body `{"type":"error","error":{"type":...,"message":...}}`. Usage counts
 * cache reads and writes OUTSIDE input_tokens, as Anthropic does.
 *
 * Names here carry an `an_` prefix: the unit tests include every format's
 * source into one file.
 *
 * Read first: an_build(), then an_piece().
 */
#include "fakeprov.h"

#include <stdio.h>
#include <time.h>

/* ---------------------------------------------------------------------- */
/* Request                                                                */

static void an_bad(struct answer *a, const char *msg)
{
    fake_answer_error(a, 400, "invalid_request_error", NULL, msg);
}

/* Returns the tool chosen by tools/tool_choice, NULL for a text answer;
 * sets a 400 on a malformed list or an unknown tool name. */
static const json_t *an_pick_tool(const json_t *req, struct answer *a)
{
    const json_t *tools = json_object_get(req, "tools");
    const json_t *choice = json_object_get(req, "tool_choice");
    if (!tools || json_is_null(tools)) {
        return NULL;
    }
    if (!json_is_array(tools)) {
        an_bad(a, "tools: Input should be a valid list");
        return NULL;
    }
    const char *ctype = json_string_value(json_object_get(choice, "type"));
    if (choice && !json_is_null(choice) &&
        (!ctype || (strcmp(ctype, "auto") != 0 && strcmp(ctype, "any") != 0 &&
                    strcmp(ctype, "tool") != 0 &&
                    strcmp(ctype, "none") != 0))) {
        an_bad(a, "tool_choice.type: Input should be 'auto', 'any', 'tool' "
                  "or 'none'");
        return NULL;
    }
    const char *want = NULL;
    if (ctype && strcmp(ctype, "tool") == 0) {
        want = json_string_value(json_object_get(choice, "name"));
        if (!want) {
            an_bad(a, "tool_choice.name: Field required");
            return NULL;
        }
    }
    size_t i;
    const json_t *t;
    const json_t *found = NULL;
    json_array_foreach(tools, i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        if (!name) {
            an_bad(a, "tools: every tool needs a name");
            return NULL;
        }
        if (!json_is_object(json_object_get(t, "input_schema")) &&
            !json_object_get(t, "type")) {
            an_bad(a, "tools: every custom tool needs an input_schema");
            return NULL;
        }
        if (!found && (!want || strcmp(want, name) == 0)) {
            found = t;
        }
    }
    if (want && !found) {
        an_bad(a, "tool_choice: the named tool is not in 'tools'");
        return NULL;
    }
    if (json_array_size(tools) == 0 || (ctype && strcmp(ctype, "none") == 0)) {
        return NULL;
    }
    return found;
}

/* Checks the fields every request needs; false (with a 400) otherwise. */
static bool an_check(const json_t *req, int64_t *limit, struct answer *a)
{
    if (!json_is_object(req)) {
        an_bad(a, "The request body must be a JSON object.");
        return false;
    }
    const json_t *model = json_object_get(req, "model");
    if (!json_is_string(model) || json_string_length(model) == 0) {
        an_bad(a, "model: Field required");
        return false;
    }
    (void)buf_append(&a->model, json_string_value(model),
                     json_string_length(model));
    const json_t *mt = json_object_get(req, "max_tokens");
    if (!mt) {
        an_bad(a, "max_tokens: Field required");
        return false;
    }
    if (!json_is_integer(mt) || json_integer_value(mt) < 1) {
        an_bad(a, "max_tokens: Input should be an integer >= 1");
        return false;
    }
    *limit = json_integer_value(mt);
    const json_t *msgs = json_object_get(req, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        an_bad(a, "messages: at least one message is required");
        return false;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        if (!role || (strcmp(role, "user") != 0 &&
                      strcmp(role, "assistant") != 0)) {
            an_bad(a, "messages: roles must be 'user' or 'assistant'");
            return false;
        }
        if (!json_is_string(content) && !json_is_array(content)) {
            an_bad(a, "messages: content must be a string or a list of "
                      "blocks");
            return false;
        }
    }
    const json_t *system = json_object_get(req, "system");
    if (system && !json_is_string(system) && !json_is_array(system)) {
        an_bad(a, "system: Input should be a string or a list of text "
                  "blocks");
        return false;
    }
    const json_t *stream = json_object_get(req, "stream");
    if (stream && !json_is_boolean(stream)) {
        an_bad(a, "stream: Input should be a valid boolean");
        return false;
    }
    a->stream = json_is_true(stream);
    return true;
}

/* Usage of the prompt: the system prompt counts as one more message. */
static void an_prompt(const json_t *req, struct answer *a, uint64_t *seed)
{
    const json_t *msgs = json_object_get(req, "messages");
    a->prompt_tokens = fake_text_prompt_tokens(msgs);
    const json_t *system = json_object_get(req, "system");
    if (system) {
        size_t chars = 0;
        fake_text_content_scan(system, NULL, &chars);
        a->prompt_tokens += fake_text_message_tokens(chars);
    }
    *seed = fake_text_prompt_seed(msgs);
}

/* The text of messages' last message when it is the assistant's (a
 * prefill to continue), into out; false when it is not. A final assistant
 * text that ends with whitespace is refused with a 400, as Anthropic
 * does. */
static bool an_prefill(const json_t *req, struct buf *out, struct answer *a)
{
    const json_t *msgs = json_object_get(req, "messages");
    const json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    if (!role || strcmp(role, "assistant") != 0) {
        return false;
    }
    const json_t *content = json_object_get(last, "content");
    if (json_is_string(content)) {
        (void)buf_append(out, json_string_value(content),
                         json_string_length(content));
    }
    size_t i;
    const json_t *block;
    json_array_foreach(content, i, block) {
        const char *type = json_string_value(json_object_get(block, "type"));
        const json_t *text = json_object_get(block, "text");
        if (type && strcmp(type, "text") == 0 && json_is_string(text)) {
            (void)buf_append(out, json_string_value(text),
                             json_string_length(text));
        }
    }
    char end = out->len ? out->p[out->len - 1] : 'x';
    if (end == ' ' || end == '\t' || end == '\n' || end == '\r') {
        an_bad(a, "messages: final assistant content cannot end with "
                  "trailing whitespace");
        return false;
    }
    return true;
}

static void an_build(const json_t *req, const struct fake_opts *o,
                     struct answer *a)
{
    a->id = fake_answer_next_id();
    a->created_s = (int64_t)time(NULL);
    int64_t limit = -1;
    struct script sc;
    if (!an_check(req, &limit, a) || !fake_answer_begin(a, o, limit, &sc)) {
        return;
    }
    uint64_t seed = 0;
    an_prompt(req, a, &seed);
    const json_t *tool = an_pick_tool(req, a);
    if (a->kind == ANSWER_ERROR) {
        return;
    }
    if (tool) {
        const json_t *name = json_object_get(tool, "name");
        a->kind = ANSWER_TOOL;
        a->finish = "tool_calls";
        (void)buf_append(&a->tool_name, json_string_value(name),
                         json_string_length(name));
        (void)fake_text_fill_schema(json_object_get(tool, "input_schema"),
                                    &a->content);
        fake_answer_cut(a, 0); /* piece 0: content_block_start */
        fake_answer_split(a, 0, a->content.len >= 6 ? 3 : 2);
    } else {
        struct buf prefill;
        buf_init(&prefill, 8u << 20);
        bool cont = an_prefill(req, &prefill, a);
        if (a->kind == ANSWER_ERROR) {
            buf_free(&prefill);
            return;
        }
        fake_answer_words(a, seed, (size_t)a->completion_tokens, false);
        if (cont) {
            (void)fake_answer_continue(a, (struct str){prefill.p,
                                                       prefill.len});
        }
        buf_free(&prefill);
        (void)fake_answer_stop_at(a, json_object_get(req, "stop_sequences"));
    }
    fake_answer_stage(a, &sc);
}

/* ---------------------------------------------------------------------- */
/* Rendering                                                              */

static const char *an_stop_reason(const struct answer *a)
{
    if (a->fault == FAULT_SAFETY || a->fault == FAULT_BLOCKED) {
        return "refusal";
    }
    if (strcmp(a->finish, "length") == 0) {
        return "max_tokens";
    }
    if (strcmp(a->finish, "tool_calls") == 0) {
        return "tool_use";
    }
    if (strcmp(a->finish, "stop_sequence") == 0) {
        return "stop_sequence";
    }
    return "end_turn";
}

static void an_stop_sequence(const struct answer *a, struct buf *b)
{
    if (strcmp(a->finish, "stop_sequence") == 0) {
        fake_put(b, "\"");
        fake_put_esc(b, a->stop_seq.p, a->stop_seq.len);
        fake_put(b, "\"");
    } else {
        fake_put(b, "null");
    }
}

/* Appends the usage object; output is the output_tokens to report. */
static void an_usage(const struct answer *a, int64_t output, struct buf *b)
{
    fake_put(b, "{\"input_tokens\":");
    fake_put_i64(b, a->prompt_tokens);
    fake_put(b, ",\"cache_creation_input_tokens\":");
    fake_put_i64(b, a->cache_write);
    fake_put(b, ",\"cache_read_input_tokens\":");
    fake_put_i64(b, a->cache_read);
    fake_put(b, ",\"output_tokens\":");
    fake_put_i64(b, output);
    fake_put(b, "}");
}

/* Appends `{"id":"msg_fake_N","type":"message","role":"assistant",
 * "model":"..."` shared by the answer and message_start. */
static void an_head(const struct answer *a, struct buf *b)
{
    fake_put(b, "{\"id\":\"msg_fake_");
    fake_put_i64(b, (int64_t)a->id);
    fake_put(b, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"");
    fake_put_esc(b, a->model.p, a->model.len);
    fake_put(b, "\"");
}

static void an_tool_block(const struct answer *a, bool with_input,
                          struct buf *b)
{
    fake_put(b, "{\"type\":\"tool_use\",\"id\":\"toolu_fake_");
    fake_put_i64(b, (int64_t)a->id);
    fake_put(b, "\",\"name\":\"");
    fake_put_esc(b, a->tool_name.p, a->tool_name.len);
    fake_put(b, "\",\"input\":");
    if (with_input) {
        (void)buf_append(b, a->content.p, a->content.len);
    } else {
        fake_put(b, "{}");
    }
    fake_put(b, "}");
}

static void an_body(const struct answer *a, struct buf *b)
{
    an_head(a, b);
    fake_put(b, ",\"content\":[");
    if (a->kind == ANSWER_TOOL) {
        an_tool_block(a, true, b);
    } else if (a->fault != FAULT_SAFETY && a->fault != FAULT_BLOCKED) {
        fake_put(b, "{\"type\":\"text\",\"text\":\"");
        fake_put_esc(b, a->content.p, a->content.len);
        fake_put(b, "\"}");
    }
    fake_put(b, "],\"stop_reason\":\"");
    fake_put(b, an_stop_reason(a));
    fake_put(b, "\",\"stop_sequence\":");
    an_stop_sequence(a, b);
    fake_put(b, ",\"usage\":");
    an_usage(a, a->completion_tokens, b);
    fake_put(b, "}");
}

/* Appends `event: name\ndata: ` (the data follows, then "\n\n"). */
static void an_event(const char *name, struct buf *b)
{
    fake_put(b, "event: ");
    fake_put(b, name);
    fake_put(b, "\ndata: ");
}

static bool an_refused(const struct answer *a)
{
    return a->fault == FAULT_SAFETY || a->fault == FAULT_BLOCKED;
}

static void an_stream_head(const struct answer *a, struct buf *b)
{
    an_event("message_start", b);
    fake_put(b, "{\"type\":\"message_start\",\"message\":");
    an_head(a, b);
    fake_put(b, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                "\"usage\":");
    an_usage(a, 1, b);
    fake_put(b, "}}\n\n");
    an_event("ping", b);
    fake_put(b, "{\"type\":\"ping\"}\n\n");
    if (a->kind != ANSWER_TOOL && !an_refused(a)) {
        an_event("content_block_start", b);
        fake_put(b, "{\"type\":\"content_block_start\",\"index\":0,"
                    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    }
}

static void an_piece(const struct answer *a, size_t k, struct buf *b)
{
    size_t from = k ? a->cuts[k - 1] : 0;
    size_t len = a->cuts[k] - from;
    if (a->kind == ANSWER_TOOL && k == 0) {
        an_event("content_block_start", b);
        fake_put(b, "{\"type\":\"content_block_start\",\"index\":0,"
                    "\"content_block\":");
        an_tool_block(a, false, b);
        fake_put(b, "}\n\n");
        return;
    }
    an_event("content_block_delta", b);
    fake_put(b, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":");
    fake_put(b, a->kind == ANSWER_TOOL
                    ? "{\"type\":\"input_json_delta\",\"partial_json\":\""
                    : "{\"type\":\"text_delta\",\"text\":\"");
    fake_put_esc(b, a->content.p + from, len);
    fake_put(b, "\"}}\n\n");
}

static void an_stream_end(const struct answer *a, bool done, struct buf *b)
{
    if (!an_refused(a)) {
        an_event("content_block_stop", b);
        fake_put(b, "{\"type\":\"content_block_stop\",\"index\":0}\n\n");
    }
    an_event("message_delta", b);
    fake_put(b, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"");
    fake_put(b, an_stop_reason(a));
    fake_put(b, "\",\"stop_sequence\":");
    an_stop_sequence(a, b);
    fake_put(b, "},\"usage\":{\"output_tokens\":");
    fake_put_i64(b, a->completion_tokens);
    fake_put(b, "}}\n\n");
    if (done) {
        an_event("message_stop", b);
        fake_put(b, "{\"type\":\"message_stop\"}\n\n");
    }
}

static void an_malformed(const struct answer *a, struct buf *b)
{
    (void)a;
    an_event("content_block_delta", b);
    fake_put(b, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\n\n");
}

/* Anthropic's error type for an HTTP status. */
static const char *an_error_type(int status)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 402: return "billing_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 500: return "api_error";
    case 504: return "timeout_error";
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static void an_error(const struct answer *a, struct buf *b)
{
    fake_put(b, "{\"type\":\"error\",\"error\":{\"type\":\"");
    if (a->err_code_scripted) {
        fake_put_esc(b, a->err_code.p, a->err_code.len);
    } else {
        fake_put(b, an_error_type(a->status));
    }
    fake_put(b, "\",\"message\":\"");
    fake_put_esc(b, a->err_msg.p, a->err_msg.len);
    fake_put(b, "\"}");
    if (a->id) {
        fake_put(b, ",\"request_id\":\"req_fake_");
        fake_put_i64(b, (int64_t)a->id);
        fake_put(b, "\"");
    }
    fake_put(b, "}");
}

const struct fake_format fake_anthropic_format = {
    .name = "anthropic",
    .stream_type = "text/event-stream",
    .auth = AUTH_X_API_KEY,
    .need_header = "anthropic-version",
    .from_url = NULL,
    .build = an_build,
    .body = an_body,
    .stream_head = an_stream_head,
    .stream_piece = an_piece,
    .stream_end = an_stream_end,
    .stream_malformed = an_malformed,
    .error_body = an_error,
};
