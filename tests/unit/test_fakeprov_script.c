/*
 * test_fakeprov_script.c - unit tests of the fake provider's pure parts:
 * the model-name script, the deterministic text and usage, the schema
 * filler, the answer's pieces and the OpenAI request reader.
 *
 * The Makefile links unit tests against src/ objects only, so the fake's
 * sources are included here directly (they are small, and their statics
 * become testable); nothing else of the fake (sockets, loops) is pulled in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../tools/fakeprov/answer.c"
#include "../../tools/fakeprov/openai.c"
#include "../../tools/fakeprov/script.c"
#include "../../tools/fakeprov/text.c"

static struct script parse_ok(const char *model)
{
    struct script sc;
    char err[160];
    assert_int_equal(fake_script_parse(str_from(model), &sc, err, sizeof(err)),
                     RL_OK);
    return sc;
}

static void assert_parse_fails(const char *model)
{
    struct script sc;
    char err[160] = "";
    assert_int_equal(fake_script_parse(str_from(model), &sc, err, sizeof(err)),
                     RL_E_INVALID_REQUEST);
    assert_non_null(strstr(err, "fake script"));
}

/* ---------------------------------------------------------------------- */
/* script.c                                                               */

static void test_a_plain_model_has_no_script(void **state)
{
    (void)state;
    struct script sc = parse_ok("llama-3.1-8b");
    assert_true(str_eq_lit(sc.base, "llama-3.1-8b"));
    assert_int_equal(sc.ttft_ms, -1);
    assert_true(sc.tps < 0);
    assert_int_equal(sc.tokens, -1);
    assert_int_equal(sc.status, 0);
    assert_int_equal(sc.fault, FAULT_NONE);
    assert_int_equal(sc.after, -1);
    assert_int_equal(sc.first, 0);
    assert_true(sc.p == 1.0);
    assert_int_equal(sc.retry_after_s, 1);
    assert_false(fake_script_has_failure(&sc));
}

static void test_every_key_is_read(void **state)
{
    (void)state;
    struct script sc = parse_ok(
        "m?ttft_ms=200&tps=12.5&tokens=7&status=429&code=slow_down&"
        "fault=cut&after=3&first=2&p=0.25&retry_after=9");
    assert_true(str_eq_lit(sc.base, "m"));
    assert_int_equal(sc.ttft_ms, 200);
    assert_true(sc.tps == 12.5);
    assert_int_equal(sc.tokens, 7);
    assert_int_equal(sc.status, 429);
    assert_true(str_eq_lit(sc.code, "slow_down"));
    assert_int_equal(sc.fault, FAULT_CUT);
    assert_int_equal(sc.after, 3);
    assert_int_equal(sc.first, 2);
    assert_true(sc.p == 0.25);
    assert_int_equal(sc.retry_after_s, 9);
    assert_true(fake_script_has_failure(&sc));
}

static void test_every_fault_name_parses(void **state)
{
    (void)state;
    const char *names[] = {"reset", "hang", "stall", "cut", "malformed",
                           "nodone", "slowheaders"};
    for (size_t i = 0; i < 7; i++) {
        char model[64];
        snprintf(model, sizeof(model), "m?fault=%s", names[i]);
        struct script sc = parse_ok(model);
        assert_int_equal(sc.fault, (int)i + 1);
        assert_string_equal(fake_script_fault_name(sc.fault), names[i]);
    }
}

static void test_empty_pairs_are_tolerated(void **state)
{
    (void)state;
    struct script sc = parse_ok("m?&tokens=3&&");
    assert_int_equal(sc.tokens, 3);
    sc = parse_ok("m?");
    assert_true(str_eq_lit(sc.base, "m"));
}

static void test_a_2xx_status_means_healthy(void **state)
{
    (void)state;
    struct script sc = parse_ok("m?status=200");
    assert_int_equal(sc.status, 0);
    assert_false(fake_script_has_failure(&sc));
}

