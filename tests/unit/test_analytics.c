/*
 * test_analytics.c - unit tests of the hourly rollup (src/store/rollup.c),
 * the analytics queries (src/store/analytics.c) and the JSON of
 * /admin/analytics (src/admin/analytics.c), against SQLite files in a
 * temporary folder. Every figure is checked against a sum computed here,
 * row by row, from the rows the test wrote. PostgreSQL is covered by
 * tests/integration/test_analytics.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "admin/admin.h"
#include "store/store.h"

static char tmpdir[256];
static char url[512];
static struct store_db db;

/* 2024-11-25T10:20:00Z: not on the hour, so each range has two partial
 * hours read from the log and whole hours read from the rollup. */
#define END_US 1732530000000000LL

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/relay-test-analytics.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(url, sizeof(url), "sqlite:%s/relay.db", tmpdir);
    char err[512] = "";
    assert_int_equal(store_db_open(url, true, &db, err, sizeof(err)), RL_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    store_db_close(&db);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static const char *const models[] = {"llama-3.1-8b", "gemini-flash",
                                     "claude-haiku"};
static const char *const providers[] = {"groq", "gemini", "anthropic"};

/* Row i of a known log: spread over 40 hours before END_US (some after
 * it, which no range may count), three keys, three models, some cache
 * hits and errors, latencies over many buckets. */
static struct store_row row_of(int i)
{
    struct store_row r;
    memset(&r, 0, sizeof(r));
    r.ts_us = END_US - 40 * STORE_HOUR_US + (int64_t)i * 977777777LL;
    snprintf(r.request_id, sizeof(r.request_id), "req_%024d", i);
    int k = i % 3;
    snprintf(r.key_id, sizeof(r.key_id), "key_%016d", k);
    snprintf(r.key_prefix, sizeof(r.key_prefix), "glw_k%03d", k);
    int m = (i / 3) % 3;
    store_copy_text(r.model, sizeof(r.model), models[m]);
    store_copy_text(r.provider, sizeof(r.provider), providers[m]);
    store_copy_text(r.cache_status, sizeof(r.cache_status),
                    i % 7 == 0 ? "exact" : "miss");
    r.status = i % 11 == 0 ? 502 : (i % 13 == 0 ? 429 : 200);
    if (r.status == 200 && i % 17 == 5) {
        /* a stream that broke after its head: a server error */
        store_copy_text(r.error_type, sizeof(r.error_type), "api_error");
        store_copy_text(r.error_code, sizeof(r.error_code),
                        "upstream_stream_cut");
    }
    r.prompt_tokens = 10 + i % 17;
    r.completion_tokens = 5 + i % 23;
    r.cost_nusd = i % 7 == 0 ? 0 : 1000 + (int64_t)i * 37;
    r.savings_nusd = i % 7 == 0 ? 2500 : 0;
    r.latency_us = 500 + (uint64_t)(i % 29) * (uint64_t)(i % 31) * 997;
    return r;
}

#define NROWS 160

static void insert_rows(int from, int to)
{
    struct store_row rows[NROWS];
    for (int i = from; i < to; i++) {
        rows[i - from] = row_of(i);
    }
    char err[512] = "";
    enum rl_err e = db.engine->insert(db.conn, rows, (size_t)(to - from),
                                      err, sizeof(err));
    if (e != RL_OK) {
        fprintf(stderr, "insert: %s\n", err);
    }
    assert_int_equal(e, RL_OK);
}

static void add_key(int k, const char *name)
{
    char id[32];
    char prefix[16];
    snprintf(id, sizeof(id), "key_%016d", k);
    snprintf(prefix, sizeof(prefix), "glw_k%03d", k);
    const char *params[] = {id, name, prefix};
    char err[512] = "";
    assert_int_equal(db.engine->query(db.conn,
        "INSERT INTO api_keys (id, name, prefix, sha256, created_at, "
        "version) VALUES ($1, $2, $3, $1, '2024-11-01T00:00:00Z', 1)",
        params, 3, NULL, NULL, err, sizeof(err)), RL_OK);
}

/* The range's figures, summed here row by row. */
static struct store_an_sums hand_sums(int64_t start_us, int64_t end_us,
                                      const char *model, int64_t *hist)
{
    struct store_an_sums s;
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < NROWS; i++) {
        struct store_row r = row_of(i);
        if (r.ts_us < start_us || r.ts_us >= end_us ||
            (model && strcmp(model, r.model) != 0)) {
            continue;
        }
        s.requests++;
        s.prompt_tokens += r.prompt_tokens;
        s.completion_tokens += r.completion_tokens;
        s.cost_nusd += r.cost_nusd;
        s.savings_nusd += r.savings_nusd;
        s.cache_hits += strcmp(r.cache_status, "exact") == 0;
        s.errors_4xx += r.status >= 400 && r.status < 500;
        s.errors_5xx += r.status >= 500 ||
                        (r.status == 200 && r.error_code[0] != '\0');
        s.latency_sum_us += (int64_t)r.latency_us;
        if (hist) {
            hist[store_latency_bucket(r.latency_us)]++;
        }
    }
    return s;
}

