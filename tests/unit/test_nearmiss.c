/*
 * test_nearmiss.c - the semantic cache's near-miss guard (nearmiss*.c)
 * and the one decision around it, cache_semantic_decide() (decide.c).
 *
 * Table-driven: every category of near miss is refused with its exact
 * reason, true paraphrases pass, the threshold is applied first, reasons
 * stay valid UTF-8 however small the buffer, hostile input (invalid UTF-8,
 * huge prompts) is safe, and threads get the same answers. Prints the
 * guard's time per pair (no assertion on it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "cache/cache.h"
#include "cache/nearmiss.h"

/* One pair: the stored prompt, the asked one, the reason ("" = passes). */
struct row {
    const char *stored;
    const char *asked;
    const char *reason;
};

#define NROWS(r) (sizeof(r) / sizeof((r)[0]))

static void check_rows(const struct row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char reason[256];
        bool differs = cache_nearmiss_differs(str_from(rows[i].stored),
                                              str_from(rows[i].asked),
                                              reason, sizeof(reason));
        if (differs != (rows[i].reason[0] != '\0')
            || strcmp(reason, rows[i].reason) != 0) {
            fail_msg("\"%s\" / \"%s\": expected %s \"%s\", got %s \"%s\"",
                     rows[i].stored, rows[i].asked,
                     rows[i].reason[0] ? "refused" : "passed",
                     rows[i].reason, differs ? "refused" : "passed", reason);
        }
    }
}

static void test_issue7_opposite_words_are_refused_with_both_words(void **s)
{
    (void)s;
    static const struct row rows[] = {
        {"turn on dark mode", "turn off dark mode",
         "opposite words: 'on' vs 'off'"},
        /* the final hold-out's one false hit: "on" twice in the first */
        {"How do I turn on Bluetooth on my laptop?",
         "How do I turn off Bluetooth on my laptop?",
         "opposite words: 'on' vs 'off'"},
        {"How do I enable notifications?", "How do I disable notifications?",
         "opposite words: 'enable' vs 'disable'"},
        {"Is this mushroom edible?", "Is this mushroom inedible?",
         "opposite words: 'edible' vs 'inedible'"},
        {"Which is more expensive, Paris or London?",
         "Which is less expensive, Paris or London?",
         "opposite words: 'more' vs 'less'"},
        {"What should I eat before a workout?",
         "What should I eat after a workout?",
         "opposite words: 'before' vs 'after'"},
        {"What is the maximum value of an int?",
         "What is the minimum value of an int?",
         "opposite words: 'maximum' vs 'minimum'"},
        {"Set an alarm for 7am", "Set an alarm for 7pm",
         "opposite words: 'am' vs 'pm'"},
        {"Which planet is closest to the sun?",
         "Which planet is farthest from the sun?",
         "opposite words: 'closest' vs 'farthest'"},
        {"When did the war end?", "Why did the war end?",
         "opposite words: 'When' vs 'Why'"},
    };
    check_rows(rows, NROWS(rows));
}

static void test_negation_added_or_removed_is_refused(void **s)
{
    (void)s;
    static const struct row rows[] = {
        {"Is ibuprofen safe during pregnancy?",
         "Is ibuprofen not safe during pregnancy?",
         "negation: 'not' only in the asked prompt"},
        {"Why does my code compile?", "Why doesn\u2019t my code compile?",
         "negation: 'doesn\u2019t' only in the asked prompt"},
        {"Why won't my printer print in color?",
         "Why does my printer print in color?",
         "negation: 'won't' only in the stored prompt"},
        {"What should I always do before an interview?",
         "What should I never do before an interview?",
         "negation: 'never' only in the asked prompt"},
        {"Which foods contain gluten?", "Which foods contain no gluten?",
         "negation: 'no' only in the asked prompt"},
    };
    check_rows(rows, NROWS(rows));
}

