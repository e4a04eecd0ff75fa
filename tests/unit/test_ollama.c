/*
 * test_ollama.c - unit tests of src/providers/ollama.c, the adapter for
 * Ollama's native /api/chat (NDJSON streams).
 *
 * Requests are built from OpenAI bodies and compared whole with the
 * /api/chat request they must become ("stream" always explicit). Answers
 * come from tests/fixtures/ollama/: captured from the fake provider (text,
 * stop, tool, json, error_*), and hand-written from Ollama's documented
 * format (hand_*: escapes and a blank line, thinking and length without a
 * final newline, parallel tool calls, an error line, a cut stream). Every
 * stream fixture is fed whole and split at every byte (native_harness.h).
 */
#include "native_harness.h"

extern const struct provider_ops ollama_ops;
#define OPS (&ollama_ops)

static struct built build(const char *body)
{
    return build_with(OPS, "http://127.0.0.1:11434", "", "llama3.2?tokens=3",
                      body);
}

/* ---------------------------------------------------------------------
 * build_request
 * ------------------------------------------------------------------- */

static void test_a_conversation_becomes_an_api_chat_request(void **state)
{
    (void)state;
    struct built b = build(
        "{\"model\":\"m\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"What is this?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
        "\"data:image/png;base64,iVBORw0K\"}}]},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
        "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":"
        "\"18C\"},"
        "{\"role\":\"developer\",\"content\":\"Answer in French.\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":\"auto\",\"response_format\":{\"type\":"
        "\"json_schema\",\"json_schema\":{\"name\":\"w\",\"schema\":"
        "{\"type\":\"object\"}}},"
        "\"temperature\":0.2,\"top_p\":0.9,\"max_tokens\":100,"
        "\"stop\":\"END\",\"seed\":7,\"user\":\"u\"}");
    assert_int_equal(b.err, RL_OK);
    assert_json(b.sent,
        "{\"model\":\"llama3.2?tokens=3\",\"stream\":false,\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"What is this?\",\"images\":"
        "[\"iVBORw0K\"]},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
        "{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":"
        "\"Paris\"}}}]},"
        "{\"role\":\"tool\",\"content\":\"18C\",\"tool_name\":"
        "\"get_weather\"},"
        "{\"role\":\"system\",\"content\":\"Answer in French.\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"options\":{\"temperature\":0.2,\"top_p\":0.9,\"seed\":7,"
        "\"num_predict\":100,\"stop\":[\"END\"]},"
        "\"format\":{\"type\":\"object\"}}");
    assert_string_equal(b.ureq.url.p, "http://127.0.0.1:11434/api/chat");
    assert_int_equal(b.ureq.headers.len, 0);
    built_free(&b);
}

static void test_stream_is_always_explicit_and_json_object_is_format_json(
    void **state)
{
    (void)state;
    struct built b = build_with(OPS, "https://ollama.example/api", "k", "m",
                                "{\"model\":\"m\",\"stream\":true,"
                                "\"messages\":[{\"role\":\"user\","
                                "\"content\":\"hi\"}],\"response_format\":"
                                "{\"type\":\"json_object\"},"
                                "\"tools\":[{\"type\":\"function\","
                                "\"function\":{\"name\":\"f\"}}],"
                                "\"tool_choice\":\"none\"}");
    assert_int_equal(b.err, RL_OK);
    assert_true(json_is_true(json_object_get(b.sent, "stream")));
    assert_string_equal(json_string_value(json_object_get(b.sent, "format")),
                        "json");
    assert_null(json_object_get(b.sent, "tools")); /* none: no tools */
    assert_string_equal(b.ureq.url.p, "https://ollama.example/api/chat");
    assert_string_equal(b.ureq.headers.p, "Authorization: Bearer k\n");
    built_free(&b);
}

