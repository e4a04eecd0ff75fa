/*
 * test_errors.c - unit tests of src/server/errors.c and src/server/sse.c:
 * every rl_err as the client sees it (status, type, code), the OpenAI error
 * body as valid JSON, and the SSE framing of chunks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "server/server.h"

struct expect {
    enum rl_err err;
    int status;
    const char *type;
    const char *code; /* NULL: JSON null */
};

static const struct expect table[] = {
    {RL_E_INVALID_JSON, 400, "invalid_request_error", "invalid_json"},
    {RL_E_INVALID_UTF8, 400, "invalid_request_error", "invalid_utf8"},
    {RL_E_INVALID_REQUEST, 400, "invalid_request_error", NULL},
    {RL_E_BAD_HTTP, 400, "invalid_request_error", "bad_http"},
    {RL_E_UNSUPPORTED, 400, "invalid_request_error", "unsupported"},
    {RL_E_UNAUTHORIZED, 401, "invalid_request_error", "invalid_api_key"},
    {RL_E_FORBIDDEN, 403, "permission_error", "permission_denied"},
    {RL_E_NOT_FOUND, 404, "invalid_request_error", "unknown_url"},
    {RL_E_MODEL_NOT_FOUND, 404, "invalid_request_error", "model_not_found"},
    {RL_E_METHOD, 405, "invalid_request_error", "method_not_allowed"},
    {RL_E_TIMEOUT, 408, "invalid_request_error", "request_timeout"},
    {RL_E_BODY_TOO_LARGE, 413, "invalid_request_error",
     "request_too_large"},
    {RL_E_RATE_LIMITED, 429, "rate_limit_error", "rate_limit_exceeded"},
    {RL_E_OVER_BUDGET, 429, "insufficient_quota", "budget_exceeded"},
    {RL_E_LIMITS_DOWN, 503, "api_error", "limits_unavailable"},
    {RL_E_HEADERS_TOO_LARGE, 431, "invalid_request_error",
     "headers_too_large"},
    {RL_E_UPSTREAM, 502, "api_error", "upstream_error"},
    {RL_E_UPSTREAM_CONNECT, 502, "api_error", "upstream_unreachable"},
    {RL_E_UPSTREAM_PROTOCOL, 502, "api_error", "upstream_protocol_error"},
    {RL_E_UPSTREAM_CUT, 502, "api_error", "upstream_stream_cut"},
    {RL_E_SHUTTING_DOWN, 503, "api_error", "shutting_down"},
    {RL_E_UPSTREAM_TIMEOUT, 504, "api_error", "upstream_timeout"},
    /* Everything without a row is the gateway's own failure: 500. */
    {RL_OK, 500, "server_error", "internal_error"},
    {RL_E_NOMEM, 500, "server_error", "internal_error"},
    {RL_E_CONFIG, 500, "server_error", "internal_error"},
    {RL_E_IO, 500, "server_error", "internal_error"},
    {RL_E_INTERNAL, 500, "server_error", "internal_error"},
    {RL_E_CAP, 500, "server_error", "internal_error"},
    {RL_E_REJECTED, 500, "server_error", "internal_error"},
    {RL_E__COUNT, 500, "server_error", "internal_error"},
    {(enum rl_err)9999, 500, "server_error", "internal_error"},
};

static void test_every_error_maps_to_its_status_type_and_code(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        struct api_error e;
        errors_from_rl(table[i].err, NULL, NULL, &e);
        print_message("rl_err %d\n", (int)table[i].err);
        assert_int_equal(e.status, table[i].status);
        assert_string_equal(e.type, table[i].type);
        if (table[i].code) {
            assert_string_equal(e.code, table[i].code);
        } else {
            assert_null(e.code);
        }
        assert_null(e.param);
        assert_true(strlen(e.message) > 0); /* a default message */
        assert_int_equal(e.retry_after_s, 0);
    }
}

static void test_every_enum_value_is_covered_by_the_table(void **state)
{
    (void)state;
    /* A value appended to rl_err without a row here fails this test. */
    for (int err = 0; err < RL_E__COUNT; err++) {
        bool found = false;
        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
            found = found || (int)table[i].err == err;
        }
        if (!found) {
            fail_msg("rl_err %d (%s) has no expected row", err,
                     rl_strerror((enum rl_err)err));
        }
    }
}

