/*
 * test_anthropic.c - unit tests of src/providers/anthropic.c, the adapter
 * for Anthropic's Messages API.
 *
 * Requests are built from OpenAI bodies and compared whole with the
 * Messages request they must become. Answers come from
 * tests/fixtures/anthropic/: captured from the fake provider (text, tool,
 * stop, stop_sequence, usage_cache, error_*), and hand-written from
 * Anthropic's documented formats (hand_*: cache usage, parallel tools,
 * error event, cut stream, thinking and unknown events). Every stream
 * fixture is fed whole and split at every byte (native_harness.h).
 */
#include "native_harness.h"

extern const struct provider_ops anthropic_ops;
#define OPS (&anthropic_ops)

static struct built build(const char *body)
{
    return build_with(OPS, "https://api.anthropic.com/v1", "sk-ant-k",
                      "claude-fake?tokens=3", body);
}

/* ---------------------------------------------------------------------
 * build_request
 * ------------------------------------------------------------------- */

static void test_a_conversation_becomes_a_messages_request(void **state)
{
    (void)state;
    struct built b = build(
        "{\"model\":\"m\",\"stream\":true,\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"developer\",\"content\":[{\"type\":\"text\","
        "\"text\":\"Use metric.\"}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"Weather here?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
        "\"data:image/png;base64,iVBORw0K\"}},{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"https://x.test/a.jpg\"}}]},"
        "{\"role\":\"assistant\",\"content\":\"Checking.\",\"tool_calls\":["
        "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
        "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":"
        "\"get_time\",\"arguments\":\"\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":"
        "\"18C\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_2\",\"content\":"
        "\"12:00\"},"
        "{\"role\":\"user\",\"content\":\"Thanks\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"description\":\"Weather\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
        "\"string\"}}}}},{\"type\":\"function\",\"function\":{\"name\":"
        "\"get_time\"}}],"
        "\"tool_choice\":\"required\",\"parallel_tool_calls\":false,"
        "\"temperature\":0.7,\"top_p\":0.9,\"stop\":\"END\",\"seed\":42,"
        "\"user\":\"u-1\",\"frequency_penalty\":0.5}");
    assert_int_equal(b.err, RL_OK);
    assert_json(b.sent,
        "{\"model\":\"claude-fake?tokens=3\",\"max_tokens\":4096,"
        "\"system\":\"Be brief.\\n\\nUse metric.\",\"stream\":true,"
        "\"temperature\":0.7,\"top_p\":0.9,\"stop_sequences\":[\"END\"],"
        "\"metadata\":{\"user_id\":\"u-1\"},"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"Weather here?\"},{\"type\":\"image\",\"source\":{\"type\":"
        "\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBORw0K\"}},"
        "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":"
        "\"https://x.test/a.jpg\"}}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"Checking.\"},{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":"
        "\"get_weather\",\"input\":{\"city\":\"Paris\"}},{\"type\":"
        "\"tool_use\",\"id\":\"call_2\",\"name\":\"get_time\",\"input\":{}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
        "\"tool_use_id\":\"call_1\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"18C\"}]},{\"type\":\"tool_result\",\"tool_use_id\":\"call_2\","
        "\"content\":[{\"type\":\"text\",\"text\":\"12:00\"}]},{\"type\":"
        "\"text\",\"text\":\"Thanks\"}]}],"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather\","
        "\"input_schema\":{\"type\":\"object\",\"properties\":{\"city\":"
        "{\"type\":\"string\"}}}},{\"name\":\"get_time\",\"input_schema\":"
        "{\"type\":\"object\"}}],"
        "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":"
        "true}}");
    assert_string_equal(b.ureq.url.p, "https://api.anthropic.com/v1/messages");
    assert_string_equal(b.ureq.headers.p, "anthropic-version: 2023-06-01\n"
                                          "x-api-key: sk-ant-k\n");
    built_free(&b);
}

static void test_max_tokens_and_tool_choice_variants(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"\"max_tokens\":50,\"tool_choice\":\"auto\"",
         "{\"type\":\"auto\"}"},
        {"\"max_completion_tokens\":60,\"max_tokens\":50,"
         "\"tool_choice\":\"none\"",
         "{\"type\":\"none\"}"},
        {"\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"
         "\"f\"}}",
         "{\"type\":\"tool\",\"name\":\"f\"}"},
    };
    static const int max[] = {50, 60, 4096};
    for (size_t i = 0; i < 3; i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"hi\"}],\"tools\":[{\"type\":\"function\","
                 "\"function\":{\"name\":\"f\"}}],%s}", cases[i][0]);
        struct built b = build(body);
        assert_int_equal(b.err, RL_OK);
        assert_json(json_object_get(b.sent, "tool_choice"), cases[i][1]);
        assert_int_equal(json_integer_value(json_object_get(b.sent,
                                                            "max_tokens")),
                         max[i]);
        assert_null(json_object_get(b.sent, "stream"));
        built_free(&b);
    }
}

