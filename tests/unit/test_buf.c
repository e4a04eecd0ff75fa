/*
 * test_buf.c - unit tests of src/util/buf.c: capped growable buffers.
 *
 * The cap is the point of the module: an append past it must fail with
 * RL_E_CAP and leave the buffer exactly as it was, whatever the append
 * function. Also printf growth, JSON escaping, consume and steal.
 *
 * Tests marked "Regression" prove a fixed defect stays fixed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/buf.h"

/* Skips a test that proves a known bug in src/, unless asked to run it. */

/* Asserts b holds exactly the NUL-terminated text s. */
static void assert_buf(const struct buf *b, const char *s)
{
    assert_int_equal(b->len, strlen(s));
    assert_non_null(b->p);
    assert_memory_equal(b->p, s, b->len);
    assert_int_equal(b->p[b->len], '\0');
}

static void test_a_new_buffer_is_empty_and_allocates_nothing(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.max, 100);
    buf_free(&b);
    assert_null(b.p);
}

static void test_append_keeps_bytes_and_a_trailing_nul(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1000);
    assert_int_equal(buf_append(&b, "abc", 3), RL_OK);
    assert_int_equal(buf_append_cstr(&b, "def"), RL_OK);
    assert_int_equal(buf_append_str(&b, STR_LIT("gh")), RL_OK);
    assert_int_equal(buf_append(&b, "zzz", 0), RL_OK);
    assert_buf(&b, "abcdefgh");
    buf_free(&b);
}

static void test_append_binary_data_with_nul_bytes(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 64);
    assert_int_equal(buf_append(&b, "a\0b", 3), RL_OK);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.p, "a\0b", 3);
    buf_free(&b);
}

static void test_append_up_to_the_cap_exactly_succeeds(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 8);
    assert_int_equal(buf_append(&b, "12345678", 8), RL_OK);
    assert_buf(&b, "12345678");
    assert_int_equal(buf_append(&b, "", 0), RL_OK);
    buf_free(&b);
}

static void test_append_past_the_cap_fails_and_leaves_the_buffer_unchanged(
    void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 8);
    assert_int_equal(buf_append(&b, "12345", 5), RL_OK);
    char *before = b.p;
    size_t cap = b.cap;
    assert_int_equal(buf_append(&b, "6789", 4), RL_E_CAP);
    assert_int_equal(buf_append_cstr(&b, "6789"), RL_E_CAP);
    assert_int_equal(buf_append_str(&b, STR_LIT("6789")), RL_E_CAP);
    assert_int_equal(buf_append_json_escaped(&b, "6789", 4), RL_E_CAP);
    assert_ptr_equal(b.p, before);
    assert_int_equal(b.cap, cap);
    assert_buf(&b, "12345");
    /* What still fits, fits. */
    assert_int_equal(buf_append(&b, "678", 3), RL_OK);
    assert_buf(&b, "12345678");
    buf_free(&b);
}

static void test_a_huge_append_does_not_overflow_the_size_check(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    assert_int_equal(buf_append(&b, "x", 1), RL_OK);
    assert_int_equal(buf_reserve(&b, SIZE_MAX), RL_E_CAP);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 1), RL_E_CAP);
    assert_int_equal(buf_reserve(&b, 100), RL_E_CAP);
    assert_int_equal(buf_reserve(&b, 99), RL_OK);
    assert_buf(&b, "x");
    buf_free(&b);
}

static void test_a_buffer_with_cap_zero_takes_only_empty_appends(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(buf_append(&b, "a", 1), RL_E_CAP);
    assert_int_equal(buf_append(&b, "", 0), RL_OK);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_printf_formats_and_appends(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1000);
    assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), RL_OK);
    assert_int_equal(buf_printf(&b, "|%05.1f|", 2.25), RL_OK);
    assert_buf(&b, "42-x|002.2|");
    buf_free(&b);
}

static void test_printf_grows_past_the_first_128_bytes(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100000);
    char big[5000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_append_cstr(&b, "head:"), RL_OK);
    assert_int_equal(buf_printf(&b, "[%s]%d", big, 7), RL_OK);
    assert_int_equal(b.len, 5 + 1 + 4999 + 1 + 1);
    assert_memory_equal(b.p, "head:[", 6);
    for (size_t i = 6; i < 6 + 4999; i++) {
        assert_int_equal(b.p[i], 'q');
    }
    assert_string_equal(b.p + 6 + 4999, "]7");
    /* Exactly 128 and 127 characters, around the first-try boundary. */
    buf_reset(&b);
    assert_int_equal(buf_printf(&b, "%.128s", big), RL_OK);
    assert_int_equal(b.len, 128);
    assert_int_equal(buf_printf(&b, "%.127s", big), RL_OK);
    assert_int_equal(b.len, 255);
    assert_int_equal(b.p[255], '\0');
    buf_free(&b);
}

