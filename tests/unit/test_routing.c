/*
 * test_routing.c - unit tests of src/routing/routing.c: which models a
 * request tries, in which order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "routing/routing.h"

/* Five models: name, tier, input and output price (nUSD per Mtok). */
struct world {
    struct provider_cfg prov;
    struct model_cfg models[5];
    struct model_cfg *fb_small[2];
    struct config cfg;
    struct arena arena;
    const struct routing_key *key; /* the caller's key, or NULL */
};

static int setup(void **state)
{
    static struct world w;
    memset(&w, 0, sizeof(w));
    w.prov.name = "p";
    struct {
        const char *name;
        int tier;
        int64_t in;
        int64_t out;
    } rows[] = {
        {"small", 1, 50000000, 80000000},        /* 0.13 */
        {"big", 3, 3000000000LL, 15000000000LL}, /* 18 */
        {"mid", 2, 500000000, 1500000000},       /* 2 */
        {"mid-cheap", 2, 100000000, 400000000},  /* 0.5 */
        {"tiny", 0, 10000000, 10000000},         /* 0.02 */
    };
    for (int i = 0; i < 5; i++) {
        w.models[i].name = (char *)rows[i].name;
        w.models[i].provider = &w.prov;
        w.models[i].tier = rows[i].tier;
        w.models[i].input_nusd_per_mtok = rows[i].in;
        w.models[i].output_nusd_per_mtok = rows[i].out;
    }
    w.fb_small[0] = &w.models[2]; /* mid */
    w.fb_small[1] = &w.models[1]; /* big */
    w.models[0].fallbacks = w.fb_small;
    w.models[0].nfallbacks = 2;
    w.cfg.models = w.models;
    w.cfg.nmodels = 5;
    w.cfg.default_min_quality_tier = 1;
    arena_init(&w.arena, 1024);
    *state = &w;
    return 0;
}

static int teardown(void **state)
{
    struct world *w = *state;
    arena_free(&w->arena);
    return 0;
}

/* Plans model with routing (JSON text or NULL); returns the names joined
 * with commas into out. */
static enum rl_err plan(struct world *w, const char *model,
                        const char *routing, char *out, size_t outlen)
{
    struct str r = routing ? str_from(routing) : (struct str){"", 0};
    const struct model_cfg *const *p = NULL;
    size_t n = 0;
    enum rl_err err = routing_plan(&w->cfg, model, r, w->key, &w->arena, &p,
                                   &n);
    out[0] = '\0';
    for (size_t i = 0; err == RL_OK && i < n; i++) {
        size_t len = strlen(out);
        snprintf(out + len, outlen - len, "%s%s", i ? "," : "", p[i]->name);
    }
    return err;
}

