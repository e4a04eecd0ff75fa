/*
 * test_metrics.c - unit tests of src/metrics/: the per-worker series
 * tables (metrics.c) and the text exposition (expose.c), with exact text
 * for a small set, and the error-class vocabulary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "metrics/metrics.h"

static int setup(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

static const struct metrics_extra no_extra = {0};

/* The exposition of every table with x, in out (freed by the caller). */
static void expose(const struct metrics_extra *x, struct buf *out)
{
    buf_init(out, 1 << 20);
    assert_int_equal(metrics_expose(x, out), RL_OK);
}

/* The value of the sample whose line starts with prefix, or -1. */
static double sample(const struct buf *b, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = b->p; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ') {
            double v = -1;
            sscanf(p + n + 1, "%lf", &v);
            return v;
        }
        p = eol ? eol + 1 : NULL;
    }
    return -1;
}

static struct metrics_request ok_request(void)
{
    return (struct metrics_request){
        .model = "mid", .provider = "groq", .status = 200,
        .latency_us = 300000, .ttft_us = 120000, .overhead_us = 80,
        .tokens_in = 10, .tokens_out = 20, .cost_nusd = 1500,
    };
}

static void test_one_request_gives_this_exact_text(void **state)
{
    (void)state;
    struct metrics *m = metrics_worker(0);
    struct metrics_request o = ok_request();
    metrics_observe(m, &o);
    metrics_attempt(m, "mid", "groq", 0);
    struct metrics_breaker br[] = {{.provider = true, .name = "groq",
                                    .state = 1}};
    struct metrics_extra x = {.breakers = br, .nbreakers = 1};
    struct buf b;
    expose(&x, &b);
    const char *lat =
        "gateway_request_latency_seconds_bucket{model=\"mid\","
        "provider=\"groq\",le=\"0.25\"} 0\n"
        "gateway_request_latency_seconds_bucket{model=\"mid\","
        "provider=\"groq\",le=\"0.5\"} 1\n";
    assert_non_null(strstr(b.p, lat));
    const char *exact =
        "# HELP gateway_requests_total Requests answered, by model, "
        "provider, status class and cache status; one per request log "
        "row.\n"
        "# TYPE gateway_requests_total counter\n"
        "gateway_requests_total{model=\"mid\",provider=\"groq\","
        "status_class=\"2xx\",cache=\"miss\"} 1\n"
        "# HELP gateway_errors_total Requests that ended in an error, by "
        "error class (caller, policy, provider, gateway).\n"
        "# TYPE gateway_errors_total counter\n"
        "# HELP gateway_cache_hits_total Requests answered from the cache, "
        "by cache status.\n"
        "# TYPE gateway_cache_hits_total counter\n"
        "gateway_cache_hits_total{model=\"mid\",provider=\"groq\","
        "cache=\"exact\"} 0\n"
        "gateway_cache_hits_total{model=\"mid\",provider=\"groq\","
        "cache=\"semantic\"} 0\n"
        "# HELP gateway_input_tokens_total Prompt tokens, as reported by "
        "the provider (or estimated).\n"
        "# TYPE gateway_input_tokens_total counter\n"
        "gateway_input_tokens_total{model=\"mid\",provider=\"groq\"} 10\n"
        "# HELP gateway_output_tokens_total Completion tokens, as reported "
        "by the provider (or estimated).\n"
        "# TYPE gateway_output_tokens_total counter\n"
        "gateway_output_tokens_total{model=\"mid\",provider=\"groq\"} 20\n"
        "# HELP gateway_cost_usd_total What the requests cost, in US "
        "dollars (from integer nano-dollars).\n"
        "# TYPE gateway_cost_usd_total counter\n"
        "gateway_cost_usd_total{model=\"mid\",provider=\"groq\"} "
        "0.000001500\n";
    assert_memory_equal(b.p, exact, strlen(exact));
    const char *tail =
        "gateway_overhead_seconds_bucket{model=\"mid\",provider=\"groq\","
        "le=\"0.0001\"} 1\n";
    assert_non_null(strstr(b.p, tail));
    const char *end =
        "# HELP gateway_upstream_attempts_total Upstream requests made "
        "(retries, fallbacks and hedges included), by outcome.\n"
        "# TYPE gateway_upstream_attempts_total counter\n"
        "gateway_upstream_attempts_total{model=\"mid\",provider=\"groq\","
        "outcome=\"ok\"} 1\n"
        "# HELP gateway_provider_errors_total Upstream attempts that "
        "failed, by outcome (every outcome but ok and cancelled).\n"
        "# TYPE gateway_provider_errors_total counter\n"
        "# HELP gateway_rate_limited_total Requests refused by the key's "
        "limits (step 2), by reason.\n"
        "# TYPE gateway_rate_limited_total counter\n"
        "gateway_rate_limited_total{reason=\"rpm\"} 0\n"
        "gateway_rate_limited_total{reason=\"tpm\"} 0\n"
        "gateway_rate_limited_total{reason=\"too_large\"} 0\n"
        "gateway_rate_limited_total{reason=\"concurrency\"} 0\n"
        "gateway_rate_limited_total{reason=\"budget\"} 0\n"
        "gateway_rate_limited_total{reason=\"unavailable\"} 0\n"
        "# HELP gateway_in_flight_requests Chat completions being served "
        "now.\n"
        "# TYPE gateway_in_flight_requests gauge\n"
        "gateway_in_flight_requests 0\n"
        "# HELP gateway_limits_decisions_total Limit checks, by where they "
        "were decided.\n"
        "# TYPE gateway_limits_decisions_total counter\n"
        "gateway_limits_decisions_total{backend=\"redis\"} 0\n"
        "gateway_limits_decisions_total{backend=\"local\"} 0\n"
        "# HELP gateway_circuit_breaker_state Circuit breakers: 0 closed, "
        "1 open, 2 half-open.\n"
        "# TYPE gateway_circuit_breaker_state gauge\n"
        "gateway_circuit_breaker_state{scope=\"provider\",name=\"groq\"} "
        "1\n";
    assert_non_null(strstr(b.p, end));
    assert_string_equal(b.p + b.len - strlen(end), end);
    assert_true(sample(&b, "gateway_ttft_seconds_sum{model=\"mid\","
                           "provider=\"groq\"}") == 0.12);
    buf_free(&b);
}

