/*
 * test_retry.c - unit tests of src/providers/retry.c: how a failed attempt
 * is classed, the backoff of retries, what a chunk carries, which requests
 * are deterministic, the prefix match behind stream rescue, and the
 * prefill request and whitespace of a rescue that continues.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "providers/retry.h"

static struct str S(const char *s)
{
    return (struct str){s, strlen(s)};
}

static void test_backoff_doubles_with_jitter_and_is_capped(void **state)
{
    (void)state;
    for (uint64_t rnd = 0; rnd < 500; rnd += 7) {
        uint64_t d1 = retry_backoff_ms(1, 50, 1000, rnd);
        assert_true(d1 >= 50 && d1 <= 100);
        uint64_t d2 = retry_backoff_ms(2, 50, 1000, rnd);
        assert_true(d2 >= 100 && d2 <= 200);
        uint64_t d9 = retry_backoff_ms(9, 50, 1000, rnd);
        assert_true(d9 >= 1000 && d9 <= 2000);
    }
    assert_int_equal(retry_backoff_ms(1, 50, 1000, 0), 50);
    assert_int_equal(retry_backoff_ms(1, 50, 1000, 50), 100);
}

static void test_backoff_cap_below_base_is_the_base(void **state)
{
    (void)state;
    assert_int_equal(retry_backoff_ms(5, 300, 100, 0), 300);
    assert_true(retry_backoff_ms(5, 300, 100, 12345) <= 600);
}

static void test_outcomes_are_classed_by_error_and_status(void **state)
{
    (void)state;
    struct provider_error pe = {0};
    assert_int_equal(retry_outcome(RL_OK, &pe, 200), ATTEMPT_OK);
    assert_int_equal(retry_outcome(RL_E_UPSTREAM_TIMEOUT, &pe, 0),
                     ATTEMPT_TIMEOUT);
    assert_int_equal(retry_outcome(RL_E_UPSTREAM_CONNECT, &pe, 0),
                     ATTEMPT_CONNECT);
    assert_int_equal(retry_outcome(RL_E_UPSTREAM_CUT, &pe, 200),
                     ATTEMPT_CUT);
    pe.status = 429;
    assert_int_equal(retry_outcome(RL_E_UPSTREAM, &pe, 429),
                     ATTEMPT_RATE_LIMITED);
    pe.status = 503;
    assert_int_equal(retry_outcome(RL_E_UPSTREAM, &pe, 503),
                     ATTEMPT_SERVER_ERROR);
    pe.status = 400;
    assert_int_equal(retry_outcome(RL_E_UPSTREAM, &pe, 400),
                     ATTEMPT_CLIENT_ERROR);
    pe.code = "context_length_exceeded";
    assert_int_equal(retry_outcome(RL_E_UPSTREAM, &pe, 400),
                     ATTEMPT_CONTEXT_LENGTH);
    pe.code = "content_policy_violation";
    assert_int_equal(retry_outcome(RL_E_UPSTREAM, &pe, 400),
                     ATTEMPT_CONTENT_POLICY);
    assert_string_equal(provider_outcome_name(ATTEMPT_CONTENT_POLICY),
                        "content_policy");
}

static void test_an_error_event_mid_stream_is_a_server_error(void **state)
{
    (void)state;
    struct provider_error pe = {.status = 502};
    assert_int_equal(retry_outcome(RL_E_UPSTREAM, &pe, 200),
                     ATTEMPT_SERVER_ERROR);
}

static void look(const char *chunk, const char *want_text, bool text,
                 bool other, bool finish)
{
    struct buf b;
    buf_init(&b, 4096);
    struct chunk_look l;
    assert_true(retry_chunk_look(S(chunk), NULL, &b, &l));
    assert_int_equal(l.text, text);
    assert_int_equal(l.other, other);
    assert_int_equal(l.finish, finish);
    assert_int_equal(b.len, strlen(want_text));
    assert_memory_equal(b.p ? b.p : "", want_text, b.len);
    buf_free(&b);
}

static void test_chunks_are_looked_at(void **state)
{
    (void)state;
    look("{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
         "\"content\":\"\"}}]}", "", false, false, false);
    look("{\"choices\":[{\"delta\":{\"content\":\"caf\\u00e9 \\\"x\\\"\"}}]}",
         "caf\xc3\xa9 \"x\"", true, false, false);
    look("{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}", "",
         false, false, true);
    look("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}", "",
         false, true, false);
    look("{\"choices\":[],\"usage\":{\"total_tokens\":3}}", "", false, false,
         false);
    look("{\"choices\":[{\"delta\":{\"content\":\"a\"}},"
         "{\"delta\":{\"content\":\"b\"}}]}", "a", true, true, false);
}

static void test_a_chunk_that_is_not_json_is_refused(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 64);
    struct chunk_look l;
    assert_false(retry_chunk_look(S("{\"choices\":[{"), NULL, &b, &l));
    buf_free(&b);
}

static void test_determinism_is_temperature_zero_or_a_seed(void **state)
{
    (void)state;
    assert_true(retry_deterministic(S("{\"model\":\"m\",\"temperature\":0}")));
    assert_true(retry_deterministic(S("{\"temperature\":0.0,\"n\":1}")));
    assert_true(retry_deterministic(S("{\"seed\":42,\"temperature\":1}")));
    assert_false(retry_deterministic(S("{\"temperature\":0.7}")));
    assert_false(retry_deterministic(S("{\"seed\":null}")));
    assert_false(retry_deterministic(S("{\"model\":\"m\"}")));
    assert_false(retry_deterministic(S("[1]")));
}

static void test_prefix_match_across_pieces(void **state)
{
    (void)state;
    struct str sent = S("the quick brown ");
    size_t matched = 0;
    size_t rest = 99;
    assert_int_equal(retry_prefix_match(sent, &matched, S("the "), &rest),
                     RETRY_MATCH_MORE);
    assert_int_equal(matched, 4);
    assert_int_equal(retry_prefix_match(sent, &matched, S("quick "), &rest),
                     RETRY_MATCH_MORE);
    assert_int_equal(retry_prefix_match(sent, &matched, S("brown fox "),
                                        &rest),
                     RETRY_MATCH_DONE);
    assert_int_equal(rest, 6);
    assert_int_equal(matched, sent.len);
}

static void test_prefix_match_ends_exactly_at_a_piece(void **state)
{
    (void)state;
    struct str sent = S("ab");
    size_t matched = 0;
    size_t rest = 99;
    assert_int_equal(retry_prefix_match(sent, &matched, S("ab"), &rest),
                     RETRY_MATCH_DONE);
    assert_int_equal(rest, 2);
}

static void test_prefix_match_sees_a_divergence(void **state)
{
    (void)state;
    struct str sent = S("the quick ");
    size_t matched = 0;
    size_t rest = 0;
    assert_int_equal(retry_prefix_match(sent, &matched, S("the "), &rest),
                     RETRY_MATCH_MORE);
    assert_int_equal(retry_prefix_match(sent, &matched, S("slow "), &rest),
                     RETRY_MATCH_DIVERGED);
    assert_int_equal(matched, 4);
}

static void test_nothing_sent_matches_at_once(void **state)
{
    (void)state;
    size_t matched = 0;
    size_t rest = 99;
    assert_int_equal(retry_prefix_match(S(""), &matched, S("x"), &rest),
                     RETRY_MATCH_DONE);
    assert_int_equal(rest, 0);
}

static void test_a_prefill_leaves_out_trailing_whitespace(void **state)
{
    (void)state;
    assert_int_equal(retry_trailing_space(S("the fox ")), 1);
    assert_int_equal(retry_trailing_space(S("the fox\n\n \t\r")), 5);
    assert_int_equal(retry_trailing_space(S("the fox")), 0);
    assert_int_equal(retry_trailing_space(S("  ")), 2);
    assert_int_equal(retry_trailing_space(S("")), 0);
}

static void test_a_prefill_request_ends_with_the_text_sent(void **state)
{
    (void)state;
    struct buf out;
    buf_init(&out, 4096);
    assert_true(retry_prefill_request(
        S("{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\","
          "\"content\":\"hi\"}]}"),
        S("the \"fox\""), &out));
    assert_string_equal(out.p, "{\"model\":\"m\",\"stream\":true,\"messages\":"
                               "[{\"role\":\"user\",\"content\":\"hi\"},"
                               "{\"role\":\"assistant\",\"content\":\"the "
                               "\\\"fox\\\"\"}]}");
    assert_false(retry_prefill_request(S("{\"model\":\"m\"}"), S("x"), &out));
    assert_false(retry_prefill_request(S("not json"), S("x"), &out));
    struct buf small;
    buf_init(&small, 16);
    assert_false(retry_prefill_request(
        S("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"), S("x"),
        &small));
    buf_free(&small);
    buf_free(&out);
}

static void test_a_continuation_drops_the_whitespace_left_out(void **state)
{
    (void)state;
    size_t matched = 0;
    bool done = false;
    /* " \n" was left out: " " then "\nfox" drop both, once. */
    assert_int_equal(retry_skip_space(S(" \n"), &matched, S(" "), &done), 1);
    assert_false(done);
    assert_int_equal(retry_skip_space(S(" \n"), &matched, S("\nfox "), &done),
                     1);
    assert_true(done);
    /* A continuation that begins elsewhere keeps its text. */
    matched = 0;
    assert_int_equal(retry_skip_space(S(" "), &matched, S("fox"), &done), 0);
    assert_true(done);
    matched = 0;
    assert_int_equal(retry_skip_space(S("  "), &matched, S(" fox"), &done), 1);
    assert_true(done);
    /* Nothing left out: nothing dropped, done at once. */
    matched = 0;
    assert_int_equal(retry_skip_space(S(""), &matched, S(" fox"), &done), 0);
    assert_true(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_with_jitter_and_is_capped),
        cmocka_unit_test(test_backoff_cap_below_base_is_the_base),
        cmocka_unit_test(test_outcomes_are_classed_by_error_and_status),
        cmocka_unit_test(test_an_error_event_mid_stream_is_a_server_error),
        cmocka_unit_test(test_chunks_are_looked_at),
        cmocka_unit_test(test_a_chunk_that_is_not_json_is_refused),
        cmocka_unit_test(test_determinism_is_temperature_zero_or_a_seed),
        cmocka_unit_test(test_prefix_match_across_pieces),
        cmocka_unit_test(test_prefix_match_ends_exactly_at_a_piece),
        cmocka_unit_test(test_prefix_match_sees_a_divergence),
        cmocka_unit_test(test_nothing_sent_matches_at_once),
        cmocka_unit_test(test_a_prefill_leaves_out_trailing_whitespace),
        cmocka_unit_test(test_a_prefill_request_ends_with_the_text_sent),
        cmocka_unit_test(test_a_continuation_drops_the_whitespace_left_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