static void test_json_mode_is_emulated_with_a_system_instruction(
    void **state)
{
    (void)state;
    struct built b = build("{\"model\":\"m\",\"messages\":[{\"role\":"
                           "\"user\",\"content\":\"hi\"}],"
                           "\"response_format\":{\"type\":\"json_schema\","
                           "\"json_schema\":{\"name\":\"w\",\"schema\":"
                           "{\"type\":\"object\"}}}}");
    assert_int_equal(b.err, RL_OK);
    const char *system = json_string_value(json_object_get(b.sent,
                                                           "system"));
    assert_non_null(system);
    assert_non_null(strstr(system, "JSON Schema: {\"type\":\"object\"}"));
    assert_null(json_object_get(b.sent, "response_format"));
    built_free(&b);
    b = build("{\"model\":\"m\",\"messages\":[{\"role\":\"system\","
              "\"content\":\"S.\"},{\"role\":\"user\",\"content\":\"hi\"}],"
              "\"response_format\":{\"type\":\"json_object\"}}");
    system = json_string_value(json_object_get(b.sent, "system"));
    assert_non_null(system);
    assert_int_equal(strncmp(system, "S.\n\nAnswer with one valid JSON "
                                     "object", 36), 0);
    built_free(&b);
}

static void test_requests_anthropic_cannot_honour_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\"n\":2",
        "\"logprobs\":true",
        "\"top_logprobs\":2",
        "\"modalities\":[\"text\",\"audio\"]",
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
        "\"tool_choice\":{\"type\":\"function\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[{"
                 "\"role\":\"user\",\"content\":\"hi\"}],%s}", bad[i]);
        struct built b = build(body);
        if (b.err != RL_E_INVALID_REQUEST) {
            fail_msg("%s gave %s", bad[i], rl_strerror(b.err));
        }
        assert_int_equal(b.perr.status, 400);
        assert_string_equal(b.perr.type, "invalid_request_error");
        assert_false(b.perr.retryable);
        built_free(&b);
    }
    static const char *const bad_messages[] = {
        "{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\","
        "\"input_audio\":{\"data\":\"x\",\"format\":\"wav\"}}]}",
        "{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"ftp://x/y.png\"}}]}",
        "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":"
        "\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
        "\"not json\"}}]}",
        "{\"role\":\"function\",\"name\":\"f\",\"content\":\"x\"}",
        "{\"role\":\"system\",\"content\":[{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"https://x/y.png\"}}]}",
    };
    for (size_t i = 0; i < sizeof(bad_messages) / sizeof(bad_messages[0]);
         i++) {
        char body[512];
        snprintf(body, sizeof(body), "{\"model\":\"m\",\"messages\":[%s]}",
                 bad_messages[i]);
        struct built b = build(body);
        if (b.err != RL_E_INVALID_REQUEST) {
            fail_msg("%s gave %s", bad_messages[i], rl_strerror(b.err));
        }
        assert_non_null(strstr(b.perr.message, "messages[0]"));
        built_free(&b);
    }
}

static void test_no_key_sends_no_x_api_key(void **state)
{
    (void)state;
    struct built b = build_with(OPS, "http://127.0.0.1:9/v1", "", "c",
                                "{\"model\":\"m\",\"messages\":[{\"role\":"
                                "\"user\",\"content\":\"hi\"}]}");
    assert_int_equal(b.err, RL_OK);
    assert_string_equal(b.ureq.headers.p, "anthropic-version: 2023-06-01\n");
    built_free(&b);
}

/* ---------------------------------------------------------------------
 * parse_response
 * ------------------------------------------------------------------- */

