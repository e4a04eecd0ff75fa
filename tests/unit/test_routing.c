/*
 * test_routing.c - unit tests of src/routing/routing.c and candidates.c:
 * which models a request tries, in which order, why the others were passed
 * over, the deadline and hedge times, and the feedback that moves them.
 *
 * The world: five models with priors (no history), two providers, the
 * default knobs, a clock the tests set. Predicted with the default output
 * prior of 256 tokens and a 100-token prompt:
 *
 *   model      tier  in/out $/M   ttft  tok/s  total   cost nUSD
 *   tiny        0    0.01/0.01    100   500     612       3,560
 *   small       1    0.05/0.08    150   700     516      25,480
 *   mid-cheap   2    0.10/0.40    300   100    2860     112,400
 *   mid         2    0.50/1.50    200   300    1054     434,000
 *   big         3    3.00/15.0    500    80    3700   4,140,000
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "routing/engine.h"
#include "routing/routing.h"
#include "util/log.h"

struct world {
    struct provider_cfg prov[2];
    struct model_cfg models[5];
    struct model_cfg *fb_small[2];
    struct config cfg;
    struct arena arena;
    const struct routing_key *key; /* the caller's key, or NULL */
    struct routing_plan plan;      /* the last plan */
};

static uint64_t fake_now_us;

static uint64_t fake_clock(void)
{
    return fake_now_us;
}

static int setup(void **state)
{
    static struct world w;
    memset(&w, 0, sizeof(w));
    w.prov[0].name = "p1";
    w.prov[1].name = "p2";
    struct {
        const char *name;
        int tier;
        int64_t in;
        int64_t out;
        uint32_t ttft_ms;
        uint32_t tps;
        int64_t context;
    } rows[] = {
        {"tiny", 0, 10000000, 10000000, 100, 500, 8192},
        {"small", 1, 50000000, 80000000, 150, 700, 8192},
        {"mid-cheap", 2, 100000000, 400000000, 300, 100, 131072},
        {"mid", 2, 500000000, 1500000000, 200, 300, 131072},
        {"big", 3, 3000000000LL, 15000000000LL, 500, 80, 200000},
    };
    for (int i = 0; i < 5; i++) {
        struct model_cfg *m = &w.models[i];
        m->name = (char *)rows[i].name;
        m->provider = &w.prov[i < 2 ? 0 : 1];
        m->tier = rows[i].tier;
        m->input_nusd_per_mtok = rows[i].in;
        m->output_nusd_per_mtok = rows[i].out;
        m->prior_ttft_ms = rows[i].ttft_ms;
        m->prior_tokens_per_s = rows[i].tps;
        m->context_tokens = rows[i].context;
    }
    w.fb_small[0] = &w.models[3]; /* mid */
    w.fb_small[1] = &w.models[4]; /* big */
    w.models[1].fallbacks = w.fb_small;
    w.models[1].nfallbacks = 2;
    w.cfg.models = w.models;
    w.cfg.nmodels = 5;
    w.cfg.default_min_quality_tier = 1;
    w.cfg.default_max_latency_ms = 2000;
    config_routing_knobs_default(&w.cfg.routing);
    arena_init(&w.arena, 4096);
    routing_table_reset();
    fake_now_us = 1000000000;
    routing_clock_set(fake_clock);
    *state = &w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    arena_free(&w->arena);
    routing_clock_set(NULL);
    routing_table_reset();
    return 0;
}

/* One request: model, routing text (or NULL), prompt tokens, max_tokens,
 * stream. */
struct ask {
    const char *model;
    const char *routing;
    int64_t prompt;
    int64_t max_tokens;
    bool stream;
};

static struct ask ask(const char *model, const char *routing,
                      int64_t prompt, int64_t max_tokens, bool stream)
{
    return (struct ask){.model = model, .routing = routing,
                        .prompt = prompt, .max_tokens = max_tokens,
                        .stream = stream};
}

/* Plans a into w->plan; the order's names joined by commas go to out. */
static enum rl_err plan(struct world *w, struct ask a, char *out,
                        size_t outlen)
{
    struct routing_request rq = {
        .model = a.model,
        .routing = a.routing ? str_from(a.routing) : (struct str){"", 0},
        .prompt_tokens = a.prompt ? a.prompt : 100,
        .max_tokens = a.max_tokens,
        .stream = a.stream,
    };
    enum rl_err err = routing_plan(&w->cfg, &rq, w->key, &w->arena,
                                   &w->plan);
    out[0] = '\0';
    for (size_t i = 0; err == RL_OK && i < w->plan.norder; i++) {
        size_t len = strlen(out);
        snprintf(out + len, outlen - len, "%s%s", i ? "," : "",
                 w->plan.order[i]->name);
    }
    return err;
}

/* Reports one answer of model at the fake clock. */
static void answer(const char *model, const char *provider,
                   enum routing_outcome kind, uint32_t retry_after_s)
{
    struct routing_obs o = {.kind = kind, .retry_after_s = retry_after_s,
                            .ttft_us = kind == ROUTING_OBS_OK ? 100000 : 0,
                            .total_us = 400000,
                            .completion_tokens = 50, .prompt_tokens = 100,
                            .stream = true, .provider = provider};
    routing_observe(model, &o);
}

/* ---------------------------------------------------------------------
 * The choice, table-driven
 * ------------------------------------------------------------------- */

