/*
 * test_tokens.c - unit tests of src/accounting/tokens.c: token counts
 * estimated from text, for reservations and for providers without usage.
 *
 * The expected figures are worked out by hand from the rules in tokens.c
 * (a word run is one token per started five bytes, punctuation one each,
 * white space free, one per character outside ASCII), and a few are
 * checked against tiktoken's cl100k counts, which they must stay near.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "accounting/accounting.h"

static int64_t text(const char *s)
{
    return accounting_tokens_text(s, strlen(s));
}

static int64_t prompt(const char *json)
{
    return accounting_tokens_prompt((struct str){json, strlen(json)});
}

static int64_t output(const char *json)
{
    return accounting_tokens_output((struct str){json, strlen(json)});
}

static void test_empty_text_has_no_tokens(void **state)
{
    (void)state;
    assert_int_equal(text(""), 0);
    assert_int_equal(text("   \n\t"), 0);
}

static void test_short_words_are_one_token_each(void **state)
{
    (void)state;
    /* tiktoken cl100k: "the cat sat on the mat" is 6 tokens. */
    assert_int_equal(text("the cat sat on the mat"), 6);
}

static void test_long_words_are_one_token_per_five_bytes(void **state)
{
    (void)state;
    /* 20 bytes: 4 tokens (cl100k gives 4 for "internationalization"). */
    assert_int_equal(text("internationalization"), 4);
    assert_int_equal(text("abcdef"), 2);
}

static void test_punctuation_counts_one_token_per_byte(void **state)
{
    (void)state;
    /* Hello , world ! -> 4 (cl100k: 4). */
    assert_int_equal(text("Hello, world!"), 4);
}

static void test_json_escapes_are_read_not_decoded(void **state)
{
    (void)state;
    /* \n is white space; \" is punctuation; \u00e9 is one character. */
    assert_int_equal(text("a\\nb"), 2);
    assert_int_equal(text("say \\\"hi\\\""), 4);
    assert_int_equal(text("caf\\u00e9"), 2);
}

static void test_each_character_outside_ascii_is_one_token(void **state)
{
    (void)state;
    /* Three CJK characters, three bytes each in UTF-8. */
    assert_int_equal(text("\xe4\xbd\xa0\xe5\xa5\xbd\xe5\x90\x97"), 3);
}

static void test_a_prompt_counts_its_messages_and_their_overhead(
    void **state)
{
    (void)state;
    /* 3 for the answer's priming, 4 per message, and the contents:
     * "You are terse." = 4, "the cat sat" = 3. */
    assert_int_equal(prompt("{\"model\":\"m\",\"messages\":["
                            "{\"role\":\"system\",\"content\":\"You are "
                            "terse.\"},{\"role\":\"user\",\"content\":"
                            "\"the cat sat\"}]}"),
                     3 + 4 + 4 + 4 + 3);
}

static void test_content_parts_count_their_text_only(void **state)
{
    (void)state;
    assert_int_equal(prompt("{\"messages\":[{\"role\":\"user\",\"content\":"
                            "[{\"type\":\"text\",\"text\":\"the cat\"},"
                            "{\"type\":\"image_url\",\"image_url\":{\"url\":"
                            "\"https://example.com/a.png\"}}]}]}"),
                     3 + 4 + 2);
}

static void test_tools_count_towards_the_prompt(void **state)
{
    (void)state;
    const char *base = "{\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"hi\"}]}";
    const char *with = "{\"messages\":[{\"role\":\"user\",\"content\":"
                       "\"hi\"}],\"tools\":[{\"type\":\"function\"}]}";
    assert_true(prompt(with) > prompt(base));
}

static void test_a_body_that_is_not_json_is_counted_as_text(void **state)
{
    (void)state;
    assert_int_equal(prompt("the cat"), 2);
}

static void test_output_counts_content_and_tool_arguments(void **state)
{
    (void)state;
    assert_int_equal(output("{\"choices\":[{\"delta\":{\"content\":"
                            "\"the cat sat\"}}]}"),
                     3);
    assert_int_equal(output("{\"choices\":[{\"message\":{\"role\":"
                            "\"assistant\",\"content\":null,\"tool_calls\":"
                            "[{\"function\":{\"name\":\"f\",\"arguments\":"
                            "\"{\\\"city\\\":\\\"Paris\\\"}\"}}]}}]}"),
                     /* { " city " : " Paris " } */ 9);
    assert_int_equal(output("{\"choices\":[{\"delta\":{}}]}"), 0);
}

static void test_a_chunk_counts_its_content_or_its_arguments(void **state)
{
    (void)state;
    struct str c = STR_LIT("{\"choices\":[{\"delta\":{\"content\":"
                           "\"the cat sat\"}}]}");
    assert_int_equal(accounting_tokens_chunk(c), 3);
    struct str t = STR_LIT("{\"choices\":[{\"delta\":{\"tool_calls\":[{"
                           "\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]}}]}");
    assert_int_equal(accounting_tokens_chunk(t), accounting_tokens_output(t));
    assert_int_equal(accounting_tokens_chunk(STR_LIT("{\"choices\":[]}")), 0);
}

static void test_an_unterminated_string_is_counted_to_the_end(void **state)
{
    (void)state;
    assert_int_equal(output("{\"content\":\"the cat"), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_text_has_no_tokens),
        cmocka_unit_test(test_short_words_are_one_token_each),
        cmocka_unit_test(test_long_words_are_one_token_per_five_bytes),
        cmocka_unit_test(test_punctuation_counts_one_token_per_byte),
        cmocka_unit_test(test_json_escapes_are_read_not_decoded),
        cmocka_unit_test(test_each_character_outside_ascii_is_one_token),
        cmocka_unit_test(
            test_a_prompt_counts_its_messages_and_their_overhead),
        cmocka_unit_test(test_content_parts_count_their_text_only),
        cmocka_unit_test(test_tools_count_towards_the_prompt),
        cmocka_unit_test(test_a_body_that_is_not_json_is_counted_as_text),
        cmocka_unit_test(test_output_counts_content_and_tool_arguments),
        cmocka_unit_test(test_an_unterminated_string_is_counted_to_the_end),
        cmocka_unit_test(test_a_chunk_counts_its_content_or_its_arguments),
    };
    return cmocka_run_group_tests_name("tokens", tests, NULL, NULL);
}
