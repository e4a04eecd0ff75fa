/*
 * test_fakeprov_formats.c - unit tests of the fake provider's Anthropic,
 * Gemini and Ollama wire formats (and the shared cache keys and safety
 * faults, which OpenAI renders too): each request reader turned into a
 * struct answer, and every renderer's output parsed back with jansson.
 *
 * As in test_fakeprov_script.c, the fake's sources are included directly
 * (the Makefile links unit tests against src/ objects only); every format
 * names its statics with its own prefix so they can share this file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../tools/fakeprov/answer.c"
#include "../../tools/fakeprov/anthropic.c"
#include "../../tools/fakeprov/gemini.c"
#include "../../tools/fakeprov/ollama.c"
#include "../../tools/fakeprov/openai.c"
#include "../../tools/fakeprov/script.c"
#include "../../tools/fakeprov/text.c"

static const struct fake_opts opts = {.tokens = 16, .seed = 1};

struct fx {
    struct answer a;
    struct buf out;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    fake_answer_init(&f->a);
    buf_init(&f->out, 1u << 20);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fake_answer_free(&f->a);
    buf_free(&f->out);
    free(f);
    return 0;
}

/* Builds f->a from the JSON text req with fmt (after from_url with url). */
static struct answer *build_with(struct fx *f, const struct fake_format *fmt,
                                 const char *url, const char *req)
{
    json_error_t e;
    json_t *j = json_loads(req, 0, &e);
    assert_non_null(j);
    fake_answer_reset(&f->a);
    if (url && fmt->from_url) {
        fmt->from_url(str_from(url), &f->a);
    }
    if (f->a.kind != ANSWER_ERROR) {
        fmt->build(j, &opts, &f->a);
    }
    json_decref(j);
    return &f->a;
}

/* Renders with fn into f->out and parses it; the caller decrefs. */
static json_t *render_json(struct fx *f,
                           void (*fn)(const struct answer *, struct buf *))
{
    buf_reset(&f->out);
    fn(&f->a, &f->out);
    json_error_t e;
    json_t *j = json_loadb(f->out.p, f->out.len, 0, &e);
    if (!j) {
        fail_msg("not JSON (%s): %.*s", e.text, (int)f->out.len, f->out.p);
    }
    return j;
}

/* Renders a whole stream (head, every piece, end) into f->out. */
static void render_stream(struct fx *f, const struct fake_format *fmt,
                          bool done)
{
    buf_reset(&f->out);
    fmt->stream_head(&f->a, &f->out);
    for (size_t k = 0; k < f->a.npieces; k++) {
        fmt->stream_piece(&f->a, k, &f->out);
    }
    fmt->stream_end(&f->a, done, &f->out);
    (void)buf_append(&f->out, "", 1); /* NUL for strstr */
    f->out.len--;
}

static const char *sget(const json_t *o, const char *path)
{
    json_t *v = json_object_get(o, path);
    return json_string_value(v);
}

