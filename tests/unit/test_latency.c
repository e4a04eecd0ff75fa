/*
 * test_latency.c - unit tests of src/routing/latency.c: live time to first
 * token, decode rate and output length per model, at a percentile, with
 * a clock the tests set.
 *
 * The model: prior 200 ms to first token, 100 tokens/s (10 ms a token).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "routing/engine.h"

#define MS 1000ull
#define S 1000000ull

struct fixture {
    struct model_cfg m;
    struct routing_knobs k;
    struct routing_latency l;
    uint64_t now_us;
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    f.m.name = "m";
    f.m.prior_ttft_ms = 200;
    f.m.prior_tokens_per_s = 100;
    config_routing_knobs_default(&f.k);
    f.l.prior_ttft_us = 200 * MS;
    f.now_us = 1000 * S;
    *state = &f;
    return 0;
}

/* A streamed answer: first token after ttft_ms, tokens at ms_per_token. */
static void stream(struct fixture *f, uint32_t ttft_ms, uint32_t ms_per_token,
                   int64_t tokens)
{
    f->now_us += 100 * MS;
    struct routing_obs o = {
        .kind = ROUTING_OBS_OK,
        .ttft_us = ttft_ms * MS,
        .total_us = (ttft_ms + ms_per_token * (uint64_t)tokens) * MS,
        .completion_tokens = tokens,
        .prompt_tokens = 100,
        .stream = true,
    };
    routing_latency_observe(&f->l, f->now_us, &o);
}

static struct routing_estimate predict(struct fixture *f, int64_t max_tokens)
{
    struct routing_estimate e;
    routing_latency_predict(&f->l, NULL, &f->m, &f->k, f->now_us, 100, max_tokens,
                            &e);
    return e;
}

static void test_a_cold_model_is_predicted_from_its_priors(void **state)
{
    struct fixture *f = *state;
    struct routing_estimate e = predict(f, 0);
    assert_int_equal(e.ttft_us, 200 * MS);
    assert_int_equal(e.per_token_ns, 10000000);
    assert_int_equal(e.out_tokens, 256); /* output_tokens_prior */
    assert_int_equal(e.total_us, (200 + 2560) * MS);
    e = predict(f, 50);
    assert_int_equal(e.out_tokens, 50);
    assert_int_equal(e.total_us, (200 + 500) * MS);
    routing_latency_predict(NULL, NULL, &f->m, &f->k, f->now_us, 100, 50, &e);
    assert_int_equal(e.total_us, (200 + 500) * MS);
}

static void test_first_answers_move_the_estimate_only_when_slower(
    void **state)
{
    struct fixture *f = *state;
    stream(f, 100, 10, 50); /* faster than the prior: the prior holds */
    assert_int_equal(predict(f, 50).ttft_us, 200 * MS);
    stream(f, 400, 10, 50); /* slower: believed at once */
    assert_int_equal(predict(f, 50).ttft_us, 400 * MS);
    /* From four answers on, the prior no longer counts. */
    for (int i = 0; i < 4; i++) {
        stream(f, 100, 10, 50);
    }
    assert_int_equal(predict(f, 50).ttft_us, 400 * MS);
    for (int i = 0; i < 8; i++) {
        stream(f, 100, 10, 50);
    }
    assert_int_equal(predict(f, 50).ttft_us, 100 * MS);
}

static void test_the_prediction_is_the_nearest_rank_percentile(void **state)
{
    struct fixture *f = *state;
    for (uint32_t i = 1; i <= 10; i++) {
        stream(f, 100 * i, 10, 50);
    }
    assert_int_equal(predict(f, 50).ttft_us, 900 * MS); /* p90 of 10 */
    f->k.percentile = 50;
    assert_int_equal(predict(f, 50).ttft_us, 500 * MS);
    f->k.percentile = 99;
    assert_int_equal(predict(f, 50).ttft_us, 1000 * MS);
    struct routing_ring r = {0};
    const struct routing_ring *rings[1] = {&r};
    assert_int_equal(routing_ring_percentile(rings, 1, 32, 0, S, 90, 7, NULL),
                     7);
}

static void test_a_model_slowing_down_is_seen_within_four_answers(
    void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 40; i++) {
        stream(f, 200, 10, 50);
    }
    int n = 0;
    while (predict(f, 50).ttft_us < 600 * MS) {
        stream(f, 600, 10, 50);
        n++;
        assert_true(n <= 4);
    }
    assert_int_equal(n, 4); /* a tenth of the 32-long window, rounded up */
}

static void test_a_model_that_recovers_is_believed_within_thirty(
    void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 40; i++) {
        stream(f, 600, 30, 50);
    }
    int n = 0;
    while (predict(f, 50).ttft_us > 200 * MS) {
        stream(f, 200, 10, 50);
        n++;
        assert_true(n <= 30);
    }
    assert_int_equal(n, 29);
    assert_int_equal(predict(f, 50).per_token_ns, 10000000);
}