static void test_requests_ollama_cannot_honour_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* Images by URL: Ollama takes base64 only. */
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{"
        "\"type\":\"image_url\",\"image_url\":{\"url\":"
        "\"https://x.test/a.png\"}}]}]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
        "\"hi\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
        "\"f\"}}],\"tool_choice\":\"required\"}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
        "\"hi\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
        "\"f\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":"
        "{\"name\":\"f\"}}}",
        "{\"model\":\"m\",\"n\":2,\"messages\":[{\"role\":\"user\","
        "\"content\":\"hi\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct built b = build(bad[i]);
        if (b.err != RL_E_INVALID_REQUEST) {
            fail_msg("%s gave %s", bad[i], rl_strerror(b.err));
        }
        assert_int_equal(b.perr.status, 400);
        assert_false(b.perr.retryable);
        built_free(&b);
    }
    struct built b = build(bad[0]);
    assert_non_null(strstr(b.perr.message, "base64"));
    built_free(&b);
}

/* ---------------------------------------------------------------------
 * parse_response
 * ------------------------------------------------------------------- */

static json_t *parse_fixture(const char *name, struct usage *u)
{
    char path[256];
    snprintf(path, sizeof(path), "tests/fixtures/ollama/%s", name);
    size_t n;
    char *s = slurp(path, &n);
    struct buf out;
    struct provider_error pe;
    json_t *got;
    assert_int_equal(parse_with(OPS, s, &out, u, &pe, &got), RL_OK);
    buf_free(&out);
    free(s);
    return got;
}

static void test_a_text_answer_becomes_a_completion(void **state)
{
    (void)state;
    struct usage u;
    json_t *got = parse_fixture("text.json", &u);
    assert_json(got,
        "{\"id\":\"\",\"object\":\"chat.completion\",\"model\":\"\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"across and quick today stays \",\"refusal\":null},"
        "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":"
        "{\"prompt_tokens\":20,\"completion_tokens\":5,\"total_tokens\":25,"
        "\"prompt_tokens_details\":{\"cached_tokens\":0},"
        "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}");
    json_decref(got);
    got = parse_fixture("stop.json", &u);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(got, "choices"),
                                           0),
                            "finish_reason")),
                        "length");
    json_decref(got);
}

static void test_tool_calls_get_ids_and_string_arguments(void **state)
{
    (void)state;
    struct usage u;
    json_t *got = parse_fixture("tool.json", &u);
    json_t *choice = json_array_get(json_object_get(got, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    assert_true(json_is_null(json_object_get(msg, "content")));
    json_t *call = json_array_get(json_object_get(msg, "tool_calls"), 0);
    assert_int_equal(strncmp(json_string_value(json_object_get(call, "id")),
                             "call_0_", 7), 0);
    assert_json(json_object_get(call, "function"),
                "{\"name\":\"weather\",\"arguments\":"
                "\"{\\\"city\\\":\\\"value\\\",\\\"days\\\":1}\"}");
    assert_string_equal(json_string_value(json_object_get(choice,
                                                          "finish_reason")),
                        "tool_calls");
    assert_int_equal(u.prompt_tokens, 20);
    assert_int_equal(u.completion_tokens, 16);
    json_decref(got);
}

static void test_answers_that_are_not_chat_responses_are_protocol_errors(
    void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "nope", "[]", "{\"done\":true}", "{\"message\":\"x\"}",
        "{\"message\":{\"content\":5}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf out;
        struct usage u;
        struct provider_error pe;
        json_t *got;
        assert_int_equal(parse_with(OPS, bad[i], &out, &u, &pe, &got),
                         RL_E_UPSTREAM_PROTOCOL);
        assert_int_equal(pe.status, 502);
        buf_free(&out);
    }
}

/* ---------------------------------------------------------------------
 * on_event
 * ------------------------------------------------------------------- */

static void test_fixtures_at_every_split(void **state)
{
    (void)state;
    static const char *const names[] = {
        "text", "stop", "tool", "json", "hand_stream_text",
        "hand_stream_length_no_final_newline", "hand_stream_tools",
        "hand_stream_error", "hand_stream_cut",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        check_fixture(OPS, "ollama", names[i], "ndjson");
    }
}

static void test_streamed_chunks_have_openai_shape(void **state)
{
    (void)state;
    size_t n;
    char *s = slurp("tests/fixtures/ollama/hand_stream_tools.ndjson", &n);
    struct recorder r;
    recorder_init(&r, OPS);
    assert_int_equal(feed_stream(&r, s, n, n), RL_OK);
    assert_openai_stream_shape(r.chunks);
    recorder_free(&r);
    free(s);
}

static void test_malformed_lines_are_protocol_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "not json", "[1]", "{\"done\":", "{}", "{\"done\":\"yes\"}",
        "{\"message\":\"x\",\"done\":false}",
        "{\"message\":{\"content\":5},\"done\":false}",
        "{\"message\":{\"tool_calls\":{}},\"done\":false}",
        "{\"message\":{\"tool_calls\":[{\"function\":{}}]},\"done\":false}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct recorder r;
        recorder_init(&r, OPS);
        enum rl_err err = one_event(&r, "", bad[i]);
        if (err != RL_E_UPSTREAM_PROTOCOL) {
            fail_msg("%s gave %s", bad[i], rl_strerror(err));
        }
        assert_int_equal(r.sink.error.status, 502);
        assert_false(r.sink.finished);
        recorder_free(&r);
    }
}