static json_int_t iget(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* The n-token answer to prompt, as docs/fakeprov.md defines it. */
static void expect_words(const char *prompt, size_t n, struct buf *out)
{
    uint64_t seed = fake_text_fnv1a(TEXT_FNV_OFFSET, prompt, strlen(prompt));
    for (size_t i = 0; i < n; i++) {
        struct str w = fake_text_word(seed, (uint32_t)i);
        (void)buf_append_str(out, w);
        (void)buf_append_cstr(out, " ");
    }
}

/* ---------------------------------------------------------------------- */
/* Shared: script keys, stop sequences, safety                            */

static void test_cache_keys_and_new_faults_parse(void **state)
{
    (void)state;
    struct script sc;
    char err[160];
    assert_int_equal(fake_script_parse(
                         str_from("m?cached=7&cache_write=3&fault=safety"),
                         &sc, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(sc.cache_read, 7);
    assert_int_equal(sc.cache_write, 3);
    assert_int_equal(sc.fault, FAULT_SAFETY);
    assert_int_equal(fake_script_parse(str_from("m?cache_read=9&fault=blocked"),
                                       &sc, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(sc.cache_read, 9);
    assert_int_equal(sc.fault, FAULT_BLOCKED);
    assert_int_equal(fake_script_parse(str_from("m?cached=-1"), &sc, err,
                                       sizeof(err)),
                     RL_E_INVALID_REQUEST);
    assert_string_equal(fake_script_fault_name(FAULT_BLOCKED), "blocked");
}

static void test_openai_counts_cached_inside_prompt(void **state)
{
    struct fx *f = *state;
    build_with(f, &fake_openai_format, NULL,
               "{\"model\":\"m?tokens=2&cached=10\",\"messages\":[{\"role\":"
               "\"user\",\"content\":\"abcd\"}]}");
    json_t *j = render_json(f, fake_openai_format.body);
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(iget(u, "prompt_tokens"), 5 + 10);
    assert_int_equal(iget(u, "total_tokens"), 17);
    assert_int_equal(iget(json_object_get(u, "prompt_tokens_details"),
                          "cached_tokens"),
                     10);
    json_decref(j);
    build_with(f, &fake_openai_format, NULL,
               "{\"model\":\"m?fault=safety\",\"messages\":[{\"role\":"
               "\"user\",\"content\":\"x\"}]}");
    j = render_json(f, fake_openai_format.body);
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(sget(c0, "finish_reason"), "content_filter");
    assert_string_equal(sget(json_object_get(c0, "message"), "content"), "");
    json_decref(j);
}

/* ---------------------------------------------------------------------- */
/* Anthropic                                                              */

#define A_USER "{\"role\":\"user\",\"content\":\"hello world\"}"

static void test_anthropic_text_answer(void **state)
{
    struct fx *f = *state;
    struct answer *a = build_with(
        f, &fake_anthropic_format, NULL,
        "{\"model\":\"c?tokens=3&cache_read=4&cache_write=2\","
        "\"max_tokens\":50,\"system\":[{\"type\":\"text\",\"text\":\"abcde\"}],"
        "\"messages\":[" A_USER "]}");
    assert_int_equal(a->kind, ANSWER_TEXT);
    /* "hello world" is 11 chars: 3 + 4; the system "abcde": 2 + 4 */
    assert_int_equal(a->prompt_tokens, 7 + 6);
    json_t *j = render_json(f, fake_anthropic_format.body);
    assert_string_equal(sget(j, "type"), "message");
    assert_string_equal(sget(j, "role"), "assistant");
    assert_non_null(strstr(sget(j, "id"), "msg_fake_"));
    assert_string_equal(sget(j, "stop_reason"), "end_turn");
    assert_true(json_is_null(json_object_get(j, "stop_sequence")));
    struct buf want;
    buf_init(&want, 4096);
    expect_words("hello world", 3, &want);
    json_t *c0 = json_array_get(json_object_get(j, "content"), 0);
    assert_string_equal(sget(c0, "type"), "text");
    assert_string_equal(sget(c0, "text"), want.p);
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(iget(u, "input_tokens"), 13); /* cache outside */
    assert_int_equal(iget(u, "cache_read_input_tokens"), 4);
    assert_int_equal(iget(u, "cache_creation_input_tokens"), 2);
    assert_int_equal(iget(u, "output_tokens"), 3);
    buf_free(&want);
    json_decref(j);
}

static void test_anthropic_continues_a_final_assistant_message(void **state)
{
    struct fx *f = *state;
    struct buf want;
    buf_init(&want, 4096);
    expect_words("hello world", 6, &want); /* "w0 w1 w2 w3 w4 w5 " */
    /* The prefill: the first two words, without their trailing space. */
    const char *second = strchr(strchr(want.p, ' ') + 1, ' ');
    char req[1024];
    snprintf(req, sizeof(req),
             "{\"model\":\"c?tokens=6\",\"max_tokens\":50,\"messages\":["
             A_USER ",{\"role\":\"assistant\",\"content\":[{\"type\":"
             "\"text\",\"text\":\"%.*s\"}]}]}",
             (int)(second - want.p), want.p);
    struct answer *a = build_with(f, &fake_anthropic_format, NULL, req);
    assert_int_equal(a->kind, ANSWER_TEXT);
    json_t *j = render_json(f, fake_anthropic_format.body);
    json_t *c0 = json_array_get(json_object_get(j, "content"), 0);
    assert_string_equal(sget(c0, "text"), second); /* " w2 w3 w4 w5 " */
    /* The pieces left: the space, then w2..w5. */
    assert_int_equal(iget(json_object_get(j, "usage"), "output_tokens"), 5);
    json_decref(j);
    /* A prefill the answer does not begin with: the whole answer. */
    a = build_with(f, &fake_anthropic_format, NULL,
                   "{\"model\":\"c?tokens=6\",\"max_tokens\":50,\"messages\":["
                   A_USER ",{\"role\":\"assistant\",\"content\":\"zzz\"}]}");
    j = render_json(f, fake_anthropic_format.body);
    c0 = json_array_get(json_object_get(j, "content"), 0);
    assert_string_equal(sget(c0, "text"), want.p);
    json_decref(j);
    /* Trailing whitespace in a final assistant turn: 400, as Anthropic. */
    a = build_with(f, &fake_anthropic_format, NULL,
                   "{\"model\":\"c?tokens=6\",\"max_tokens\":50,\"messages\":["
                   A_USER ",{\"role\":\"assistant\",\"content\":\"the \"}]}");
    assert_int_equal(a->kind, ANSWER_ERROR);
    assert_int_equal(a->status, 400);
    assert_non_null(strstr(a->err_msg.p, "trailing whitespace"));
    buf_free(&want);
}

static void test_anthropic_stream_events(void **state)
{
    struct fx *f = *state;
    build_with(f, &fake_anthropic_format, NULL,
               "{\"model\":\"c?tokens=2\",\"max_tokens\":50,\"stream\":true,"
               "\"messages\":[" A_USER "]}");
    assert_true(f->a.stream);
    render_stream(f, &fake_anthropic_format, true);
    static const char *const names[] = {
        "message_start", "ping", "content_block_start",
        "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"};
    const char *p = f->out.p;
    for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
        char ev[64];
        snprintf(ev, sizeof(ev), "event: %s\ndata: ", names[i]);
        assert_true(strncmp(p, ev, strlen(ev)) == 0);
        p += strlen(ev);
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        json_error_t e;
        json_t *d = json_loadb(p, (size_t)(end - p), 0, &e);
        assert_non_null(d);
        assert_string_equal(sget(d, "type"), names[i]);
        json_decref(d);
        p = end + 2;
    }
    assert_int_equal(*p, '\0');
    render_stream(f, &fake_anthropic_format, false); /* nodone */
    assert_null(strstr(f->out.p, "message_stop"));
    assert_non_null(strstr(f->out.p, "message_delta"));
}

static void test_anthropic_tool_call_and_choice(void **state)
{
    struct fx *f = *state;
    const char *tools =
        "\"tools\":[{\"name\":\"a\",\"input_schema\":{\"type\":\"object\"}},"
        "{\"name\":\"b\",\"input_schema\":{\"type\":\"object\",\"properties\":"
        "{\"n\":{\"type\":\"integer\"}},\"required\":[\"n\"]}}]";
    char req[1024];
    snprintf(req, sizeof(req),
             "{\"model\":\"c\",\"max_tokens\":9,\"messages\":[" A_USER "],%s,"
             "\"tool_choice\":{\"type\":\"tool\",\"name\":\"b\"}}",
             tools);
    struct answer *a = build_with(f, &fake_anthropic_format, NULL, req);
    assert_int_equal(a->kind, ANSWER_TOOL);
    json_t *j = render_json(f, fake_anthropic_format.body);
    json_t *c0 = json_array_get(json_object_get(j, "content"), 0);
    assert_string_equal(sget(c0, "type"), "tool_use");
    assert_string_equal(sget(c0, "name"), "b");
    assert_int_equal(iget(json_object_get(c0, "input"), "n"), 1);
    assert_non_null(strstr(sget(c0, "id"), "toolu_fake_"));
    assert_string_equal(sget(j, "stop_reason"), "tool_use");
    json_decref(j);
    /* streamed: content_block_start, then input_json_delta fragments */
    render_stream(f, &fake_anthropic_format, true);
    assert_non_null(strstr(f->out.p, "\"type\":\"tool_use\""));
    assert_non_null(strstr(f->out.p, "input_json_delta"));
    snprintf(req, sizeof(req),
             "{\"model\":\"c\",\"max_tokens\":9,\"messages\":[" A_USER "],%s,"
             "\"tool_choice\":{\"type\":\"tool\",\"name\":\"zz\"}}",
             tools);
    a = build_with(f, &fake_anthropic_format, NULL, req);
    assert_int_equal(a->kind, ANSWER_ERROR);
    assert_int_equal(a->status, 400);
    snprintf(req, sizeof(req),
             "{\"model\":\"c\",\"max_tokens\":9,\"messages\":[" A_USER "],%s,"
             "\"tool_choice\":{\"type\":\"none\"}}",
             tools);
    a = build_with(f, &fake_anthropic_format, NULL, req);
    assert_int_equal(a->kind, ANSWER_TEXT);
}

static void test_anthropic_limits_and_stop_sequences(void **state)
{
    struct fx *f = *state;
    struct answer *a = build_with(
        f, &fake_anthropic_format, NULL,
        "{\"model\":\"c?tokens=10\",\"max_tokens\":4,\"messages\":[" A_USER
        "]}");
    assert_int_equal(a->completion_tokens, 4);
    json_t *j = render_json(f, fake_anthropic_format.body);
    assert_string_equal(sget(j, "stop_reason"), "max_tokens");
    json_decref(j);
    struct buf want;
    buf_init(&want, 4096);
    expect_words("hello world", 10, &want);
    /* stop at the third word: the answer is the first two words + space */
    const char *w3 = want.p;
    for (int i = 0; i < 2; i++) {
        w3 = strchr(w3, ' ') + 1;
    }
    char stop[32];
    snprintf(stop, sizeof(stop), "%.*s", (int)(strchr(w3, ' ') - w3), w3);
    char req[512];
    snprintf(req, sizeof(req),
             "{\"model\":\"c?tokens=10\",\"max_tokens\":40,\"messages\":["
             A_USER "],\"stop_sequences\":[\"zzz\",\"%s\"]}",
             stop);
    a = build_with(f, &fake_anthropic_format, NULL, req);
    j = render_json(f, fake_anthropic_format.body);
    assert_string_equal(sget(j, "stop_reason"), "stop_sequence");
    assert_string_equal(sget(j, "stop_sequence"), stop);
    const char *text = sget(json_array_get(json_object_get(j, "content"), 0),
                            "text");
    assert_int_equal(strlen(text), (size_t)(strstr(want.p, stop) - want.p));
    assert_true(a->completion_tokens <= 3);
    json_decref(j);
    buf_free(&want);
}

static void test_anthropic_bad_requests_and_errors(void **state)
{
    struct fx *f = *state;
    struct answer *a = build_with(f, &fake_anthropic_format, NULL,
                                  "{\"model\":\"c\",\"messages\":[" A_USER
                                  "]}");
    assert_int_equal(a->status, 400); /* max_tokens is required */
    assert_non_null(strstr(a->err_msg.p, "max_tokens"));
    a = build_with(f, &fake_anthropic_format, NULL,
                   "{\"model\":\"c\",\"max_tokens\":5,\"messages\":[{\"role\":"
                   "\"system\",\"content\":\"x\"}]}");
    assert_int_equal(a->status, 400);
    static const struct {
        int status;
        const char *type;
    } map[] = {{400, "invalid_request_error"}, {401, "authentication_error"},
               {403, "permission_error"},      {404, "not_found_error"},
               {429, "rate_limit_error"},      {500, "api_error"},
               {503, "api_error"},             {529, "overloaded_error"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(*map); i++) {
        char req[256];
        snprintf(req, sizeof(req),
                 "{\"model\":\"c?status=%d\",\"max_tokens\":5,\"messages\":["
                 A_USER "]}",
                 map[i].status);
        a = build_with(f, &fake_anthropic_format, NULL, req);
        assert_int_equal(a->status, map[i].status);
        json_t *j = render_json(f, fake_anthropic_format.error_body);
        assert_string_equal(sget(j, "type"), "error");
        assert_string_equal(sget(json_object_get(j, "error"), "type"),
                            map[i].type);
        json_decref(j);
    }
    a = build_with(f, &fake_anthropic_format, NULL,
                   "{\"model\":\"c?status=400&code=billing_error\","
                   "\"max_tokens\":5,\"messages\":[" A_USER "]}");
    json_t *j = render_json(f, fake_anthropic_format.error_body);
    assert_string_equal(sget(json_object_get(j, "error"), "type"),
                        "billing_error");
    json_decref(j);
    build_with(f, &fake_anthropic_format, NULL,
               "{\"model\":\"c\",\"max_tokens\":5,\"messages\":[" A_USER "]}");
    buf_reset(&f->out);
    fake_anthropic_format.stream_malformed(&f->a, &f->out);
    assert_null(json_loadb(f->out.p + 6 + strlen("content_block_delta\ndata: "),
                           f->out.len - 6 - strlen("content_block_delta\ndata: "),
                           0, NULL));
}

/* ---------------------------------------------------------------------- */
/* Gemini                                                                 */

#define G_BODY "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":" \
               "\"hello world\"}]}]"

static void test_gemini_routes_and_urls(void **state)
{
    struct fx *f = *state;
    assert_true(fake_gemini_route(str_from("/v1beta/models/g:generateContent")));
    assert_true(fake_gemini_route(
        str_from("/v1beta/models/g:streamGenerateContent?alt=sse")));
    assert_true(fake_gemini_route(str_from("/v1/models/g:generateContent")));
    assert_false(fake_gemini_route(str_from("/v1/models/g")));
    assert_false(fake_gemini_route(str_from("/v1beta/models/g:countTokens")));
    struct answer *a = build_with(
        f, &fake_gemini_format,
        "/v1beta/models/g%3Ftokens%3D2%26cached%3D5:streamGenerateContent"
        "?alt=sse&key=k",
        G_BODY "}");
    assert_int_equal(a->kind, ANSWER_TEXT);
    assert_true(a->stream);
    assert_string_equal(a->model.p, "g?tokens=2&cached=5");
    assert_int_equal(a->completion_tokens, 2);
    assert_int_equal(a->cache_read, 5);
    /* a raw '?' in the path works too */
    a = build_with(f, &fake_gemini_format,
                   "/v1beta/models/g?tokens=3:generateContent", G_BODY "}");
    assert_false(a->stream);
    assert_int_equal(a->completion_tokens, 3);
    a = build_with(f, &fake_gemini_format,
                   "/v1beta/models/g:streamGenerateContent", G_BODY "}");
    assert_int_equal(a->kind, ANSWER_ERROR);
    assert_int_equal(a->status, 400);
}

static void test_gemini_text_usage_and_stream(void **state)
{
    struct fx *f = *state;
    struct answer *a = build_with(
        f, &fake_gemini_format,
        "/v1beta/models/g%3Ftokens%3D3%26cached%3D10:generateContent",
        G_BODY ",\"systemInstruction\":{\"parts\":[{\"text\":\"abcde\"}]}}");
    assert_int_equal(a->prompt_tokens, 7 + 6);
    json_t *j = render_json(f, fake_gemini_format.body);
    json_t *c0 = json_array_get(json_object_get(j, "candidates"), 0);
    assert_string_equal(sget(c0, "finishReason"), "STOP");
    json_t *content = json_object_get(c0, "content");
    assert_string_equal(sget(content, "role"), "model");
    struct buf want;
    buf_init(&want, 4096);
    expect_words("hello world", 3, &want);
    assert_string_equal(
        sget(json_array_get(json_object_get(content, "parts"), 0), "text"),
        want.p);
    json_t *u = json_object_get(j, "usageMetadata");
    assert_int_equal(iget(u, "promptTokenCount"), 13 + 10); /* inside */
    assert_int_equal(iget(u, "candidatesTokenCount"), 3);
    assert_int_equal(iget(u, "totalTokenCount"), 26);
    assert_int_equal(iget(u, "cachedContentTokenCount"), 10);
    assert_string_equal(sget(j, "modelVersion"), "g?tokens=3&cached=10");
    json_decref(j);
    buf_free(&want);
    /* the stream: one event per token, then finishReason + usage; CRLF */
    render_stream(f, &fake_gemini_format, true);
    size_t events = 0;
    const char *p = f->out.p;
    const char *last = NULL;
    while (*p) {
        assert_true(strncmp(p, "data: ", 6) == 0);
        const char *end = strstr(p, "\r\n\r\n");
        assert_non_null(end);
        json_t *d = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
        assert_non_null(d);
        json_decref(d);
        last = p + 6;
        events++;
        p = end + 4;
    }
    assert_int_equal(events, 4);
    assert_non_null(strstr(last, "\"finishReason\":\"STOP\""));
    assert_non_null(strstr(last, "usageMetadata"));
    assert_null(strstr(f->out.p, "[DONE]"));
    render_stream(f, &fake_gemini_format, false); /* nodone: no finish */
    assert_null(strstr(f->out.p, "finishReason"));
}

static void test_gemini_tools_json_and_limits(void **state)
{
    struct fx *f = *state;
    struct answer *a = build_with(
        f, &fake_gemini_format, "/v1beta/models/g:generateContent",
        G_BODY ",\"tools\":[{\"functionDeclarations\":[{\"name\":\"f\","
               "\"parameters\":{\"type\":\"OBJECT\",\"properties\":{\"n\":"
               "{\"type\":\"INTEGER\"},\"s\":{\"type\":\"STRING\"}},"
               "\"required\":[\"n\",\"s\"]}}]}]}");
    assert_int_equal(a->kind, ANSWER_TOOL);
    assert_int_equal(a->npieces, 1);
    json_t *j = render_json(f, fake_gemini_format.body);
    json_t *c0 = json_array_get(json_object_get(j, "candidates"), 0);
    json_t *fc = json_object_get(
        json_array_get(json_object_get(json_object_get(c0, "content"),
                                       "parts"),
                       0),
        "functionCall");
    assert_string_equal(sget(fc, "name"), "f");
    assert_int_equal(iget(json_object_get(fc, "args"), "n"), 1);
    assert_string_equal(sget(json_object_get(fc, "args"), "s"), "value");
    assert_string_equal(sget(c0, "finishReason"), "STOP");
    json_decref(j);
    a = build_with(f, &fake_gemini_format, "/v1beta/models/g:generateContent",
                   G_BODY ",\"tools\":[{\"functionDeclarations\":[{\"name\":"
                          "\"f\"}]}],\"toolConfig\":{\"functionCallingConfig\":"
                          "{\"mode\":\"NONE\"}}}");
    assert_int_equal(a->kind, ANSWER_TEXT);
    a = build_with(f, &fake_gemini_format,
                   "/v1beta/models/g%3Ftokens%3D9:generateContent",
                   G_BODY ",\"generationConfig\":{\"maxOutputTokens\":2}}");
    j = render_json(f, fake_gemini_format.body);
    assert_string_equal(sget(json_array_get(json_object_get(j, "candidates"),
                                            0),
                             "finishReason"),
                        "MAX_TOKENS");
    json_decref(j);
    a = build_with(f, &fake_gemini_format, "/v1beta/models/g:generateContent",
                   G_BODY ",\"generationConfig\":{\"responseMimeType\":"
                          "\"application/json\",\"responseSchema\":{\"type\":"
                          "\"OBJECT\",\"properties\":{\"ok\":{\"type\":"
                          "\"BOOLEAN\"}},\"required\":[\"ok\"]}}}");
    assert_memory_equal(a->content.p, "{\"ok\":true}", a->content.len);
    a = build_with(f, &fake_gemini_format, "/v1beta/models/g:generateContent",
                   "{\"contents\":[]}");
    assert_int_equal(a->status, 400);
}

static void test_gemini_safety_blocked_and_errors(void **state)
{
    struct fx *f = *state;
    build_with(f, &fake_gemini_format,
               "/v1beta/models/g%3Ffault%3Dsafety:generateContent",
               G_BODY "}");
    json_t *j = render_json(f, fake_gemini_format.body);
    json_t *c0 = json_array_get(json_object_get(j, "candidates"), 0);
    assert_string_equal(sget(c0, "finishReason"), "SAFETY");
    assert_null(json_object_get(c0, "content"));
    json_decref(j);
    build_with(f, &fake_gemini_format,
               "/v1beta/models/g%3Ffault%3Dblocked:generateContent",
               G_BODY "}");
    j = render_json(f, fake_gemini_format.body);
    assert_null(json_object_get(j, "candidates"));
    assert_string_equal(sget(json_object_get(j, "promptFeedback"),
                             "blockReason"),
                        "SAFETY");
    json_decref(j);
    static const struct {
        int status;
        const char *name;
    } map[] = {{400, "INVALID_ARGUMENT"}, {401, "UNAUTHENTICATED"},
               {403, "PERMISSION_DENIED"}, {404, "NOT_FOUND"},
               {429, "RESOURCE_EXHAUSTED"}, {500, "INTERNAL"},
               {503, "UNAVAILABLE"},        {504, "DEADLINE_EXCEEDED"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(*map); i++) {
        char url[128];
        snprintf(url, sizeof(url),
                 "/v1beta/models/g%%3Fstatus%%3D%d:generateContent",
                 map[i].status);
        build_with(f, &fake_gemini_format, url, G_BODY "}");
        j = render_json(f, fake_gemini_format.error_body);
        json_t *e = json_object_get(j, "error");
        assert_int_equal(iget(e, "code"), map[i].status);
        assert_string_equal(sget(e, "status"), map[i].name);
        assert_non_null(sget(e, "message"));
        json_decref(j);
    }
}

/* ---------------------------------------------------------------------- */
/* Ollama                                                                 */

#define O_MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hello world\"," \
               "\"images\":[\"aGk=\"]}]"

static void test_ollama_streams_by_default(void **state)
{
    struct fx *f = *state;
    struct answer *a = build_with(f, &fake_ollama_format, NULL,
                                  "{\"model\":\"l?tokens=2\"," O_MSGS "}");
    assert_true(a->stream);
    assert_int_equal(a->prompt_tokens, 7);
    render_stream(f, &fake_ollama_format, true);
    const char *p = f->out.p;
    int lines = 0;
    json_t *last = NULL;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        json_decref(last);
        last = json_loadb(p, (size_t)(nl - p), 0, NULL);
        assert_non_null(last);
        assert_string_equal(sget(last, "model"), "l?tokens=2");
        assert_non_null(strchr(sget(last, "created_at"), 'Z'));
        lines++;
        p = nl + 1;
    }
    assert_int_equal(lines, 3);
    assert_true(json_is_true(json_object_get(last, "done")));
    assert_string_equal(sget(last, "done_reason"), "stop");
    assert_int_equal(iget(last, "prompt_eval_count"), 7);
    assert_int_equal(iget(last, "eval_count"), 2);
    assert_true(iget(last, "total_duration") > 0);
    json_decref(last);
    render_stream(f, &fake_ollama_format, false);
    assert_null(strstr(f->out.p, "\"done\":true"));
    a = build_with(f, &fake_ollama_format, NULL,
                   "{\"model\":\"l\",\"stream\":false," O_MSGS "}");
    assert_false(a->stream);
}

static void test_ollama_whole_tools_formats_limits(void **state)
{
    struct fx *f = *state;
    build_with(f, &fake_ollama_format, NULL,
               "{\"model\":\"l\",\"stream\":false," O_MSGS ",\"tools\":[{"
               "\"type\":\"function\",\"function\":{\"name\":\"f\","
               "\"parameters\":{\"type\":\"object\",\"properties\":{\"n\":"
               "{\"type\":\"integer\"}},\"required\":[\"n\"]}}}]}");
    json_t *j = render_json(f, fake_ollama_format.body);
    json_t *msg = json_object_get(j, "message");
    json_t *fn = json_object_get(
        json_array_get(json_object_get(msg, "tool_calls"), 0), "function");
    assert_string_equal(sget(fn, "name"), "f");
    assert_true(json_is_object(json_object_get(fn, "arguments")));
    assert_int_equal(iget(json_object_get(fn, "arguments"), "n"), 1);
    assert_true(json_is_true(json_object_get(j, "done")));
    json_decref(j);
    struct answer *a = build_with(
        f, &fake_ollama_format, NULL,
        "{\"model\":\"l?tokens=3\",\"format\":\"json\"," O_MSGS "}");
    json_t *obj = json_loadb(a->content.p, a->content.len, 0, NULL);
    assert_non_null(sget(obj, "answer"));
    json_decref(obj);
    a = build_with(f, &fake_ollama_format, NULL,
                   "{\"model\":\"l?tokens=9\",\"options\":{\"num_predict\":2},"
                   O_MSGS "}");
    j = render_json(f, fake_ollama_format.body);
    assert_string_equal(sget(j, "done_reason"), "length");
    assert_int_equal(iget(j, "eval_count"), 2);
    json_decref(j);
    a = build_with(f, &fake_ollama_format, NULL,
                   "{\"model\":\"l\",\"options\":{\"num_predict\":-1}," O_MSGS
                   "}");
    assert_int_equal(a->completion_tokens, 16);
    a = build_with(f, &fake_ollama_format, NULL, "{\"messages\":[]}");
    assert_int_equal(a->status, 400);
    a = build_with(f, &fake_ollama_format, NULL,
                   "{\"model\":\"l\",\"format\":\"yaml\"," O_MSGS "}");
    assert_int_equal(a->status, 400);
}

static void test_ollama_errors_and_lists(void **state)
{
    struct fx *f = *state;
    build_with(f, &fake_ollama_format, NULL,
               "{\"model\":\"llama3?status=404\"," O_MSGS "}");
    json_t *j = render_json(f, fake_ollama_format.error_body);
    assert_string_equal(sget(j, "error"), "model 'llama3' not found");
    json_decref(j);
    build_with(f, &fake_ollama_format, NULL,
               "{\"model\":\"l?status=500\"," O_MSGS "}");
    j = render_json(f, fake_ollama_format.error_body);
    assert_non_null(sget(j, "error"));
    assert_int_equal(json_object_size(j), 1);
    json_decref(j);
    buf_reset(&f->out);
    fake_ollama_tags(&f->out);
    j = json_loadb(f->out.p, f->out.len, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(j, "models")), 3);
    json_decref(j);
    buf_reset(&f->out);
    fake_ollama_version(&f->out);
    j = json_loadb(f->out.p, f->out.len, 0, NULL);
    assert_non_null(sget(j, "version"));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_keys_and_new_faults_parse),
        cmocka_unit_test_setup_teardown(test_openai_counts_cached_inside_prompt,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_text_answer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_anthropic_continues_a_final_assistant_message, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_stream_events, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_tool_call_and_choice,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_anthropic_limits_and_stop_sequences, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anthropic_bad_requests_and_errors,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_gemini_routes_and_urls, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_gemini_text_usage_and_stream,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_gemini_tools_json_and_limits,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_gemini_safety_blocked_and_errors,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ollama_streams_by_default, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ollama_whole_tools_formats_limits,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ollama_errors_and_lists, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