static void test_numbers_that_differ_are_refused(void **s)
{
    (void)s;
    static const struct row rows[] = {
        {"How many calories are in 3 eggs?",
         "How many calories are in 5 eggs?", "the numbers differ: 3 vs 5"},
        {"How many calories are in two eggs?",
         "How many calories are in 3 eggs?", "the numbers differ: two vs 3"},
        {"What was the revenue in 2023?", "What was the revenue?",
         "the number 2023 is only in the stored prompt"},
        {"Is 37.5 degrees a fever?", "Is 38.5 degrees a fever?",
         "the numbers differ: 37.5 vs 38.5"},
        {"What is the 5th Fibonacci number?",
         "What is the 8th Fibonacci number?", "the numbers differ: 5 vs 8"},
        {"Split 1,000 dollars", "Split 10,000 dollars",
         "the numbers differ: 1,000 vs 10,000"},
    };
    check_rows(rows, NROWS(rows));
}

static void test_a_question_and_its_reversal_are_refused(void **s)
{
    (void)s;
    static const struct row rows[] = {
        {"convert USD to EUR", "convert EUR to USD",
         "order of 'USD' and 'EUR' is reversed"},
        {"Is Alice older than Bob?", "Is Bob older than Alice?",
         "order of 'Alice' and 'Bob' is reversed"},
        {"Is 7 greater than 3?", "Is 3 greater than 7?",
         "order of '7' and '3' is reversed"},
        {"Flights from Paris to London", "Flights from London to Paris",
         "order of 'Paris' and 'London' is reversed"},
        {"Is Canada bigger than the United States?",
         "Is the United States bigger than Canada?",
         "order of 'Canada' and 'United States' is reversed"},
    };
    check_rows(rows, NROWS(rows));
}

static void test_another_entity_date_unit_or_language_is_refused(void **s)
{
    (void)s;
    static const struct row rows[] = {
        {"What's the weather in Paris?", "What's the weather in Lyon?",
         "named entity differs: Paris vs Lyon"},
        {"what is the capital of france", "what is the capital of spain",
         "named entity differs: france vs spain"},
        {"Who is Barack Obama's wife?", "Who is Joe Biden's wife?",
         "named entity differs: Barack Obama vs Joe Biden"},
        {"What's the weather in Paris on Monday?",
         "What's the weather in Paris on Tuesday?",
         "dates differ: Monday vs Tuesday"},
        {"Convert 10 km to miles", "Convert 10 km to meters",
         "units differ: miles vs meters"},
        {"How do I reverse a string in Python?",
         "How do I reverse a string in Rust?",
         "languages differ: Python vs Rust"},
        {"How do I define a class in C++?", "How do I define a class in C#?",
         "languages differ: C++ vs C#"},
        {"\xd0\x9f\xd0\xbe\xd0\xb3\xd0\xbe\xd0\xb4\xd0\xb0 \xd0\xb2 "
         "\xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb5",
         "\xd0\x9f\xd0\xbe\xd0\xb3\xd0\xbe\xd0\xb4\xd0\xb0 \xd0\xb2 "
         "\xd0\x9a\xd0\xb0\xd0\xb7\xd0\xb0\xd0\xbd\xd0\xb8",
         "named entity differs: \xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2"
         "\xd0\xb5 vs \xd0\x9a\xd0\xb0\xd0\xb7\xd0\xb0\xd0\xbd\xd0\xb8"},
        {"How do I turn on dark mode?",
         "How do I turn on dark mode in Safari?",
         "'Safari' is only in the asked prompt"},
        {"What is my sister's birthday?", "What is my brother's birthday?",
         "people differ: sister vs brother"},
    };
    check_rows(rows, NROWS(rows));
}

static void test_different_code_identifiers_are_refused(void **s)
{
    (void)s;
    static const struct row rows[] = {
        {"What does useEffect do in React?", "What does useState do in React?",
         "identifiers differ: useEffect vs useState"},
        {"How do I read config.yaml?", "How do I read config.json?",
         "identifiers differ: config.yaml vs config.json"},
        {"What does the -r flag do in grep?",
         "What does the -v flag do in grep?", "identifiers differ: -r vs -v"},
        {"How do I use std::vector?", "How do I use std::map?",
         "identifiers differ: std::vector vs std::map"},
    };
    check_rows(rows, NROWS(rows));
}

