/*
 * test_health.c - unit tests of src/routing/health.c: the circuit breaker
 * of a model or a provider, with a clock the tests set. Default knobs:
 * 5 failures in a row, or 50% of the last 10 attempts, open it for 10 s.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "routing/engine.h"

#define S 1000000ull

struct fixture {
    struct routing_knobs k;
    struct routing_health h;
    uint64_t now_us;
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    config_routing_knobs_default(&f.k);
    f.now_us = 1000 * S;
    *state = &f;
    return 0;
}

static void attempt(struct fixture *f, enum routing_outcome kind,
                    uint32_t retry_after_s)
{
    struct routing_obs o = {.kind = kind, .retry_after_s = retry_after_s};
    routing_health_observe(&f->h, f->now_us, &o);
}

static enum routing_admit ask(struct fixture *f, bool take)
{
    return routing_health_admit(&f->h, &f->k, f->now_us, take);
}

/* Five failures, weighed: open for 10 s from now. */
static void open_it(struct fixture *f)
{
    for (int i = 0; i < 5; i++) {
        attempt(f, ROUTING_OBS_5XX, 0);
    }
    assert_int_equal(ask(f, false), ROUTING_REFUSE_OPEN);
}

static void test_consecutive_failures_open_the_circuit(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 4; i++) {
        attempt(f, ROUTING_OBS_5XX, 0);
        assert_int_equal(ask(f, false), ROUTING_ADMIT);
    }
    attempt(f, ROUTING_OBS_TIMEOUT, 0);
    assert_int_equal(ask(f, false), ROUTING_REFUSE_OPEN);
    assert_int_equal(f->h.state, ROUTING_OPEN);
}

static void test_a_success_resets_the_run_of_failures(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 3; i++) {
        attempt(f, ROUTING_OBS_CONNECT, 0);
        attempt(f, ROUTING_OBS_CONNECT, 0);
        attempt(f, ROUTING_OBS_OK, 0);
        attempt(f, ROUTING_OBS_OK, 0);
        attempt(f, ROUTING_OBS_OK, 0);
        assert_int_equal(ask(f, false), ROUTING_ADMIT);
    }
}

static void test_an_error_rate_over_the_threshold_opens_it(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 4; i++) {
        attempt(f, ROUTING_OBS_CUT, 0);
        attempt(f, ROUTING_OBS_OK, 0);
        assert_int_equal(ask(f, false), ROUTING_ADMIT); /* < 10 attempts */
    }
    attempt(f, ROUTING_OBS_CUT, 0);
    attempt(f, ROUTING_OBS_OK, 0);
    assert_int_equal(ask(f, false), ROUTING_REFUSE_OPEN); /* 5 of 10 */
}

static void test_after_the_open_period_one_probe_at_a_time(void **state)
{
    struct fixture *f = *state;
    open_it(f);
    f->now_us += 10 * S;
    assert_int_equal(ask(f, false), ROUTING_ADMIT_PROBE); /* not taken */
    assert_int_equal(ask(f, true), ROUTING_ADMIT_PROBE);
    assert_int_equal(ask(f, true), ROUTING_REFUSE_PROBING);
    attempt(f, ROUTING_OBS_OK, 0);
    assert_int_equal(ask(f, true), ROUTING_ADMIT);
    assert_int_equal(f->h.state, ROUTING_CLOSED);
}

static void test_a_failed_probe_doubles_the_open_period(void **state)
{
    struct fixture *f = *state;
    open_it(f);
    f->now_us += 10 * S;
    assert_int_equal(ask(f, true), ROUTING_ADMIT_PROBE);
    attempt(f, ROUTING_OBS_5XX, 0);
    assert_int_equal(ask(f, true), ROUTING_REFUSE_OPEN);
    f->now_us += 20 * S - 1;
    assert_int_equal(ask(f, true), ROUTING_REFUSE_OPEN);
    f->now_us += 1;
    assert_int_equal(ask(f, true), ROUTING_ADMIT_PROBE);
    attempt(f, ROUTING_OBS_5XX, 0);
    ask(f, false);
    f->now_us += 40 * S;
    assert_int_equal(ask(f, true), ROUTING_ADMIT_PROBE);
}