static void test_workers_tables_are_summed_on_scrape(void **state)
{
    (void)state;
    struct metrics_request o = ok_request();
    metrics_observe(metrics_worker(0), &o);
    metrics_observe(metrics_worker(3), &o);
    metrics_observe(metrics_worker(3), &o);
    o.status = 502;
    o.error = METRICS_ERR_PROVIDER;
    metrics_observe(metrics_worker(1), &o);
    struct buf b;
    expose(&no_extra, &b);
    assert_true(sample(&b, "gateway_requests_total{model=\"mid\","
                           "provider=\"groq\",status_class=\"2xx\","
                           "cache=\"miss\"}") == 3);
    assert_true(sample(&b, "gateway_requests_total{model=\"mid\","
                           "provider=\"groq\",status_class=\"5xx\","
                           "cache=\"miss\"}") == 1);
    assert_true(sample(&b, "gateway_errors_total{model=\"mid\","
                           "provider=\"groq\",error_class=\"provider\"}") ==
                1);
    assert_true(sample(&b, "gateway_request_latency_seconds_count{model="
                           "\"mid\",provider=\"groq\"}") == 4);
    assert_true(sample(&b, "gateway_cost_usd_total{model=\"mid\","
                           "provider=\"groq\"}") == 0.000006);
    assert_true(sample(&b, "gateway_input_tokens_total{model=\"mid\","
                           "provider=\"groq\"}") == 40);
    buf_free(&b);
}

static void test_a_full_table_counts_the_rest_as_other(void **state)
{
    (void)state;
    struct metrics *m = metrics_worker(0);
    struct metrics_request o = ok_request();
    char name[32];
    for (int i = 0; i < METRICS_SERIES + 5; i++) {
        snprintf(name, sizeof(name), "model-%d", i);
        o.model = name;
        metrics_observe(m, &o);
    }
    struct buf b;
    expose(&no_extra, &b);
    assert_true(sample(&b, "gateway_requests_total{model=\"other\","
                           "provider=\"other\",status_class=\"2xx\","
                           "cache=\"miss\"}") == 5);
    buf_free(&b);
}

static void test_no_model_is_labelled_none_and_labels_are_escaped(void **s)
{
    (void)s;
    struct metrics *m = metrics_worker(0);
    struct metrics_request o = {.status = 401, .error = METRICS_ERR_CALLER};
    metrics_observe(m, &o);
    o = ok_request();
    o.model = "a\"b\\c";
    metrics_observe(m, &o);
    struct buf b;
    expose(&no_extra, &b);
    assert_true(sample(&b, "gateway_errors_total{model=\"none\","
                           "provider=\"none\",error_class=\"caller\"}") == 1);
    assert_non_null(strstr(b.p, "model=\"a\\\"b\\\\c\""));
    buf_free(&b);
}

