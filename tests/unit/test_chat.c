/*
 * test_chat.c - unit tests of src/api/chat.c (api_chat_parse): the checks
 * of a chat-completions body, with OpenAI's wording, and src/api/models.c.
 *
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api/api.h"
#include "config/config.h"
#include "util/alloc.h"


#define USER_MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

/* Parses body and asserts it is accepted; returns req (its spans point
 * into body). */
static struct chat_req accept_body(const char *body)
{
    struct chat_req req;
    struct api_problem p;
    enum rl_err err = api_chat_parse(str_from(body), &req, &p);
    if (err != RL_OK) {
        fail_msg("refused (%s, param '%s'): %s\n  body: %.300s",
                 rl_strerror(err), p.param, p.message, body);
    }
    assert_ptr_equal(req.raw.p, body);
    assert_int_equal(req.raw.len, strlen(body));
    return req;
}

/* Asserts body is refused with err, param ("" for none) and a message
 * containing what. */
static void refuse_len(const char *body, size_t len, enum rl_err err,
                       const char *param, const char *what)
{
    struct chat_req req;
    struct api_problem p;
    enum rl_err got = api_chat_parse((struct str){body, len}, &req, &p);
    if (got != err) {
        fail_msg("%s instead of %s (param '%s': %s)\n  body: %.300s",
                 rl_strerror(got), rl_strerror(err), p.param, p.message,
                 body);
    }
    if (strcmp(p.param, param) != 0) {
        fail_msg("param '%s' instead of '%s' (%s)", p.param, param,
                 p.message);
    }
    if (!strstr(p.message, what)) {
        fail_msg("message \"%s\" lacks \"%s\"", p.message, what);
    }
}

static void refuse(const char *body, enum rl_err err, const char *param,
                   const char *what)
{
    refuse_len(body, strlen(body), err, param, what);
}

/* ---------------------------------------------------------------------
 * Accepted
 * ------------------------------------------------------------------- */

static void test_a_minimal_request_is_accepted(void **state)
{
    (void)state;
    struct chat_req req =
        accept_body("{\"model\":\"auto\"," USER_MSG "}");
    assert_false(req.stream);
    assert_false(req.include_usage);
    assert_string_equal(req.model, "auto");
    assert_int_equal(req.routing.len, 0);
}

static void test_the_output_cap_is_read_from_either_name(void **state)
{
    (void)state;
    struct chat_req req =
        accept_body("{\"model\":\"m\",\"max_tokens\":256," USER_MSG "}");
    assert_int_equal(req.max_tokens, 256);
    req = accept_body("{\"model\":\"m\",\"max_tokens\":256,"
                      "\"max_completion_tokens\":1000000000," USER_MSG "}");
    assert_int_equal(req.max_tokens, 1000000000);
    req = accept_body("{\"model\":\"m\",\"max_completion_tokens\":null,"
                      "\"max_tokens\":7," USER_MSG "}");
    assert_int_equal(req.max_tokens, 7);
    req = accept_body("{\"model\":\"m\"," USER_MSG "}");
    assert_int_equal(req.max_tokens, 0);
}

static void test_content_parts_with_text_and_image_url(void **state)
{
    (void)state;
    accept_body("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                "\"content\":[{\"type\":\"text\",\"text\":\"What is this?\"},"
                "{\"type\":\"image_url\",\"image_url\":{\"url\":"
                "\"data:image/png;base64,iVBORw0KGgo=\",\"detail\":\"low\"}},"
                "{\"type\":\"input_audio\",\"input_audio\":{}}]}]}");
}

static void test_a_tool_conversation_is_accepted(void **state)
{
    (void)state;
    accept_body(
        "{\"model\":\"m\",\"messages\":["
        "{\"role\":\"developer\",\"content\":\"Use tools.\"},"
        "{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
        "\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather"
        "\",\"arguments\":\"{\\\"location\\\":\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"18C\"},"
        "{\"role\":\"assistant\",\"tool_calls\":[]}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\"}},\"parallel_tool_calls\":false}");
}

