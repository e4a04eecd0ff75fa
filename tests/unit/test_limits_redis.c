/*
 * test_limits_redis.c - unit tests of src/limits/redis.c (the Lua
 * scripts) through limits.c and the real client, against a redis-server
 * this binary starts on a free 127.0.0.1 port (it fails, not skips, when
 * the server cannot start).
 *
 * The arithmetic cases of test_limits_local.c, run by the script (no
 * injected clock here: Redis' TIME is the clock, so only values that do
 * not depend on elapsed time are exact); two instances against one key;
 * NOSCRIPT; cancellation; Redis stopped (fail-open, fail-closed), back
 * again, and stalled (timeout). The last test measures the round trip of
 * a reserve (docs/internals/limits.md quotes it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "limits_harness.h"
#include "redis/redis.h"
#include "redis_harness.h"
#include "util/clock.h"

static struct harness_redis srv;

static int setup(void **state)
{
    (void)state;
    if (!harness_redis_start(&srv)) {
        fprintf(stderr, "cannot start %s\n", HARNESS_REDIS_BIN);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    harness_redis_stop(&srv);
    return 0;
}

static bool lim_up(void *arg)
{
    return limits_redis_up(arg);
}

static bool lim_down(void *arg)
{
    return !limits_redis_up(arg);
}

static struct limits *open_limits(uv_loop_t *loop, enum limits_policy p)
{
    uv_loop_init(loop);
    struct limits_opts o = {.redis_url = srv.url, .policy = p};
    struct limits *l = NULL;
    assert_int_equal(limits_new(loop, &o, &l), RL_OK);
    assert_true(harness_run_until(loop, lim_up, l, 3000));
    return l;
}

static void close_limits(uv_loop_t *loop, struct limits *l)
{
    limits_free(l);
    harness_run_for(loop, 5);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Reserves and runs the loop until the answer. */
static struct got reserve_wait(uv_loop_t *loop, struct limits *l,
                               const char *key, int n,
                               struct limits_rule r, int64_t tokens)
{
    char id[64];
    struct limits_ask a = ask_for(key, id, sizeof(id), n);
    a.rule = r;
    a.rule.key_id = key;
    a.tokens = tokens;
    struct got g = {0};
    assert_int_equal(limits_reserve(l, &a, on_verdict, &g, NULL), RL_OK);
    assert_true(harness_run_until(loop, got_called, &g, 2000));
    assert_int_equal(g.calls, 1);
    return g;
}

/* Reconciles and gives the fire-and-forget script time to run. */
static void reconcile_wait(uv_loop_t *loop, struct limits *l,
                           struct limits_hold *h, int64_t tokens,
                           int64_t cost)
{
    limits_reconcile(l, h, tokens, cost);
    harness_run_for(loop, 20);
}

static struct got many[500];

static void test_sixty_requests_pass_through_redis_then_one_is_refused(
    void **state)
{
    (void)state;
    uv_loop_t loop;
    struct limits *l = open_limits(&loop, LIMITS_FAIL_OPEN);
    struct limits_rule r = {.rpm = 60};
    int admitted = 0;
    for (int i = 0; i < 60; i++) {
        struct got g = reserve_wait(&loop, l, "r60", i, r, 0);
        assert_false(g.v.local);
        admitted += g.v.outcome == LIMITS_ADMITTED;
        assert_int_equal(g.v.remaining_requests, 59 - i);
        reconcile_wait(&loop, l, g.hold, 0, 0);
    }
    assert_int_equal(admitted, 60);
    struct got g = reserve_wait(&loop, l, "r60", 60, r, 0);
    assert_int_equal(g.v.outcome, LIMITS_OVER_RPM);
    assert_true(g.v.retry_after_ms > 55000 && g.v.retry_after_ms <= 60000);
    assert_int_equal(g.v.remaining_requests, 0);
    assert_int_equal(g.v.reset_requests_ms, g.v.retry_after_ms);
    close_limits(&loop, l);
}

static bool all_many_answered(void *arg)
{
    (void)arg;
    for (int i = 0; i < 500; i++) {
        if (many[i].calls == 0) {
            return false;
        }
    }
    return true;
}

