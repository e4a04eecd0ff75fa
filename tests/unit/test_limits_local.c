/*
 * test_limits_local.c - unit tests of src/limits/local.c and limits.c
 * without Redis: the in-process limiter's arithmetic under an injected
 * clock (sliding windows to the millisecond, tpm reserve and reconcile,
 * Retry-After, TOO_LARGE, concurrency, budget holds and periods), the
 * x-ratelimit-* header text, the duration format and the period names.
 * test_limits_redis.c runs the same cases against the Lua script.
 *
 * Every test uses its own key_id: the in-process table is process-wide.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>

#include "limits_harness.h"

#define T0 1767225600000ull /* 2026-01-01T00:00:00Z, a Thursday */

static uint64_t fake_now_ms = T0;

static uint64_t fake_clock(void)
{
    return __atomic_load_n(&fake_now_ms, __ATOMIC_RELAXED);
}

static struct limits *lim;

static int setup(void **state)
{
    (void)state;
    limits_clock_set(fake_clock);
    return limits_new(NULL, NULL, &lim) == RL_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    limits_free(lim);
    limits_clock_set(NULL);
    return 0;
}

/* Reserves a (synchronous without Redis) and returns what cb saw. */
static struct got reserve(const struct limits_ask *a)
{
    struct got g = {0};
    struct limits_pending *p = (void *)1;
    assert_int_equal(limits_reserve(lim, a, on_verdict, &g, &p), RL_OK);
    assert_int_equal(g.calls, 1);
    assert_null(p);
    assert_true(g.v.local);
    assert_true((g.hold != NULL) == (g.v.outcome == LIMITS_ADMITTED));
    return g;
}

static struct got reserve_n(const char *key, int n, struct limits_rule r,
                            int64_t tokens)
{
    char id[64];
    struct limits_ask a = ask_for(key, id, sizeof(id), n);
    a.rule = r;
    a.rule.key_id = key;
    a.tokens = tokens;
    return reserve(&a);
}

static void test_sixty_requests_are_admitted_then_the_next_is_refused(
    void **state)
{
    (void)state;
    struct limits_rule r = {.rpm = 60};
    fake_now_ms = T0;
    for (int i = 0; i < 60; i++) {
        struct got g = reserve_n("rpm60", i, r, 0);
        assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
        assert_int_equal(g.v.remaining_requests, 59 - i);
        limits_reconcile(lim, g.hold, 0, 0);
        fake_now_ms += 100; /* 60 requests over 5.9 s */
    }
    struct got g = reserve_n("rpm60", 60, r, 0);
    assert_int_equal(g.v.outcome, LIMITS_OVER_RPM);
    /* now is T0 + 6000: the oldest (T0) leaves at T0 + 60000 */
    assert_int_equal(g.v.retry_after_ms, 54000);
    assert_int_equal(g.v.limit_requests, 60);
    assert_int_equal(g.v.remaining_requests, 0);
    assert_int_equal(g.v.reset_requests_ms, 54000);
}

static void test_a_slot_frees_exactly_sixty_seconds_after_the_oldest(
    void **state)
{
    (void)state;
    struct limits_rule r = {.rpm = 2};
    fake_now_ms = T0;
    limits_reconcile(lim, reserve_n("exact", 0, r, 0).hold, 0, 0);
    fake_now_ms = T0 + 1000;
    limits_reconcile(lim, reserve_n("exact", 1, r, 0).hold, 0, 0);
    fake_now_ms = T0 + 59999;
    struct got g = reserve_n("exact", 2, r, 0);
    assert_int_equal(g.v.outcome, LIMITS_OVER_RPM);
    assert_int_equal(g.v.retry_after_ms, 1);
    fake_now_ms = T0 + 60000;
    g = reserve_n("exact", 3, r, 0);
    assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(g.v.remaining_requests, 0);
    assert_int_equal(g.v.reset_requests_ms, 1000); /* T0 + 1000 leaves */
    limits_reconcile(lim, g.hold, 0, 0);
    g = reserve_n("exact", 4, r, 0);
    assert_int_equal(g.v.outcome, LIMITS_OVER_RPM);
    assert_int_equal(g.v.retry_after_ms, 1000);
}

