/*
 * test_gemini.c - unit tests of src/providers/gemini.c, the adapter for
 * Google's Gemini generateContent / streamGenerateContent?alt=sse.
 *
 * Requests are built from OpenAI bodies and compared whole with the
 * GenerateContentRequest they must become, URL included (the model id,
 * with the fake's ?script, percent-encoded in the path). Answers come from
 * tests/fixtures/gemini/: captured from the fake provider (text, stop,
 * tool, json, safety, blocked, usage_cache, error_*), and hand-written
 * from Gemini's documented formats (hand_*: CRLF events with cached and
 * thinking tokens, thought parts and parallel calls, MAX_TOKENS,
 * RECITATION, an error event, a cut stream). Every stream fixture is fed
 * whole and split at every byte (native_harness.h).
 */
#include "native_harness.h"

extern const struct provider_ops gemini_ops;
#define OPS (&gemini_ops)

static struct built build(const char *body)
{
    return build_with(OPS, "https://generativelanguage.googleapis.com/v1beta",
                      "g-key", "gemini-fake?tokens=3&status=200", body);
}

/* ---------------------------------------------------------------------
 * build_request
 * ------------------------------------------------------------------- */

static void test_a_conversation_becomes_a_generate_content_request(
    void **state)
{
    (void)state;
    struct built b = build(
        "{\"model\":\"m\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"developer\",\"content\":\"Use metric.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
        "\"Weather here?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":"
        "\"data:image/png;base64,iVBORw0K\"}},{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"https://x.test/a.webp?s=1\"}}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
        "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},"
        "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":"
        "\"get_time\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":"
        "\"{\\\"temp\\\":18}\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_2\",\"content\":"
        "\"12:00\"},"
        "{\"role\":\"assistant\",\"content\":\"18C at 12:00.\"},"
        "{\"role\":\"user\",\"content\":\"Thanks\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"description\":\"Weather\",\"parameters\":"
        "{\"$schema\":\"x\",\"type\":\"object\",\"additionalProperties\":"
        "false,\"properties\":{\"city\":{\"type\":\"string\"}}}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"get_time\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{}}}}],"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\"}},"
        "\"temperature\":0.2,\"top_p\":0.9,\"max_completion_tokens\":100,"
        "\"stop\":[\"END\"],\"seed\":7,\"presence_penalty\":0.1,"
        "\"user\":\"u-1\"}");
    assert_int_equal(b.err, RL_OK);
    assert_json(b.sent,
        "{\"systemInstruction\":{\"parts\":[{\"text\":\"Be brief.\\n\\n"
        "Use metric.\"}]},"
        "\"contents\":["
        "{\"role\":\"user\",\"parts\":[{\"text\":\"Weather here?\"},"
        "{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"iVBORw0K\"}},"
        "{\"fileData\":{\"mimeType\":\"image/webp\",\"fileUri\":"
        "\"https://x.test/a.webp?s=1\"}}]},"
        "{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":"
        "\"get_weather\",\"args\":{\"city\":\"Paris\"}}},{\"functionCall\":"
        "{\"name\":\"get_time\",\"args\":{}}}]},"
        "{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":"
        "\"get_weather\",\"response\":{\"temp\":18}}},{\"functionResponse\":"
        "{\"name\":\"get_time\",\"response\":{\"content\":\"12:00\"}}}]},"
        "{\"role\":\"model\",\"parts\":[{\"text\":\"18C at 12:00.\"}]},"
        "{\"role\":\"user\",\"parts\":[{\"text\":\"Thanks\"}]}],"
        "\"tools\":[{\"functionDeclarations\":[{\"name\":\"get_weather\","
        "\"description\":\"Weather\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"city\":{\"type\":\"string\"}}}},"
        "{\"name\":\"get_time\"}]}],"
        "\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"ANY\","
        "\"allowedFunctionNames\":[\"get_weather\"]}},"
        "\"generationConfig\":{\"temperature\":0.2,\"topP\":0.9,\"seed\":7,"
        "\"presencePenalty\":0.1,\"maxOutputTokens\":100,"
        "\"stopSequences\":[\"END\"]}}");
    /* The fake's script survives in the path, percent-encoded. */
    assert_string_equal(b.ureq.url.p,
                        "https://generativelanguage.googleapis.com/v1beta/"
                        "models/gemini-fake%3Ftokens%3D3%26status%3D200:"
                        "generateContent");
    assert_string_equal(b.ureq.headers.p, "x-goog-api-key: g-key\n");
    built_free(&b);
}

static void test_a_stream_uses_stream_generate_content_with_sse(void **state)
{
    (void)state;
    struct built b = build_with(OPS, "http://127.0.0.1:9/v1beta", "",
                                "models/gemini-2.0-flash",
                                "{\"model\":\"m\",\"stream\":true,"
                                "\"messages\":[{\"role\":\"user\","
                                "\"content\":\"hi\"}]}");
    assert_int_equal(b.err, RL_OK);
    assert_string_equal(b.ureq.url.p, "http://127.0.0.1:9/v1beta/models/"
                                      "gemini-2.0-flash:streamGenerateContent"
                                      "?alt=sse");
    assert_int_equal(b.ureq.headers.len, 0);
    assert_null(json_object_get(b.sent, "stream"));
    built_free(&b);
}