static void test_a_given_message_and_param_are_kept(void **state)
{
    (void)state;
    struct api_error e;
    errors_from_rl(RL_E_INVALID_REQUEST, "Invalid type for 'temperature'.",
                   "temperature", &e);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.message, "Invalid type for 'temperature'.");
    assert_string_equal(e.param, "temperature");
}

static void test_a_long_message_is_truncated_not_overflowed(void **state)
{
    (void)state;
    char msg[2000];
    memset(msg, 'm', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    struct api_error e;
    errors_from_rl(RL_E_UPSTREAM, msg, NULL, &e);
    assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
}

/* Parses out as {"error":{...}} and returns the inner object (borrowed
 * from *root, which the caller json_decrefs). */
static json_t *parse_error(const struct buf *out, json_t **root)
{
    json_error_t jerr;
    *root = json_loadb(out->p, out->len, 0, &jerr);
    if (!*root) {
        fail_msg("errors_body is not JSON: %s: %s", jerr.text, out->p);
    }
    assert_int_equal(json_object_size(*root), 1);
    json_t *e = json_object_get(*root, "error");
    assert_true(json_is_object(e));
    assert_int_equal(json_object_size(e), 4);
    return e;
}

static void test_the_body_is_valid_json_with_nulls_where_absent(void **state)
{
    (void)state;
    struct api_error e;
    errors_from_rl(RL_E_INVALID_REQUEST, NULL, NULL, &e);
    struct buf out;
    buf_init(&out, 4096);
    errors_body(&e, &out);
    json_t *root;
    json_t *err = parse_error(&out, &root);
    assert_string_equal(json_string_value(json_object_get(err, "message")),
                        e.message);
    assert_string_equal(json_string_value(json_object_get(err, "type")),
                        "invalid_request_error");
    assert_true(json_is_null(json_object_get(err, "param")));
    assert_true(json_is_null(json_object_get(err, "code")));
    json_decref(root);
    buf_free(&out);
}

static void test_the_body_escapes_quotes_and_control_characters(void **state)
{
    (void)state;
    struct api_error e;
    const char *msg = "The model 'a\"b\\c' is\nnot \"here\"\t\x01.";
    errors_from_rl(RL_E_MODEL_NOT_FOUND, msg, "model\"x", &e);
    struct buf out;
    buf_init(&out, 4096);
    errors_body(&e, &out);
    json_t *root;
    json_t *err = parse_error(&out, &root);
    assert_string_equal(json_string_value(json_object_get(err, "message")),
                        msg);
    assert_string_equal(json_string_value(json_object_get(err, "param")),
                        "model\"x");
    assert_string_equal(json_string_value(json_object_get(err, "code")),
                        "model_not_found");
    json_decref(root);
    buf_free(&out);
}

static void test_sse_event_frames_one_data_line_and_a_blank_line(
    void **state)
{
    (void)state;
    struct buf out;
    buf_init(&out, 1024);
    assert_int_equal(sse_event(&out, STR_LIT("{\"a\":1}")), RL_OK);
    assert_int_equal(sse_done(&out), RL_OK);
    assert_string_equal(out.p, "data: {\"a\":1}\n\ndata: [DONE]\n\n");
    buf_free(&out);
}

static void test_sse_event_past_the_cap_is_an_error(void **state)
{
    (void)state;
    struct buf out;
    buf_init(&out, 12);
    assert_int_equal(sse_event(&out, STR_LIT("{\"abcdefgh\":1}")),
                     RL_E_CAP);
    buf_free(&out);
    buf_init(&out, 10);
    assert_int_equal(sse_done(&out), RL_E_CAP);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_error_maps_to_its_status_type_and_code),
        cmocka_unit_test(test_every_enum_value_is_covered_by_the_table),
        cmocka_unit_test(test_a_given_message_and_param_are_kept),
        cmocka_unit_test(test_a_long_message_is_truncated_not_overflowed),
        cmocka_unit_test(
            test_the_body_is_valid_json_with_nulls_where_absent),
        cmocka_unit_test(
            test_the_body_escapes_quotes_and_control_characters),
        cmocka_unit_test(
            test_sse_event_frames_one_data_line_and_a_blank_line),
        cmocka_unit_test(test_sse_event_past_the_cap_is_an_error),
    };
    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