static void test_a_stream_with_stream_options(void **state)
{
    (void)state;
    struct chat_req req = accept_body(
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":{"
        "\"include_usage\":true}," USER_MSG "}");
    assert_true(req.stream);
    assert_true(req.include_usage);
    req = accept_body("{\"model\":\"m\",\"stream\":true," USER_MSG "}");
    assert_true(req.stream);
    assert_false(req.include_usage);
    req = accept_body("{\"model\":\"m\",\"stream\":false,\"stream_options\":"
                      "null," USER_MSG "}");
    assert_false(req.stream);
}

static void test_every_documented_parameter_in_range_is_accepted(
    void **state)
{
    (void)state;
    accept_body("{\"model\":\"m\"," USER_MSG ",\"temperature\":0,"
                "\"top_p\":1,\"n\":1,\"max_tokens\":1,"
                "\"max_completion_tokens\":1000000000,"
                "\"presence_penalty\":-2,\"frequency_penalty\":2.0,"
                "\"seed\":-5,\"user\":\"u\",\"logprobs\":true,"
                "\"top_logprobs\":20,\"stop\":[\"a\",\"b\",\"c\",\"d\"],"
                "\"response_format\":{\"type\":\"json_object\"},"
                "\"metadata\":{},\"logit_bias\":{\"50256\":-100},"
                "\"routing\":{\"min_quality_tier\":2},\"cache\":{},"
                "\"unknown_vendor_field\":{\"passes\":true},"
                "\"temperature\":2}");
    accept_body("{\"model\":\"m\"," USER_MSG ",\"stop\":\"END\","
                "\"temperature\":null,\"tool_choice\":\"none\","
                "\"response_format\":{\"type\":\"text\"}}");
}

/* ---------------------------------------------------------------------
 * Refused
 * ------------------------------------------------------------------- */

static void test_a_body_that_is_not_an_object_is_refused(void **state)
{
    (void)state;
    refuse("[1,2]", RL_E_INVALID_REQUEST, "", "must be a JSON object");
    refuse("[]", RL_E_INVALID_REQUEST, "", "an array");
}

static void test_malformed_json_is_refused(void **state)
{
    (void)state;
    refuse("{\"model\":", RL_E_INVALID_JSON, "", "could not parse");
    refuse("", RL_E_INVALID_JSON, "", "could not parse");
    refuse("{\"a\":1} {\"b\":2}", RL_E_INVALID_JSON, "", "could not parse");
    refuse("{'model':'m'}", RL_E_INVALID_JSON, "", "could not parse");
    refuse("\"just a string\"", RL_E_INVALID_JSON, "", "could not parse");
    refuse("{\"model\":\"m\",}", RL_E_INVALID_JSON, "", "line 1");
    refuse_len("{\"model\":\"a\0b\"}", 15, RL_E_INVALID_JSON, "",
               "could not parse");
}

static void test_invalid_utf8_is_refused_as_such(void **state)
{
    (void)state;
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
           "\"caf\xe9\"}]}",
           RL_E_INVALID_UTF8, "", "UTF-8");
    refuse("{\"model\":\"\xc3\x28\"}", RL_E_INVALID_UTF8, "", "UTF-8");
    refuse("{\"model\":\"\xed\xa0\x80\"}", RL_E_INVALID_UTF8, "", "UTF-8");
}

static void test_a_missing_model_is_refused(void **state)
{
    (void)state;
    refuse("{" USER_MSG "}", RL_E_INVALID_REQUEST, "model",
           "Missing required parameter: 'model'");
    refuse("{\"model\":7," USER_MSG "}", RL_E_INVALID_REQUEST, "model",
           "expected a string, but got an integer");
}

/* Regression: "model": null was once accepted, and pipeline_chat then
 * called strlen(NULL) on it (a worker crash). */
static void test_a_null_model_is_refused(void **state)
{
    (void)state;
    refuse("{\"model\":null," USER_MSG "}", RL_E_INVALID_REQUEST, "model",
           "model");
}