static void test_json_mode_and_tool_choice_variants(void **state)
{
    (void)state;
    struct built b = build("{\"model\":\"m\",\"messages\":[{\"role\":"
                           "\"user\",\"content\":\"hi\"}],"
                           "\"response_format\":{\"type\":\"json_schema\","
                           "\"json_schema\":{\"name\":\"w\",\"strict\":true,"
                           "\"schema\":{\"type\":\"object\","
                           "\"additionalProperties\":false,\"properties\":"
                           "{\"a\":{\"type\":\"string\"}}}}}}");
    assert_int_equal(b.err, RL_OK);
    assert_json(json_object_get(b.sent, "generationConfig"),
                "{\"responseMimeType\":\"application/json\","
                "\"responseSchema\":{\"type\":\"object\",\"properties\":"
                "{\"a\":{\"type\":\"string\"}}}}");
    built_free(&b);
    b = build("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
              "\"hi\"}],\"response_format\":{\"type\":\"json_object\"}}");
    assert_json(json_object_get(b.sent, "generationConfig"),
                "{\"responseMimeType\":\"application/json\"}");
    built_free(&b);
    static const char *const modes[][2] = {
        {"\"auto\"", "AUTO"}, {"\"none\"", "NONE"}, {"\"required\"", "ANY"},
    };
    for (size_t i = 0; i < 3; i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                 "\"content\":\"hi\"}],\"tools\":[{\"type\":\"function\","
                 "\"function\":{\"name\":\"f\"}}],\"tool_choice\":%s}",
                 modes[i][0]);
        b = build(body);
        assert_int_equal(b.err, RL_OK);
        assert_string_equal(json_string_value(json_object_get(
                                json_object_get(json_object_get(
                                                    b.sent, "toolConfig"),
                                                "functionCallingConfig"),
                                "mode")),
                            modes[i][1]);
        built_free(&b);
    }
}

static void test_requests_gemini_cannot_honour_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"model\":\"m\",\"n\":3,\"messages\":[{\"role\":\"user\","
        "\"content\":\"hi\"}]}",
        "{\"model\":\"m\",\"logprobs\":true,\"messages\":[{\"role\":\"user\","
        "\"content\":\"hi\"}]}",
        /* A tool result whose call Gemini cannot name. */
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
        "\"hi\"},{\"role\":\"tool\",\"tool_call_id\":\"nope\",\"content\":"
        "\"x\"}]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{"
        "\"type\":\"image_url\",\"image_url\":{\"url\":\"file:///etc/x\"}}"
        "]}]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\","
        "\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":"
        "{\"name\":\"f\",\"arguments\":\"[1]\"}}]}]}",
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
}

/* ---------------------------------------------------------------------
 * parse_response
 * ------------------------------------------------------------------- */

static json_t *parse_fixture(const char *name, struct usage *u)
{
    char path[256];
    snprintf(path, sizeof(path), "tests/fixtures/gemini/%s", name);
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

static const char *finish_of(json_t *completion)
{
    return json_string_value(json_object_get(
        json_array_get(json_object_get(completion, "choices"), 0),
        "finish_reason"));
}

static void test_a_text_answer_becomes_a_completion(void **state)
{
    (void)state;
    struct usage u;
    json_t *got = parse_fixture("usage_cache.json", &u);
    assert_json(got,
        "{\"id\":\"fake-20\",\"object\":\"chat.completion\",\"model\":\"\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":\"across and quick \",\"refusal\":null},\"logprobs\":"
        "null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1220,"
        "\"completion_tokens\":3,\"total_tokens\":1223,"
        "\"prompt_tokens_details\":{\"cached_tokens\":1200},"
        "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}");
    assert_int_equal(u.cached_tokens, 1200);
    json_decref(got);
}

static void test_a_function_call_becomes_a_tool_call(void **state)
{
    (void)state;
    struct usage u;
    json_t *got = parse_fixture("tool.json", &u);
    json_t *msg = json_object_get(json_array_get(json_object_get(got,
                                                                 "choices"),
                                                 0),
                                  "message");
    assert_true(json_is_null(json_object_get(msg, "content")));
    json_t *call = json_array_get(json_object_get(msg, "tool_calls"), 0);
    assert_string_equal(json_string_value(json_object_get(call, "type")),
                        "function");
    assert_int_equal(strncmp(json_string_value(json_object_get(call, "id")),
                             "call_0_", 7), 0);
    assert_json(json_object_get(call, "function"),
                "{\"name\":\"weather\",\"arguments\":"
                "\"{\\\"city\\\":\\\"value\\\",\\\"days\\\":1}\"}");
    assert_string_equal(finish_of(got), "tool_calls");
    json_decref(got);
}

static void test_safety_and_blocked_prompts_are_content_filter(void **state)
{
    (void)state;
    struct usage u;
    json_t *got = parse_fixture("safety.json", &u);
    assert_string_equal(finish_of(got), "content_filter");
    json_decref(got);
    got = parse_fixture("blocked.json", &u);
    assert_string_equal(finish_of(got), "content_filter");
    assert_int_equal(u.prompt_tokens, 20);
    json_decref(got);
    got = parse_fixture("stop.json", &u);
    assert_string_equal(finish_of(got), "length");
    json_decref(got);
}

static void test_answers_that_are_not_responses_are_protocol_errors(
    void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "nope", "[]", "{\"candidates\":{}}", "{\"usageMetadata\":{}}",
        "{\"candidates\":[]",
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
        "text", "stop", "tool", "json", "safety", "blocked", "usage_cache",
        "hand_stream_text_crlf", "hand_stream_tools_thought",
        "hand_stream_max_tokens", "hand_stream_recitation",
        "hand_stream_error", "hand_stream_cut",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        check_fixture(OPS, "gemini", names[i], "sse");
    }
}