static void test_old_observations_age_out_back_to_the_prior(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 10; i++) {
        stream(f, 900, 30, 50);
    }
    assert_int_equal(predict(f, 50).ttft_us, 900 * MS);
    f->now_us += f->k.max_age_ms * MS + 1;
    struct routing_estimate e = predict(f, 50);
    assert_int_equal(e.ttft_us, 200 * MS);
    assert_int_equal(e.per_token_ns, 10000000);
    assert_int_equal(e.nfresh, 0);
}

static void test_a_non_stream_total_is_split_with_the_median_ttft(
    void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 5; i++) {
        stream(f, 300, 10, 50);
    }
    /* 1300 ms for 50 tokens: 300 of first token, 20 ms a token. */
    for (int i = 0; i < 10; i++) {
        f->now_us += 100 * MS;
        struct routing_obs o = {.kind = ROUTING_OBS_OK, .total_us = 1300 * MS,
                                .completion_tokens = 50, .prompt_tokens = 100};
        routing_latency_observe(&f->l, f->now_us, &o);
    }
    struct routing_estimate e = predict(f, 50);
    assert_int_equal(e.per_token_ns, 20000000);
    assert_int_equal(e.ttft_us, 300 * MS); /* streams alone teach it */
}

static void test_output_length_comes_from_similar_uncapped_answers(
    void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 10; i++) {
        stream(f, 200, 10, 100 + 10 * i); /* 100 .. 190 tokens */
    }
    assert_int_equal(predict(f, 0).out_tokens, 180);
    assert_int_equal(predict(f, 120).out_tokens, 120); /* the cap bounds */
    assert_int_equal(predict(f, 1000).out_tokens, 180);
    /* Capped answers do not teach the length. */
    struct routing_obs o = {.kind = ROUTING_OBS_OK, .ttft_us = 200 * MS,
                            .total_us = 300 * MS, .completion_tokens = 10,
                            .prompt_tokens = 100, .max_tokens_set = true,
                            .stream = true};
    for (int i = 0; i < 20; i++) {
        routing_latency_observe(&f->l, f->now_us, &o);
    }
    assert_int_equal(predict(f, 0).out_tokens, 180);
    /* Another prompt size has its own history, else the pool. */
    struct routing_estimate e;
    routing_latency_predict(&f->l, NULL, &f->m, &f->k, f->now_us, 20000, 0, &e);
    assert_int_equal(e.out_tokens, 180);
}

static void test_the_total_adds_deviations_in_quadrature(void **state)
{
    struct fixture *f = *state;
    /* First token 100 or 400 ms, 10 ms a token, 100 tokens: medians 100
     * and 1000 ms; the first-token deviation alone is 300 ms. */
    for (int i = 0; i < 10; i++) {
        stream(f, i < 8 ? 100 : 400, 10, 100);
    }
    struct routing_estimate e = predict(f, 0);
    assert_int_equal(e.ttft_us, 400 * MS);
    assert_int_equal(e.total_us, (100 + 1000 + 300) * MS);
}

static void test_an_abandoned_stream_counts_as_slow_at_least(void **state)
{
    struct fixture *f = *state;
    struct routing_obs o = {.kind = ROUTING_OBS_ABANDONED,
                            .ttft_us = 1500 * MS, .total_us = 1500 * MS,
                            .prompt_tokens = 100, .stream = true};
    routing_latency_observe(&f->l, f->now_us, &o);
    assert_int_equal(predict(f, 50).ttft_us, 1650 * MS); /* a tenth more */
    /* Failures teach no latency, except a first token that came. */
    o = (struct routing_obs){.kind = ROUTING_OBS_5XX, .total_us = 5 * S,
                             .prompt_tokens = 100, .stream = true};
    routing_latency_observe(&f->l, f->now_us, &o);
    assert_int_equal(predict(f, 50).ttft_us, 1650 * MS);
}

/* An attempt given up at a deadline before the target (leaving the
 * fallback its time) counts as at least the target it was waited for
 * against, a tenth more: else it would look just fast enough again. */
static void test_an_early_abandon_counts_as_the_target_missed(void **state)
{
    struct fixture *f = *state;
    struct routing_obs o = {.kind = ROUTING_OBS_ABANDONED,
                            .ttft_us = 300 * MS, .total_us = 300 * MS,
                            .prompt_tokens = 100, .stream = true,
                            .bar_us = 400 * MS};
    routing_latency_observe(&f->l, f->now_us, &o);
    assert_int_equal(predict(f, 50).ttft_us, 440 * MS);
    /* A wait longer than the bar counts as itself, a tenth more. */
    o.ttft_us = o.total_us = 1000 * MS;
    routing_latency_observe(&f->l, f->now_us, &o);
    assert_int_equal(predict(f, 50).ttft_us, 1100 * MS);
}

/* A stream's first token alone, for a prompt of prompt tokens. */
static void first_token(struct fixture *f, uint32_t ttft_ms, int64_t prompt)
{
    f->now_us += 100 * MS;
    routing_latency_first_token(&f->l, f->now_us, ttft_ms * MS, prompt);
}