static void test_tokens_are_reserved_then_reconciled_to_the_real_count(
    void **state)
{
    (void)state;
    struct limits_rule r = {.tpm = 1000};
    fake_now_ms = T0;
    struct got a = reserve_n("tpm", 0, r, 600);
    assert_int_equal(a.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(a.v.remaining_tokens, 400);
    struct got b = reserve_n("tpm", 1, r, 500);
    assert_int_equal(b.v.outcome, LIMITS_OVER_TPM);
    assert_int_equal(b.v.retry_after_ms, 60000);
    limits_reconcile(lim, a.hold, 100, 0);
    b = reserve_n("tpm", 2, r, 500);
    assert_int_equal(b.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(b.v.remaining_tokens, 400); /* 100 + 500 used */
    limits_reconcile(lim, b.hold, 900, 0);       /* more than reserved */
    struct got c = reserve_n("tpm", 3, r, 1);
    assert_int_equal(c.v.outcome, LIMITS_OVER_TPM);
    assert_int_equal(c.v.remaining_tokens, 0);
}

static void test_tpm_retry_after_waits_until_enough_tokens_leave(
    void **state)
{
    (void)state;
    struct limits_rule r = {.tpm = 1000};
    for (int i = 0; i < 3; i++) {
        fake_now_ms = T0 + (uint64_t)i * 10000;
        limits_reconcile(lim, reserve_n("walk", i, r, 300).hold, 300, 0);
    }
    fake_now_ms = T0 + 30000;
    /* 900 + 500 - 1000 = 400 must leave: the first two entries (600) */
    struct got g = reserve_n("walk", 9, r, 500);
    assert_int_equal(g.v.outcome, LIMITS_OVER_TPM);
    assert_int_equal(g.v.retry_after_ms, 40000);
    fake_now_ms = T0 + 70000;
    g = reserve_n("walk", 10, r, 500);
    assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
    limits_reconcile(lim, g.hold, 0, 0);
}

static void test_a_request_larger_than_tpm_can_never_fit(void **state)
{
    (void)state;
    struct limits_rule r = {.tpm = 100, .rpm = 5};
    fake_now_ms = T0;
    struct got g = reserve_n("large", 0, r, 101);
    assert_int_equal(g.v.outcome, LIMITS_TOO_LARGE);
    assert_int_equal(g.v.retry_after_ms, 0);
    assert_int_equal(g.v.remaining_requests, 5); /* nothing was counted */
}

static void test_the_concurrency_cap_counts_requests_until_reconciled(
    void **state)
{
    (void)state;
    struct limits_rule r = {.max_concurrent = 2};
    fake_now_ms = T0;
    struct got a = reserve_n("conc", 0, r, 10);
    struct got b = reserve_n("conc", 1, r, 10);
    struct got c = reserve_n("conc", 2, r, 10);
    assert_int_equal(a.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(b.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(c.v.outcome, LIMITS_OVER_CONCURRENCY);
    assert_int_equal(c.v.retry_after_ms, LIMITS_CONCURRENCY_RETRY_MS);
    limits_reconcile(lim, a.hold, 0, 0);
    c = reserve_n("conc", 3, r, 10);
    assert_int_equal(c.v.outcome, LIMITS_ADMITTED);
    limits_reconcile(lim, b.hold, 0, 0);
    limits_reconcile(lim, c.hold, 0, 0);
}

static void test_a_slot_of_a_request_never_reconciled_frees_when_stale(
    void **state)
{
    (void)state;
    struct limits_rule r = {.max_concurrent = 1};
    fake_now_ms = T0;
    struct got a = reserve_n("stale", 0, r, 0);
    fake_now_ms = T0 + LIMITS_STALE_MS - 1;
    assert_int_equal(reserve_n("stale", 1, r, 0).v.outcome,
                     LIMITS_OVER_CONCURRENCY);
    fake_now_ms = T0 + LIMITS_STALE_MS;
    struct got b = reserve_n("stale", 2, r, 0);
    assert_int_equal(b.v.outcome, LIMITS_ADMITTED);
    limits_reconcile(lim, a.hold, 0, 0); /* late: changes nothing */
    assert_int_equal(reserve_n("stale", 3, r, 0).v.outcome,
                     LIMITS_OVER_CONCURRENCY);
    limits_reconcile(lim, b.hold, 0, 0);
}

/* Reserves cost against a budget of 1000 nusd a day, seed 200. */
static struct got budget_ask(const char *key, int n, int64_t cost)
{
    char id[64];
    struct limits_ask a = ask_for(key, id, sizeof(id), n);
    a.rule.budget_nusd = 1000;
    a.rule.period = LIMITS_PERIOD_DAY;
    a.cost_nusd = cost;
    a.spent_seed_nusd = 200;
    return reserve(&a);
}

static void test_the_budget_counts_spent_and_held_then_reconciles(
    void **state)
{
    (void)state;
    fake_now_ms = T0 + 3600000; /* 01:00 UTC */
    struct got a = budget_ask("budget", 0, 500);
    assert_int_equal(a.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(a.v.budget_nusd, 1000);
    assert_int_equal(a.v.budget_remaining_nusd, 300); /* 1000-200-500 */
    struct got b = budget_ask("budget", 1, 400);
    assert_int_equal(b.v.outcome, LIMITS_OVER_BUDGET);
    assert_int_equal(b.v.retry_after_ms, 23 * 3600000ull); /* midnight */
    limits_reconcile(lim, a.hold, 0, 300); /* cheaper than predicted */
    b = budget_ask("budget", 2, 400);
    assert_int_equal(b.v.outcome, LIMITS_ADMITTED); /* 200+300+400 */
    assert_int_equal(b.v.budget_remaining_nusd, 100);
    limits_reconcile(lim, b.hold, 0, 450);
    struct got c = budget_ask("budget", 3, 100);
    assert_int_equal(c.v.outcome, LIMITS_OVER_BUDGET); /* 950 + 100 */
    assert_int_equal(c.v.budget_remaining_nusd, 50);
    fake_now_ms = T0 + 86400000; /* the next day: from the seed again */
    c = budget_ask("budget", 4, 100);
    assert_int_equal(c.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(c.v.budget_remaining_nusd, 700);
    limits_reconcile(lim, c.hold, 0, 0);
}

static void test_a_request_with_no_limits_is_admitted_for_free(void **state)
{
    (void)state;
    struct limits_ask a;
    memset(&a, 0, sizeof(a)); /* not even a key id */
    struct got g = {0};
    assert_int_equal(limits_reserve(lim, &a, on_verdict, &g, NULL), RL_OK);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
    assert_non_null(g.hold);
    limits_reconcile(lim, g.hold, 123, 456);
    struct buf b;
    buf_init(&b, 1024);
    limits_headers(&g.v, &b);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_a_bad_key_id_is_refused_without_a_callback(void **state)
{
    (void)state;
    struct limits_ask a;
    memset(&a, 0, sizeof(a));
    a.rule.rpm = 1;
    a.rule.key_id = "a}b";
    a.request_id = "r";
    struct got g = {0};
    assert_int_equal(limits_reserve(lim, &a, on_verdict, &g, NULL),
                     RL_E_INVALID_REQUEST);
    a.rule.key_id = "ok";
    a.request_id = NULL;
    assert_int_equal(limits_reserve(lim, &a, on_verdict, &g, NULL),
                     RL_E_INVALID_REQUEST);
    assert_int_equal(g.calls, 0);
}

static void test_headers_are_openai_s_six_lines_for_limits_that_are_set(
    void **state)
{
    (void)state;
    struct limits_verdict v = {
        .limit_requests = 60, .remaining_requests = 59,
        .reset_requests_ms = 1000, .limit_tokens = 150000,
        .remaining_tokens = 149984, .reset_tokens_ms = 360000,
    };
    struct buf b;
    buf_init(&b, 1024);
    limits_headers(&v, &b);
    assert_string_equal(b.p, "x-ratelimit-limit-requests: 60\r\n"
                             "x-ratelimit-limit-tokens: 150000\r\n"
                             "x-ratelimit-remaining-requests: 59\r\n"
                             "x-ratelimit-remaining-tokens: 149984\r\n"
                             "x-ratelimit-reset-requests: 1s\r\n"
                             "x-ratelimit-reset-tokens: 6m0s\r\n");
    buf_reset(&b);
    v.limit_requests = 0;
    v.reset_tokens_ms = 20;
    limits_headers(&v, &b);
    assert_string_equal(b.p, "x-ratelimit-limit-tokens: 150000\r\n"
                             "x-ratelimit-remaining-tokens: 149984\r\n"
                             "x-ratelimit-reset-tokens: 20ms\r\n");
    buf_free(&b);
}

static void test_durations_are_written_as_openai_writes_them(void **state)
{
    (void)state;
    static const struct {
        uint64_t ms;
        const char *s;
    } cases[] = {
        {0, "0s"},       {20, "20ms"},        {999, "999ms"},
        {1000, "1s"},     {1500, "1.5s"},      {8640, "8.64s"},
        {59999, "59.999s"}, {60000, "1m0s"},   {360000, "6m0s"},
        {179560, "2m59.56s"}, {3723004, "1h2m3.004s"}, {7200000, "2h0m0s"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[32];
        size_t n = limits_duration_format(cases[i].ms, out, sizeof(out));
        assert_string_equal(out, cases[i].s);
        assert_int_equal(n, strlen(cases[i].s));
    }
}

static void test_period_names_follow_utc_days_iso_weeks_and_months(
    void **state)
{
    (void)state;
    char s[16];
    uint64_t end;
    limits_period_name(LIMITS_PERIOD_DAY, T0 + 5000, s, sizeof(s), &end);
    assert_string_equal(s, "d20260101");
    assert_int_equal(end, T0 + 86400000);
    limits_period_name(LIMITS_PERIOD_WEEK, T0, s, sizeof(s), &end);
    assert_string_equal(s, "w2026W01"); /* Thursday 1 Jan 2026 */
    assert_int_equal(end, T0 + 4 * 86400000ull); /* Monday 5 Jan */
    /* Friday 1 Jan 2027 is in ISO week 53 of 2026 */
    limits_period_name(LIMITS_PERIOD_WEEK, 1798761600000ull, s, sizeof(s),
                       &end);
    assert_string_equal(s, "w2026W53");
    /* Monday 30 Dec 2024 is in ISO week 1 of 2025 */
    limits_period_name(LIMITS_PERIOD_WEEK, 1735560000000ull, s, sizeof(s),
                       &end);
    assert_string_equal(s, "w2025W01");
    limits_period_name(LIMITS_PERIOD_MONTH, T0 + 40 * 86400000ull, s,
                       sizeof(s), &end);
    assert_string_equal(s, "m202602");
    assert_int_equal(end, 1772323200000ull); /* 1 Mar 2026 */
    limits_period_name(LIMITS_PERIOD_TOTAL, T0, s, sizeof(s), &end);
    assert_string_equal(s, "t");
    assert_int_equal(end, 0);
}

/* Four threads reserve 100 times each against one 60 rpm key. */
static int threaded_admitted;

static void *hammer(void *arg)
{
    struct limits *l = NULL;
    assert_int_equal(limits_new(NULL, NULL, &l), RL_OK);
    for (int i = 0; i < 100; i++) {
        char id[64];
        struct limits_ask a = ask_for("threads", id, sizeof(id),
                                      (int)(intptr_t)arg * 1000 + i);
        a.rule.rpm = 60;
        struct got g = {0};
        limits_reserve(l, &a, on_verdict, &g, NULL);
        if (g.v.outcome == LIMITS_ADMITTED) {
            __atomic_fetch_add(&threaded_admitted, 1, __ATOMIC_RELAXED);
        }
        limits_reconcile(l, g.hold, 0, 0);
    }
    limits_free(l);
    return NULL;
}

static void test_workers_share_one_in_process_window(void **state)
{
    (void)state;
    fake_now_ms = T0;
    pthread_t t[4];
    for (intptr_t i = 0; i < 4; i++) {
        pthread_create(&t[i], NULL, hammer, (void *)i);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    assert_int_equal(threaded_admitted, 60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_sixty_requests_are_admitted_then_the_next_is_refused),
        cmocka_unit_test(
            test_a_slot_frees_exactly_sixty_seconds_after_the_oldest),
        cmocka_unit_test(
            test_tokens_are_reserved_then_reconciled_to_the_real_count),
        cmocka_unit_test(
            test_tpm_retry_after_waits_until_enough_tokens_leave),
        cmocka_unit_test(test_a_request_larger_than_tpm_can_never_fit),
        cmocka_unit_test(
            test_the_concurrency_cap_counts_requests_until_reconciled),
        cmocka_unit_test(
            test_a_slot_of_a_request_never_reconciled_frees_when_stale),
        cmocka_unit_test(
            test_the_budget_counts_spent_and_held_then_reconciles),
        cmocka_unit_test(test_a_request_with_no_limits_is_admitted_for_free),
        cmocka_unit_test(test_a_bad_key_id_is_refused_without_a_callback),
        cmocka_unit_test(
            test_headers_are_openai_s_six_lines_for_limits_that_are_set),
        cmocka_unit_test(test_durations_are_written_as_openai_writes_them),
        cmocka_unit_test(
            test_period_names_follow_utc_days_iso_weeks_and_months),
        cmocka_unit_test(test_workers_share_one_in_process_window),
    };
    return cmocka_run_group_tests_name("limits_local", tests, setup,
                                       teardown);
}