static void test_missing_or_wrong_messages_are_refused(void **state)
{
    (void)state;
    refuse("{\"model\":\"m\"}", RL_E_INVALID_REQUEST, "messages",
           "Missing required parameter: 'messages'");
    refuse("{\"model\":\"m\",\"messages\":\"hi\"}", RL_E_INVALID_REQUEST,
           "messages", "expected an array, but got a string");
    refuse("{\"model\":\"m\",\"messages\":null}", RL_E_INVALID_REQUEST,
           "messages", "expected an array, but got null");
    refuse("{\"model\":\"m\",\"messages\":{}}", RL_E_INVALID_REQUEST,
           "messages", "an object");
    refuse("{\"model\":\"m\",\"messages\":[]}", RL_E_INVALID_REQUEST,
           "messages", "empty array");
    refuse("{\"model\":\"m\",\"messages\":[\"hi\"]}", RL_E_INVALID_REQUEST,
           "messages[0]", "expected an object, but got a string");
}

static void test_bad_roles_are_refused(void **state)
{
    (void)state;
    refuse("{\"model\":\"m\",\"messages\":[{\"content\":\"hi\"}]}",
           RL_E_INVALID_REQUEST, "messages[0].role",
           "Missing required parameter: 'messages[0].role'");
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
           "\"a\"},{\"role\":\"robot\",\"content\":\"b\"}]}",
           RL_E_INVALID_REQUEST, "messages[1].role", "Invalid value: ");
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":5,\"content\":\"b\"}]}",
           RL_E_INVALID_REQUEST, "messages[0].role", "expected a string");
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"User\",\"content\":"
           "\"b\"}]}",
           RL_E_INVALID_REQUEST, "messages[0].role", "User");
}

/*
 * Regression (fixed; src/api/chat.c, check_message, since 781a6e6 "check chat
 * requests over spans"): the refused role is printed as its raw JSON token,
 * so the message reads Invalid value: "robot" (double quotes, and escapes
 * such as \u0062 left undecoded) instead of OpenAI's (and the previous
 * code's) Invalid value: 'robot'. Supported values are: ...
 */
static void test_a_bad_role_is_quoted_as_openai_does(void **state)
{
    (void)state;
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"ro\\u0062ot\","
           "\"content\":\"b\"}]}",
           RL_E_INVALID_REQUEST, "messages[0].role",
           "Invalid value: 'robot'. Supported values are:");
}

static void test_missing_or_wrong_content_is_refused(void **state)
{
    (void)state;
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}",
           RL_E_INVALID_REQUEST, "messages[0].content",
           "Missing required parameter: 'messages[0].content'");
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":"
           "null}]}",
           RL_E_INVALID_REQUEST, "messages[0].content", "system message");
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
           "42}]}",
           RL_E_INVALID_REQUEST, "messages[0].content",
           "a string or an array of content parts");
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
           "[{\"type\":\"text\"}]}]}",
           RL_E_INVALID_REQUEST, "messages[0].content[0]",
           "'messages[0].content[0].text'");
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
           "[{\"text\":\"x\"}]}]}",
           RL_E_INVALID_REQUEST, "messages[0].content[0]", ".type'");
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
           "[\"x\"]}]}",
           RL_E_INVALID_REQUEST, "messages[0].content[0]", "an object");
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
           "[{\"type\":\"image_url\",\"image_url\":{}}]}]}",
           RL_E_INVALID_REQUEST, "messages[0].content[0]", "image_url.url");
    refuse("{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":"
           "\"18C\"}]}",
           RL_E_INVALID_REQUEST, "messages[0].tool_call_id", "tool_call_id");
}

struct wrong {
    const char *field; /* "name":value inside the body */
    const char *param;
    const char *what;
};