static void test_streamed_chunks_have_openai_shape(void **state)
{
    (void)state;
    size_t n;
    char *s = slurp("tests/fixtures/gemini/hand_stream_tools_thought.sse",
                    &n);
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
        "not json", "[1]", "{\"candidates\":", "{}",
        "{\"candidates\":{}}",
        "{\"candidates\":[1]}",
        "{\"candidates\":[{\"content\":{\"parts\":{}}}]}",
        "{\"candidates\":[{\"content\":{\"parts\":[1]}}]}",
        "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":"
        "{\"args\":{}}}]}}]}",
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
    static const struct {
        const char *file;
        long status;
        int want_status;
        const char *code;
        bool retryable;
    } cases[] = {
        {"error_400.json", 400, 400, NULL, false},
        {"error_404.json", 404, 502, "upstream_model_not_found", true},
        {"error_429.json", 429, 429, "rate_limit_exceeded", true},
        {"error_500.json", 500, 500, "upstream_error", true},
        {"error_503.json", 503, 503, "provider_overloaded", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct provider_error pe = map_fixture(OPS, "gemini", cases[i].file,
                                               cases[i].status);
        assert_int_equal(pe.status, cases[i].want_status);
        if (cases[i].code) {
            assert_string_equal(pe.code, cases[i].code);
        } else {
            assert_null(pe.code);
        }
        assert_int_equal(pe.retryable, cases[i].retryable);
        assert_int_equal(pe.retry_after_s, 7);
    }
}

static void test_bad_keys_and_long_prompts_are_recognised(void **state)
{
    (void)state;
    struct provider_error pe;
    memset(&pe, 0, sizeof(pe));
    OPS->map_error(400, STR_LIT(
        "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please "
        "pass a valid API key.\",\"status\":\"INVALID_ARGUMENT\","
        "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc."
        "ErrorInfo\",\"reason\":\"API_KEY_INVALID\"}]}}"), 0, &pe);
    assert_int_equal(pe.status, 502);
    assert_string_equal(pe.code, "upstream_auth_failed");
    memset(&pe, 0, sizeof(pe));
    OPS->map_error(400, STR_LIT(
        "[{\"error\":{\"code\":400,\"message\":\"The input token count "
        "(1200000) exceeds the maximum number of tokens allowed "
        "(1048576).\",\"status\":\"INVALID_ARGUMENT\"}}]"), 0, &pe);
    assert_int_equal(pe.status, 400);
    assert_string_equal(pe.code, "context_length_exceeded");
    assert_non_null(strstr(pe.message, "1048576"));
}

/* Regression (issue 9, found by tests/fuzz/fuzz_response_*): a
 * GenerateContentResponse functionCall without arguments leaked the {} made for it (ASan's
 * leak check in make asan-unit fails without the fix). */
static void test_a_tool_call_without_arguments_is_empty_issue_9(void **state)
{
    (void)state;
    json_t *fn = first_call_function(
        OPS, "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{"
             "\"name\":\"f\"}}],\"role\":\"model\"},\"finishReason\":\"STOP"
             "\",\"index\":0}]}");
    assert_json(fn, "{\"name\":\"f\",\"arguments\":\"{}\"}");
    json_decref(fn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_a_conversation_becomes_a_generate_content_request),
        cmocka_unit_test(test_a_stream_uses_stream_generate_content_with_sse),
        cmocka_unit_test(test_json_mode_and_tool_choice_variants),
        cmocka_unit_test(test_requests_gemini_cannot_honour_are_refused),
        cmocka_unit_test(test_a_text_answer_becomes_a_completion),
        cmocka_unit_test(test_a_function_call_becomes_a_tool_call),
        cmocka_unit_test(test_safety_and_blocked_prompts_are_content_filter),
        cmocka_unit_test(
            test_answers_that_are_not_responses_are_protocol_errors),
        cmocka_unit_test(test_fixtures_at_every_split),
        cmocka_unit_test(test_streamed_chunks_have_openai_shape),
        cmocka_unit_test(test_malformed_events_are_protocol_errors),
        cmocka_unit_test(test_error_answers_map_to_openai_errors),
        cmocka_unit_test(test_bad_keys_and_long_prompts_are_recognised),
        cmocka_unit_test(
            test_a_tool_call_without_arguments_is_empty_issue_9),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
