/*
 * test_jscan.c - unit tests of src/util/jscan.c: one level of a JSON text
 * as spans, with the syntax of everything skipped checked.
 *
 * jansson is the reference: every text in the corpus below is also parsed
 * by jansson, and jscan must accept exactly the texts jansson accepts as an
 * object or array (jscan does not check UTF-8, so the corpus is ASCII).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "util/buf.h"

#include "util/jscan.h"

static void test_members_of_an_object_are_spans_of_the_text(void **state)
{
    (void)state;
    const char *text = " {\"id\":\"x\\\"y\", \"n\" : -1.5e+3,\"o\":{\"a\":[1,"
                       "{}]},\"t\":true,\"f\":false,\"z\":null,\"e\":[]} ";
    struct jscan_item it[16];
    size_t n;
    assert_true(jscan(str_from(text), it, 16, &n));
    assert_int_equal(n, 7);
    const char *keys[] = {"id", "n", "o", "t", "f", "z", "e"};
    const char *vals[] = {"\"x\\\"y\"", "-1.5e+3", "{\"a\":[1,{}]}",
                          "true",       "false",   "null",
                          "[]"};
    const char types[] = {'"', '-', '{', 't', 'f', 'n', '['};
    for (size_t i = 0; i < n; i++) {
        assert_true(str_eq_lit(it[i].key, keys[i]));
        assert_true(str_eq_lit(it[i].value, vals[i]));
        assert_int_equal(it[i].type, types[i]);
        assert_memory_equal(text + it[i].start, "\"", 1);
        assert_true(it[i].end <= strlen(text));
        assert_memory_equal(text + it[i].end - it[i].value.len,
                            it[i].value.p, it[i].value.len);
    }
    assert_true(jscan_is_null(jscan_find(it, n, "z")));
    assert_false(jscan_is_null(jscan_find(it, n, "t")));
    assert_false(jscan_is_null(NULL));
    assert_ptr_equal(jscan_find(it, n, "o"), &it[2]);
    assert_null(jscan_find(it, n, "missing"));
    assert_null(jscan_find(it, n, "i"));
}

static void test_elements_of_an_array_have_no_key(void **state)
{
    (void)state;
    struct jscan_item it[8];
    size_t n;
    assert_true(jscan(STR_LIT("[1, \"two\", [3], {\"four\":4}]"), it, 8, &n));
    assert_int_equal(n, 4);
    assert_int_equal(it[0].key.len, 0);
    assert_true(str_eq_lit(it[1].value, "\"two\""));
    assert_true(str_eq_lit(it[3].value, "{\"four\":4}"));
    assert_true(jscan(STR_LIT("[]"), it, 8, &n));
    assert_int_equal(n, 0);
    assert_true(jscan(STR_LIT("{ }"), it, 8, &n));
    assert_int_equal(n, 0);
}

static void test_more_items_than_room_is_refused(void **state)
{
    (void)state;
    struct jscan_item it[2];
    size_t n;
    assert_true(jscan(STR_LIT("[1,2]"), it, 2, &n));
    assert_false(jscan(STR_LIT("[1,2,3]"), it, 2, &n));
}

/* jscan must agree with jansson (as an object/array root) on each text. */
static void test_it_accepts_what_jansson_accepts_and_nothing_else(
    void **state)
{
    (void)state;
    const char *corpus[] = {
        "{}", "[]", "{\"a\":1}", "[1,2,3]", " \n\t{\"a\" : [ ] }\r\n",
        "{\"a\":\"\\u00e9\\n\\t\\\\\\/\"}", "[0, -0, 0.5, 1e5, 1E-5, -2.5e+3]",
        "[true,false,null]", "{\"a\":{\"b\":{\"c\":[[[]]]}}}",
        "[\"\\ud83d\\ude00\"]", /* a surrogate pair */
        /* refused */
        /* Regression (issue 9, the bad-input corpus): a lone UTF-16
         * surrogate escape passed jscan, so a request with one went to the
         * provider, which refused it; jansson refuses it at once. */
        "[\"\\ud800\"]", "[\"\\udc00\"]", "[\"\\ud800\\u0041\"]",
        "[\"\\ud800x\"]", "[\"\\ud800\\\"]",
        "", " ", "1", "\"s\"", "null", "{", "}", "[", "]", "{\"a\"}",
        "{\"a\":}", "{\"a\":1,}", "[1,]", "[,1]", "{a:1}", "{'a':1}",
        "[1 2]", "{\"a\":1 \"b\":2}", "[1.]", "[.5]", "[+1]",
        "[1e]", "[-]", "[tru]", "[True]", "[nul]", "[\"\\x\"]",
        "[\"\\u12\"]", "[\"\\u12G4\"]", "[\"tab\there\"]", "{\"a\":1}x",
        "{\"a\":1}{}", "[1]]", "[[1]", "[\"unterminated]", "{\"a\":1",
        "[1,2", "[nan]", "[Infinity]", "[\"a\"\"b\"]",
    };
    for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++) {
        json_error_t jerr;
        json_t *j = json_loads(corpus[i], 0, &jerr);
        bool want = j != NULL;
        json_decref(j);
        struct jscan_item it[16];
        size_t n;
        bool got = jscan(str_from(corpus[i]), it, 16, &n);
        if (got != want) {
            fail_msg("\"%s\": jscan says %s, jansson %s", corpus[i],
                     got ? "valid" : "invalid", want ? "valid" : "invalid");
        }
    }
}

