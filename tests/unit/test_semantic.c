/*
 * test_semantic.c - the semantic cache's pure parts: the split of a
 * request into the embedded text and the context that must match exactly
 * (cache_semantic_split), the HNSW graph (cache_index_*: recall against
 * a flat scan, deletion, slot reuse) and the entries of every scope
 * (cache_semset_*: per-scope isolation, context, threshold, TTL, the
 * bound with the oldest evicted, dedup of an entry read back).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "cache/cache.h"
#include "cache/internal.h"

#define DIM 32

/* ---- the split --------------------------------------------------------- */

struct split {
    bool ok;
    char text[256];
    char ctx[65];
};

static struct split split_of(const char *raw)
{
    struct split s;
    memset(&s, 0, sizeof(s));
    struct buf b;
    buf_init(&b, 1 << 16);
    s.ok = cache_semantic_split((struct str){raw, strlen(raw)}, "auto>=1",
                                &b, s.ctx);
    snprintf(s.text, sizeof(s.text), "%.*s", (int)b.len, b.p ? b.p : "");
    buf_free(&b);
    return s;
}

#define USER(t) "{\"role\":\"user\",\"content\":\"" t "\"}"
#define SYS(t) "{\"role\":\"system\",\"content\":\"" t "\"}"

static void test_the_last_user_message_is_embedded_and_the_rest_is_context(
    void **st)
{
    (void)st;
    struct split a = split_of("{\"model\":\"auto\",\"messages\":["
                              SYS("be brief") ","
                              USER("What is the capital of France?") "]}");
    struct split b = split_of("{\"messages\":[" SYS("be brief") ","
                              USER("What's France's capital city?") "],"
                              "\"model\":\"auto\",\"user\":\"u1\","
                              "\"stream\":true}");
    assert_true(a.ok && b.ok);
    assert_string_equal(a.text, "What is the capital of France?");
    assert_string_equal(b.text, "What's France's capital city?");
    /* The prompt differs, the context is the same. */
    assert_string_equal(a.ctx, b.ctx);
    assert_int_equal(strlen(a.ctx), 64);
    /* Text parts are one text. */
    struct split c = split_of("{\"messages\":[" SYS("be brief") ",{\"role\":"
                              "\"user\",\"content\":[{\"type\":\"text\","
                              "\"text\":\"What is the \"},{\"type\":\"text\","
                              "\"text\":\"capital of France?\"}]}]}");
    assert_true(c.ok);
    assert_string_equal(c.text, "What is the capital of France?");
    assert_string_equal(c.ctx, a.ctx);
}

static void test_everything_else_that_changes_the_answer_changes_the_context(
    void **st)
{
    (void)st;
    const char *base = "{\"messages\":[" SYS("be brief") "," USER("hi") "]";
    struct split ref = split_of("{\"messages\":[" SYS("be brief") ","
                                USER("hi") "]}");
    const char *other[] = {
        "{\"messages\":[" SYS("be long") "," USER("hi") "]}",
        "{\"messages\":[" USER("hi") "]}",
        "{\"messages\":[" SYS("be brief") "," USER("earlier") ","
        "{\"role\":\"assistant\",\"content\":\"ok\"}," USER("hi") "]}",
        NULL,
    };
    for (size_t i = 0; other[i]; i++) {
        struct split o = split_of(other[i]);
        assert_true(o.ok);
        assert_string_not_equal(o.ctx, ref.ctx);
    }
    const char *params[] = {
        "\"temperature\":0.5", "\"max_tokens\":7", "\"top_p\":0.5",
        "\"seed\":3", "\"stop\":[\"x\"]",
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]",
        "\"response_format\":{\"type\":\"json_object\"}",
    };
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        char raw[512];
        snprintf(raw, sizeof(raw), "%s,%s}", base, params[i]);
        struct split o = split_of(raw);
        assert_true(o.ok);
        assert_string_not_equal(o.ctx, ref.ctx);
    }
    /* The model class is context too. */
    struct buf b;
    buf_init(&b, 1 << 16);
    char ctx[65];
    const char *raw = "{\"messages\":[" SYS("be brief") "," USER("hi") "]}";
    assert_true(cache_semantic_split((struct str){raw, strlen(raw)},
                                     "auto>=2", &b, ctx));
    assert_string_not_equal(ctx, ref.ctx);
    buf_free(&b);
}

static void test_requests_without_a_user_text_last_are_not_semantic(
    void **st)
{
    (void)st;
    assert_false(split_of("{\"messages\":[" USER("hi") ",{\"role\":"
                          "\"assistant\",\"content\":\"Hel\"}]}").ok);
    assert_false(split_of("{\"messages\":[{\"role\":\"tool\","
                          "\"tool_call_id\":\"c1\",\"content\":\"42\"}]}")
                     .ok);
    assert_false(split_of("{\"messages\":[{\"role\":\"user\",\"content\":"
                          "[{\"type\":\"image_url\",\"image_url\":"
                          "{\"url\":\"http://x/y.png\"}}]}]}").ok);
    assert_false(split_of("{\"messages\":[" USER("") "]}").ok);
    assert_false(split_of("{\"messages\":[]}").ok);
    assert_false(split_of("[1]").ok);
}

