/*
 * test_price.c - unit tests of src/accounting/price.c: the cost of a call
 * in integer nano-dollars, checked against hand computations.
 *
 * Prices are nano-dollars per million tokens (0.15 USD/M = 150,000,000), so
 * cost = sum(tokens x price) / 1,000,000, rounded half up, once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "accounting/accounting.h"
#include "config/config.h"
#include "providers/provider.h"

static struct model_cfg model(int64_t in, int64_t out, int64_t cached)
{
    struct model_cfg m = {0};
    m.name = "m";
    m.input_nusd_per_mtok = in;
    m.output_nusd_per_mtok = out;
    m.cached_nusd_per_mtok = cached;
    return m;
}

static struct usage usage(int64_t prompt, int64_t cached, int64_t completion)
{
    struct usage u = {0};
    u.prompt_tokens = prompt;
    u.cached_tokens = cached;
    u.completion_tokens = completion;
    u.present = true;
    return u;
}

static void test_no_tokens_cost_nothing(void **state)
{
    (void)state;
    struct model_cfg m = model(150000000, 600000000, 75000000);
    struct usage u = usage(0, 0, 0);
    assert_int_equal(price_cost_nusd(&m, &u), 0);
}

static void test_prompt_only_at_the_input_price(void **state)
{
    (void)state;
    /* 0.05 USD/M: 1,000 tokens cost 0.00005 USD = 50,000 nUSD. */
    struct model_cfg m = model(50000000, 80000000, 0);
    struct usage u = usage(1000, 0, 0);
    assert_int_equal(price_cost_nusd(&m, &u), 50000);
}

static void test_uncached_cached_and_completion_mix(void **state)
{
    (void)state;
    /* input 0.15, output 0.60, cached 0.075 USD per million tokens.
     * prompt 1000 of which 400 cached, completion 500:
     *   600 x 150e6 = 90e9;  400 x 75e6 = 30e9;  500 x 600e6 = 300e9
     *   (90e9 + 30e9 + 300e9) / 1e6 = 420,000 nUSD = $0.00042 */
    struct model_cfg m = model(150000000, 600000000, 75000000);
    struct usage u = usage(1000, 400, 500);
    assert_int_equal(price_cost_nusd(&m, &u), 420000);
}

static void test_cached_tokens_at_a_zero_cached_price_are_free(void **state)
{
    (void)state;
    /* 3 USD/M input, cache reads free: only 1000 - 900 = 100 tokens pay:
     * 100 x 3e9 / 1e6 = 300,000; 7 x 15e9 / 1e6 = 105,000. */
    struct model_cfg m = model(3000000000LL, 15000000000LL, 0);
    struct usage u = usage(1000, 900, 7);
    assert_int_equal(price_cost_nusd(&m, &u), 405000);
}

static void test_rounding_is_half_up_and_happens_once(void **state)
{
    (void)state;
    /* 1 nUSD per million tokens: a token costs 1e-6 nUSD. */
    struct model_cfg m = model(1, 1, 1);
    struct usage u = usage(500000, 0, 0);
    assert_int_equal(price_cost_nusd(&m, &u), 1); /* 0.5 -> 1 */
    u = usage(499999, 0, 0);
    assert_int_equal(price_cost_nusd(&m, &u), 0); /* 0.499999 -> 0 */
    u = usage(1500000, 0, 0);
    assert_int_equal(price_cost_nusd(&m, &u), 2); /* 1.5 -> 2 */
    /* Three parts of 0.4 each: rounded once (1.2 -> 1), not thrice (0). */
    u = usage(800000, 400000, 400000);
    assert_int_equal(price_cost_nusd(&m, &u), 1);
}

static void test_cached_more_than_prompt_is_clamped_to_the_prompt(
    void **state)
{
    (void)state;
    /* A provider reporting 500 cached of 100 prompt tokens: the 100 are
     * all priced as cached, nothing as uncached, nothing negative. */
    struct model_cfg m = model(1000000000, 2000000000, 100000000);
    struct usage u = usage(100, 500, 0);
    assert_int_equal(price_cost_nusd(&m, &u), 100 * 100);
}

static void test_very_large_token_counts_do_not_overflow(void **state)
{
    (void)state;
    /* 1e12 tokens at 1000 USD/M (1e12 nUSD/M): the product is 1e24, far
     * past 2^63, but the cost 1e18 nUSD fits. Same for the output. */
    struct model_cfg m = model(1000000000000LL, 2000000000000LL,
                               500000000000LL);
    struct usage u = usage(1000000000000LL, 0, 1000000000000LL);
    assert_int_equal(price_cost_nusd(&m, &u), 3000000000000000000LL);
    u = usage(1000000000000LL, 1000000000000LL, 0);
    assert_int_equal(price_cost_nusd(&m, &u), 500000000000000000LL);
}

static void test_cache_writes_are_priced_at_the_cache_write_price(
    void **state)
{
    (void)state;
    /* Anthropic-style usage, already folded into the canonical record:
     * 1000 prompt tokens of which 200 read from the cache and 300 written
     * to it. Input 3 USD/M, cache read 0.30, cache write 3.75, output 15.
     * 500 x 3000 + 200 x 300 + 300 x 3750 + 100 x 15000 nUSD/M:
     * 1,500,000 + 60,000 + 1,125,000 + 1,500,000 = 4,185,000 / 1000. */
    struct model_cfg m = model(3000000000LL, 15000000000LL, 300000000LL);
    m.cache_write_nusd_per_mtok = 3750000000LL;
    struct usage u = usage(1000, 200, 100);
    u.cache_write_tokens = 300;
    assert_int_equal(price_cost_nusd(&m, &u), 4185000);
}

static void test_cache_writes_past_the_prompt_are_clamped(void **state)
{
    (void)state;
    struct model_cfg m = model(1000000000LL, 0, 0);
    m.cache_write_nusd_per_mtok = 2000000000LL;
    struct usage u = usage(100, 60, 0);
    u.cache_write_tokens = 500; /* only 40 are left to have been written */
    assert_int_equal(price_cost_nusd(&m, &u), 40 * 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_tokens_cost_nothing),
        cmocka_unit_test(test_prompt_only_at_the_input_price),
        cmocka_unit_test(test_uncached_cached_and_completion_mix),
        cmocka_unit_test(test_cached_tokens_at_a_zero_cached_price_are_free),
        cmocka_unit_test(test_rounding_is_half_up_and_happens_once),
        cmocka_unit_test(
            test_cached_more_than_prompt_is_clamped_to_the_prompt),
        cmocka_unit_test(test_very_large_token_counts_do_not_overflow),
        cmocka_unit_test(
            test_cache_writes_are_priced_at_the_cache_write_price),
        cmocka_unit_test(test_cache_writes_past_the_prompt_are_clamped),
    };
    return cmocka_run_group_tests_name("price", tests, NULL, NULL);
}