static void test_a_lost_probe_frees_its_slot_after_an_open_period(
    void **state)
{
    struct fixture *f = *state;
    open_it(f);
    f->now_us += 10 * S;
    assert_int_equal(ask(f, true), ROUTING_ADMIT_PROBE);
    f->now_us += 10 * S - 1;
    assert_int_equal(ask(f, true), ROUTING_REFUSE_PROBING);
    f->now_us += 1;
    assert_int_equal(ask(f, true), ROUTING_ADMIT_PROBE);
    /* An abandoned probe (a hedge won) frees it at once. */
    attempt(f, ROUTING_OBS_ABANDONED, 0);
    assert_int_equal(ask(f, true), ROUTING_ADMIT_PROBE);
}

static void test_an_early_probe_half_opens_an_open_breaker(void **state)
{
    struct fixture *f = *state;
    assert_true(routing_health_probe_early(&f->h, &f->k, f->now_us));
    assert_int_equal(f->h.state, ROUTING_CLOSED); /* closed: it just goes */
    open_it(f);
    f->now_us += 1 * S; /* 9 s before its open period ends */
    assert_true(routing_health_probe_early(&f->h, &f->k, f->now_us));
    assert_int_equal(f->h.state, ROUTING_HALF_OPEN);
    assert_false(routing_health_probe_early(&f->h, &f->k, f->now_us));
    assert_int_equal(ask(f, true), ROUTING_REFUSE_PROBING);
    /* Its failure opens it again, for longer; its success closes it. */
    attempt(f, ROUTING_OBS_5XX, 0);
    assert_int_equal(ask(f, true), ROUTING_REFUSE_OPEN);
    f->now_us += 1 * S;
    assert_true(routing_health_probe_early(&f->h, &f->k, f->now_us));
    attempt(f, ROUTING_OBS_OK, 0);
    assert_int_equal(ask(f, true), ROUTING_ADMIT);
    /* Never against an upstream Retry-After. */
    attempt(f, ROUTING_OBS_429, 30);
    assert_false(routing_health_probe_early(&f->h, &f->k, f->now_us));
}

static void test_retry_after_is_honoured_whatever_the_counts(void **state)
{
    struct fixture *f = *state;
    attempt(f, ROUTING_OBS_429, 7);
    assert_int_equal(ask(f, true), ROUTING_REFUSE_OPEN);
    f->now_us += 7 * S - 1;
    assert_int_equal(ask(f, true), ROUTING_REFUSE_OPEN);
    f->now_us += 1;
    assert_int_equal(ask(f, true), ROUTING_ADMIT);
    /* A 503 with Retry-After too; a timeout's header means nothing. */
    attempt(f, ROUTING_OBS_5XX, 3);
    assert_int_equal(ask(f, true), ROUTING_REFUSE_OPEN);
    f->now_us += 3 * S;
    attempt(f, ROUTING_OBS_TIMEOUT, 30);
    assert_int_equal(ask(f, true), ROUTING_ADMIT);
}

static void test_provider_faults_exclude_rate_limits(void **state)
{
    (void)state;
    assert_true(routing_outcome_is_provider_fault(ROUTING_OBS_CONNECT));
    assert_true(routing_outcome_is_provider_fault(ROUTING_OBS_5XX));
    assert_true(routing_outcome_is_provider_fault(ROUTING_OBS_TIMEOUT));
    assert_true(routing_outcome_is_provider_fault(ROUTING_OBS_CUT));
    assert_false(routing_outcome_is_provider_fault(ROUTING_OBS_429));
    assert_false(routing_outcome_is_provider_fault(ROUTING_OBS_OK));
    assert_false(routing_outcome_is_provider_fault(ROUTING_OBS_ABANDONED));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup(name, setup)
        T(test_consecutive_failures_open_the_circuit),
        T(test_a_success_resets_the_run_of_failures),
        T(test_an_error_rate_over_the_threshold_opens_it),
        T(test_after_the_open_period_one_probe_at_a_time),
        T(test_a_failed_probe_doubles_the_open_period),
        T(test_a_lost_probe_frees_its_slot_after_an_open_period),
        T(test_an_early_probe_half_opens_an_open_breaker),
        T(test_retry_after_is_honoured_whatever_the_counts),
        T(test_provider_faults_exclude_rate_limits),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