static void test_a_close_substitution_is_refused(void **s)
{
    (void)s;
    static const struct row rows[] = {
        {"How do I bake bread at home?", "How do I grill bread at home?",
         "words differ: 'bake' vs 'grill'"},
        {"How do I calculate compound interest?",
         "How do I calculate simple interest?",
         "words differ: 'compound' vs 'simple'"},
        {"\xe4\xb8\x9c\xe4\xba\xac\xe7\x9a\x84\xe5\xa4\xa9\xe6\xb0\x94",
         "\xe5\xa4\xa7\xe9\x98\xaa\xe7\x9a\x84\xe5\xa4\xa9\xe6\xb0\x94",
         "words differ: '\xe4\xb8\x9c\xe4\xba\xac\xe7\x9a\x84\xe5\xa4\xa9"
         "\xe6\xb0\x94' vs '\xe5\xa4\xa7\xe9\x98\xaa\xe7\x9a\x84\xe5\xa4\xa9"
         "\xe6\xb0\x94'"},
    };
    check_rows(rows, NROWS(rows));
}

static void test_true_paraphrases_pass(void **s)
{
    (void)s;
    static const struct row rows[] = {
        {"What is the capital of France?", "What's France's capital city?",
         ""},
        {"How do I reverse a list in Python?",
         "In Python, how can I reverse a list?", ""},
        {"Why doesn't my code compile?", "Why does my code not compile?", ""},
        {"How many calories are in three eggs?",
         "How many calories are in 3 eggs?", ""},
        {"twenty five dollars", "25 dollars", ""},
        {"Is 1,000 mg too much?", "is 1000 mg too much", ""},
        {"Is 3.50 enough?", "Is 3.5 enough?", ""},
        {"Z\xc3\xbcrich weather this weekend", "Zurich weather this weekend",
         ""},
        {"What is the difference between cats and dogs?",
         "What is the difference between dogs and cats?", ""},
        {"How do I set up Wi-Fi on my laptop?",
         "How do I set up wifi on my laptop?", ""},
        {"How do I back up my phone?", "How do I backup my phone?", ""},
        {"How To Reverse A List In Python", "how to reverse a list in python",
         ""},
        {"How do I caramelise onions?", "How do I caramelize onions?", ""},
        {"How can I make my pasta sauce thicker?",
         "How do I thicken a pasta sauce?", ""},
        {"What is the best way to learn Go?", "How should I learn Go?", ""},
        {"", "", ""},
    };
    check_rows(rows, NROWS(rows));
}

static void test_decide_applies_the_threshold_then_the_guard(void **s)
{
    (void)s;
    struct str a = str_from("turn on dark mode");
    struct str b = str_from("turn off dark mode");
    char reason[128];
    assert_false(cache_semantic_decide(0.8, 0.9, true, a, a, reason,
                                       sizeof(reason)));
    assert_string_equal(reason,
                        "similarity 0.800 is below the threshold 0.900");
    assert_true(cache_semantic_decide(0.9, 0.9, true, a, a, reason,
                                      sizeof(reason)));
    assert_string_equal(reason, "");
    assert_false(cache_semantic_decide(0.95, 0.9, true, a, b, reason,
                                       sizeof(reason)));
    assert_string_equal(reason, "opposite words: 'on' vs 'off'");
    assert_true(cache_semantic_decide(0.95, 0.9, false, a, b, reason,
                                      sizeof(reason)));
    assert_false(cache_semantic_decide(NAN, 0.9, false, a, a, reason,
                                       sizeof(reason)));
    assert_true(cache_semantic_decide(0.95, 0.9, true, a, a, NULL, 0));
}

/* Whether s is valid UTF-8 (no sequence cut). */
static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = *p < 0x80 ? 1 : *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3 : 2;
        for (size_t k = 1; k < n; k++) {
            if ((p[k] & 0xC0) != 0x80) {
                return false;
            }
        }
        p += n;
    }
    return true;
}