/* Strings are skipped eight bytes at a time: a quote, a backslash or a
 * control character is found at every offset of a long string, as jansson
 * finds it (a valid escape, a closing quote, or an error). */
static void test_special_bytes_are_found_at_every_offset(void **state)
{
    (void)state;
    const char *specials[] = {"\\\"", "\\n", "\"", "\t", "\x01", "\x1f",
                              "\\u00e9", "\\"};
    for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
        for (size_t at = 0; at < 40; at++) {
            char text[128] = "[\"";
            size_t len = 2;
            for (size_t i = 0; i < at; i++) {
                text[len++] = (char)('a' + i % 26);
            }
            len += (size_t)snprintf(text + len, sizeof(text) - len,
                                    "%s0123456789abcdef\"]", specials[k]);
            json_error_t jerr;
            json_t *j = json_loadb(text, len, 0, &jerr);
            bool want = j != NULL;
            json_decref(j);
            struct jscan_item it[4];
            size_t n;
            bool got = jscan((struct str){text, len}, it, 4, &n);
            if (got != want) {
                fail_msg("%s: jscan says %s, jansson %s", text,
                         got ? "valid" : "invalid",
                         want ? "valid" : "invalid");
            }
        }
    }
}

/* ASCII is checked eight bytes at a time: a bad byte, or a character cut
 * at the end, is found at every offset of a long text, where it is. */
static void test_bad_utf8_is_found_at_every_offset(void **state)
{
    (void)state;
    const char *bad[] = {"\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80",
                         "\xc0\xaf"};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        for (size_t at = 0; at < 40; at++) {
            char text[64];
            memset(text, 'a', at);
            size_t blen = strlen(bad[k]);
            memcpy(text + at, bad[k], blen);
            size_t n = at + blen;
            size_t where = 999;
            assert_false(jscan_utf8_valid(text, n, &where));
            assert_int_equal(where, at);
            memcpy(text + at, "\xc3\xa9", 2); /* e acute: valid */
            assert_true(jscan_utf8_valid(text, at + 2, &where));
        }
    }
}

/*
 * Regression (fixed; src/util/jscan.c, skip_number, low impact): a number with a
 * leading zero ("01", "-007") is not JSON (RFC 8259 6), but jscan accepts
 * it, so a provider chunk like {"index":01} passes the well-formedness check
 * on_event relies on and reaches the client, whose parser refuses it.
 * Expected: jscan("[01]") is false, as jansson says; actual: true.
 */
static void test_numbers_with_leading_zeros_are_refused(void **state)
{
    (void)state;
    struct jscan_item it[4];
    size_t n;
    assert_false(jscan(STR_LIT("[01]"), it, 4, &n));
    assert_false(jscan(STR_LIT("{\"index\":-007}"), it, 4, &n));
}

static void test_deep_nesting_is_refused_without_crashing(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1 << 22);
    for (int i = 0; i < 1000000; i++) {
        buf_append(&b, "[", 1);
    }
    for (int i = 0; i < 1000000; i++) {
        buf_append(&b, "]", 1);
    }
    struct jscan_item it[4];
    size_t n;
    assert_false(jscan((struct str){b.p, b.len}, it, 4, &n));
    buf_free(&b);
    /* Moderate nesting inside a member is fine. */
    assert_true(jscan(STR_LIT("{\"a\":[[[[[[[[[[{}]]]]]]]]]]}"), it, 4, &n));
}

static void test_a_text_cut_anywhere_is_refused(void **state)
{
    (void)state;
    const char *text = "{\"choices\":[{\"delta\":{\"content\":\"h\\u00e9\"},"
                       "\"finish_reason\":null}],\"usage\":{\"n\":12}}";
    struct jscan_item it[8];
    size_t n;
    assert_true(jscan(str_from(text), it, 8, &n));
    for (size_t cut = 0; cut < strlen(text); cut++) {
        if (jscan((struct str){text, cut}, it, 8, &n)) {
            fail_msg("accepted when cut at %zu: %.*s", cut, (int)cut, text);
        }
    }
}