/* ---- vectors ------------------------------------------------------------ */

static uint64_t rng = 88172645463325252ULL;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0) - 0.5f;
}

static void unit(float *v)
{
    double s = 0;
    for (size_t i = 0; i < DIM; i++) {
        s += (double)v[i] * v[i];
    }
    for (size_t i = 0; i < DIM; i++) {
        v[i] = (float)(v[i] / sqrt(s));
    }
}

static void random_vec(float *v)
{
    for (size_t i = 0; i < DIM; i++) {
        v[i] = frand();
    }
    unit(v);
}

/* v moved a little towards noise: a "paraphrase" of v. */
static void near_vec(const float *v, float *out, float noise)
{
    for (size_t i = 0; i < DIM; i++) {
        out[i] = v[i] + noise * frand();
    }
    unit(out);
}

/* ---- the graph ---------------------------------------------------------- */

static void test_the_graph_finds_the_true_nearest_neighbour(void **st)
{
    (void)st;
    enum { N = 3000, Q = 200 };
    float *v = malloc((size_t)N * DIM * sizeof(float));
    struct cache_index *ix = cache_index_new(DIM, 7);
    for (size_t i = 0; i < N; i++) {
        random_vec(v + i * DIM);
        assert_int_equal(cache_index_add(ix, v + i * DIM), i);
    }
    assert_int_equal(cache_index_live(ix), N);
    size_t right = 0;
    for (size_t q = 0; q < Q; q++) {
        float x[DIM];
        size_t target = (q * 7919) % N;
        near_vec(v + target * DIM, x, 0.05f);
        size_t best = 0;
        float bs = -2;
        for (size_t i = 0; i < N; i++) {
            float s = cache_index_dot(x, v + i * DIM, DIM);
            if (s > bs) {
                bs = s;
                best = i;
            }
        }
        struct cache_index_hit h[4];
        size_t n = cache_index_search(ix, x, 4, 64, h);
        assert_true(n == 4);
        assert_true(h[0].sim >= h[1].sim && h[1].sim >= h[2].sim);
        right += h[0].slot == best;
        assert_true(fabsf(h[0].sim - cache_index_dot(x, v + h[0].slot * DIM,
                                                      DIM)) < 1e-5f);
    }
    /* Random 32-d data is hard for any graph; real embeddings do better
     * (bench-cache prints the recall on them). */
    printf("    recall@1 on %d random %d-d vectors: %.3f\n", N, DIM,
           (double)right / Q);
    assert_true(right >= Q * 95 / 100);
    cache_index_free(ix);
    free(v);
}

static void test_deleted_slots_are_never_returned_and_are_reused(void **st)
{
    (void)st;
    enum { N = 500 };
    float *v = malloc((size_t)N * DIM * sizeof(float));
    struct cache_index *ix = cache_index_new(DIM, 3);
    for (size_t i = 0; i < N; i++) {
        random_vec(v + i * DIM);
        cache_index_add(ix, v + i * DIM);
    }
    /* Delete the even slots, the entry point among them (slot 0 at
     * first, whatever it became). */
    for (size_t i = 0; i < N; i += 2) {
        cache_index_delete(ix, (uint32_t)i);
    }
    cache_index_delete(ix, 0); /* twice: no effect */
    assert_int_equal(cache_index_live(ix), N / 2);
    for (size_t i = 0; i < N; i += 10) {
        struct cache_index_hit h[8];
        size_t n = cache_index_search(ix, v + i * DIM, 8, 64, h);
        assert_int_equal(n, 8);
        for (size_t j = 0; j < n; j++) {
            assert_true(h[j].slot % 2 == 1);
        }
    }
    /* New vectors take the deleted slots and are found. */
    float w[DIM];
    for (size_t i = 0; i < N / 2; i++) {
        random_vec(w);
        uint32_t s = cache_index_add(ix, w);
        assert_true(s % 2 == 0 && s < N);
        struct cache_index_hit h[1];
        assert_int_equal(cache_index_search(ix, w, 1, 64, h), 1);
        assert_int_equal(h[0].slot, s);
        assert_true(h[0].sim > 0.999f);
    }
    assert_int_equal(cache_index_live(ix), N);
    /* Every node deleted: nothing is found; then one is again. */
    for (size_t i = 0; i < N; i++) {
        cache_index_delete(ix, (uint32_t)i);
    }
    struct cache_index_hit h[1];
    assert_int_equal(cache_index_search(ix, w, 1, 64, h), 0);
    uint32_t s = cache_index_add(ix, w);
    assert_int_equal(cache_index_search(ix, w, 1, 64, h), 1);
    assert_int_equal(h[0].slot, s);
    cache_index_free(ix);
    free(v);
}

/* ---- the entries -------------------------------------------------------- */

static struct cache_semset_item item(const char *scope, int id, int ctx,
                                     const float *vec, const char *text,
                                     int64_t expires_s)
{
    struct cache_semset_item it = {
        .scope = scope,
        .vec = vec,
        .text = {text, strlen(text)},
        .expires_s = expires_s,
    };
    memset(it.id, id, 32);
    memset(it.ctx, ctx, 32);
    return it;
}