static void test_a_reason_stays_valid_utf8_in_any_buffer(void **s)
{
    (void)s;
    const char *a = "\xd0\x9f\xd0\xbe\xd0\xb3\xd0\xbe\xd0\xb4\xd0\xb0 \xd0\xb2 "
                    "\xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb5";
    const char *b = "\xd0\x9f\xd0\xbe\xd0\xb3\xd0\xbe\xd0\xb4\xd0\xb0 \xd0\xb2 "
                    "\xd0\x9a\xd0\xb0\xd0\xb7\xd0\xb0\xd0\xbd\xd0\xb8";
    for (size_t n = 1; n <= 64; n++) {
        char reason[64];
        memset(reason, 'x', sizeof(reason));
        assert_true(cache_nearmiss_differs(str_from(a), str_from(b), reason,
                                           n));
        assert_true(strlen(reason) < n);
        assert_true(valid_utf8(reason));
    }
    assert_true(cache_nearmiss_differs(str_from(a), str_from(b), NULL, 0));
    /* A quoted word is cut at 40 bytes, between two code points. */
    char longword[128] = "What is ";
    for (int i = 0; i < 30; i++) {
        strcat(longword, "\xc3\xa9");
    }
    char reason[256];
    assert_true(cache_nearmiss_differs(str_from("What is x?"),
                                       str_from(longword), reason,
                                       sizeof(reason)));
    assert_true(valid_utf8(reason));
    assert_non_null(strstr(reason, "\xc3\xa9"));
}

static void test_invalid_utf8_and_huge_prompts_are_safe(void **s)
{
    (void)s;
    char reason[256];
    const char bad[] = "caf\xe9 \xff\xfe au lait \xc3";
    assert_false(cache_nearmiss_differs(str_from(bad), str_from(bad), reason,
                                        sizeof(reason)));
    bool first = cache_nearmiss_differs(str_from(bad),
                                        str_from("cafe au lait"), reason,
                                        sizeof(reason));
    assert_int_equal(first, cache_nearmiss_differs(str_from(bad),
                                                   str_from("cafe au lait"),
                                                   reason, sizeof(reason)));
    assert_true(valid_utf8(reason) || first);
    size_t len = 30000;
    char *big = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        big[i] = i % 6 == 5 ? ' ' : (char)('a' + i % 7);
    }
    big[len] = '\0';
    assert_false(cache_nearmiss_differs(str_from(big), str_from(big), reason,
                                        sizeof(reason)));
    char *other = strdup(big);
    other[len - 2] = 'z';
    assert_true(cache_nearmiss_differs(str_from(big), str_from(other),
                                       reason, sizeof(reason)));
    assert_string_equal(reason, "a prompt is too long for the near-miss "
                                "guard (over 512 words): only the same text "
                                "hits");
    free(other);
    free(big);
}

/* A random prompt of up to 12 words drawn from a pool that mixes every
 * kind the guard knows (xorshift: the same words on every run). */
static void random_prompt(uint64_t *seed, char *out, size_t n)
{
    static const char *const pool[] = {
        "how", "do", "I", "turn", "on", "off", "not", "never", "3", "three",
        "1,000", "7am", "Paris", "Lyon", "python", "Rust", "useState",
        "config.yaml", "-r", "C++", "don't", "it's", "USD", "to", "EUR",
        "older", "than", "and", "km", "miles", "Monday", "back", "up",
        "backup", "Z\xc3\xbcrich", "\xd0\x9c\xd0\xbe\xd1\x81\xd0\xba",
        "\xe6\x9d\xb1\xe4\xba\xac", "?", ",", "\xff", "wi-fi", "--",
        "twenty", "five", "hundred", "the", "best", "way", "thicker",
        "thicken", "safe", "unsafe", "more", "less", "\xf0\x9f\x8d\x95",
    };
    size_t len = 0;
    out[0] = '\0';
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    size_t words = 1 + *seed % 12;
    for (size_t i = 0; i < words; i++) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        const char *w = pool[*seed % (sizeof(pool) / sizeof(pool[0]))];
        int k = snprintf(out + len, n - len, "%s%s", i ? " " : "", w);
        len += (size_t)k < n - len ? (size_t)k : 0;
    }
}