/* A random well-formed JSON value (depth-bounded), from a fixed seed. */
static void random_value(struct buf *b, unsigned *seed, int depth)
{
    static const char *const strings[] = {
        "\"\"", "\"a\"", "\"x\\\"y\"", "\"\\\\\"", "\"}]{[,:\"",
        "\"\\u00e9\\ud83d\\ude00\"", "\"caf\xc3\xa9\"", "\"a\\nb\\t\\/\""};
    static const char *const scalars[] = {"0", "-1.5e+3", "true", "false",
                                          "null", "12345678901234"};
    int pick = (int)(rand_r(seed) % (depth > 3 ? 3 : 5));
    if (pick == 0) {
        buf_append_cstr(b, strings[rand_r(seed) % 8]);
    } else if (pick == 1 || pick == 2) {
        buf_append_cstr(b, scalars[rand_r(seed) % 6]);
    } else {
        bool object = pick == 3;
        int n = (int)(rand_r(seed) % 5);
        buf_append_cstr(b, object ? "{" : "[");
        for (int i = 0; i < n; i++) {
            buf_append_cstr(b, i ? (rand_r(seed) % 2 ? "," : " ,\n ") : "");
            if (object) {
                buf_append_cstr(b, strings[rand_r(seed) % 8]);
                buf_append_cstr(b, rand_r(seed) % 2 ? ":" : " : ");
            }
            random_value(b, seed, depth + 1);
        }
        buf_append_cstr(b, object ? "}" : "]");
    }
}

/* jscan_checked() gives jscan()'s items, at every level of the text. */
static void same_items(struct str text)
{
    struct jscan_item a[64], b[64];
    size_t na, nb;
    bool ok = jscan(text, a, 64, &na);
    assert_true(ok);
    assert_true(jscan_checked(text, b, 64, &nb));
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_true(str_eq(a[i].key, b[i].key));
        assert_ptr_equal(a[i].value.p, b[i].value.p);
        assert_int_equal(a[i].value.len, b[i].value.len);
        assert_int_equal(a[i].start, b[i].start);
        assert_int_equal(a[i].end, b[i].end);
        assert_int_equal(a[i].type, b[i].type);
        if (a[i].type == '{' || a[i].type == '[') {
            same_items(a[i].value);
        }
    }
}

static void test_checked_scans_find_the_same_items(void **state)
{
    (void)state;
    unsigned seed = 20261201;
    for (int i = 0; i < 3000; i++) {
        struct buf b;
        buf_init(&b, 1 << 20);
        buf_append_cstr(&b, rand_r(&seed) % 2 ? "{" : "[");
        bool object = b.p[0] == '{';
        int n = 1 + (int)(rand_r(&seed) % 6);
        for (int k = 0; k < n; k++) {
            buf_append_cstr(&b, k ? "," : "");
            if (object) {
                buf_append_cstr(&b, "\"k\":");
            }
            random_value(&b, &seed, 1);
        }
        buf_append_cstr(&b, object ? "}" : "]");
        same_items((struct str){b.p, b.len});
        buf_free(&b);
    }
}

/* On text that is not JSON a checked scan may say anything, but never
 * reads past the text: every prefix of a text ends inside its bounds
 * (ASan checks the reads: the copy has no byte after it). */
static void test_checked_scans_stay_inside_bad_text(void **state)
{
    (void)state;
    const char *text = "{\"a\":[1,{\"b\":\"x\\\\\\\"\"}],\"c\":\"\\";
    size_t len = strlen(text);
    for (size_t cut = 0; cut <= len; cut++) {
        char *copy = malloc(cut ? cut : 1);
        memcpy(copy, text, cut);
        struct jscan_item items[8];
        size_t n;
        (void)jscan_checked((struct str){copy, cut}, items, 8, &n);
        for (size_t i = 0; i < n; i++) {
            assert_true(items[i].value.p + items[i].value.len <= copy + cut);
        }
        free(copy);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members_of_an_object_are_spans_of_the_text),
        cmocka_unit_test(test_elements_of_an_array_have_no_key),
        cmocka_unit_test(test_more_items_than_room_is_refused),
        cmocka_unit_test(
            test_it_accepts_what_jansson_accepts_and_nothing_else),
        cmocka_unit_test(test_special_bytes_are_found_at_every_offset),
        cmocka_unit_test(test_bad_utf8_is_found_at_every_offset),
        cmocka_unit_test(test_numbers_with_leading_zeros_are_refused),
        cmocka_unit_test(test_deep_nesting_is_refused_without_crashing),
        cmocka_unit_test(test_a_text_cut_anywhere_is_refused),
        cmocka_unit_test(test_checked_scans_find_the_same_items),
        cmocka_unit_test(test_checked_scans_stay_inside_bad_text),
    };
    return cmocka_run_group_tests_name("jscan", tests, NULL, NULL);
}