static uint64_t predict_ttft(struct fixture *f, int64_t prompt)
{
    struct routing_estimate e;
    routing_latency_predict(&f->l, NULL, &f->m, &f->k, f->now_us, prompt, 50,
                            &e);
    return e.ttft_us / MS;
}

static void test_a_long_prompt_is_predicted_along_the_prefill_rate(
    void **state)
{
    struct fixture *f = *state;
    /* 200 ms plus 20 us a token, prompts of 100 to 3100 tokens: a long
     * prompt's class has no value of its own, and borrows the others'
     * moved along the rate they show, not as they are. */
    for (int i = 0; i < 32; i++) {
        int64_t prompt = 100 + (i % 4) * 1000;
        first_token(f, 200 + (uint32_t)(prompt * 20 / 1000), prompt);
    }
    assert_int_equal(predict_ttft(f, 20000), 200 + 400);
    /* A class with values of its own is moved from their mean size: class
     * 2 (1024 to 4095 tokens) saw 1100, 2100 and 3100 (mean 2100), its
     * p90 262 ms, and 4000 is 1900 tokens more. */
    assert_int_equal(predict_ttft(f, 4000), 262 + 38);
    /* Sizes that do not differ give no rate: the class's values. */
    memset(&f->l, 0, sizeof(f->l));
    for (int i = 0; i < 8; i++) {
        first_token(f, 300, 500);
    }
    assert_int_equal(predict_ttft(f, 20000), 300);
}

static void test_prompt_sizes_fall_in_classes(void **state)
{
    (void)state;
    assert_int_equal(routing_size_class(0), 0);
    assert_int_equal(routing_size_class(255), 0);
    assert_int_equal(routing_size_class(256), 1);
    assert_int_equal(routing_size_class(4095), 2);
    assert_int_equal(routing_size_class(16384), 4);
    assert_int_equal(routing_size_class(1000000), 4);
}

/* The nearest-rank percentile of the fresh part of r's window, by brute
 * force (a sort of a copy), to check the order the pushes keep. */
static uint32_t brute_percentile(const struct routing_ring *r, int window,
                                 uint64_t now_us, uint64_t max_age_us,
                                 int pct, uint32_t prior)
{
    uint32_t vals[ROUTING_RING_MAX + 1];
    size_t n = 0;
    uint32_t take = r->n < (uint32_t)window ? r->n : (uint32_t)window;
    for (uint32_t i = 0; i < take; i++) {
        uint32_t at = (r->next + ROUTING_RING_MAX - 1 - i) % ROUTING_RING_MAX;
        if (now_us - r->at_us[at] > max_age_us) {
            break;
        }
        vals[n++] = r->v[at];
    }
    if (n < ROUTING_MIN_OBS) {
        vals[n++] = prior;
    }
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j > 0 && vals[j - 1] > vals[j]; j--) {
            uint32_t t = vals[j];
            vals[j] = vals[j - 1];
            vals[j - 1] = t;
        }
    }
    size_t rank = ((size_t)pct * n + 99) / 100;
    return vals[rank ? rank - 1 : 0];
}

/* Percentiles read from the order the pushes keep are those of a sort,
 * through windows that change, values that repeat, and ageing. */
static void test_the_kept_order_gives_the_sorted_percentiles(void **state)
{
    (void)state;
    struct routing_ring r = {0};
    const struct routing_ring *rings[1] = {&r};
    uint64_t seed = 42;
    uint64_t now = S;
    const int windows[] = {32, 32, 8, 64, 1, 32};
    for (int step = 0; step < 3000; step++) {
        int w = windows[step / 500];
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t v = (uint32_t)(seed >> 40) % 50; /* many repeats */
        now += (seed >> 20) % (200 * MS);
        routing_ring_push(&r, now, v, w);
        uint64_t later = now + (seed >> 8) % (3 * S);
        for (int pct = 50; pct <= 99; pct += 49) {
            uint32_t want = brute_percentile(&r, w, later, 2 * S, pct, 25);
            uint32_t got = routing_ring_percentile(rings, 1, w, later, 2 * S,
                                                   pct, 25, NULL);
            if (got != want) {
                fail_msg("step %d window %d p%d: %u, a sort says %u", step,
                         w, pct, got, want);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup(name, setup)
        T(test_a_cold_model_is_predicted_from_its_priors),
        T(test_first_answers_move_the_estimate_only_when_slower),
        T(test_the_prediction_is_the_nearest_rank_percentile),
        T(test_a_model_slowing_down_is_seen_within_four_answers),
        T(test_a_model_that_recovers_is_believed_within_thirty),
        T(test_old_observations_age_out_back_to_the_prior),
        T(test_a_non_stream_total_is_split_with_the_median_ttft),
        T(test_output_length_comes_from_similar_uncapped_answers),
        T(test_the_total_adds_deviations_in_quadrature),
        T(test_an_abandoned_stream_counts_as_slow_at_least),
        T(test_an_early_abandon_counts_as_the_target_missed),
        T(test_a_long_prompt_is_predicted_along_the_prefill_rate),
        T(test_prompt_sizes_fall_in_classes),
        T(test_the_kept_order_gives_the_sorted_percentiles),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