static void test_bad_keys_and_values_are_refused(void **state)
{
    (void)state;
    assert_parse_fails("m?bogus=1");
    assert_parse_fails("m?tokens");
    assert_parse_fails("m?tokens=-1");
    assert_parse_fails("m?tokens=1x");
    assert_parse_fails("m?status=abc");
    assert_parse_fails("m?status=150");
    assert_parse_fails("m?status=600");
    assert_parse_fails("m?p=1.5");
    assert_parse_fails("m?p=nan");
    assert_parse_fails("m?fault=explode");
    assert_parse_fails("m?first=0");
    assert_parse_fails("m?flap=0");
    assert_parse_fails("m?tokens=16000001");
    assert_parse_fails("m?ttft_ms=99999999999999999999999");
    assert_parse_fails("m?code=");
}

static void test_first_counts_each_exact_model_string(void **state)
{
    (void)state;
    fake_script_reset(1);
    struct script sc = parse_ok("m?status=503&first=2");
    struct str a = str_from("m?status=503&first=2");
    struct str b = str_from("m?status=503&first=2&tokens=3");
    assert_true(fake_script_failure_applies(&sc, a));
    assert_true(fake_script_failure_applies(&sc, a));
    assert_false(fake_script_failure_applies(&sc, a));
    assert_true(fake_script_failure_applies(&sc, b));
    fake_script_reset(1);
    assert_true(fake_script_failure_applies(&sc, a));
    fake_script_reset(1);
}

static void test_flap_fails_and_recovers_in_stretches_of_n(void **state)
{
    (void)state;
    fake_script_reset(1);
    struct script sc = parse_ok("m?status=503&flap=2");
    struct str m = str_from("m?status=503&flap=2");
    const bool want[] = {true, true, false, false, true, true, false};
    for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++) {
        assert_int_equal(fake_script_failure_applies(&sc, m), want[i]);
    }
    struct script healthy = parse_ok("m?flap=2");
    assert_false(fake_script_failure_applies(&healthy, m)); /* no failure */
    fake_script_reset(1);
    assert_true(fake_script_failure_applies(&sc, m));
    fake_script_reset(1);
}

static void test_p_is_deterministic_for_a_seed(void **state)
{
    (void)state;
    struct script sc = parse_ok("m?status=500&p=0.5");
    struct str m = str_from("m?status=500&p=0.5");
    bool first_run[64];
    int hits = 0;
    fake_script_reset(42);
    for (int i = 0; i < 64; i++) {
        first_run[i] = fake_script_failure_applies(&sc, m);
        hits += first_run[i];
    }
    assert_true(hits > 16 && hits < 48);
    fake_script_reset(42);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(fake_script_failure_applies(&sc, m), first_run[i]);
    }
    struct script never = parse_ok("m?status=500&p=0");
    struct script always = parse_ok("m?status=500&p=1");
    for (int i = 0; i < 32; i++) {
        assert_false(fake_script_failure_applies(&never, m));
        assert_true(fake_script_failure_applies(&always, m));
    }
    struct script healthy = parse_ok("m?p=1");
    assert_false(fake_script_failure_applies(&healthy, m));
    fake_script_reset(1);
}

/* ---------------------------------------------------------------------- */
/* text.c                                                                 */

static void test_fnv1a_matches_the_reference_vectors(void **state)
{
    (void)state;
    assert_true(fake_text_fnv1a(TEXT_FNV_OFFSET, "", 0) == TEXT_FNV_OFFSET);
    assert_true(fake_text_fnv1a(TEXT_FNV_OFFSET, "a", 1) ==
                0xaf63dc4c8601ec8cull);
    assert_true(fake_text_fnv1a(TEXT_FNV_OFFSET, "foobar", 6) ==
                0x85944171f73967e8ull);
}