static void assert_sums_equal(const struct store_an_sums *a,
                              const struct store_an_sums *b)
{
    assert_int_equal(a->requests, b->requests);
    assert_int_equal(a->prompt_tokens, b->prompt_tokens);
    assert_int_equal(a->completion_tokens, b->completion_tokens);
    assert_int_equal(a->cost_nusd, b->cost_nusd);
    assert_int_equal(a->savings_nusd, b->savings_nusd);
    assert_int_equal(a->cache_hits, b->cache_hits);
    assert_int_equal(a->errors_4xx, b->errors_4xx);
    assert_int_equal(a->errors_5xx, b->errors_5xx);
    assert_int_equal(a->latency_sum_us, b->latency_sum_us);
}

static void check_range(int64_t span_us)
{
    struct store_analytics a;
    char err[512] = "";
    assert_int_equal(store_analytics_query(&db, span_us, END_US, &a, err,
                                           sizeof(err)), RL_OK);
    int64_t start = END_US - span_us;
    struct store_an_sums want = hand_sums(start, END_US, NULL, NULL);
    assert_sums_equal(&a.total, &want);
    /* Each hour of the chart, and their sum. */
    struct store_an_sums hours;
    memset(&hours, 0, sizeof(hours));
    for (size_t i = 0; i < a.nhours; i++) {
        int64_t h = a.hours[i].hour_us;
        int64_t lo = h < start ? start : h;
        int64_t hi = h + STORE_HOUR_US > END_US ? END_US : h + STORE_HOUR_US;
        struct store_an_sums w = hand_sums(lo, hi, NULL, NULL);
        assert_sums_equal(&a.hours[i].s, &w);
        hours.requests += a.hours[i].s.requests;
    }
    assert_int_equal(hours.requests, want.requests);
    /* Per model: requests and the latency histogram. */
    int64_t nmodel = 0;
    for (size_t i = 0; i < a.nmodels; i++) {
        int64_t hist[STORE_LAT_BUCKETS] = {0};
        struct store_an_sums w = hand_sums(start, END_US, a.models[i].model,
                                           hist);
        assert_int_equal(a.models[i].requests, w.requests);
        assert_memory_equal(a.models[i].hist, hist, sizeof(hist));
        nmodel += w.requests;
    }
    assert_int_equal(nmodel, want.requests);
    int64_t spend = 0;
    for (size_t i = 0; i < a.nkeys; i++) {
        spend += a.keys[i].cost_nusd;
        if (i > 0) {
            assert_true(a.keys[i - 1].cost_nusd >= a.keys[i].cost_nusd);
        }
    }
    assert_int_equal(spend, want.cost_nusd);
    struct store_an_sums cache = hand_sums(END_US - STORE_CACHE_PANEL_US,
                                           END_US, NULL, NULL);
    assert_sums_equal(&a.cache_total, &cache);
    store_analytics_free(&a);
}

static void test_figures_equal_hand_computations_for_every_range(void **s)
{
    (void)s;
    insert_rows(0, NROWS);
    check_range(STORE_HOUR_US);
    check_range(24 * STORE_HOUR_US);
    check_range(7 * 24 * STORE_HOUR_US);
    check_range(30 * 24 * STORE_HOUR_US);
}

static void on_scalar(void *arg, const char *const *cols, int ncols)
{
    int64_t *v = arg;
    *v = ncols > 0 && cols[0] ? strtoll(cols[0], NULL, 10) : 0;
}

/* The first column of the first row of sql. */
static int64_t scalar(const char *sql)
{
    int64_t v = -1;
    char err[512] = "";
    assert_int_equal(db.engine->query(db.conn, sql, NULL, 0, on_scalar, &v,
                                      err, sizeof(err)), RL_OK);
    return v;
}