static void test_refusals_count_by_reason_and_in_flight_by_worker(void **s)
{
    (void)s;
    struct metrics *m = metrics_worker(0);
    struct metrics_request o = {.status = 429, .limited = 1,
                                .error = METRICS_ERR_POLICY};
    metrics_observe(m, &o);
    o.limited = 5;
    metrics_observe(m, &o);
    metrics_observe(m, &o);
    metrics_in_flight_add(m, 1);
    metrics_in_flight_add(metrics_worker(1), 2);
    metrics_in_flight_add(metrics_worker(1), -1);
    metrics_limits_note(m, true, false, 7, 3);
    struct buf b;
    expose(&no_extra, &b);
    assert_true(sample(&b, "gateway_rate_limited_total{reason=\"rpm\"}") ==
                1);
    assert_true(sample(&b, "gateway_rate_limited_total{reason=\"budget\"}") ==
                2);
    assert_true(sample(&b, "gateway_in_flight_requests") == 2);
    assert_true(sample(&b, "gateway_redis_up") == 0);
    assert_true(sample(&b, "gateway_limits_decisions_total{backend="
                           "\"redis\"}") == 7);
    buf_free(&b);
}

static void test_attempts_and_provider_errors_by_outcome(void **state)
{
    (void)state;
    struct metrics *m = metrics_worker(0);
    metrics_attempt(m, "mid", "groq", 3); /* server_error */
    metrics_attempt(m, "mid", "groq", 3);
    metrics_attempt(m, "mid", "groq", 9); /* cancelled */
    metrics_attempt(m, "mid", "groq", 0); /* ok */
    struct buf b;
    expose(&no_extra, &b);
    assert_true(sample(&b, "gateway_upstream_attempts_total{model=\"mid\","
                           "provider=\"groq\",outcome=\"cancelled\"}") == 1);
    assert_true(sample(&b, "gateway_provider_errors_total{model=\"mid\","
                           "provider=\"groq\",outcome=\"server_error\"}") ==
                2);
    assert_null(strstr(b.p, "gateway_provider_errors_total{model=\"mid\","
                            "provider=\"groq\",outcome=\"cancelled\"}"));
    buf_free(&b);
}

static void test_the_error_class_vocabulary(void **state)
{
    (void)state;
    assert_int_equal(metrics_error_class(200, false, 0, NULL),
                     METRICS_ERR_NONE);
    assert_int_equal(metrics_error_class(401, false, 0, "invalid_api_key"),
                     METRICS_ERR_CALLER);
    assert_int_equal(metrics_error_class(404, false, 0, NULL),
                     METRICS_ERR_CALLER);
    assert_int_equal(metrics_error_class(499, false, 0, NULL),
                     METRICS_ERR_CALLER);
    assert_int_equal(metrics_error_class(429, false, 1, NULL),
                     METRICS_ERR_POLICY);
    assert_int_equal(metrics_error_class(429, false, 5, NULL),
                     METRICS_ERR_POLICY);
    assert_int_equal(metrics_error_class(503, false, 6, NULL),
                     METRICS_ERR_GATEWAY);
    assert_int_equal(metrics_error_class(400, true, 0,
                                         "content_policy_violation"),
                     METRICS_ERR_POLICY);
    assert_int_equal(metrics_error_class(429, true, 0, NULL),
                     METRICS_ERR_PROVIDER);
    assert_int_equal(metrics_error_class(502, true, 0, NULL),
                     METRICS_ERR_PROVIDER);
    assert_int_equal(metrics_error_class(200, true, 0, "upstream_error"),
                     METRICS_ERR_PROVIDER); /* cut mid-stream */
    assert_int_equal(metrics_error_class(400, true, 0, "context_length"),
                     METRICS_ERR_CALLER);
    assert_int_equal(metrics_error_class(500, false, 0, NULL),
                     METRICS_ERR_GATEWAY);
    assert_int_equal(metrics_error_class(503, false, 0, "shutting_down"),
                     METRICS_ERR_GATEWAY);
}

static void test_the_store_figures_appear_only_with_a_store(void **state)
{
    (void)state;
    struct metrics_extra x = {.store_open = true, .queue_rows = 3,
                              .queue_capacity = 8192, .journal_bytes = 77};
    struct buf b;
    expose(&x, &b);
    assert_true(sample(&b, "gateway_log_queue_depth") == 3);
    assert_true(sample(&b, "gateway_journal_bytes") == 77);
    buf_free(&b);
    expose(&no_extra, &b);
    assert_null(strstr(b.p, "gateway_journal_bytes"));
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup(name, setup)
        T(test_one_request_gives_this_exact_text),
        T(test_workers_tables_are_summed_on_scrape),
        T(test_a_full_table_counts_the_rest_as_other),
        T(test_no_model_is_labelled_none_and_labels_are_escaped),
        T(test_refusals_count_by_reason_and_in_flight_by_worker),
        T(test_attempts_and_provider_errors_by_outcome),
        T(test_the_error_class_vocabulary),
        T(test_the_store_figures_appear_only_with_a_store),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