static void test_printf_past_the_cap_fails_and_leaves_the_buffer_unchanged(
    void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 200);
    assert_int_equal(buf_append_cstr(&b, "keep"), RL_OK);
    char big[400];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(buf_printf(&b, "%s", big), RL_E_CAP);
    assert_buf(&b, "keep");
    buf_free(&b);
}

/*
 * Regression (fixed; src/util/buf.c, buf_vprintf): the first formatting pass writes
 * into all the room *allocated* (cap - len, at least 256 bytes) instead of
 * the room *allowed* (max - len), so a short printf on a buffer whose cap is
 * under 256 bytes goes past the cap and reports RL_OK. Expected: RL_E_CAP
 * and the buffer unchanged; actual: RL_OK and len > max.
 */
static void test_printf_on_a_small_capped_buffer_respects_the_cap(
    void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 10);
    enum rl_err err = buf_printf(&b, "%s", "0123456789abcdef");
    assert_true(b.len <= b.max);
    assert_int_equal(err, RL_E_CAP);
    buf_free(&b);
}

static void test_json_escaping_of_quotes_backslash_and_controls(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1000);
    const char in[] = "a\"b\\c\nd\re\tf\x01g\x1fh\x7fi/\xc3\xa9";
    assert_int_equal(buf_append_json_escaped(&b, in, sizeof(in) - 1), RL_OK);
    assert_buf(&b, "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fh\x7fi/\xc3\xa9");
    buf_free(&b);
}

static void test_json_escaping_keeps_nul_bytes_as_unicode_escapes(
    void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    assert_int_equal(buf_append_json_escaped(&b, "x\0y", 3), RL_OK);
    assert_buf(&b, "x\\u0000y");
    buf_reset(&b);
    assert_int_equal(buf_append_json_escaped(&b, "", 0), RL_OK);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_consume_drops_the_front(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    buf_append_cstr(&b, "GET / HTTP/1.1\r\nrest");
    buf_consume(&b, 16);
    assert_buf(&b, "rest");
    buf_consume(&b, 0);
    assert_buf(&b, "rest");
    buf_consume(&b, 4);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.p[0], '\0');
    buf_append_cstr(&b, "ab");
    buf_consume(&b, 1000); /* more than there is: empties */
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_consume_on_an_empty_unallocated_buffer_is_harmless(
    void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    buf_consume(&b, 5);
    buf_reset(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
}

static void test_steal_hands_over_the_data_and_empties_the_buffer(
    void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 100);
    buf_append_cstr(&b, "stolen");
    size_t len = 0;
    char *p = buf_steal(&b, &len);
    assert_int_equal(len, 6);
    assert_string_equal(p, "stolen");
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 100);
    free(p);
    /* The buffer is usable again, and a NULL len is allowed. */
    buf_append_cstr(&b, "again");
    p = buf_steal(&b, NULL);
    assert_string_equal(p, "again");
    free(p);
}

static void test_reset_keeps_the_allocation(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1000);
    buf_append_cstr(&b, "something");
    char *p = b.p;
    buf_reset(&b);
    assert_ptr_equal(b.p, p);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.p, "");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_new_buffer_is_empty_and_allocates_nothing),
        cmocka_unit_test(test_append_keeps_bytes_and_a_trailing_nul),
        cmocka_unit_test(test_append_binary_data_with_nul_bytes),
        cmocka_unit_test(test_append_up_to_the_cap_exactly_succeeds),
        cmocka_unit_test(
            test_append_past_the_cap_fails_and_leaves_the_buffer_unchanged),
        cmocka_unit_test(test_a_huge_append_does_not_overflow_the_size_check),
        cmocka_unit_test(
            test_a_buffer_with_cap_zero_takes_only_empty_appends),
        cmocka_unit_test(test_printf_formats_and_appends),
        cmocka_unit_test(test_printf_grows_past_the_first_128_bytes),
        cmocka_unit_test(
            test_printf_past_the_cap_fails_and_leaves_the_buffer_unchanged),
        cmocka_unit_test(
            test_printf_on_a_small_capped_buffer_respects_the_cap),
        cmocka_unit_test(test_json_escaping_of_quotes_backslash_and_controls),
        cmocka_unit_test(
            test_json_escaping_keeps_nul_bytes_as_unicode_escapes),
        cmocka_unit_test(test_consume_drops_the_front),
        cmocka_unit_test(
            test_consume_on_an_empty_unallocated_buffer_is_harmless),
        cmocka_unit_test(
            test_steal_hands_over_the_data_and_empties_the_buffer),
        cmocka_unit_test(test_reset_keeps_the_allocation),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
