/*
 * test_waits.c - unit tests of src/routing/waits.c: the attempts of a
 * model in flight, their tokens, and the factor by which the k-th most
 * overdue of them has passed its prediction, with a clock the tests set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "routing/engine.h"

#define MS 1000ull
#define S 1000000ull

static struct routing_waits w;

static int setup(void **state)
{
    (void)state;
    memset(&w, 0, sizeof(w));
    return 0;
}

/* The evidence at now_us with k: first tokens, ends. */
static void evidence(uint64_t now_us, int k, uint32_t *first,
                     uint32_t *total)
{
    routing_waits_evidence(&w, now_us, k, first, total);
}

static void test_waits_within_their_prediction_say_nothing(void **state)
{
    (void)state;
    uint64_t t0 = 100 * S;
    routing_waits_begin(&w, t0, 500 * MS, 2000 * MS);
    routing_waits_begin(&w, t0, 500 * MS, 2000 * MS);
    uint32_t first;
    uint32_t total;
    evidence(t0 + 500 * MS, 2, &first, &total);
    assert_int_equal(first, 100);
    assert_int_equal(total, 100);
}

static void test_the_kth_most_overdue_wait_gives_the_factor(void **state)
{
    (void)state;
    uint64_t t0 = 100 * S;
    /* Three streams predicted at 500 ms to the first token, begun 0, 250
     * and 500 ms apart; at t0 + 1500 they have waited 1500, 1250, 1000. */
    routing_waits_begin(&w, t0, 500 * MS, 4000 * MS);
    routing_waits_begin(&w, t0 + 250 * MS, 500 * MS, 4000 * MS);
    routing_waits_begin(&w, t0 + 500 * MS, 500 * MS, 4000 * MS);
    uint32_t first;
    uint32_t total;
    evidence(t0 + 1500 * MS, 1, &first, &total);
    assert_int_equal(first, 300); /* one alone: the worst */
    evidence(t0 + 1500 * MS, 2, &first, &total);
    assert_int_equal(first, 250); /* two at once: the second worst */
    evidence(t0 + 1500 * MS, 3, &first, &total);
    assert_int_equal(first, 200);
    evidence(t0 + 1500 * MS, 4, &first, &total);
    assert_int_equal(first, 100); /* not four of them */
    assert_int_equal(total, 100); /* none past its 4 s end */
}

static void test_a_first_token_leaves_only_the_wait_for_the_end(
    void **state)
{
    (void)state;
    uint64_t t0 = 100 * S;
    uint32_t a = routing_waits_begin(&w, t0, 500 * MS, 1000 * MS);
    uint32_t b = routing_waits_begin(&w, t0, 500 * MS, 1000 * MS);
    routing_waits_first(&w, a);
    routing_waits_first(&w, b);
    uint32_t first;
    uint32_t total;
    evidence(t0 + 900 * MS, 2, &first, &total);
    assert_int_equal(first, 100);
    assert_int_equal(total, 100);
    evidence(t0 + 2000 * MS, 2, &first, &total);
    assert_int_equal(first, 100);
    assert_int_equal(total, 200); /* both streams past their 1 s end */
    /* A non-stream wait (no first token) counts for the end only. */
    routing_waits_end(&w, a);
    routing_waits_begin(&w, t0, 0, 500 * MS);
    evidence(t0 + 2000 * MS, 2, &first, &total);
    assert_int_equal(first, 100);
    assert_int_equal(total, 200); /* 2000/500 = 400 and 2000/1000 = 200 */
}

static void test_an_ended_wait_is_gone_and_its_token_harmless(void **state)
{
    (void)state;
    uint64_t t0 = 100 * S;
    uint32_t a = routing_waits_begin(&w, t0, 0, 500 * MS);
    uint32_t b = routing_waits_begin(&w, t0, 0, 500 * MS);
    assert_int_not_equal(a, 0);
    assert_int_not_equal(a, b);
    routing_waits_end(&w, a);
    uint32_t first;
    uint32_t total;
    evidence(t0 + 1000 * MS, 2, &first, &total);
    assert_int_equal(total, 100);
    /* Its slot is used again; the old token does not end the new wait. */
    uint32_t c = routing_waits_begin(&w, t0, 0, 500 * MS);
    assert_int_not_equal(c, a);
    routing_waits_end(&w, a);
    routing_waits_end(&w, 0);
    evidence(t0 + 1000 * MS, 2, &first, &total);
    assert_int_equal(total, 200);
    routing_waits_end(&w, c);
    routing_waits_end(&w, b);
    assert_int_equal(w.used, 0);
}

static void test_slots_run_out_and_stale_ones_are_taken_back(void **state)
{
    (void)state;
    uint64_t t0 = 100 * S;
    for (int i = 0; i < ROUTING_WAITS_MAX; i++) {
        assert_int_not_equal(routing_waits_begin(&w, t0, 0, 500 * MS), 0);
    }
    assert_int_equal(routing_waits_begin(&w, t0 + S, 0, 500 * MS), 0);
    /* Lost ends (two minutes on) neither count nor hold their slots. */
    uint32_t first;
    uint32_t total;
    evidence(t0 + 121 * S, 2, &first, &total);
    assert_int_equal(total, 100);
    assert_int_not_equal(routing_waits_begin(&w, t0 + 121 * S, 0, 500 * MS),
                         0);
    assert_int_equal(__builtin_popcountll(w.used), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup(name, setup)
        T(test_waits_within_their_prediction_say_nothing),
        T(test_the_kth_most_overdue_wait_gives_the_factor),
        T(test_a_first_token_leaves_only_the_wait_for_the_end),
        T(test_an_ended_wait_is_gone_and_its_token_harmless),
        T(test_slots_run_out_and_stale_ones_are_taken_back),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