static void test_words_depend_on_prompt_and_index_only(void **state)
{
    (void)state;
    uint64_t s1 = fake_text_fnv1a(TEXT_FNV_OFFSET, "hello", 5);
    uint64_t s2 = fake_text_fnv1a(TEXT_FNV_OFFSET, "world", 5);
    int same = 0;
    for (uint32_t i = 0; i < 32; i++) {
        struct str w = fake_text_word(s1, i);
        assert_true(w.len > 0 && w.len < 12);
        assert_true(str_eq(w, fake_text_word(s1, i)));
        same += str_eq(w, fake_text_word(s2, i));
    }
    assert_true(same < 16);
    /* The documented formula: vocab[fnv1a(seed, le32(i)) % 64]. */
    unsigned char le[4] = {3, 0, 0, 0};
    assert_true(str_eq_lit(fake_text_word(s1, 3),
                           vocab[fake_text_fnv1a(s1, le, 4) % TEXT_VOCAB_LEN]));
}

static json_t *parse(const char *s)
{
    json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    return j;
}

static void test_prompt_tokens_follow_the_formula(void **state)
{
    (void)state;
    /* "abcde" = 5 chars -> 2 + 4; "é" = 1 char -> 1 + 4; parts "ab"+"cd"
     * = 4 chars -> 1 + 4; null content -> 0 + 4. */
    json_t *m = parse(
        "[{\"role\":\"system\",\"content\":\"abcde\"},"
        "{\"role\":\"user\",\"content\":\"\\u00e9\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"ab\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}},"
        "{\"type\":\"text\",\"text\":\"cd\"}]},"
        "{\"role\":\"assistant\",\"content\":null}]");
    assert_int_equal(fake_text_prompt_tokens(m), 6 + 5 + 5 + 4);
    assert_int_equal(fake_text_chars(str_from("h\xc3\xa9llo")), 5);
    json_decref(m);
}

static void test_the_seed_is_the_last_user_message(void **state)
{
    (void)state;
    json_t *m = parse(
        "[{\"role\":\"user\",\"content\":\"first\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"ab\"},"
        "{\"type\":\"text\",\"text\":\"cd\"}]},"
        "{\"role\":\"assistant\",\"content\":\"x\"}]");
    assert_true(fake_text_prompt_seed(m) ==
                fake_text_fnv1a(TEXT_FNV_OFFSET, "abcd", 4));
    json_t *none = parse("[{\"role\":\"system\",\"content\":\"s\"}]");
    assert_true(fake_text_prompt_seed(none) == TEXT_FNV_OFFSET);
    json_decref(m);
    json_decref(none);
}

static void assert_filled(const char *schema, const char *want)
{
    json_t *s = parse(schema);
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(fake_text_fill_schema(s, &b), RL_OK);
    assert_string_equal(b.p, want);
    buf_free(&b);
    json_decref(s);
}

static void test_schemas_are_filled_by_type(void **state)
{
    (void)state;
    assert_filled(
        "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\"},"
        "\"n\":{\"type\":\"number\"},\"i\":{\"type\":\"integer\"},"
        "\"b\":{\"type\":\"boolean\"},\"a\":{\"type\":\"array\"},"
        "\"o\":{\"type\":\"object\"},\"e\":{\"enum\":[\"x\",\"y\"]},"
        "\"u\":{\"type\":[\"null\",\"integer\"]},\"skip\":{}},"
        "\"required\":[\"s\",\"n\",\"i\",\"b\",\"a\",\"o\",\"e\",\"u\","
        "\"missing\"]}",
        "{\"s\":\"value\",\"n\":1,\"i\":1,\"b\":true,\"a\":[],\"o\":{},"
        "\"e\":\"x\",\"u\":1,\"missing\":\"value\"}");
    assert_filled("{\"type\":\"object\"}", "{}");
    assert_filled("null", "{}");
}

/* ---------------------------------------------------------------------- */
/* answer.c                                                               */