static void test_the_choice_follows_targets_tiers_and_prices(void **state)
{
    struct world *w = *state;
    const struct {
        struct ask ask;
        const char *order;
        bool missed;
    } rows[] = {
        /* Floor 1, 2000 ms: the cheapest in time, then by cost, then
         * those over target fastest first. */
        {{"auto", NULL, 0, 0, false}, "small,mid,mid-cheap,big", false},
        {{"auto", "{}", 0, 0, false}, "small,mid,mid-cheap,big", false},
        {{"auto", "{\"min_quality_tier\":2}", 0, 0, false},
         "mid,mid-cheap,big", false},
        /* A looser target lets the slow cheap one win. */
        {{"auto", "{\"min_quality_tier\":2,\"max_latency_ms\":3000}", 0, 0,
          false},
         "mid-cheap,mid,big", false},
        /* Nothing fast enough: the fastest, and the target is missed. */
        {{"auto", "{\"min_quality_tier\":2,\"max_latency_ms\":500}", 0, 0,
          false},
         "mid,mid-cheap,big", true},
        {{"auto", "{\"min_quality_tier\":3}", 0, 0, false}, "big", true},
        /* A short max_tokens makes the slow decoder fast enough. */
        {{"auto", "{\"min_quality_tier\":2,\"max_latency_ms\":500}", 0, 10,
          false},
         "mid-cheap,mid,big", false},
        /* A stream with a first-token target is bound by it alone. */
        {{"auto", "{\"min_quality_tier\":2,\"max_ttft_ms\":250}", 0, 0,
          true},
         "mid,mid-cheap,big", false},
        {{"auto", "{\"min_quality_tier\":2,\"max_ttft_ms\":350}", 0, 0,
          true},
         "mid-cheap,mid,big", false},
        /* Without one, a stream's total is bound as a non-stream's. */
        {{"auto", "{\"min_quality_tier\":2}", 0, 0, true},
         "mid,mid-cheap,big", false},
        /* Fit: 9000 + 256 tokens do not fit small's 8192. */
        {{"auto", NULL, 9000, 0, false}, "mid,mid-cheap,big", false},
        {{"auto", "{\"allow\":[\"mid-cheap\",\"big\"],\"max_latency_ms\":"
          "3000}", 0, 0, false},
         "mid-cheap,big", false},
        {{"auto", "{\"deny\":[\"small\"]}", 0, 0, false},
         "mid,mid-cheap,big", false},
        {{"auto", "{\"min_quality_tier\":0,\"max_latency_ms\":null}", 0, 0,
          false},
         "tiny,small,mid,mid-cheap,big", false},
        /* By name: the configured order, whatever the preferences. */
        {{"small", NULL, 0, 0, false}, "small,mid,big", false},
        {{"small", "{\"min_quality_tier\":3}", 0, 0, false},
         "small,mid,big", false},
        {{"small", "{\"deny\":[\"mid\"]}", 0, 0, false}, "small,big", false},
        {{"small", "{\"max_latency_ms\":100}", 0, 0, false},
         "small,mid,big", true},
        {{"big", NULL, 0, 0, false}, "big", true},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char names[256];
        enum rl_err err = plan(w, rows[i].ask, names, sizeof(names));
        if (err != RL_OK || strcmp(names, rows[i].order) != 0 ||
            w->plan.target_missed != rows[i].missed) {
            print_error("row %zu: got %s missed=%d (err %d), want %s "
                        "missed=%d\n", i, names, w->plan.target_missed, err,
                        rows[i].order, rows[i].missed);
            fail();
        }
    }
}

static void test_each_candidate_has_predictions_and_a_reason(void **state)
{
    struct world *w = *state;
    char names[256];
    assert_int_equal(plan(w, ask("auto", "{\"min_quality_tier\":2,"
                                 "\"max_latency_ms\":3000}", 0, 0, false),
                          names,
                          sizeof(names)),
                     RL_OK);
    const struct routing_plan *p = &w->plan;
    assert_int_equal(p->ncand, 5);
    assert_string_equal(p->cand[0].model->name, "mid-cheap");
    assert_int_equal(p->cand[0].ttft_ms, 300);
    assert_int_equal(p->cand[0].total_ms, 2860);
    assert_int_equal(p->cand[0].out_tokens, 256);
    assert_int_equal(p->cand[0].cost_nusd, 112400);
    assert_string_equal(p->cand[0].why, "");
    assert_string_equal(p->cand[1].why, "mid: dearer");
    assert_string_equal(p->cand[2].why, "big: 3700ms > 3000ms");
    assert_string_equal(p->cand[3].why, "tiny: tier 0 < 2");
    assert_string_equal(p->cand[4].why, "small: tier 1 < 2");
    char h[512];
    routing_explain(p, h, sizeof(h));
    assert_string_equal(h, "chosen=mid-cheap 2860ms $0.00011; mid 1054ms "
                        "$0.00043: dearer; big 3700ms $0.0041: 3700ms > "
                        "3000ms; tiny 612ms $0.0000035: tier 0 < 2; small "
                        "516ms $0.000025: tier 1 < 2");
}

static void test_explanations_name_fit_lists_and_ttft(void **state)
{
    struct world *w = *state;
    char names[256];
    char h[512];
    assert_int_equal(plan(w, ask("auto", "{\"deny\":[\"mid\"]}", 9000, 0,
                                 false),
                          names,
                          sizeof(names)),
                     RL_OK);
    routing_explain(&w->plan, h, sizeof(h));
    assert_string_equal(h, "chosen=mid-cheap 2860ms $0.0010; target missed; "
                        "big 3700ms $0.030: 3700ms > 2000ms; tiny 612ms "
                        "$0.000092: tier 0 < 1; small 516ms $0.00047: "
                        "context 8192 < 9256; mid: denied");
    assert_int_equal(plan(w, ask("auto", "{\"min_quality_tier\":2,"
                                 "\"max_ttft_ms\":250}", 0, 0, true),
                          names,
                          sizeof(names)),
                     RL_OK);
    routing_explain(&w->plan, h, sizeof(h));
    assert_string_equal(h, "chosen=mid ttft 200ms $0.00043; mid-cheap ttft "
                        "300ms $0.00011: ttft 300ms > 250ms; big ttft 500ms "
                        "$0.0041: ttft 500ms > 250ms; tiny ttft 100ms "
                        "$0.0000035: tier 0 < 2; small ttft 150ms $0.000025: "
                        "tier 1 < 2");
}