static void test_two_instances_admit_exactly_sixty_of_500_interleaved(
    void **state)
{
    (void)state;
    uv_loop_t loops[2];
    struct limits *ls[2];
    for (int k = 0; k < 2; k++) {
        ls[k] = open_limits(&loops[k], LIMITS_FAIL_OPEN);
    }
    memset(many, 0, sizeof(many));
    struct limits_ask a;
    char id[64];
    for (int i = 0; i < 500; i++) {
        a = ask_for("two", id, sizeof(id), i);
        a.rule.rpm = 60;
        assert_int_equal(limits_reserve(ls[i % 2], &a, on_verdict, &many[i],
                                        NULL),
                         RL_OK);
        if (i % 50 == 49) { /* let both loops send and read meanwhile */
            uv_run(&loops[0], UV_RUN_NOWAIT);
            uv_run(&loops[1], UV_RUN_NOWAIT);
        }
    }
    for (int t = 0; t < 2000 && !all_many_answered(NULL); t++) {
        uv_run(&loops[0], UV_RUN_NOWAIT);
        uv_run(&loops[1], UV_RUN_NOWAIT);
        harness_sleep_ms(1);
    }
    int admitted = 0;
    for (int i = 0; i < 500; i++) {
        assert_int_equal(many[i].calls, 1);
        assert_false(many[i].v.local);
        if (many[i].v.outcome == LIMITS_ADMITTED) {
            admitted++;
            limits_reconcile(ls[i % 2], many[i].hold, 0, 0);
        } else {
            assert_int_equal(many[i].v.outcome, LIMITS_OVER_RPM);
        }
    }
    assert_int_equal(admitted, 60);
    harness_run_for(&loops[0], 20);
    harness_run_for(&loops[1], 20);
    close_limits(&loops[0], ls[0]);
    close_limits(&loops[1], ls[1]);
}