static void test_plain_words_are_one_piece_each(void **state)
{
    (void)state;
    struct answer a;
    fake_answer_init(&a);
    fake_answer_reset(&a);
    fake_answer_words(&a, 7, 4, false);
    assert_int_equal(a.npieces, 4);
    size_t from = 0;
    for (size_t k = 0; k < 4; k++) {
        struct str w = fake_text_word(7, (uint32_t)k);
        assert_int_equal(a.cuts[k] - from, w.len + 1);
        assert_memory_equal(a.content.p + from, w.p, w.len);
        assert_int_equal(a.content.p[a.cuts[k] - 1], ' ');
        from = a.cuts[k];
    }
    assert_int_equal(from, a.content.len);
    fake_answer_free(&a);
}

static void test_json_words_make_one_object(void **state)
{
    (void)state;
    struct answer a;
    fake_answer_init(&a);
    fake_answer_reset(&a);
    fake_answer_words(&a, 7, 3, true);
    assert_int_equal(a.npieces, 3);
    assert_int_equal(a.cuts[2], a.content.len);
    json_t *j = json_loadb(a.content.p, a.content.len, 0, NULL);
    assert_non_null(j);
    assert_true(json_is_string(json_object_get(j, "answer")));
    json_decref(j);
    fake_answer_reset(&a);
    fake_answer_words(&a, 7, 0, true);
    assert_string_equal(a.content.p, "{\"answer\":\"\"}");
    assert_int_equal(a.npieces, 1);
    fake_answer_free(&a);
}

static void test_splits_never_cut_a_utf8_sequence(void **state)
{
    (void)state;
    struct answer a;
    fake_answer_init(&a);
    fake_answer_reset(&a);
    (void)buf_append_cstr(&a.content, "\xc3\xa9\xc3\xa9\xc3\xa9");
    fake_answer_split(&a, 0, 4);
    for (size_t k = 0; k < a.npieces; k++) {
        size_t end = a.cuts[k];
        assert_true(end == a.content.len ||
                    ((unsigned char)a.content.p[end] & 0xc0) != 0x80);
    }
    assert_int_equal(a.cuts[a.npieces - 1], a.content.len);
    fake_answer_free(&a);
}