static const char *const same_sums =
    "SELECT (SELECT count(*) FROM request_log) = "
    "(SELECT sum(requests) FROM request_rollup) AND "
    "(SELECT sum(cost_nusd) FROM request_log) = "
    "(SELECT sum(cost_nusd) FROM request_rollup) AND "
    "(SELECT sum(latency_us) FROM request_log) = "
    "(SELECT sum(latency_sum_us) FROM request_rollup) AND "
    "(SELECT sum(savings_nusd) FROM request_log) = "
    "(SELECT sum(savings_nusd) FROM request_rollup)";

static void test_a_replayed_batch_is_not_counted_twice(void **s)
{
    (void)s;
    insert_rows(0, 50);
    insert_rows(0, 50);   /* a journal replay of the same batch */
    insert_rows(30, 80);  /* half stored already, half new */
    assert_int_equal(scalar("SELECT count(*) FROM request_log"), 80);
    assert_int_equal(scalar("SELECT sum(requests) FROM request_rollup"), 80);
    assert_int_equal(scalar(same_sums), 1);
    /* A batch that holds one request id twice counts it once. */
    struct store_row twice[2] = {row_of(100), row_of(100)};
    char err[512] = "";
    assert_int_equal(db.engine->insert(db.conn, twice, 2, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(scalar("SELECT sum(requests) FROM request_rollup"), 81);
    assert_int_equal(scalar(same_sums), 1);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

static void test_backfill_builds_the_rollup_the_writer_keeps(void **s)
{
    (void)s;
    insert_rows(0, NROWS);
    char err[512] = "";
    assert_int_equal(db.engine->query(db.conn,
        "CREATE TABLE kept AS SELECT * FROM request_rollup", NULL, 0, NULL,
        NULL, err, sizeof(err)), RL_OK);
    assert_int_equal(db.engine->query(db.conn, "DELETE FROM request_rollup",
                                      NULL, 0, NULL, NULL, err, sizeof(err)),
                     RL_OK);
    /* The migration's SQL as `relay migrate` runs it on an old log. */
    struct store_conn *c = db.engine->connect(db.target.target, err,
                                              sizeof(err));
    assert_non_null(c);
    bool applied = false;
    assert_int_equal(db.engine->migrate_one(c, 9004, "backfill again",
        read_text("migrations/005_request_rollup_backfill.sqlite.sql"), &applied,
        err, sizeof(err)), RL_OK);
    assert_true(applied);
    db.engine->disconnect(c);
    assert_int_equal(scalar("SELECT count(*) FROM kept"),
                     scalar("SELECT count(*) FROM request_rollup"));
    assert_int_equal(scalar("SELECT count(*) FROM (SELECT * FROM kept "
                            "EXCEPT SELECT * FROM request_rollup)"), 0);
    assert_int_equal(scalar(same_sums), 1);
}

static void test_top_keys_carry_names_and_the_demo_flag(void **s)
{
    (void)s;
    add_key(0, "demo:prod-chat");
    add_key(1, "demo:batch-enrich");
    add_key(2, "demo:staging");
    insert_rows(0, NROWS);
    struct store_analytics a;
    char err[512] = "";
    assert_int_equal(store_analytics_query(&db, 30 * 24 * STORE_HOUR_US,
                                           END_US, &a, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(a.nkeys, 3);
    assert_true(a.demo);
    bool seen = false;
    for (size_t i = 0; i < a.nkeys; i++) {
        assert_true(a.keys[i].demo);
        seen = seen || strcmp(a.keys[i].name, "prod-chat") == 0;
    }
    assert_true(seen);
    store_analytics_free(&a);
    /* One real key's request and the log is no longer only demo. */
    char id[] = "key_0000000000000009";
    const char *params[] = {id};
    assert_int_equal(db.engine->query(db.conn,
        "INSERT INTO api_keys (id, name, prefix, sha256, created_at, "
        "version) VALUES ($1, 'real', 'glw_real', $1, "
        "'2024-11-01T00:00:00Z', 2)", params, 1, NULL, NULL, err,
        sizeof(err)), RL_OK);
    struct store_row r = row_of(NROWS - 1);
    snprintf(r.request_id, sizeof(r.request_id), "req_real");
    snprintf(r.key_id, sizeof(r.key_id), "%s", id);
    r.ts_us = END_US - 1000;
    assert_int_equal(db.engine->insert(db.conn, &r, 1, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(store_analytics_query(&db, STORE_HOUR_US, END_US, &a,
                                           err, sizeof(err)), RL_OK);
    assert_false(a.demo);
    store_analytics_free(&a);
}

static void test_latency_buckets_and_quantiles(void **s)
{
    (void)s;
    assert_int_equal(store_latency_bucket(0), 0);
    assert_int_equal(store_latency_bucket(999), 0);
    assert_int_equal(store_latency_bucket(1000), 1);
    assert_int_equal(store_latency_bucket(1413), 1);
    assert_int_equal(store_latency_bucket(1414), 2);
    assert_int_equal(store_latency_bucket(412000), 18);
    assert_int_equal(store_latency_bucket(32767999), 30);
    assert_int_equal(store_latency_bucket(600000000), 31);
    int64_t hist[STORE_LAT_BUCKETS] = {0};
    assert_true(store_latency_quantile_ms(hist, 0.5) == 0.0);
    hist[3] = 100; /* 2000..2828 us */
    assert_true(store_latency_quantile_ms(hist, 0.5) == 2.414);
    hist[20] = 100; /* 724077..1024000 us */
    assert_true(store_latency_quantile_ms(hist, 0.5) == 2.828);
    double p95 = store_latency_quantile_ms(hist, 0.95);
    assert_true(p95 > 724.077 && p95 < 1024.0);
}

static void test_range_is_one_of_four(void **s)
{
    (void)s;
    const char *name = NULL;
    int64_t span = 0;
    assert_true(admin_range_parse(STR_LIT("range=7d"), &name, &span));
    assert_string_equal(name, "7d");
    assert_int_equal(span, 7 * 24 * STORE_HOUR_US);
    assert_true(admin_range_parse(STR_LIT("x=1&range=1h"), &name, &span));
    assert_string_equal(name, "1h");
    assert_true(admin_range_parse((struct str){NULL, 0}, &name, &span));
    assert_string_equal(name, "24h");
    assert_false(admin_range_parse(STR_LIT("range=2h"), &name, &span));
    assert_false(admin_range_parse(STR_LIT("range="), &name, &span));
    assert_false(admin_range_parse(STR_LIT("range=30d%00"), &name, &span));
}

static void test_json_has_every_panel(void **s)
{
    (void)s;
    add_key(0, "prod-chat");
    insert_rows(0, NROWS);
    struct store_analytics a;
    char err[512] = "";
    assert_int_equal(store_analytics_query(&db, 24 * STORE_HOUR_US, END_US,
                                           &a, err, sizeof(err)), RL_OK);
    json_t *o = admin_analytics_json(&a, "24h");
    struct store_an_sums want = hand_sums(END_US - 24 * STORE_HOUR_US,
                                          END_US, NULL, NULL);
    json_t *t = json_object_get(o, "totals");
    assert_int_equal(json_integer_value(json_object_get(t, "requests")),
                     want.requests);
    assert_int_equal(json_integer_value(json_object_get(t, "spend_nusd")),
                     want.cost_nusd);
    assert_int_equal(json_integer_value(json_object_get(t, "tokens")),
                     want.prompt_tokens + want.completion_tokens);
    double rate = json_real_value(json_object_get(t, "cache_hit_rate"));
    assert_true(rate == (double)want.cache_hits / (double)want.requests);
    assert_int_equal(json_array_size(json_object_get(o, "hours")), 25);
    assert_int_equal(json_array_size(json_object_get(o, "providers")), 3);
    assert_int_equal(json_array_size(json_object_get(o, "models")), 3);
    json_t *keys = json_object_get(o, "keys");
    assert_int_equal(json_integer_value(json_object_get(keys, "active")), 3);
    assert_false(json_is_true(json_object_get(o, "demo")));
    json_t *cache = json_object_get(o, "cache");
    assert_int_equal(json_array_size(json_object_get(cache, "hours")), 49);
    assert_string_equal(json_string_value(json_object_get(o, "range")),
                        "24h");
    json_decref(o);
    store_analytics_free(&a);
}

static void test_an_empty_log_answers_zeros(void **s)
{
    (void)s;
    struct store_analytics a;
    char err[512] = "";
    assert_int_equal(store_analytics_query(&db, STORE_HOUR_US, END_US, &a,
                                           err, sizeof(err)), RL_OK);
    assert_int_equal(a.total.requests, 0);
    assert_int_equal(a.nhours, 2);
    assert_int_equal(a.nmodels, 0);
    assert_false(a.demo);
    store_analytics_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_figures_equal_hand_computations_for_every_range, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_replayed_batch_is_not_counted_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_backfill_builds_the_rollup_the_writer_keeps, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_top_keys_carry_names_and_the_demo_flag, setup, teardown),
        cmocka_unit_test(test_latency_buckets_and_quantiles),
        cmocka_unit_test(test_range_is_one_of_four),
        cmocka_unit_test_setup_teardown(test_json_has_every_panel, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_an_empty_log_answers_zeros,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