static void test_a_named_model_comes_first_then_its_fallbacks(void **state)
{
    struct world *w = *state;
    char names[256];
    assert_int_equal(plan(w, "small", NULL, names, sizeof(names)), RL_OK);
    assert_string_equal(names, "small,mid,big");
    /* Routing preferences do not apply to a named model. */
    assert_int_equal(plan(w, "small", "{\"min_quality_tier\":3}", names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "small,mid,big");
}

static void test_a_named_model_without_fallbacks_is_alone(void **state)
{
    struct world *w = *state;
    char names[256];
    assert_int_equal(plan(w, "big", NULL, names, sizeof(names)), RL_OK);
    assert_string_equal(names, "big");
    /* A tier-0 model can still be asked for by name. */
    assert_int_equal(plan(w, "tiny", NULL, names, sizeof(names)), RL_OK);
    assert_string_equal(names, "tiny");
}

static void test_an_unknown_name_is_model_not_found(void **state)
{
    struct world *w = *state;
    char names[256];
    assert_int_equal(plan(w, "gpt-5", NULL, names, sizeof(names)),
                     RL_E_MODEL_NOT_FOUND);
    assert_int_equal(plan(w, "", NULL, names, sizeof(names)),
                     RL_E_MODEL_NOT_FOUND);
    assert_int_equal(plan(w, "Small", NULL, names, sizeof(names)),
                     RL_E_MODEL_NOT_FOUND);
    assert_int_equal(plan(w, "AUTO", NULL, names, sizeof(names)),
                     RL_E_MODEL_NOT_FOUND);
}

static void test_auto_orders_by_price_above_the_default_floor(void **state)
{
    struct world *w = *state;
    char names[256];
    /* Default floor 1: tiny (tier 0) is out; cheapest first. */
    assert_int_equal(plan(w, "auto", NULL, names, sizeof(names)), RL_OK);
    assert_string_equal(names, "small,mid-cheap,mid,big");
    w->cfg.default_min_quality_tier = 2;
    assert_int_equal(plan(w, "auto", "{\"max_latency_ms\":500}", names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "mid-cheap,mid,big");
    w->cfg.default_min_quality_tier = 0;
    assert_int_equal(plan(w, "auto", NULL, names, sizeof(names)), RL_OK);
    assert_string_equal(names, "tiny,small,mid-cheap,mid,big");
}

static void test_auto_takes_the_floor_from_the_request(void **state)
{
    struct world *w = *state;
    char names[256];
    assert_int_equal(plan(w, "auto", "{\"min_quality_tier\":3}", names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "big");
    assert_int_equal(plan(w, "auto", "{\"min_quality_tier\":2}", names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "mid-cheap,mid,big");
    /* The request may lower the floor below the default, too. */
    assert_int_equal(plan(w, "auto", "{\"min_quality_tier\":0}", names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "tiny,small,mid-cheap,mid,big");
    /* A floor that is not an integer is ignored: the default applies. */
    assert_int_equal(plan(w, "auto", "{\"min_quality_tier\":\"3\"}", names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "small,mid-cheap,mid,big");
}

static void test_when_no_model_meets_the_floor_the_best_still_answer(
    void **state)
{
    struct world *w = *state;
    char names[256];
    assert_int_equal(plan(w, "auto", "{\"min_quality_tier\":9}", names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "big");
    /* Two models share the best tier: both, cheapest first. */
    w->models[2].tier = 3;
    assert_int_equal(plan(w, "auto", "{\"min_quality_tier\":4}", names,
                          sizeof(names)),
                     RL_OK);
    assert_string_equal(names, "mid,big");
}

static void test_same_price_puts_the_better_tier_first(void **state)
{
    struct world *w = *state;
    char names[256];
    w->models[3].input_nusd_per_mtok = 50000000; /* mid-cheap = small */
    w->models[3].output_nusd_per_mtok = 80000000;
    assert_int_equal(plan(w, "auto", NULL, names, sizeof(names)), RL_OK);
    assert_string_equal(names, "mid-cheap,small,mid,big");
}

static void test_a_key_allow_list_limits_auto_and_fallbacks(void **state)
{
    struct world *w = *state;
    char names[256];
    const char *allow[] = {"big", "small", "tiny"};
    struct routing_key key = {.allow = allow, .nallow = 3,
                              .min_quality_tier = -1};
    w->key = &key;
    /* auto: only the allowed models above the floor (1). */
    assert_int_equal(plan(w, "auto", NULL, names, sizeof(names)), RL_OK);
    assert_string_equal(names, "small,big");
    /* small's fallbacks are mid and big: mid is not allowed. */
    assert_int_equal(plan(w, "small", NULL, names, sizeof(names)), RL_OK);
    assert_string_equal(names, "small,big");
    assert_true(routing_key_allows(&key, "tiny"));
    assert_false(routing_key_allows(&key, "mid"));
    assert_true(routing_key_allows(NULL, "mid"));
    w->key = NULL;
}

static void test_a_key_that_allows_no_configured_model_is_forbidden(
    void **state)
{
    struct world *w = *state;
    char names[256];
    const char *allow[] = {"gpt-5"};
    struct routing_key key = {.allow = allow, .nallow = 1,
                              .min_quality_tier = -1};
    w->key = &key;
    assert_int_equal(plan(w, "auto", NULL, names, sizeof(names)),
                     RL_E_FORBIDDEN);
    w->key = NULL;
}

static void test_the_key_floor_applies_unless_the_request_sets_one(
    void **state)
{
    struct world *w = *state;
    char names[256];
    struct routing_key key = {.min_quality_tier = 2};
    w->key = &key;
    assert_int_equal(plan(w, "auto", NULL, names, sizeof(names)), RL_OK);
    assert_string_equal(names, "mid-cheap,mid,big");
    assert_int_equal(plan(w, "auto", "{\"min_quality_tier\":3}", names,
                          sizeof(names)), RL_OK);
    assert_string_equal(names, "big");
    /* Nothing allowed meets the floor: the best allowed answer. */
    const char *allow[] = {"small", "tiny"};
    key = (struct routing_key){.allow = allow, .nallow = 2,
                               .min_quality_tier = 3};
    assert_int_equal(plan(w, "auto", NULL, names, sizeof(names)), RL_OK);
    assert_string_equal(names, "small");
    w->key = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_key_allow_list_limits_auto_and_fallbacks, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_key_that_allows_no_configured_model_is_forbidden, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_the_key_floor_applies_unless_the_request_sets_one, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_named_model_comes_first_then_its_fallbacks, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_named_model_without_fallbacks_is_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_an_unknown_name_is_model_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_auto_orders_by_price_above_the_default_floor, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_auto_takes_the_floor_from_the_request, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_when_no_model_meets_the_floor_the_best_still_answer, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_same_price_puts_the_better_tier_first, setup, teardown),
    };
    return cmocka_run_group_tests_name("routing", tests, NULL, NULL);
}