/* ---------------------------------------------------------------------
 * map_error
 * ------------------------------------------------------------------- */

static void test_error_answers_map_to_openai_errors(void **state)
{
    (void)state;
    struct provider_error pe = map_fixture(OPS, "ollama", "error_400.json",
                                           400);
    assert_int_equal(pe.status, 400);
    assert_false(pe.retryable);
    assert_string_equal(pe.message,
                        "Invalid request (scripted by relay-fake).");
    pe = map_fixture(OPS, "ollama", "error_404.json", 404);
    assert_int_equal(pe.status, 502);
    assert_string_equal(pe.code, "upstream_model_not_found");
    pe = map_fixture(OPS, "ollama", "error_500.json", 500);
    assert_int_equal(pe.status, 500);
    assert_true(pe.retryable);
    memset(&pe, 0, sizeof(pe));
    OPS->map_error(503, STR_LIT("{\"error\":\"server busy, please try "
                                "again.  maximum pending requests "
                                "exceeded\"}"), 2, &pe);
    assert_int_equal(pe.status, 503);
    assert_true(pe.retryable);
    assert_int_equal(pe.retry_after_s, 2);
    memset(&pe, 0, sizeof(pe));
    OPS->map_error(429, STR_LIT("{\"error\":\"too many\"}"), 0, &pe);
    assert_int_equal(pe.status, 429);
    assert_string_equal(pe.code, "rate_limit_exceeded");
}

/* Regression (issue 9, found by tests/fuzz/fuzz_response_*): a
 * /api/chat tool call without arguments leaked the {} made for it (ASan's
 * leak check in make asan-unit fails without the fix). */
static void test_a_tool_call_without_arguments_is_empty_issue_9(void **state)
{
    (void)state;
    json_t *fn = first_call_function(
        OPS, "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content"
             "\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]},\"do"
             "ne\":true,\"done_reason\":\"stop\"}");
    assert_json(fn, "{\"name\":\"f\",\"arguments\":\"{}\"}");
    json_decref(fn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_conversation_becomes_an_api_chat_request),
        cmocka_unit_test(
            test_stream_is_always_explicit_and_json_object_is_format_json),
        cmocka_unit_test(test_requests_ollama_cannot_honour_are_refused),
        cmocka_unit_test(test_a_text_answer_becomes_a_completion),
        cmocka_unit_test(test_tool_calls_get_ids_and_string_arguments),
        cmocka_unit_test(
            test_answers_that_are_not_chat_responses_are_protocol_errors),
        cmocka_unit_test(test_fixtures_at_every_split),
        cmocka_unit_test(test_streamed_chunks_have_openai_shape),
        cmocka_unit_test(test_malformed_lines_are_protocol_errors),
        cmocka_unit_test(test_error_answers_map_to_openai_errors),
        cmocka_unit_test(
            test_a_tool_call_without_arguments_is_empty_issue_9),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
