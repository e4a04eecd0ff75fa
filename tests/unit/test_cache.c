/*
 * test_cache.c - the exact cache's key (cache_normalise, cache_key_make)
 * and its in-process LRU (bound in bytes, TTL with an injected clock).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cache/cache.h"
#include "cache/internal.h"
#include "config/config.h"

static bool same_key(const char *a, const char *b)
{
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    config_cache_knobs_default(&cfg.cache);
    cfg.cache.enabled = true;
    struct cache_key ka, kb;
    assert_true(cache_key_make(&cfg, (struct str){a, strlen(a)}, "m", "k",
                               false, &ka));
    assert_true(cache_key_make(&cfg, (struct str){b, strlen(b)}, "m", "k",
                               false, &kb));
    return strcmp(ka.name, kb.name) == 0;
}

#define BASE "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void test_reordered_and_irrelevant_fields_give_one_key(void **s)
{
    (void)s;
    assert_true(same_key("{" BASE ",\"user\":\"a\",\"stream\":true}",
                         "{\"stream\":false,\"user\":\"b\"," BASE "}"));
    assert_true(same_key("{" BASE ",\"temperature\":0.3}",
                         "{" BASE ",\"temperature\":0.30001}"));
    assert_true(same_key("{" BASE "}",
                         "{\"model\":\"m\",\"messages\":[{\"content\":"
                         "[{\"type\":\"text\",\"text\":\"hi\"}],"
                         "\"role\":\"user\"}]}"));
}

static void test_each_answer_changing_field_changes_the_key(void **s)
{
    (void)s;
    const char *v[] = {
        "\"temperature\":0.2", "\"top_p\":0.5", "\"max_tokens\":5",
        "\"n\":2", "\"seed\":1", "\"stop\":[\"x\"]",
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]",
        "\"tool_choice\":\"none\"",
        "\"response_format\":{\"type\":\"json_object\"}",
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char b[512];
        snprintf(b, sizeof(b), "{" BASE ",%s}", v[i]);
        assert_false(same_key("{" BASE "}", b));
    }
    assert_false(same_key("{" BASE "}",
                          "{\"model\":\"m\",\"messages\":[{\"role\":"
                          "\"system\",\"content\":\"hi\"}]}"));
}

static void test_mode_off_and_hot_temperature_skip_the_cache(void **s)
{
    (void)s;
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    config_cache_knobs_default(&cfg.cache);
    cfg.cache.enabled = true;
    struct cache_key k;
    const char *off = "{" BASE ",\"cache\":{\"mode\":\"off\"}}";
    const char *hot = "{" BASE ",\"temperature\":1.5}";
    const char *hot_exact = "{" BASE ",\"temperature\":1.5,\"cache\":"
                            "{\"mode\":\"exact\",\"ttl\":9}}";
    assert_false(cache_key_make(&cfg, (struct str){off, strlen(off)}, "m",
                                "k", true, &k));
    assert_false(cache_key_make(&cfg, (struct str){hot, strlen(hot)}, "m",
                                "k", false, &k));
    /* The key's opt-in caches it, as the request's own mode does. */
    assert_true(cache_key_make(&cfg, (struct str){hot, strlen(hot)}, "m",
                               "k", true, &k));
    assert_true(cache_key_make(&cfg, (struct str){hot_exact,
                                                  strlen(hot_exact)},
                               "m", "k", false, &k));
    assert_int_equal(k.ttl_s, 9);
    assert_non_null(strstr(k.name, "relay:{c:k}:"));
}

static uint64_t fake_now;

static uint64_t now_ms(void *ctx)
{
    (void)ctx;
    return fake_now;
}

static void test_lru_keeps_its_byte_bound_and_expires(void **s)
{
    (void)s;
    fake_now = 1000;
    struct cache_lru *l = cache_lru_new(1000, now_ms, NULL);
    char v[300];
    memset(v, 'x', sizeof(v));
    cache_lru_put(l, "a", (struct str){v, sizeof(v)}, 50);
    cache_lru_put(l, "b", (struct str){v, sizeof(v)}, 50);
    assert_int_equal(cache_lru_get(l, "a").len, 300); /* a: most recent */
    cache_lru_put(l, "c", (struct str){v, sizeof(v)}, 50);
    assert_true(cache_lru_bytes(l) <= 1000);
    assert_int_equal(cache_lru_get(l, "b").len, 0); /* evicted */
    assert_int_equal(cache_lru_get(l, "a").len, 300);
    fake_now += 50;
    assert_int_equal(cache_lru_get(l, "a").len, 0); /* expired */
    cache_lru_free(l);
}

static void on_chunk(void *ctx, struct str chunk)
{
    struct buf *all = ctx;
    buf_append(all, chunk.p, chunk.len);
    buf_append(all, "\n", 1);
}

/* A cached completion whose choice has no finish_reason (a value in Redis
 * that Relay did not write) replays "stop"; the default it made leaked
 * (fuzz_redis found it; ASan's leak check in make asan-unit). */
static void test_a_choice_without_finish_reason_replays_stop(void **s)
{
    (void)s;
    const char *c = "{\"object\":\"chat.completion\",\"choices\":[{\"index\""
                    ":0,\"message\":{\"role\":\"assistant\",\"content\":"
                    "\"hi\"}}]}";
    struct buf all;
    buf_init(&all, 1 << 16);
    assert_true(cache_replay((struct str){c, strlen(c)}, on_chunk, &all));
    assert_non_null(strstr(all.p, "\"finish_reason\":\"stop\""));
    buf_free(&all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reordered_and_irrelevant_fields_give_one_key),
        cmocka_unit_test(test_each_answer_changing_field_changes_the_key),
        cmocka_unit_test(test_mode_off_and_hot_temperature_skip_the_cache),
        cmocka_unit_test(test_lru_keeps_its_byte_bound_and_expires),
        cmocka_unit_test(test_a_choice_without_finish_reason_replays_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