static void test_the_verdict_is_symmetric_and_spacing_changes_nothing(
    void **s)
{
    (void)s;
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 5000; i++) {
        char a[512];
        char b[512];
        char reason[128];
        random_prompt(&seed, a, sizeof(a));
        random_prompt(&seed, b, sizeof(b));
        bool ab = cache_nearmiss_differs(str_from(a), str_from(b), reason,
                                         sizeof(reason));
        assert_true(valid_utf8(reason) || strchr(a, '\xff')
                    || strchr(b, '\xff'));
        bool ba = cache_nearmiss_differs(str_from(b), str_from(a), NULL, 0);
        if (ab != ba) {
            fail_msg("not symmetric: \"%s\" / \"%s\" (%s)", a, b, reason);
        }
        char spaced[1100]; /* the same words, spaced out */
        size_t k = 0;
        for (const char *p = a; *p; p++) {
            spaced[k++] = *p;
            if (*p == ' ') {
                spaced[k++] = '\t';
            }
        }
        memcpy(spaced + k, "  ", 3);
        if (cache_nearmiss_differs(str_from(a), str_from(spaced), reason,
                                   sizeof(reason))) {
            fail_msg("\"%s\" differs from itself spaced out: %s", a, reason);
        }
    }
}

#define NTHREADS 4

static void *guard_thread(void *arg)
{
    size_t *wrong = arg;
    for (int k = 0; k < 200; k++) {
        char reason[128];
        bool d = cache_nearmiss_differs(str_from("convert USD to EUR"),
                                        str_from("convert EUR to USD"),
                                        reason, sizeof(reason));
        bool p = cache_nearmiss_differs(
            str_from("What is the capital of France?"),
            str_from("What's France's capital city?"), NULL, 0);
        *wrong += !d || p
                  || strcmp(reason, "order of 'USD' and 'EUR' is reversed");
    }
    return NULL;
}

static void test_threads_get_the_same_answers(void **s)
{
    (void)s;
    pthread_t t[NTHREADS];
    size_t wrong[NTHREADS] = {0};
    for (int i = 0; i < NTHREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, guard_thread, &wrong[i]),
                         0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(wrong[i], 0);
    }
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void test_guard_time_per_pair_is_printed(void **s)
{
    (void)s;
    struct str a = str_from("How do I convert a fraction to a percentage in "
                            "Python without using any library?");
    struct str b = str_from("What's the way to turn a fraction into a "
                            "percent in Python with no library?");
    const int n = 20000;
    size_t refused = 0;
    double t0 = now_us();
    for (int i = 0; i < n; i++) {
        refused += cache_nearmiss_differs(a, b, NULL, 0);
    }
    double per = (now_us() - t0) / n;
    assert_true(refused == 0 || refused == (size_t)n);
    printf("near-miss guard: %.2f us per pair of %zu and %zu bytes\n", per,
           a.len, b.len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_issue7_opposite_words_are_refused_with_both_words),
        cmocka_unit_test(test_negation_added_or_removed_is_refused),
        cmocka_unit_test(test_numbers_that_differ_are_refused),
        cmocka_unit_test(test_a_question_and_its_reversal_are_refused),
        cmocka_unit_test(test_another_entity_date_unit_or_language_is_refused),
        cmocka_unit_test(test_different_code_identifiers_are_refused),
        cmocka_unit_test(test_a_close_substitution_is_refused),
        cmocka_unit_test(test_true_paraphrases_pass),
        cmocka_unit_test(test_decide_applies_the_threshold_then_the_guard),
        cmocka_unit_test(test_a_reason_stays_valid_utf8_in_any_buffer),
        cmocka_unit_test(test_invalid_utf8_and_huge_prompts_are_safe),
        cmocka_unit_test(
            test_the_verdict_is_symmetric_and_spacing_changes_nothing),
        cmocka_unit_test(test_threads_get_the_same_answers),
        cmocka_unit_test(test_guard_time_per_pair_is_printed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