static void test_wrong_types_are_refused_with_their_param(void **state)
{
    (void)state;
    const struct wrong cases[] = {
        {"\"temperature\":\"hot\"", "temperature",
         "Invalid type for 'temperature': expected a number, but got a "
         "string instead."},
        {"\"temperature\":true", "temperature", "got a boolean"},
        {"\"top_p\":[1]", "top_p", "expected a number, but got an array"},
        {"\"n\":1.5", "n", "expected an integer, but got a number"},
        {"\"n\":\"2\"", "n", "expected an integer"},
        {"\"max_tokens\":\"100\"", "max_tokens", "expected an integer"},
        {"\"max_tokens\":10.0", "max_tokens", "expected an integer"},
        {"\"stream\":\"true\"", "stream", "expected a boolean"},
        {"\"stream\":1", "stream", "expected a boolean, but got an integer"},
        {"\"stop\":5", "stop", "a string or an array of at most 4 strings"},
        {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "stop", "at most 4"},
        {"\"stop\":[\"a\",1]", "stop", "expected a string"},
        {"\"tools\":{}", "tools", "expected an array, but got an object"},
        {"\"tools\":[{\"type\":\"function\"}]", "tools[0]",
         "'tools[0].function.name'"},
        {"\"tools\":[\"f\"]", "tools[0]", "an object"},
        {"\"tool_choice\":5", "tool_choice", "a string or an object"},
        {"\"tool_choice\":[]", "tool_choice", "a string or an object"},
        {"\"response_format\":\"json\"", "response_format",
         "expected an object"},
        {"\"response_format\":{\"type\":\"xml\"}", "response_format.type",
         "'text', 'json_object' or 'json_schema'"},
        {"\"response_format\":{}", "response_format.type", "'text'"},
        {"\"stream_options\":true", "stream_options", "expected an object"},
        {"\"routing\":\"cheap\"", "routing", "expected an object"},
        {"\"user\":42", "user", "expected a string"},
        {"\"logprobs\":\"yes\"", "logprobs", "expected a boolean"},
        {"\"seed\":1.5", "seed", "expected an integer"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[1024];
        snprintf(body, sizeof(body), "{\"model\":\"m\"," USER_MSG ",%s}",
                 cases[i].field);
        refuse(body, RL_E_INVALID_REQUEST, cases[i].param, cases[i].what);
    }
}

static void test_out_of_range_numbers_are_refused(void **state)
{
    (void)state;
    const struct wrong cases[] = {
        {"\"temperature\":2.01", "temperature",
         "Invalid 'temperature': 2.01 is out of range; expected a value from "
         "0 to 2."},
        {"\"temperature\":-0.1", "temperature", "out of range"},
        {"\"top_p\":1.5", "top_p", "out of range"},
        {"\"n\":0", "n", "out of range"},
        {"\"n\":129", "n", "out of range"},
        {"\"max_tokens\":0", "max_tokens", "out of range"},
        {"\"max_tokens\":-5", "max_tokens", "out of range"},
        {"\"max_completion_tokens\":0", "max_completion_tokens",
         "out of range"},
        {"\"presence_penalty\":-2.5", "presence_penalty", "out of range"},
        {"\"frequency_penalty\":3", "frequency_penalty", "out of range"},
        {"\"top_logprobs\":21", "top_logprobs", "out of range"},
        {"\"temperature\":1e308", "temperature", "out of range"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[1024];
        snprintf(body, sizeof(body), "{\"model\":\"m\"," USER_MSG ",%s}",
                 cases[i].field);
        refuse(body, RL_E_INVALID_REQUEST, cases[i].param, cases[i].what);
    }
}

static void test_stream_options_without_stream_are_refused(void **state)
{
    (void)state;
    refuse("{\"model\":\"m\"," USER_MSG ",\"stream_options\":{"
           "\"include_usage\":true}}",
           RL_E_INVALID_REQUEST, "stream_options",
           "only allowed when 'stream' is enabled");
    refuse("{\"model\":\"m\"," USER_MSG ",\"stream\":false,"
           "\"stream_options\":{}}",
           RL_E_INVALID_REQUEST, "stream_options", "only allowed");
}

static void test_deeply_nested_json_does_not_crash(void **state)
{
    (void)state;
    size_t depth = 100000;
    struct buf b;
    buf_init(&b, 4 * depth + 1024);
    buf_append_cstr(&b, "{\"model\":\"m\"," USER_MSG ",\"metadata\":");
    for (size_t i = 0; i < depth; i++) {
        buf_append_cstr(&b, "{\"a\":[");
    }
    for (size_t i = 0; i < depth; i++) {
        buf_append_cstr(&b, "]}");
    }
    buf_append_cstr(&b, "}");
    struct chat_req req;
    struct api_problem p;
    enum rl_err err = api_chat_parse((struct str){b.p, b.len}, &req, &p);
    /* Refused past the scanner's depth limit; above all, no crash. */
    assert_int_equal(err, RL_E_INVALID_JSON);
    buf_free(&b);
}

static void test_a_huge_string_is_accepted_and_kept(void **state)
{
    (void)state;
    size_t n = 8u << 20;
    struct buf b;
    buf_init(&b, n + 1024);
    buf_append_cstr(&b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                        "\"content\":\"");
    char *big = rl_malloc(n);
    memset(big, 'w', n);
    buf_append(&b, big, n);
    free(big);
    buf_append_cstr(&b, "\"}]}");
    struct chat_req req;
    struct api_problem p;
    assert_int_equal(api_chat_parse((struct str){b.p, b.len}, &req, &p),
                     RL_OK);
    assert_int_equal(req.raw.len, b.len);
    assert_string_equal(req.model, "m");
    buf_free(&b);
}

/* ---------------------------------------------------------------------
 * models.c
 * ------------------------------------------------------------------- */

static void test_the_model_list_has_auto_and_every_model(void **state)
{
    (void)state;
    struct provider_cfg prov[2] = {{.name = "groq"}, {.name = "we\"ird"}};
    struct model_cfg models[2] = {{.name = "llama", .provider = &prov[0]},
                                  {.name = "gpt\\x", .provider = &prov[1]}};
    struct config cfg = {.models = models, .nmodels = 2};
    struct buf out;
    buf_init(&out, 1 << 20);
    api_models_list(&cfg, &out);
    json_error_t jerr;
    json_t *root = json_loadb(out.p, out.len, 0, &jerr);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "object")),
                        "list");
    json_t *data = json_object_get(root, "data");
    assert_int_equal(json_array_size(data), 3);
    const char *ids[] = {"auto", "llama", "gpt\\x"};
    const char *owners[] = {"relay", "groq", "we\"ird"};
    for (size_t i = 0; i < 3; i++) {
        json_t *m = json_array_get(data, i);
        assert_string_equal(json_string_value(json_object_get(m, "id")),
                            ids[i]);
        assert_string_equal(json_string_value(json_object_get(m, "object")),
                            "model");
        assert_string_equal(
            json_string_value(json_object_get(m, "owned_by")), owners[i]);
        assert_true(json_is_integer(json_object_get(m, "created")));
    }
    json_decref(root);
    buf_reset(&out);
    assert_int_equal(api_models_get(&cfg, STR_LIT("llama"), &out), RL_OK);
    assert_non_null(strstr(out.p, "\"id\":\"llama\""));
    buf_reset(&out);
    assert_int_equal(api_models_get(&cfg, STR_LIT("auto"), &out), RL_OK);
    assert_non_null(strstr(out.p, "\"owned_by\":\"relay\""));
    buf_reset(&out);
    assert_int_equal(api_models_get(&cfg, STR_LIT("llam"), &out),
                     RL_E_MODEL_NOT_FOUND);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_minimal_request_is_accepted),
        cmocka_unit_test(test_the_output_cap_is_read_from_either_name),
        cmocka_unit_test(test_content_parts_with_text_and_image_url),
        cmocka_unit_test(test_a_tool_conversation_is_accepted),
        cmocka_unit_test(test_a_stream_with_stream_options),
        cmocka_unit_test(
            test_every_documented_parameter_in_range_is_accepted),
        cmocka_unit_test(test_a_body_that_is_not_an_object_is_refused),
        cmocka_unit_test(test_malformed_json_is_refused),
        cmocka_unit_test(test_invalid_utf8_is_refused_as_such),
        cmocka_unit_test(test_a_missing_model_is_refused),
        cmocka_unit_test(test_a_null_model_is_refused),
        cmocka_unit_test(test_missing_or_wrong_messages_are_refused),
        cmocka_unit_test(test_bad_roles_are_refused),
        cmocka_unit_test(test_a_bad_role_is_quoted_as_openai_does),
        cmocka_unit_test(test_missing_or_wrong_content_is_refused),
        cmocka_unit_test(test_wrong_types_are_refused_with_their_param),
        cmocka_unit_test(test_out_of_range_numbers_are_refused),
        cmocka_unit_test(test_stream_options_without_stream_are_refused),
        cmocka_unit_test(test_deeply_nested_json_does_not_crash),
        cmocka_unit_test(test_a_huge_string_is_accepted_and_kept),
        cmocka_unit_test(test_the_model_list_has_auto_and_every_model),
    };
    return cmocka_run_group_tests_name("chat", tests, NULL, NULL);
}