static void test_the_explanation_is_cut_at_a_whole_item(void **state)
{
    struct world *w = *state;
    char names[256];
    assert_int_equal(plan(w, ask("auto", "{\"min_quality_tier\":2,"
                                 "\"max_latency_ms\":3000}", 0, 0, false),
                          names,
                          sizeof(names)),
                     RL_OK);
    char h[80];
    size_t n = routing_explain(&w->plan, h, sizeof(h));
    assert_string_equal(h, "chosen=mid-cheap 2860ms $0.00011; "
                        "mid 1054ms $0.00043: dearer...");
    assert_int_equal(n, strlen(h));
    assert_true(n < sizeof(h));
}

static void test_bad_routing_values_are_the_clients_mistake(void **state)
{
    struct world *w = *state;
    const struct {
        const char *routing;
        const char *param;
        const char *says;
    } rows[] = {
        {"{\"max_latency_ms\":-5}", "routing.max_latency_ms", "got -5"},
        {"{\"max_latency_ms\":\"x\"}", "routing.max_latency_ms", "1 to"},
        {"{\"max_latency_ms\":0}", "routing.max_latency_ms", "got 0"},
        {"{\"max_latency_ms\":1.5}", "routing.max_latency_ms", "whole"},
        {"{\"max_ttft_ms\":700000}", "routing.max_ttft_ms", "600000"},
        {"{\"min_quality_tier\":101}", "routing.min_quality_tier", "101"},
        {"{\"hedge\":\"yes\"}", "routing.hedge", "true or false"},
        {"{\"allow\":\"mid\"}", "routing.allow", "array"},
        {"{\"allow\":[\"nope\"]}", "routing.allow", "'nope'"},
        {"{\"deny\":[3]}", "routing.deny", "strings"},
        {"{\"speed\":1}", "routing", "no field 'speed'"},
        {"[1]", "routing", "object"},
        {"{\"allow\":[]}", "routing.allow", "leave no model"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        char names[256];
        enum rl_err err = plan(w, ask("auto", rows[i].routing, 0, 0, false),
                               names, sizeof(names));
        if (err != RL_E_INVALID_REQUEST ||
            strcmp(w->plan.param, rows[i].param) != 0 ||
            !strstr(w->plan.message, rows[i].says)) {
            print_error("row %zu: err %d param %s message %s\n", i, err,
                        w->plan.param, w->plan.message);
            fail();
        }
    }
}

static void test_an_unknown_name_is_model_not_found(void **state)
{
    struct world *w = *state;
    char names[256];
    assert_int_equal(plan(w, ask("nope", NULL, 0, 0, false), names,
                          sizeof(names)),
                     RL_E_MODEL_NOT_FOUND);
}

static void test_a_prompt_that_fits_nothing_is_refused(void **state)
{
    struct world *w = *state;
    char names[256];
    assert_int_equal(plan(w, ask("auto", NULL, 300000, 0, false), names,
                          sizeof(names)),
                     RL_E_INVALID_REQUEST);
    assert_string_equal(w->plan.param, "messages");
    assert_non_null(strstr(w->plan.message, "200000"));
}

/* ---------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------- */

static void test_a_key_allow_list_limits_auto_and_fallbacks(void **state)
{
    struct world *w = *state;
    const char *allow[] = {"tiny", "small", "big"};
    struct routing_key key = {.allow = allow, .nallow = 3,
                              .min_quality_tier = -1, .hedge = -1};
    w->key = &key;
    char names[256];
    assert_int_equal(plan(w, ask("auto", NULL, 0, 0, false), names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "small,big");
    assert_int_equal(plan(w, ask("small", NULL, 0, 0, false), names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "small,big");
    assert_true(routing_key_allows(&key, "tiny"));
    assert_false(routing_key_allows(&key, "mid"));
    assert_true(routing_key_allows(NULL, "mid"));
    char h[512];
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    routing_explain(&w->plan, h, sizeof(h));
    assert_non_null(strstr(h, "mid: not allowed"));
}

static void test_a_key_that_allows_no_configured_model_is_forbidden(
    void **state)
{
    struct world *w = *state;
    const char *allow[] = {"gone"};
    struct routing_key key = {.allow = allow, .nallow = 1,
                              .min_quality_tier = -1, .hedge = -1};
    w->key = &key;
    char names[256];
    assert_int_equal(plan(w, ask("auto", NULL, 0, 0, false), names,
                          sizeof(names)),
                     RL_E_FORBIDDEN);
}

static void test_the_key_defaults_apply_unless_the_request_says(void **state)
{
    struct world *w = *state;
    struct routing_key key = {.min_quality_tier = 2, .max_latency_ms = 5000,
                              .hedge = 1};
    w->key = &key;
    char names[256];
    assert_int_equal(plan(w, ask("auto", NULL, 0, 0, false), names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "mid-cheap,mid,big");
    assert_true(w->plan.hedge_after_ms > 0);
    assert_int_equal(plan(w, ask("auto", "{\"min_quality_tier\":1,"
                                          "\"max_latency_ms\":2000,"
                                          "\"hedge\":false}", 0, 0, false),
                          names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "small,mid,mid-cheap,big");
    assert_int_equal(w->plan.hedge_after_ms, 0);
}

/* ---------------------------------------------------------------------
 * Deadline and hedge
 * ------------------------------------------------------------------- */

/* Plans a and checks its deadline and hedge times. */
static void expect_times(struct world *w, struct ask a, uint64_t deadline_ms,
                         uint64_t hedge_ms)
{
    char names[256];
    assert_int_equal(plan(w, a, names, sizeof(names)), RL_OK);
    assert_int_equal(w->plan.first_token_deadline_ms, deadline_ms);
    assert_int_equal(w->plan.hedge_after_ms, hedge_ms);
}

static void test_the_deadline_leaves_the_fallback_time_or_waits_to_target(
    void **state)
{
    struct world *w = *state;
    char names[256];
    /* small (516 ms) then mid (1054): hedging, mid starts beside small
     * at 516 * 1.2 + 50 = 669 ms, and small is not given up before the
     * target, 3000. */
    plan(w, ask("auto", "{\"max_latency_ms\":3000,\"hedge\":true,"
                "\"deny\":[\"mid-cheap\"]}", 0, 0, false),
         names, sizeof(names));
    assert_string_equal(names, "small,mid,big");
    assert_int_equal(w->plan.first_token_deadline_ms, 3000);
    assert_int_equal(w->plan.hedge_after_ms, 669);
    /* Without hedging: at 3000 ms, mid can still make it when started by
     * 1946 ms, later than 516 * 2 + 200 = 1232: the deadline. */
    expect_times(w, ask("auto", "{\"max_latency_ms\":3000,"
                "\"deny\":[\"mid-cheap\"]}", 0, 0, false), 1946, 0);
    /* At 2000 ms mid could not: wait for small until the target. */
    expect_times(w, ask("auto", NULL, 0, 0, false), 2000, 0);
    /* mid-cheap at 2860 of 3000: a hedge at 2860 * 1.2 + 50 = 3482 is
     * past mid's rescue time (1946: a hedge never starts before the
     * primary is late), too late for mid to make the target: none. The
     * deadline is past the target too: 2860 * 2 + 200 = 5920 (a late
     * primary beats a fallback started from nothing). */
    expect_times(w, ask("auto", "{\"min_quality_tier\":2,\"max_latency_ms\":"
                "3000,\"hedge\":true}", 0, 0, false), 5920, 0);
    /* With 5000 ms mid can still make it from 3482 (rescue 3946): the
     * hedge is on, and the primary waits at least to the target: here to
     * its own margin, 5920. */
    expect_times(w, ask("auto", "{\"min_quality_tier\":2,\"max_latency_ms\":"
                "5000,\"hedge\":true}", 0, 0, false), 5920, 3482);
    /* A stream with a first-token target of 250: mid's 200 ms; the next,
     * mid-cheap, needs 300 ms: no hedge can help; mid keeps its margin,
     * 200 * 2 + 200 = 600. */
    expect_times(w, ask("auto", "{\"min_quality_tier\":2,\"max_ttft_ms\":"
                "250,\"hedge\":true}", 0, 0, true), 600, 0);
    /* With 400 ms the cheaper mid-cheap (300) goes first; mid can make
     * the target when started by 200 ms, before mid-cheap is late (410):
     * no hedge either, and the deadline 300 * 2 + 200 = 800. */
    plan(w, ask("auto", "{\"min_quality_tier\":2,\"max_ttft_ms\":"
                "400,\"hedge\":true}", 0, 0, true),
         names, sizeof(names));
    assert_string_equal(names, "mid-cheap,mid,big");
    assert_int_equal(w->plan.hedge_after_ms, 0);
    assert_int_equal(w->plan.first_token_deadline_ms, 800);
    /* Over target: the prediction plus the margin, 516 * 2 + 200. */
    plan(w, ask("small", "{\"max_latency_ms\":100}", 0, 0, false), names,
         sizeof(names));
    assert_int_equal(w->plan.first_token_deadline_ms, 1232);
    /* A lone candidate has no deadline: there is nothing to move to. */
    plan(w, ask("big", NULL, 0, 0, false), names, sizeof(names));
    assert_int_equal(w->plan.first_token_deadline_ms, 0);
}

/* ---------------------------------------------------------------------
 * Feedback: latency and circuits
 * ------------------------------------------------------------------- */

static void test_a_model_seen_slow_loses_its_place(void **state)
{
    struct world *w = *state;
    char names[256];
    for (int i = 0; i < 4; i++) {
        struct routing_obs o = {.kind = ROUTING_OBS_OK, .ttft_us = 1500000,
                                .total_us = 2500000, .completion_tokens = 256,
                                .prompt_tokens = 100, .stream = true};
        routing_observe("small", &o);
    }
    assert_int_equal(plan(w, ask("auto", NULL, 0, 0, false), names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "mid,small,mid-cheap,big");
    assert_true(w->plan.cand[1].total_ms > 2000);
}

/* The candidate of the last plan called name. */
static const struct routing_candidate *cand_of(const struct world *w,
                                               const char *name)
{
    for (size_t i = 0; i < w->plan.ncand; i++) {
        if (strcmp(w->plan.cand[i].model->name, name) == 0) {
            return &w->plan.cand[i];
        }
    }
    fail_msg("no candidate %s", name);
    return NULL;
}

static void test_a_model_without_answers_borrows_everyones_lengths(
    void **state)
{
    struct world *w = *state;
    char names[256];
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_int_equal(cand_of(w, "mid-cheap")->out_tokens, 256); /* prior */
    for (int i = 0; i < 10; i++) {
        answer("small", "p1", ROUTING_OBS_OK, 0); /* 50 tokens each */
    }
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    /* Length is the request's more than the model's: mid-cheap, never
     * chosen, predicts from small's answers, not from its prior. */
    assert_int_equal(cand_of(w, "mid-cheap")->out_tokens, 50);
    assert_int_equal(cand_of(w, "big")->out_tokens, 50);
    /* Capped answers teach no length. */
    routing_table_reset();
    for (int i = 0; i < 10; i++) {
        struct routing_obs o = {.kind = ROUTING_OBS_OK, .ttft_us = 100000,
                                .total_us = 400000, .completion_tokens = 50,
                                .prompt_tokens = 100, .max_tokens_set = true,
                                .stream = true, .provider = "p1"};
        routing_observe("small", &o);
    }
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_int_equal(cand_of(w, "mid-cheap")->out_tokens, 256);
}

/* small: 30 first tokens at 100 ms, 2 at 1900: p90 100 ms, p97 1900. */
static void make_small_a_near_thing(void)
{
    for (int i = 0; i < 32; i++) {
        struct routing_obs o = {.kind = ROUTING_OBS_OK,
                                .ttft_us = i % 16 == 3 ? 1900000 : 100000,
                                .total_us = 2000000, .completion_tokens = 50,
                                .prompt_tokens = 100, .stream = true,
                                .provider = "p1"};
        routing_observe("small", &o);
    }
}

static void test_a_near_thing_gives_way_to_a_safe_one_if_cheap_enough(
    void **state)
{
    struct world *w = *state;
    char names[256];
    make_small_a_near_thing();
    const char *r = "{\"max_ttft_ms\":1000}";
    /* mid-cheap (ttft 300, safe) costs 4.4 times small: over the 50%
     * that latency.safe_extra_pct allows by default. */
    plan(w, ask("auto", r, 0, 0, true), names, sizeof(names));
    assert_string_equal(names, "small,mid-cheap,mid,big");
    w->cfg.routing.safe_extra_pct = 500;
    plan(w, ask("auto", r, 0, 0, true), names, sizeof(names));
    assert_string_equal(names, "mid-cheap,small,mid,big");
    char why[512];
    routing_explain(&w->plan, why, sizeof(why));
    assert_non_null(strstr(why, "; small ttft 100ms $0.0000090: near the "
                                "target; "));
    /* 0 turns it off; so does a safe primary (p97 1000 ms allowed). */
    w->cfg.routing.safe_extra_pct = 0;
    plan(w, ask("auto", r, 0, 0, true), names, sizeof(names));
    assert_string_equal(names, "small,mid-cheap,mid,big");
    w->cfg.routing.safe_extra_pct = 500;
    plan(w, ask("auto", "{\"max_ttft_ms\":2000}", 0, 0, true), names,
         sizeof(names));
    assert_string_equal(names, "small,mid-cheap,mid,big");
}

static void test_a_stale_slow_cheaper_model_is_explored_with_a_rescue(
    void **state)
{
    struct world *w = *state;
    w->cfg.routing.explore_after_ms = 10000;
    char names[256];
    char h[512];
    struct routing_obs slow = {.kind = ROUTING_OBS_OK, .ttft_us = 1500000,
                               .total_us = 2500000, .completion_tokens = 256,
                               .prompt_tokens = 100, .stream = true};
    for (int i = 0; i < 4; i++) {
        routing_observe("small", &slow);
    }
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid,small,mid-cheap,big");
    /* Unmeasured for 10 s: small goes first on its prior (516 ms), given
     * up at 946 ms, when mid (1054 ms) can still make 2000. */
    fake_now_us += 10000001;
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,mid-cheap,big");
    assert_true(w->plan.cand[0].explore);
    assert_false(w->plan.target_missed);
    assert_int_equal(w->plan.first_token_deadline_ms, 946);
    routing_explain(&w->plan, h, sizeof(h));
    assert_non_null(strstr(h, "chosen=small 516ms $0.000025 explore; "
                              "mid 1054ms $0.00043: rescue while exploring "
                              "small"));
    /* Once per period. */
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid,small,mid-cheap,big");
    /* Its answer, after the silence, replaces what was known. */
    struct routing_obs fast = slow;
    fast.ttft_us = 150000;
    fast.total_us = 500000;
    routing_observe("small", &fast);
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,mid-cheap,big");
    assert_false(w->plan.cand[0].explore);
}

static void test_open_circuits_are_skipped_then_probed(void **state)
{
    struct world *w = *state;
    char names[256];
    char h[512];
    for (int i = 0; i < 5; i++) {
        answer("small", "p1", ROUTING_OBS_5XX, 0);
    }
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid,mid-cheap,big");
    routing_explain(&w->plan, h, sizeof(h));
    assert_non_null(strstr(h, "small 516ms $0.000025: circuit open"));
    /* After the open period one plan probes it, the next does not. */
    fake_now_us += 10000001;
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,mid-cheap,big");
    assert_true(w->plan.cand[0].probe);
    routing_explain(&w->plan, h, sizeof(h));
    assert_non_null(strstr(h, "chosen=small 516ms $0.000025 probe"));
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid,mid-cheap,big");
    routing_explain(&w->plan, h, sizeof(h));
    assert_non_null(strstr(h, "small 516ms $0.000025: circuit half-open"));
    /* The probe answers: closed again. */
    answer("small", "p1", ROUTING_OBS_OK, 0);
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,mid-cheap,big");
    assert_false(w->plan.cand[0].probe);
}

static void test_a_half_open_fallback_does_not_hold_the_probe(void **state)
{
    struct world *w = *state;
    char names[256];
    for (int i = 0; i < 5; i++) {
        answer("big", "p2", ROUTING_OBS_5XX, 0);
    }
    fake_now_us += 10000001;
    /* Half-open big is a fallback here: it stays in the order, but
     * without the probe slot, which it would most likely never use. */
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,mid-cheap,big");
    assert_false(w->plan.cand[3].probe);
    /* So the next plan that needs big as its primary gets the probe. */
    plan(w, ask("auto", "{\"min_quality_tier\":3}", 0, 0, false), names,
         sizeof(names));
    assert_string_equal(names, "big");
    assert_true(w->plan.cand[0].probe);
}

/* The state routing_breakers_list() gives the breaker of name, or -1. */
static int breaker_state(bool provider, const char *name)
{
    struct routing_breaker_info info[64];
    size_t n = routing_breakers_list(info, 64);
    for (size_t i = 0; i < n; i++) {
        if (info[i].provider == provider && strcmp(info[i].name, name) == 0) {
            return info[i].state;
        }
    }
    return -1;
}

/* Occurrences of needle in the file at fd. */
static int count_in(int fd, const char *needle)
{
    char text[8192];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    int k = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) {
        k++;
    }
    return k;
}

static void test_breakers_are_listed_and_each_change_logged_once(void **s)
{
    struct world *w = *s;
    char names[256];
    FILE *f = tmpfile();
    log_set_fd(fileno(f));
    for (int i = 0; i < 5; i++) {
        answer("small", "p1", ROUTING_OBS_5XX, 0);
    }
    assert_int_equal(breaker_state(false, "small"), 0); /* not asked yet */
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_int_equal(breaker_state(false, "small"), 1);
    assert_true(breaker_state(true, "p1") >= 0);
    fake_now_us += 10000001;
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_int_equal(breaker_state(false, "small"), 2);
    answer("small", "p1", ROUTING_OBS_OK, 0);
    assert_int_equal(breaker_state(false, "small"), 0);
    log_set_fd(2);
    assert_int_equal(count_in(fileno(f), "\"circuit breaker opened\",\"model"
                                        "\":\"small\""), 1);
    assert_int_equal(count_in(fileno(f), "\"circuit breaker half-open\","
                                        "\"model\":\"small\""), 1);
    assert_int_equal(count_in(fileno(f), "\"circuit breaker closed\",\"model"
                                        "\":\"small\",\"from\":\"half_open"
                                        "\""), 1);
    fclose(f);
}

static void test_a_retry_after_closes_the_model_until_it_passes(
    void **state)
{
    struct world *w = *state;
    char names[256];
    answer("small", "p1", ROUTING_OBS_429, 30);
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid,mid-cheap,big");
    fake_now_us += 29000000;
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid,mid-cheap,big");
    fake_now_us += 1000001;
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,mid-cheap,big");
}

static void test_a_failing_provider_takes_its_models_out(void **state)
{
    struct world *w = *state;
    char names[256];
    /* Connection failures on two models of p1 add up on p1. */
    for (int i = 0; i < 5; i++) {
        answer(i % 2 ? "tiny" : "small", "p1", ROUTING_OBS_CONNECT, 0);
    }
    plan(w, ask("auto", "{\"min_quality_tier\":0}", 0, 0, false), names,
         sizeof(names));
    assert_string_equal(names, "mid,mid-cheap,big");
    /* Half-open: one plan probes the provider, the next waits. */
    fake_now_us += 10000001;
    plan(w, ask("auto", "{\"min_quality_tier\":0}", 0, 0, false), names,
         sizeof(names));
    assert_string_equal(names, "tiny,small,mid,mid-cheap,big");
    assert_true(w->plan.cand[0].probe);
    plan(w, ask("auto", "{\"min_quality_tier\":0}", 0, 0, false), names,
         sizeof(names));
    assert_string_equal(names, "mid,mid-cheap,big");
    /* 429s are a model's, not its provider's. */
    routing_table_reset();
    for (int i = 0; i < 5; i++) {
        answer("small", "p1", ROUTING_OBS_429, 0);
    }
    plan(w, ask("auto", "{\"min_quality_tier\":0}", 0, 0, false), names,
         sizeof(names));
    assert_string_equal(names, "tiny,mid,mid-cheap,big");
}

static void test_when_every_circuit_is_open_all_are_tried(void **state)
{
    struct world *w = *state;
    char names[256];
    for (int i = 0; i < 5; i++) {
        answer("small", NULL, ROUTING_OBS_TIMEOUT, 0);
        answer("mid", NULL, ROUTING_OBS_TIMEOUT, 0);
        answer("big", NULL, ROUTING_OBS_TIMEOUT, 0);
    }
    plan(w, ask("small", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,big");
    const char *allow[] = {"small", "mid", "big"};
    struct routing_key key = {.allow = allow, .nallow = 3,
                              .min_quality_tier = -1, .hedge = -1};
    w->key = &key;
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,big");
}

static void test_waits_past_their_prediction_make_a_model_slower(
    void **state)
{
    struct world *w = *state;
    char names[256];
    /* Two non-stream attempts of small (predicted 516 ms) still waiting
     * at 2.1 s: at least 4.07 times slower, 2100 ms > 2000. */
    uint32_t a = routing_wait_begin("small", 0, 516);
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,mid-cheap,big");
    fake_now_us += 2100000;
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,mid-cheap,big"); /* one alone */
    fake_now_us -= 2100000;
    uint32_t b = routing_wait_begin("small", 0, 516);
    fake_now_us += 2100000;
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid,small,mid-cheap,big");
    assert_in_range(cand_of(w, "small")->total_ms, 2090, 2100);
    /* Their ends (with their answers) take the evidence back. */
    routing_wait_end("small", a);
    struct routing_obs o = {.kind = ROUTING_OBS_OK, .total_us = 400000,
                            .completion_tokens = 50, .prompt_tokens = 100,
                            .provider = "p1", .wait = b};
    routing_observe("small", &o);
    plan(w, ask("auto", NULL, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "small,mid,mid-cheap,big");
    /* Streams waiting for their first token: small predicted 150 ms to
     * it; two at 1.2 s make it 8 times later, over a 1000 ms target. */
    routing_wait_begin("small", 150, 516);
    routing_wait_begin("small", 150, 516);
    fake_now_us += 1200000;
    plan(w, ask("auto", "{\"max_ttft_ms\":1000}", 0, 0, true), names,
         sizeof(names));
    assert_string_equal(names, "mid-cheap,mid,big,small");
    assert_int_equal(cand_of(w, "small")->ttft_ms, 1200);
    /* latency.overdue_waits 0: waits are not weighed. */
    w->cfg.routing.overdue_waits = 0;
    plan(w, ask("auto", "{\"max_ttft_ms\":1000}", 0, 0, true), names,
         sizeof(names));
    assert_string_equal(names, "small,mid-cheap,mid,big");
}

static void test_a_first_token_is_learned_when_it_comes(void **state)
{
    struct world *w = *state;
    char names[256];
    for (int i = 0; i < 4; i++) {
        uint32_t t = routing_wait_begin("small", 150, 516);
        routing_wait_first("small", t, 1500000, 100);
        struct routing_obs o = {.kind = ROUTING_OBS_OK, .ttft_us = 1500000,
                                .ttft_learned = true, .total_us = 2000000,
                                .completion_tokens = 50, .prompt_tokens = 100,
                                .stream = true, .provider = "p1", .wait = t};
        if (i < 2) {
            routing_observe("small", &o); /* the others still stream */
        }
    }
    plan(w, ask("auto", "{\"max_ttft_ms\":1000}", 0, 0, true), names,
         sizeof(names));
    assert_string_equal(names, "mid-cheap,mid,big,small");
    assert_int_equal(cand_of(w, "small")->ttft_ms, 1500);
    /* Counted once: four first tokens, not six. */
    assert_int_equal(routing_table_get('m', "small")->lat.ttft_us[0].n, 4);
}

static void test_a_plan_that_misses_anyway_takes_a_long_shot(void **state)
{
    struct world *w = *state;
    char names[256];
    char h[512];
    const char *r = "{\"min_quality_tier\":2,\"max_latency_ms\":1500}";
    for (int i = 0; i < 5; i++) {
        answer("mid", NULL, ROUTING_OBS_5XX, 0); /* its own breaker */
    }
    /* mid (1054 ms) is the only one that meets 1500, and its circuit is
     * open: it goes first anyway, as its breaker's probe; mid-cheap,
     * the fastest of the others, is the rescue. */
    plan(w, ask("auto", r, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid,mid-cheap,big");
    assert_true(w->plan.cand[0].long_shot);
    assert_false(w->plan.target_missed);
    assert_int_equal(w->plan.first_token_deadline_ms, 1054 * 2 + 200);
    routing_explain(&w->plan, h, sizeof(h));
    assert_non_null(strstr(h, "chosen=mid 1054ms $0.00043 long shot; "
                              "mid-cheap 2860ms $0.00011: 2860ms > 1500ms"));
    /* One at a time: the next plan misses without it. */
    plan(w, ask("auto", r, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid-cheap,big");
    assert_true(w->plan.target_missed);
    routing_explain(&w->plan, h, sizeof(h));
    assert_non_null(strstr(h, "mid 1054ms $0.00043: circuit half-open"));
    /* Its success closes the breaker. */
    answer("mid", NULL, ROUTING_OBS_OK, 0);
    plan(w, ask("auto", r, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid,mid-cheap,big");
    assert_false(w->plan.cand[0].long_shot);
    /* A plan that meets its target takes none; nor does one against an
     * upstream Retry-After. */
    for (int i = 0; i < 5; i++) {
        answer("mid", NULL, ROUTING_OBS_5XX, 0);
    }
    plan(w, ask("auto", "{\"min_quality_tier\":2,\"max_latency_ms\":3000}",
                0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid-cheap,big");
    routing_table_reset();
    answer("mid", NULL, ROUTING_OBS_429, 30);
    plan(w, ask("auto", r, 0, 0, false), names, sizeof(names));
    assert_string_equal(names, "mid-cheap,big");
}

static void test_a_much_cheaper_near_miss_is_a_bargain(void **state)
{
    struct world *w = *state;
    char names[256];
    char h[512];
    /* mid-cheap's first tokens: 28 at 300 ms, 4 at 1500: p90 1500 ms,
     * over a 1000 ms target; p85 300 ms, within. mid meets it (200 ms,
     * prior) at 3.9 times mid-cheap's price: mid-cheap goes first. */
    for (int i = 0; i < 32; i++) {
        struct routing_obs o = {.kind = ROUTING_OBS_OK,
                                .ttft_us = i % 8 == 5 ? 1500000 : 300000,
                                .total_us = 2000000, .completion_tokens = 50,
                                .prompt_tokens = 100, .max_tokens_set = true,
                                .stream = true, .provider = "p2"};
        routing_observe("mid-cheap", &o);
    }
    const char *r = "{\"min_quality_tier\":2,\"max_ttft_ms\":1000}";
    plan(w, ask("auto", r, 0, 0, true), names, sizeof(names));
    assert_string_equal(names, "mid-cheap,mid,big");
    assert_true(w->plan.cand[0].bargain);
    assert_false(w->plan.target_missed);
    routing_explain(&w->plan, h, sizeof(h));
    assert_non_null(strstr(h, "chosen=mid-cheap ttft 1500ms $0.00011 "
                              "bargain; mid ttft 200ms $0.00043: dearer"));
    /* Not at 4 times (latency.bargain_ratio_pct 400), nor when 0: then
     * big, which meets 1000 ms too, comes before the slow mid-cheap. */
    w->cfg.routing.bargain_ratio_pct = 400;
    plan(w, ask("auto", r, 0, 0, true), names, sizeof(names));
    assert_string_equal(names, "mid,big,mid-cheap");
    w->cfg.routing.bargain_ratio_pct = 0;
    plan(w, ask("auto", r, 0, 0, true), names, sizeof(names));
    assert_string_equal(names, "mid,big,mid-cheap");
    /* Nor when it misses at latency.bargain_percentile too. */
    w->cfg.routing.bargain_ratio_pct = 300;
    w->cfg.routing.bargain_percentile = 90;
    plan(w, ask("auto", r, 0, 0, true), names, sizeof(names));
    assert_string_equal(names, "mid,big,mid-cheap");
}

/* docs/routing.md, "Worked example", as it is written there. */
static void test_the_worked_example_of_the_docs_holds(void **state)
{
    (void)state;
    struct provider_cfg prov[3] = {{.name = "gemini"}, {.name = "mistral"},
                                   {.name = "openai"}};
    struct model_cfg m[3] = {
        {.name = "gemini-flash-lite", .provider = &prov[0], .tier = 2,
         .input_nusd_per_mtok = 75000000, .output_nusd_per_mtok = 300000000,
         .prior_ttft_ms = 350, .prior_tokens_per_s = 250,
         .context_tokens = 1048576},
        {.name = "mistral-small", .provider = &prov[1], .tier = 2,
         .input_nusd_per_mtok = 100000000, .output_nusd_per_mtok = 300000000,
         .prior_ttft_ms = 300, .prior_tokens_per_s = 150,
         .context_tokens = 32768},
        {.name = "gpt-4o-mini", .provider = &prov[2], .tier = 3,
         .input_nusd_per_mtok = 150000000, .output_nusd_per_mtok = 600000000,
         .prior_ttft_ms = 500, .prior_tokens_per_s = 90,
         .context_tokens = 128000},
    };
    struct config cfg = {.models = m, .nmodels = 3,
                         .default_max_latency_ms = 2000,
                         .default_min_quality_tier = 1};
    config_routing_knobs_default(&cfg.routing);
    /* Its last eight streamed answers: 900 ms to the first token, 8 ms a
     * token. */
    for (int i = 0; i < 8; i++) {
        struct routing_obs o = {.kind = ROUTING_OBS_OK, .ttft_us = 900000,
                                .total_us = 900000 + 100 * 8000,
                                .completion_tokens = 100,
                                .prompt_tokens = 1200, .max_tokens_set = true,
                                .stream = true, .provider = "gemini"};
        routing_observe("gemini-flash-lite", &o);
    }
    struct routing_request rq = {
        .model = "auto",
        .routing = str_from("{\"max_latency_ms\": 1650, "
                            "\"min_quality_tier\": 2, \"hedge\": true}"),
        .prompt_tokens = 1200, .max_tokens = 100};
    struct arena a;
    arena_init(&a, 4096);
    struct routing_plan p;
    assert_int_equal(routing_plan(&cfg, &rq, NULL, &a, &p), RL_OK);
    assert_int_equal(p.norder, 3);
    assert_string_equal(p.order[0]->name, "mistral-small");
    assert_string_equal(p.order[1]->name, "gpt-4o-mini");
    assert_string_equal(p.order[2]->name, "gemini-flash-lite");
    assert_int_equal(p.first_token_deadline_ms, 967 * 2 + 200);
    assert_int_equal(p.hedge_after_ms, 0);
    assert_false(p.target_missed);
    char h[512];
    routing_explain(&p, h, sizeof(h));
    assert_string_equal(h, "chosen=mistral-small 967ms $0.00015; "
                           "gpt-4o-mini 1612ms $0.00024: dearer; "
                           "gemini-flash-lite 1700ms $0.00012: 1700ms > "
                           "1650ms");
    arena_free(&a);
}

/* Workers plan and observe at once on the shared table (and create its
 * entries at once): nothing is lost or torn. */
struct hammer {
    struct world *w;
    int id;
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    char name[32];
    struct arena a;
    arena_init(&a, 4096);
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "new-%d", i % 50); /* created racing */
        struct routing_obs o = {.kind = i % 7 ? ROUTING_OBS_OK
                                              : ROUTING_OBS_5XX,
                                .ttft_us = 100000, .total_us = 300000,
                                .completion_tokens = 40, .prompt_tokens = 100,
                                .stream = true, .provider = "p2"};
        routing_observe(i % 2 ? name : "mid", &o);
        struct routing_request rq = {.model = "auto",
                                     .routing = str_from("{}"),
                                     .prompt_tokens = 100};
        struct routing_plan p;
        assert_int_equal(routing_plan(&h->w->cfg, &rq, NULL, &a, &p), RL_OK);
        assert_true(p.norder > 0);
    }
    arena_free(&a);
    return NULL;
}

static void test_workers_share_the_table_safely(void **state)
{
    struct world *w = *state;
    routing_clock_set(NULL); /* the real clock: threads read it */
    pthread_t t[4];
    struct hammer h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){w, i};
        assert_int_equal(pthread_create(&t[i], NULL, hammer_run, &h[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    for (int i = 0; i < 50; i++) {
        char name[32];
        snprintf(name, sizeof(name), "new-%d", i);
        struct routing_entry *e = routing_table_get('m', name);
        assert_non_null(e);
        assert_ptr_equal(e, routing_table_get('m', name));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_the_choice_follows_targets_tiers_and_prices),
        T(test_each_candidate_has_predictions_and_a_reason),
        T(test_explanations_name_fit_lists_and_ttft),
        T(test_the_explanation_is_cut_at_a_whole_item),
        T(test_bad_routing_values_are_the_clients_mistake),
        T(test_an_unknown_name_is_model_not_found),
        T(test_a_prompt_that_fits_nothing_is_refused),
        T(test_a_key_allow_list_limits_auto_and_fallbacks),
        T(test_a_key_that_allows_no_configured_model_is_forbidden),
        T(test_the_key_defaults_apply_unless_the_request_says),
        T(test_the_deadline_leaves_the_fallback_time_or_waits_to_target),
        T(test_a_model_seen_slow_loses_its_place),
        T(test_a_model_without_answers_borrows_everyones_lengths),
        T(test_a_near_thing_gives_way_to_a_safe_one_if_cheap_enough),
        T(test_a_stale_slow_cheaper_model_is_explored_with_a_rescue),
        T(test_open_circuits_are_skipped_then_probed),
        T(test_a_half_open_fallback_does_not_hold_the_probe),
        T(test_breakers_are_listed_and_each_change_logged_once),
        T(test_a_retry_after_closes_the_model_until_it_passes),
        T(test_a_failing_provider_takes_its_models_out),
        T(test_when_every_circuit_is_open_all_are_tried),
        T(test_waits_past_their_prediction_make_a_model_slower),
        T(test_a_first_token_is_learned_when_it_comes),
        T(test_a_plan_that_misses_anyway_takes_a_long_shot),
        T(test_a_much_cheaper_near_miss_is_a_bargain),
        T(test_the_worked_example_of_the_docs_holds),
        T(test_workers_share_the_table_safely),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