static void test_tokens_are_reserved_and_reconciled_in_redis(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct limits *l = open_limits(&loop, LIMITS_FAIL_OPEN);
    struct limits_rule r = {.tpm = 1000};
    struct got a = reserve_wait(&loop, l, "tpm", 0, r, 600);
    assert_int_equal(a.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(a.v.remaining_tokens, 400);
    struct got b = reserve_wait(&loop, l, "tpm", 1, r, 500);
    assert_int_equal(b.v.outcome, LIMITS_OVER_TPM);
    assert_true(b.v.retry_after_ms > 55000 && b.v.retry_after_ms <= 60000);
    reconcile_wait(&loop, l, a.hold, 100, 0);
    b = reserve_wait(&loop, l, "tpm", 2, r, 500);
    assert_int_equal(b.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(b.v.remaining_tokens, 400);
    reconcile_wait(&loop, l, b.hold, 900, 0);
    struct got c = reserve_wait(&loop, l, "tpm", 3, r, 1);
    assert_int_equal(c.v.outcome, LIMITS_OVER_TPM);
    assert_int_equal(c.v.remaining_tokens, 0);
    struct got d = reserve_wait(&loop, l, "tpm", 4, r, 1001);
    assert_int_equal(d.v.outcome, LIMITS_TOO_LARGE);
    close_limits(&loop, l);
}

/* Reserves n asks of key in one loop iteration (one batch, one script
 * call) with the given tokens, and waits for all the answers. */
static void reserve_batch(uv_loop_t *loop, struct limits *l, const char *key,
                          struct limits_rule r, const int64_t *tokens,
                          int n, struct got *out)
{
    for (int i = 0; i < n; i++) {
        char id[64];
        struct limits_ask a = ask_for(key, id, sizeof(id), i);
        a.rule = r;
        a.rule.key_id = key;
        a.tokens = tokens[i];
        memset(&out[i], 0, sizeof(out[i]));
        assert_int_equal(limits_reserve(l, &a, on_verdict, &out[i], NULL),
                         RL_OK);
        assert_int_equal(out[i].calls, 0);
    }
    assert_true(harness_run_until(loop, got_called, &out[n - 1], 2000));
    for (int i = 0; i < n; i++) {
        assert_int_equal(out[i].calls, 1);
        assert_false(out[i].v.local);
    }
}

static void test_a_batch_is_decided_in_order_and_settled_in_one_call(
    void **state)
{
    (void)state;
    uv_loop_t loop;
    struct limits *l = open_limits(&loop, LIMITS_FAIL_OPEN);
    struct limits_rule r = {.rpm = 10, .tpm = 1000};
    const int64_t tokens[] = {400, 400, 400, 100};
    struct got g[4];
    reserve_batch(&loop, l, "batch", r, tokens, 4, g);
    assert_int_equal(g[0].v.outcome, LIMITS_ADMITTED);
    assert_int_equal(g[0].v.remaining_tokens, 600);
    assert_int_equal(g[1].v.outcome, LIMITS_ADMITTED);
    assert_int_equal(g[1].v.remaining_tokens, 200);
    assert_int_equal(g[2].v.outcome, LIMITS_OVER_TPM);
    /* only this batch's entries, admitted now, can free the tokens */
    assert_int_equal(g[2].v.retry_after_ms, LIMITS_WINDOW_MS);
    assert_int_equal(g[3].v.outcome, LIMITS_ADMITTED);
    assert_int_equal(g[3].v.remaining_tokens, 100);
    assert_int_equal(g[3].v.remaining_requests, 7);
    limits_reconcile(l, g[0].hold, 100, 0);
    limits_reconcile(l, g[1].hold, 100, 0);
    limits_reconcile(l, g[3].hold, 100, 0);
    harness_run_for(&loop, 20);
    struct got h = reserve_wait(&loop, l, "batch", 9, r, 700);
    assert_int_equal(h.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(h.v.remaining_tokens, 0);
    reconcile_wait(&loop, l, h.hold, 700, 0);
    struct limits_rule c = {.max_concurrent = 1};
    const int64_t none[] = {0, 0};
    reserve_batch(&loop, l, "batchc", c, none, 2, g);
    assert_int_equal(g[0].v.outcome, LIMITS_ADMITTED);
    assert_int_equal(g[1].v.outcome, LIMITS_OVER_CONCURRENCY);
    reconcile_wait(&loop, l, g[0].hold, 0, 0);
    close_limits(&loop, l);
}

static void test_the_concurrency_cap_holds_in_redis_until_reconciled(
    void **state)
{
    (void)state;
    uv_loop_t loop;
    struct limits *l = open_limits(&loop, LIMITS_FAIL_OPEN);
    struct limits_rule r = {.max_concurrent = 2};
    struct got a = reserve_wait(&loop, l, "conc", 0, r, 0);
    struct got b = reserve_wait(&loop, l, "conc", 1, r, 0);
    struct got c = reserve_wait(&loop, l, "conc", 2, r, 0);
    assert_int_equal(a.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(b.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(c.v.outcome, LIMITS_OVER_CONCURRENCY);
    assert_int_equal(c.v.retry_after_ms, LIMITS_CONCURRENCY_RETRY_MS);
    reconcile_wait(&loop, l, a.hold, 0, 0);
    c = reserve_wait(&loop, l, "conc", 3, r, 0);
    assert_int_equal(c.v.outcome, LIMITS_ADMITTED);
    reconcile_wait(&loop, l, b.hold, 0, 0);
    reconcile_wait(&loop, l, c.hold, 0, 0);
    close_limits(&loop, l);
}

static struct got budget_wait(uv_loop_t *loop, struct limits *l, int n,
                              int64_t cost, int64_t seed)
{
    char id[64];
    struct limits_ask a = ask_for("budget", id, sizeof(id), n);
    a.rule.budget_nusd = 1000;
    a.rule.period = LIMITS_PERIOD_MONTH;
    a.cost_nusd = cost;
    a.spent_seed_nusd = seed;
    struct got g = {0};
    assert_int_equal(limits_reserve(l, &a, on_verdict, &g, NULL), RL_OK);
    assert_true(harness_run_until(loop, got_called, &g, 2000));
    assert_false(g.v.local);
    return g;
}

static void test_the_budget_counts_spent_and_held_in_redis(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct limits *l = open_limits(&loop, LIMITS_FAIL_OPEN);
    struct got a = budget_wait(&loop, l, 0, 500, 200);
    assert_int_equal(a.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(a.v.budget_remaining_nusd, 300);
    /* the counter exists now: a different seed is ignored */
    struct got b = budget_wait(&loop, l, 1, 400, 0);
    assert_int_equal(b.v.outcome, LIMITS_OVER_BUDGET);
    assert_true(b.v.retry_after_ms > 0);
    assert_true(b.v.retry_after_ms <= 31 * 86400000ull);
    reconcile_wait(&loop, l, a.hold, 0, 300);
    b = budget_wait(&loop, l, 2, 400, 0);
    assert_int_equal(b.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(b.v.budget_remaining_nusd, 100);
    reconcile_wait(&loop, l, b.hold, 0, 450);
    struct got c = budget_wait(&loop, l, 3, 100, 0);
    assert_int_equal(c.v.outcome, LIMITS_OVER_BUDGET);
    assert_int_equal(c.v.budget_remaining_nusd, 50);
    close_limits(&loop, l);
}

/* Sends one command on a fresh client and waits for its answer. */
static void side_command(int argc, const char **argv);

static void test_expired_entries_give_back_the_tokens_their_member_names(
    void **state)
{
    (void)state;
    uv_loop_t loop;
    struct limits *l = open_limits(&loop, LIMITS_FAIL_OPEN);
    /* two entries from long ago (scores 1 and 2 ms after the epoch) and
     * the sum they made, as an earlier reserve would have left them */
    const char *zadd[] = {"ZADD", "relay:{k:old}:w", "1", "gone-1:300", "2",
                          "gone-2:200"};
    side_command(6, zadd);
    const char *hset[] = {"HSET", "relay:{k:old}:s", "tok", "500"};
    side_command(4, hset);
    struct limits_rule r = {.rpm = 2, .tpm = 1000};
    struct got g = reserve_wait(&loop, l, "old", 0, r, 1000);
    assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(g.v.remaining_requests, 1);
    assert_int_equal(g.v.remaining_tokens, 0);
    assert_int_equal(g.v.reset_tokens_ms, LIMITS_WINDOW_MS);
    reconcile_wait(&loop, l, g.hold, 10, 0);
    g = reserve_wait(&loop, l, "old", 1, r, 990);
    assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
    assert_int_equal(g.v.remaining_tokens, 0);
    reconcile_wait(&loop, l, g.hold, 990, 0);
    close_limits(&loop, l);
}

static void test_reserve_works_after_the_scripts_are_flushed(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct limits *l = open_limits(&loop, LIMITS_FAIL_OPEN);
    struct limits_rule r = {.rpm = 5};
    struct got g = reserve_wait(&loop, l, "flush", 0, r, 0);
    assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
    const char *flush[] = {"SCRIPT", "FLUSH"};
    side_command(2, flush);
    reconcile_wait(&loop, l, g.hold, 0, 0);
    g = reserve_wait(&loop, l, "flush", 1, r, 0);
    assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
    assert_false(g.v.local);
    assert_int_equal(g.v.remaining_requests, 3);
    reconcile_wait(&loop, l, g.hold, 0, 0);
    struct limits_stats st;
    limits_stats_get(l, &st);
    assert_int_equal(st.redis_failures, 0);
    close_limits(&loop, l);
}

static void test_a_cancelled_reserve_calls_nobody_and_frees_its_slot(
    void **state)
{
    (void)state;
    uv_loop_t loop;
    struct limits *l = open_limits(&loop, LIMITS_FAIL_OPEN);
    char id[64];
    struct limits_ask a = ask_for("cancel", id, sizeof(id), 0);
    a.rule.max_concurrent = 1;
    struct got g = {0};
    struct limits_pending *p = NULL;
    assert_int_equal(limits_reserve(l, &a, on_verdict, &g, &p), RL_OK);
    assert_non_null(p);
    limits_reserve_cancel(p);
    harness_run_for(&loop, 50);
    assert_int_equal(g.calls, 0);
    struct limits_rule r = {.max_concurrent = 1};
    struct got b = reserve_wait(&loop, l, "cancel", 1, r, 0);
    assert_int_equal(b.v.outcome, LIMITS_ADMITTED);
    reconcile_wait(&loop, l, b.hold, 0, 0);
    close_limits(&loop, l);
}

static void test_redis_down_fails_open_or_closed_and_recovers(void **state)
{
    (void)state;
    uv_loop_t lo;
    uv_loop_t lc;
    struct limits *open = open_limits(&lo, LIMITS_FAIL_OPEN);
    struct limits *closed = open_limits(&lc, LIMITS_FAIL_CLOSED);
    harness_redis_kill(&srv);
    assert_true(harness_run_until(&lo, lim_down, open, 2000));
    assert_true(harness_run_until(&lc, lim_down, closed, 2000));
    struct limits_rule r = {.rpm = 2};
    struct got g = reserve_wait(&lo, open, "down", 0, r, 0);
    assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
    assert_true(g.v.local);
    limits_reconcile(open, g.hold, 0, 0); /* a local hold, in-process */
    g = reserve_wait(&lc, closed, "down", 1, r, 0);
    assert_int_equal(g.v.outcome, LIMITS_UNAVAILABLE);
    assert_null(g.hold);
    assert_true(harness_redis_spawn(&srv));
    assert_true(harness_run_until(&lo, lim_up, open, 8000));
    assert_true(harness_run_until(&lc, lim_up, closed, 8000));
    g = reserve_wait(&lc, closed, "down", 2, r, 0);
    assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
    assert_false(g.v.local);
    reconcile_wait(&lc, closed, g.hold, 0, 0);
    struct limits_stats st;
    limits_stats_get(open, &st);
    assert_int_equal(st.redis_downs, 1);
    assert_int_equal(st.local_decisions, 1);
    close_limits(&lo, open);
    close_limits(&lc, closed);
}

static void test_a_stalled_redis_fails_over_within_the_timeout(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct limits *l = open_limits(&loop, LIMITS_FAIL_OPEN);
    kill(srv.pid, SIGSTOP);
    char id[64];
    struct limits_ask a = ask_for("stall", id, sizeof(id), 0);
    a.rule.rpm = 10;
    struct got g = {0};
    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop);
    assert_int_equal(limits_reserve(l, &a, on_verdict, &g, NULL), RL_OK);
    assert_true(harness_run_until(&loop, got_called, &g, 1000));
    uint64_t waited = uv_now(&loop) - t0;
    kill(srv.pid, SIGCONT);
    assert_true(g.v.local);
    assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
    assert_true(waited <= REDIS_COMMAND_TIMEOUT_MS + 40);
    limits_reconcile(l, g.hold, 0, 0);
    assert_true(harness_run_until(&loop, lim_up, l, 5000));
    close_limits(&loop, l);
}

static void test_measure_the_round_trip_of_a_reserve(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct limits *l = open_limits(&loop, LIMITS_FAIL_OPEN);
    struct limits_rule r = {.rpm = 100000, .tpm = 100000000,
                            .max_concurrent = 100000,
                            .budget_nusd = 1000000000};
    enum { N = 2000 };
    uint64_t t0 = clock_now_us();
    for (int i = 0; i < N; i++) {
        struct got g = reserve_wait(&loop, l, "bench", i, r, 10);
        assert_int_equal(g.v.outcome, LIMITS_ADMITTED);
        limits_reconcile(l, g.hold, 10, 1);
    }
    uint64_t us = clock_now_us() - t0;
    printf("reserve round trip: %d sequential reserves (+ reconciles) in "
           "%llu us, %.1f us each\n",
           N, (unsigned long long)us, (double)us / N);
    harness_run_for(&loop, 50);
    close_limits(&loop, l);
}

/* ---- a side connection -------------------------------------------- */

static void on_side(void *ctx, struct redisReply *reply, enum rl_err err)
{
    (void)reply;
    *(int *)ctx = err == RL_OK ? 1 : -1;
}

static bool side_done(void *arg)
{
    return *(int *)arg != 0;
}

static void side_command(int argc, const char **argv)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct redis *r = redis_new(&loop, srv.url, NULL);
    assert_non_null(r);
    bool up = false;
    for (int i = 0; i < 2000 && !up; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        up = redis_up(r);
        harness_sleep_ms(1);
    }
    assert_true(up);
    int done = 0;
    assert_int_equal(redis_command(r, argc, argv, NULL, on_side, &done),
                     RL_OK);
    assert_true(harness_run_until(&loop, side_done, &done, 2000));
    assert_int_equal(done, 1);
    redis_free(r);
    harness_run_for(&loop, 5);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_sixty_requests_pass_through_redis_then_one_is_refused),
        cmocka_unit_test(
            test_two_instances_admit_exactly_sixty_of_500_interleaved),
        cmocka_unit_test(test_tokens_are_reserved_and_reconciled_in_redis),
        cmocka_unit_test(
            test_a_batch_is_decided_in_order_and_settled_in_one_call),
        cmocka_unit_test(
            test_the_concurrency_cap_holds_in_redis_until_reconciled),
        cmocka_unit_test(test_the_budget_counts_spent_and_held_in_redis),
        cmocka_unit_test(
            test_expired_entries_give_back_the_tokens_their_member_names),
        cmocka_unit_test(test_reserve_works_after_the_scripts_are_flushed),
        cmocka_unit_test(
            test_a_cancelled_reserve_calls_nobody_and_frees_its_slot),
        cmocka_unit_test(test_redis_down_fails_open_or_closed_and_recovers),
        cmocka_unit_test(
            test_a_stalled_redis_fails_over_within_the_timeout),
        cmocka_unit_test(test_measure_the_round_trip_of_a_reserve),
    };
    return cmocka_run_group_tests_name("limits_redis", tests, setup,
                                       teardown);
}