static void test_scripted_errors_have_openai_types_and_codes(void **state)
{
    (void)state;
    struct answer a;
    fake_answer_init(&a);
    struct {
        const char *model;
        int status;
        const char *type;
        const char *code;
    } cases[] = {
        {"m?status=400", 400, "invalid_request_error", ""},
        {"m?status=401", 401, "invalid_request_error", "invalid_api_key"},
        {"m?status=404", 404, "invalid_request_error", "model_not_found"},
        {"m?status=429", 429, "requests", "rate_limit_exceeded"},
        {"m?status=500", 500, "server_error", ""},
        {"m?status=503", 503, "server_error", "overloaded"},
        {"m?status=400&code=context_length_exceeded", 400,
         "invalid_request_error", "context_length_exceeded"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct script sc = parse_ok(cases[i].model);
        fake_answer_reset(&a);
        fake_answer_scripted_error(&a, &sc);
        assert_int_equal(a.kind, ANSWER_ERROR);
        assert_int_equal(a.status, cases[i].status);
        assert_string_equal(a.err_type, cases[i].type);
        assert_string_equal(a.err_code.p ? a.err_code.p : "", cases[i].code);
    }
    struct script sc = parse_ok("m?status=429&retry_after=0");
    fake_answer_scripted_error(&a, &sc);
    assert_int_equal(a.retry_after_s, 0);
    fake_answer_free(&a);
}

/* ---------------------------------------------------------------------- */
/* openai.c: reading a request into an answer                             */

static void build_from(const char *body, struct answer *a)
{
    struct fake_opts o = {.tokens = 16};
    json_t *req = parse(body);
    fake_answer_reset(a);
    fake_openai_format.build(req, &o, a);
    json_decref(req);
}

static void test_max_tokens_caps_the_length(void **state)
{
    (void)state;
    struct answer a;
    fake_answer_init(&a);
    build_from("{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
               "\"content\":\"hi\"}]}", &a);
    assert_int_equal(a.kind, ANSWER_TEXT);
    assert_int_equal(a.completion_tokens, 16);
    assert_int_equal(a.npieces, 16);
    assert_string_equal(a.finish, "stop");
    assert_int_equal(a.prompt_tokens, 1 + 4);
    build_from("{\"model\":\"m?tokens=40\",\"max_tokens\":5,\"messages\":"
               "[{\"role\":\"user\",\"content\":\"hi\"}]}", &a);
    assert_int_equal(a.completion_tokens, 5);
    assert_string_equal(a.finish, "length");
    build_from("{\"model\":\"m?tokens=3\",\"max_completion_tokens\":50,"
               "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &a);
    assert_int_equal(a.completion_tokens, 3);
    assert_string_equal(a.finish, "stop");
    fake_answer_free(&a);
}

static void test_a_tool_request_gets_one_call(void **state)
{
    (void)state;
    struct answer a;
    fake_answer_init(&a);
    build_from("{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":"
               "\"user\",\"content\":\"hi\"}],\"tools\":[{\"type\":"
               "\"function\",\"function\":{\"name\":\"f\",\"parameters\":{"
               "\"properties\":{\"q\":{\"type\":\"string\"}},\"required\":"
               "[\"q\"]}}}]}", &a);
    assert_int_equal(a.kind, ANSWER_TOOL);
    assert_true(a.stream);
    assert_string_equal(a.tool_name.p, "f");
    assert_string_equal(a.content.p, "{\"q\":\"value\"}");
    assert_string_equal(a.finish, "tool_calls");
    assert_int_equal(a.cuts[0], 0);
    assert_true(a.npieces >= 3 && a.npieces <= 4);
    fake_answer_free(&a);
}

static void test_bad_requests_become_400s(void **state)
{
    (void)state;
    const char *bodies[] = {
        "[]",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"model\":\"m\"}",
        "{\"model\":\"m\",\"messages\":[]}",
        "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}",
        "{\"model\":\"m?nope=1\",\"messages\":[{\"role\":\"user\"}]}",
        "{\"model\":\"m\",\"max_tokens\":0,\"messages\":[{\"role\":\"u\"}]}",
        "{\"model\":\"m\",\"tools\":{},\"messages\":[{\"role\":\"u\"}]}",
        "{\"model\":\"m\",\"response_format\":{\"type\":\"yaml\"},"
        "\"messages\":[{\"role\":\"u\"}]}",
    };
    struct answer a;
    fake_answer_init(&a);
    for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
        build_from(bodies[i], &a);
        assert_int_equal(a.kind, ANSWER_ERROR);
        assert_int_equal(a.status, 400);
    }
    fake_answer_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_plain_model_has_no_script),
        cmocka_unit_test(test_every_key_is_read),
        cmocka_unit_test(test_every_fault_name_parses),
        cmocka_unit_test(test_empty_pairs_are_tolerated),
        cmocka_unit_test(test_a_2xx_status_means_healthy),
        cmocka_unit_test(test_bad_keys_and_values_are_refused),
        cmocka_unit_test(test_first_counts_each_exact_model_string),
        cmocka_unit_test(test_flap_fails_and_recovers_in_stretches_of_n),
        cmocka_unit_test(test_p_is_deterministic_for_a_seed),
        cmocka_unit_test(test_fnv1a_matches_the_reference_vectors),
        cmocka_unit_test(test_words_depend_on_prompt_and_index_only),
        cmocka_unit_test(test_prompt_tokens_follow_the_formula),
        cmocka_unit_test(test_the_seed_is_the_last_user_message),
        cmocka_unit_test(test_schemas_are_filled_by_type),
        cmocka_unit_test(test_plain_words_are_one_piece_each),
        cmocka_unit_test(test_json_words_make_one_object),
        cmocka_unit_test(test_splits_never_cut_a_utf8_sequence),
        cmocka_unit_test(test_scripted_errors_have_openai_types_and_codes),
        cmocka_unit_test(test_max_tokens_caps_the_length),
        cmocka_unit_test(test_a_tool_request_gets_one_call),
        cmocka_unit_test(test_bad_requests_become_400s),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