static json_t *parse_fixture(const char *name, struct usage *u)
{
    char path[256];
    snprintf(path, sizeof(path), "tests/fixtures/anthropic/%s", name);
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

static void test_a_text_message_becomes_a_completion(void **state)
{
    (void)state;
    struct usage u;
    json_t *got = parse_fixture("usage_cache.json", &u);
    assert_json(got,
        "{\"id\":\"msg_fake_5\",\"object\":\"chat.completion\",\"model\":\"\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"across and quick \",\"refusal\":null},\"logprobs\":"
        "null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1520,"
        "\"completion_tokens\":3,\"total_tokens\":1523,"
        "\"prompt_tokens_details\":{\"cached_tokens\":1200},"
        "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}");
    /* Cache reads and writes are outside input_tokens at Anthropic. */
    assert_int_equal(u.prompt_tokens, 20 + 1200 + 300);
    assert_int_equal(u.cached_tokens, 1200);
    assert_int_equal(u.cache_write_tokens, 300);
    assert_int_equal(u.completion_tokens, 3);
    json_decref(got);
}

static void test_a_tool_use_message_becomes_tool_calls(void **state)
{
    (void)state;
    struct usage u;
    json_t *got = parse_fixture("tool.json", &u);
    json_t *choice = json_array_get(json_object_get(got, "choices"), 0);
    assert_json(json_object_get(choice, "message"),
                "{\"role\":\"assistant\",\"content\":null,\"refusal\":null,"
                "\"tool_calls\":[{\"id\":\"toolu_fake_3\",\"type\":"
                "\"function\",\"function\":{\"name\":\"weather\","
                "\"arguments\":\"{\\\"city\\\":\\\"value\\\",\\\"days\\\":1}\"}}]}");
    assert_string_equal(json_string_value(json_object_get(choice,
                                                          "finish_reason")),
                        "tool_calls");
    json_decref(got);
}

static void test_stop_reasons_map_to_finish_reasons(void **state)
{
    (void)state;
    static const char *const map[][2] = {
        {"end_turn", "stop"},      {"stop_sequence", "stop"},
        {"max_tokens", "length"},  {"tool_use", "tool_calls"},
        {"refusal", "content_filter"}, {"pause_turn", "stop"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\","
                 "\"content\":[{\"type\":\"text\",\"text\":\"x\"}],"
                 "\"stop_reason\":\"%s\",\"usage\":{\"input_tokens\":1,"
                 "\"output_tokens\":1}}", map[i][0]);
        struct buf out;
        struct usage u;
        struct provider_error pe;
        json_t *got;
        assert_int_equal(parse_with(OPS, body, &out, &u, &pe, &got), RL_OK);
        json_t *choice = json_array_get(json_object_get(got, "choices"), 0);
        assert_string_equal(json_string_value(json_object_get(
                                choice, "finish_reason")),
                            map[i][1]);
        json_decref(got);
        buf_free(&out);
    }
}

static void test_answers_that_are_not_messages_are_protocol_errors(
    void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "garbage", "[]", "{\"type\":\"message\"}",
        "{\"content\":\"text\"}", "{\"content\":[]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf out;
        struct usage u;
        struct provider_error pe;
        json_t *got;
        assert_int_equal(parse_with(OPS, bad[i], &out, &u, &pe, &got),
                         RL_E_UPSTREAM_PROTOCOL);
        assert_int_equal(pe.status, 502);
        assert_string_equal(pe.code, "upstream_protocol_error");
        buf_free(&out);
    }
}

/* ---------------------------------------------------------------------
 * on_event: fixtures at every split
 * ------------------------------------------------------------------- */

static void test_fixtures_at_every_split(void **state)
{
    (void)state;
    static const char *const names[] = {
        "text", "tool", "stop", "stop_sequence", "usage_cache",
        "hand_stream_text", "hand_stream_tools", "hand_stream_error",
        "hand_stream_cut", "hand_stream_thinking_unknown",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        check_fixture(OPS, "anthropic", names[i], "sse");
    }
}

static void test_streamed_chunks_have_openai_shape(void **state)
{
    (void)state;
    size_t n;
    char *s = slurp("tests/fixtures/anthropic/hand_stream_tools.sse", &n);
    struct recorder r;
    recorder_init(&r, OPS);
    assert_int_equal(feed_stream(&r, s, n, n), RL_OK);
    assert_openai_stream_shape(r.chunks);
    recorder_free(&r);
    free(s);
}

static void test_malformed_events_are_protocol_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "not json", "[1]", "{\"type\":", "{}", "{\"type\":42}",
        "{\"type\":\"content_block_delta\"}",
        "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
        "{\"type\":\"text_delta\"}}",
        "{\"type\":\"content_block_delta\",\"index\":-1,\"delta\":"
        "{\"type\":\"text_delta\",\"text\":\"x\"}}",
        "{\"type\":\"content_block_delta\",\"index\":3,\"delta\":"
        "{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}",
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
        "{\"type\":\"tool_use\"}}",
        "{\"type\":\"message_start\",\"message\":\"x\"}",
        "{\"type\":\"message_delta\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct recorder r;
        recorder_init(&r, OPS);
        enum rl_err err = one_event(&r, "", bad[i]);
        if (err != RL_E_UPSTREAM_PROTOCOL) {
            fail_msg("%s gave %s", bad[i], rl_strerror(err));
        }
        assert_int_equal(r.sink.error.status, 502);
        assert_string_equal(r.sink.error.code, "upstream_protocol_error");
        assert_false(r.sink.finished);
        recorder_free(&r);
    }
}