static struct cache_semset_found find(struct cache_semset *s,
                                      const char *scope, int ctx,
                                      const float *q, double threshold,
                                      int64_t now)
{
    struct cache_semset_ask ask = {
        .scope = scope,
        .vec = q,
        .text = STR_LIT("asked"),
        .threshold = threshold,
        .guard = false,
    };
    memset(ask.ctx, ctx, 32);
    struct cache_semset_found f;
    cache_semset_find(s, &ask, now, &f);
    return f;
}

static void test_a_neighbour_answers_only_in_its_scope_and_context(void **st)
{
    (void)st;
    struct cache_semset *s = cache_semset_new(DIM, 100);
    float a[DIM], q[DIM];
    random_vec(a);
    near_vec(a, q, 0.1f);
    double sim = cache_index_dot(a, q, DIM);
    assert_true(sim > 0.9 && sim < 1.0);
    struct cache_semset_item it = item("key_a", 1, 5, a, "stored", 1000);
    assert_true(cache_semset_put(s, &it, 100));
    assert_false(cache_semset_put(s, &it, 100)); /* read back: known */

    struct cache_semset_found f = find(s, "key_a", 5, q, 0.9, 100);
    assert_true(f.hit);
    assert_int_equal(f.id[0], 1);
    assert_true(fabs(f.similarity - sim) < 1e-5);
    /* Another scope, another context: nothing. */
    assert_false(find(s, "key_b", 5, q, 0.9, 100).hit);
    f = find(s, "key_a", 6, q, 0.9, 100);
    assert_false(f.hit);
    assert_true(f.similarity < 0);
    /* A higher threshold: the neighbour is named, refused, with why. */
    f = find(s, "key_a", 5, q, 0.9999, 100);
    assert_false(f.hit);
    assert_true(fabs(f.similarity - sim) < 1e-5);
    assert_non_null(strstr(f.reason, "threshold"));
    /* The same id in another scope is another entry. */
    struct cache_semset_item other = item("key_b", 1, 5, a, "b's", 1000);
    assert_true(cache_semset_put(s, &other, 100));
    assert_true(find(s, "key_b", 5, q, 0.9, 100).hit);
    cache_semset_remove(s, "key_a", it.id);
    assert_false(find(s, "key_a", 5, q, 0.9, 100).hit);
    assert_true(find(s, "key_b", 5, q, 0.9, 100).hit);
    cache_semset_free(s);
}

static void test_entries_expire_and_the_oldest_goes_past_the_bound(void **st)
{
    (void)st;
    enum { MAX = 50 };
    struct cache_semset *s = cache_semset_new(DIM, MAX);
    float v[MAX + 10][DIM];
    for (int i = 0; i < MAX + 10; i++) {
        random_vec(v[i]);
        /* Entry i expires at 1000 + i; the first ten of the next scope
         * alternate scopes, so eviction crosses scopes. */
        struct cache_semset_item it = item(i % 2 ? "odd" : "even", i + 1, 9,
                                           v[i], "t", 1000 + i);
        assert_true(cache_semset_put(s, &it, 10));
    }
    struct cache_semset_stats stats;
    cache_semset_stats(s, &stats);
    assert_int_equal(stats.entries, MAX);
    assert_int_equal(stats.scopes, 2);
    assert_true(stats.bytes > MAX * DIM * sizeof(float));
    /* The ten oldest were evicted; the rest are found. */
    for (int i = 0; i < MAX + 10; i++) {
        struct cache_semset_found f = find(s, i % 2 ? "odd" : "even", 9,
                                           v[i], 0.99, 10);
        assert_int_equal(f.hit, i >= 10);
        if (f.hit) {
            assert_int_equal(f.id[0], i + 1);
        }
    }
    /* Past its expiry an entry is not found, then swept. */
    assert_false(find(s, "even", 9, v[20], 0.99, 1020).hit);
    assert_true(find(s, "even", 9, v[22], 0.99, 1020).hit);
    assert_int_equal(cache_semset_expire(s, 1030), 21); /* 10..30 */
    cache_semset_stats(s, &stats);
    assert_int_equal(stats.entries, MAX - 21);
    /* An entry already expired is not added. */
    struct cache_semset_item late = item("odd", 99, 9, v[0], "t", 5);
    assert_false(cache_semset_put(s, &late, 10));
    cache_semset_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_the_last_user_message_is_embedded_and_the_rest_is_context),
        cmocka_unit_test(
            test_everything_else_that_changes_the_answer_changes_the_context),
        cmocka_unit_test(
            test_requests_without_a_user_text_last_are_not_semantic),
        cmocka_unit_test(test_the_graph_finds_the_true_nearest_neighbour),
        cmocka_unit_test(
            test_deleted_slots_are_never_returned_and_are_reused),
        cmocka_unit_test(
            test_a_neighbour_answers_only_in_its_scope_and_context),
        cmocka_unit_test(
            test_entries_expire_and_the_oldest_goes_past_the_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