static void test_error_events_keep_the_message_and_status(void **state)
{
    (void)state;
    static const struct {
        const char *type;
        int status;
        bool retryable;
    } cases[] = {
        {"overloaded_error", 503, true},
        {"rate_limit_error", 429, true},
        {"api_error", 500, true},
        {"invalid_request_error", 502, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char data[256];
        snprintf(data, sizeof(data), "{\"type\":\"error\",\"error\":"
                 "{\"type\":\"%s\",\"message\":\"Boom \\\"x\\\"\"}}",
                 cases[i].type);
        struct recorder r;
        recorder_init(&r, OPS);
        assert_int_equal(one_event(&r, "error", data), RL_E_UPSTREAM);
        assert_int_equal(r.sink.error.status, cases[i].status);
        assert_int_equal(r.sink.error.retryable, cases[i].retryable);
        assert_string_equal(r.sink.error.message, "Boom \"x\"");
        assert_int_equal(json_array_size(r.chunks), 0);
        recorder_free(&r);
    }
}

/* ---------------------------------------------------------------------
 * map_error
 * ------------------------------------------------------------------- */

static void test_error_answers_map_to_openai_errors(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        long status;
        int want_status;
        const char *code;
        bool retryable;
    } cases[] = {
        {"error_400.json", 400, 400, NULL, false},
        {"error_401.json", 401, 502, "upstream_auth_failed", true},
        {"error_429.json", 429, 429, "rate_limit_exceeded", true},
        {"error_500.json", 500, 500, "upstream_error", true},
        {"error_529.json", 529, 503, "provider_overloaded", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct provider_error pe = map_fixture(OPS, "anthropic",
                                               cases[i].file,
                                               cases[i].status);
        assert_int_equal(pe.status, cases[i].want_status);
        if (cases[i].code) {
            assert_string_equal(pe.code, cases[i].code);
        } else {
            assert_null(pe.code);
        }
        assert_int_equal(pe.retryable, cases[i].retryable);
        assert_int_equal(pe.retry_after_s, 7);
        if (cases[i].status != 401) {
            assert_non_null(strstr(pe.message, "relay-fake"));
        }
    }
}

static void test_a_prompt_too_long_is_context_length_exceeded(void **state)
{
    (void)state;
    struct provider_error pe;
    const char *body = "{\"type\":\"error\",\"error\":{\"type\":"
                       "\"invalid_request_error\",\"message\":\"prompt is "
                       "too long: 210000 tokens > 200000 maximum\"}}";
    memset(&pe, 0, sizeof(pe));
    OPS->map_error(400, str_from(body), 0, &pe);
    assert_int_equal(pe.status, 400);
    assert_string_equal(pe.code, "context_length_exceeded");
    assert_false(pe.retryable);
    assert_string_equal(pe.message,
                        "prompt is too long: 210000 tokens > 200000 maximum");
    /* A body that is not JSON still maps by status. */
    memset(&pe, 0, sizeof(pe));
    OPS->map_error(502, STR_LIT("<html>bad gateway</html>"), 0, &pe);
    assert_int_equal(pe.status, 502);
    assert_true(pe.retryable);
}

/* Regression (issue 9, found by tests/fuzz/fuzz_response_*): a
 * Messages tool_use block without arguments leaked the {} made for it (ASan's
 * leak check in make asan-unit fails without the fix). */
static void test_a_tool_call_without_arguments_is_empty_issue_9(void **state)
{
    (void)state;
    json_t *fn = first_call_function(
        OPS, "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\","
             "\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name"
             "\":\"f\"}],\"stop_reason\":\"tool_use\",\"usage\":{\"input_tok"
             "ens\":3,\"output_tokens\":2}}");
    assert_json(fn, "{\"name\":\"f\",\"arguments\":\"{}\"}");
    json_decref(fn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_conversation_becomes_a_messages_request),
        cmocka_unit_test(test_max_tokens_and_tool_choice_variants),
        cmocka_unit_test(test_json_mode_is_emulated_with_a_system_instruction),
        cmocka_unit_test(test_requests_anthropic_cannot_honour_are_refused),
        cmocka_unit_test(test_no_key_sends_no_x_api_key),
        cmocka_unit_test(test_a_text_message_becomes_a_completion),
        cmocka_unit_test(test_a_tool_use_message_becomes_tool_calls),
        cmocka_unit_test(test_stop_reasons_map_to_finish_reasons),
        cmocka_unit_test(
            test_answers_that_are_not_messages_are_protocol_errors),
        cmocka_unit_test(test_fixtures_at_every_split),
        cmocka_unit_test(test_streamed_chunks_have_openai_shape),
        cmocka_unit_test(test_malformed_events_are_protocol_errors),
        cmocka_unit_test(test_error_events_keep_the_message_and_status),
        cmocka_unit_test(test_error_answers_map_to_openai_errors),
        cmocka_unit_test(test_a_prompt_too_long_is_context_length_exceeded),
        cmocka_unit_test(
            test_a_tool_call_without_arguments_is_empty_issue_9),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
