/*
 * test_config.c - unit tests of src/config/config.c: relay.yaml into a
 * struct config, and every mistake named by line and field.
 *
 * Each test writes its YAML (and sometimes a .env) into a fresh temporary
 * folder, loads it and removes the folder. Tests marked "Regression"
 * prove a fixed defect stays fixed.
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
#include <openssl/sha.h>

#include "config/config.h"
#include "providers/provider.h"


extern const struct provider_ops openai_ops;

/* ---------------------------------------------------------------------
 * Helpers: a temporary folder with relay.yaml (and .env)
 * ------------------------------------------------------------------- */

struct loaded {
    enum rl_err err;
    struct config *cfg; /* NULL on failure */
    struct buf errors;  /* the loader's messages, NUL-terminated */
};

static void write_file(const char *dir, const char *name, const char *text,
                       size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void remove_file(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}

/* Loads the len bytes of yaml (and dotenv, when not NULL) from a fresh
 * folder. */
static struct loaded load_bytes(const char *yaml, size_t len,
                                const char *dotenv)
{
    char dir[] = "/tmp/relay-test-config.XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_file(dir, "relay.yaml", yaml, len);
    if (dotenv) {
        write_file(dir, ".env", dotenv, strlen(dotenv));
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/relay.yaml", dir);
    struct loaded l;
    buf_init(&l.errors, 1 << 20);
    buf_append(&l.errors, "", 0);
    l.err = config_load(path, &l.cfg, &l.errors);
    remove_file(dir, "relay.yaml");
    remove_file(dir, ".env");
    rmdir(dir);
    return l;
}

static struct loaded load(const char *yaml, const char *dotenv)
{
    return load_bytes(yaml, strlen(yaml), dotenv);
}

static void loaded_free(struct loaded *l)
{
    config_unref(l->cfg);
    buf_free(&l->errors);
}

/* Loads yaml and asserts it is valid. */
static struct config *load_ok(const char *yaml, const char *dotenv)
{
    struct loaded l = load(yaml, dotenv);
    if (l.err != RL_OK) {
        fail_msg("expected a valid config, got:\n%s", l.errors.p);
    }
    assert_non_null(l.cfg);
    buf_free(&l.errors);
    return l.cfg;
}

/* Asserts the errors hold a line "<path>:LINE: FIELD: ...WHAT...". */
static void assert_mistake(const struct loaded *l, int line,
                           const char *field, const char *what)
{
    char want[256];
    snprintf(want, sizeof(want), "relay.yaml:%d: %s: ", line, field);
    for (const char *at = strstr(l->errors.p, want); at;
         at = strstr(at + 1, want)) {
        const char *eol = strchr(at, '\n');
        assert_non_null(eol);
        if (!what || memmem(at, (size_t)(eol - at), what, strlen(what))) {
            return;
        }
    }
    fail_msg("no \"%s...%s\" in the errors:\n%s", want, what ? what : "",
             l->errors.p);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) {
        n += *s == '\n';
    }
    return n;
}

static void assert_sha256(const unsigned char hash[32], const char *key)
{
    unsigned char want[32];
    SHA256((const unsigned char *)key, strlen(key), want);
    assert_memory_equal(hash, want, 32);
}

/* A small valid tail: one provider, one model. */
#define MINIMAL_PROVIDERS_AND_MODELS                                      \
    "providers:\n"                                                        \
    "  p:\n"                                                              \
    "    kind: openai\n"                                                  \
    "    base_url: http://127.0.0.1:9000/v1\n"                            \
    "models:\n"                                                           \
    "  - name: m\n"                                                       \
    "    provider: p\n"

/* ---------------------------------------------------------------------
 * A valid configuration
 * ------------------------------------------------------------------- */

static const char full_yaml[] =
    "listen: 0.0.0.0:9191\n"
    "workers: 3\n"
    "log_level: warn\n"
    "log_file: /tmp/relay-requests.log\n"
    "store: postgres://db/relay\n"
    "redis: redis://cache:6379\n"
    "admin_key: admin-key-000000000000\n"
    "auth:\n"
    "  keys: [sk-test-0123456789abcdef, \"another-key-0123456789\"]\n"
    "server:\n"
    "  max_body_bytes: 2048\n"
    "  max_header_bytes: 4096\n"
    "  read_timeout_ms: 1500\n"
    "  idle_timeout_ms: 2500\n"
    "  shutdown_grace_ms: 3500\n"
    "  output_high_water_bytes: 262144\n"
    "  write_timeout_ms: 4500\n"
    "upstream:\n"
    "  connect_timeout_ms: 100\n"
    "  first_byte_timeout_ms: 200\n"
    "  idle_timeout_ms: 300\n"
    "  total_timeout_ms: 400\n"
    "  retries: 3\n"
    "  retry_backoff_ms: 20\n"
    "  retry_backoff_max_ms: 80\n"
    "  retry_max_wait_ms: 0\n"
    "  hedge_after_ms: 150\n"
    "  rescue_max_bytes: 0\n"
    "providers:\n"
    "  local:\n"
    "    kind: openai\n"
    "    base_url: http://127.0.0.1:9000/v1//\n"
    "    api_key: secret\n"
    "  other:\n"
    "    kind: openai\n"
    "    base_url: https://api.example.com/v1\n"
    "models:\n"
    "  - name: small\n"
    "    provider: local\n"
    "    upstream: small-upstream-id?ttft_ms=20\n"
    "    price: {input: 0.05, output: 0.08, cached_input: 0.025}\n"
    "    tier: 1\n"
    "    context: 131072\n"
    "    latency: {ttft_ms: 200, tokens_per_s: 700}\n"
    "    fallbacks: [big, mid]\n"
    "  - name: mid\n"
    "    provider: other\n"
    "    price: {input: 1, output: 2.5}\n"
    "    tier: 2\n"
    "  - name: big\n"
    "    provider: other\n"
    "    upstream: big-1\n"
    "    price:\n"
    "      input: 10.5\n"
    "      output: 30\n"
    "    tier: 3\n"
    "routing:\n"
    "  defaults: {max_latency_ms: 1234, min_quality_tier: 2}\n";

static void test_a_full_config_is_read_field_by_field(void **state)
{
    (void)state;
    struct config *c = load_ok(full_yaml, NULL);
    assert_string_equal(c->listen_host, "0.0.0.0");
    assert_int_equal(c->listen_port, 9191);
    assert_int_equal(c->workers, 3);
    assert_int_equal(c->log_level, LOG_WARN);
    assert_string_equal(c->log_file, "/tmp/relay-requests.log");
    assert_string_equal(c->store, "postgres://db/relay");
    assert_string_equal(c->redis, "redis://cache:6379");
    assert_string_equal(c->admin_key, "admin-key-000000000000");
    assert_int_equal(c->max_body_bytes, 2048);
    assert_int_equal(c->max_header_bytes, 4096);
    assert_int_equal(c->read_timeout_ms, 1500);
    assert_int_equal(c->idle_timeout_ms, 2500);
    assert_int_equal(c->shutdown_grace_ms, 3500);
    assert_int_equal(c->output_high_water_bytes, 262144);
    assert_int_equal(c->write_timeout_ms, 4500);
    assert_int_equal(c->connect_timeout_ms, 100);
    assert_int_equal(c->first_byte_timeout_ms, 200);
    assert_int_equal(c->stream_idle_timeout_ms, 300);
    assert_int_equal(c->call_timeout_ms, 400);
    assert_int_equal(c->retries, 3);
    assert_int_equal(c->retry_backoff_ms, 20);
    assert_int_equal(c->retry_backoff_max_ms, 80);
    assert_int_equal(c->retry_max_wait_ms, 0);
    assert_int_equal(c->hedge_after_ms, 150);
    assert_int_equal(c->rescue_max_bytes, 0);
    assert_int_equal(c->default_max_latency_ms, 1234);
    assert_int_equal(c->default_min_quality_tier, 2);
    config_unref(c);
}

static void test_keys_are_kept_only_as_hashes_and_prefixes(void **state)
{
    (void)state;
    struct config *c = load_ok(full_yaml, NULL);
    assert_int_equal(c->nkeys, 2);
    assert_sha256(c->key_sha256[0], "sk-test-0123456789abcdef");
    assert_sha256(c->key_sha256[1], "another-key-0123456789");
    assert_string_equal(c->key_prefix[0], "sk-test-");
    assert_string_equal(c->key_prefix[1], "another-");
    config_unref(c);
}

static void test_providers_are_read_with_their_adapter(void **state)
{
    (void)state;
    struct config *c = load_ok(full_yaml, NULL);
    assert_int_equal(c->nproviders, 2);
    assert_string_equal(c->providers[0].name, "local");
    assert_string_equal(c->providers[0].kind, "openai");
    assert_ptr_equal(c->providers[0].ops, &openai_ops);
    /* Trailing slashes are dropped so that paths can be appended. */
    assert_string_equal(c->providers[0].base_url,
                        "http://127.0.0.1:9000/v1");
    assert_string_equal(c->providers[0].api_key, "secret");
    assert_string_equal(c->providers[1].name, "other");
    assert_string_equal(c->providers[1].base_url,
                        "https://api.example.com/v1");
    assert_string_equal(c->providers[1].api_key, ""); /* absent: empty */
    config_unref(c);
}

static void test_models_prices_are_exact_nano_dollars(void **state)
{
    (void)state;
    struct config *c = load_ok(full_yaml, NULL);
    assert_int_equal(c->nmodels, 3);
    const struct model_cfg *small = &c->models[0];
    assert_string_equal(small->name, "small");
    assert_ptr_equal(small->provider, &c->providers[0]);
    assert_string_equal(small->upstream, "small-upstream-id?ttft_ms=20");
    assert_int_equal(small->input_nusd_per_mtok, 50000000);
    assert_int_equal(small->output_nusd_per_mtok, 80000000);
    assert_int_equal(small->cached_nusd_per_mtok, 25000000);
    assert_int_equal(small->tier, 1);
    assert_int_equal(small->context_tokens, 131072);
    assert_int_equal(small->prior_ttft_ms, 200);
    assert_int_equal(small->prior_tokens_per_s, 700);
    const struct model_cfg *mid = &c->models[1];
    assert_string_equal(mid->upstream, "mid"); /* default: the name */
    assert_ptr_equal(mid->provider, &c->providers[1]);
    assert_int_equal(mid->input_nusd_per_mtok, 1000000000);
    assert_int_equal(mid->output_nusd_per_mtok, 2500000000LL);
    assert_int_equal(mid->cached_nusd_per_mtok, 0);
    assert_int_equal(mid->tier, 2);
    assert_int_equal(mid->nfallbacks, 0);
    const struct model_cfg *big = &c->models[2];
    assert_int_equal(big->input_nusd_per_mtok, 10500000000LL);
    assert_int_equal(big->output_nusd_per_mtok, 30000000000LL);
    assert_int_equal(big->tier, 3);
    config_unref(c);
}

static void test_fallbacks_are_resolved_to_models_in_order(void **state)
{
    (void)state;
    struct config *c = load_ok(full_yaml, NULL);
    const struct model_cfg *small = &c->models[0];
    assert_int_equal(small->nfallbacks, 2);
    assert_ptr_equal(small->fallbacks[0], &c->models[2]); /* big */
    assert_ptr_equal(small->fallbacks[1], &c->models[1]); /* mid */
    assert_ptr_equal(config_model(c, "big", 3), &c->models[2]);
    assert_ptr_equal(config_model(c, "bigger", 3), &c->models[2]);
    assert_null(config_model(c, "bi", 2));
    assert_null(config_model(c, "auto", 4));
    config_unref(c);
}

static void test_defaults_apply_when_sections_are_absent(void **state)
{
    (void)state;
    struct config *c = load_ok(MINIMAL_PROVIDERS_AND_MODELS, NULL);
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8080);
    assert_true(c->workers >= 1);
    assert_int_equal(c->log_level, LOG_INFO);
    assert_null(c->log_file);
    assert_int_equal(c->nkeys, 0);
    assert_int_equal(c->max_body_bytes, 4 * 1024 * 1024);
    assert_int_equal(c->max_header_bytes, 16 * 1024);
    assert_int_equal(c->read_timeout_ms, 30000);
    assert_int_equal(c->idle_timeout_ms, 60000);
    assert_int_equal(c->shutdown_grace_ms, 10000);
    assert_int_equal(c->output_high_water_bytes, 1024 * 1024);
    assert_int_equal(c->write_timeout_ms, 30000);
    assert_int_equal(c->connect_timeout_ms, 5000);
    assert_int_equal(c->first_byte_timeout_ms, 60000);
    assert_int_equal(c->stream_idle_timeout_ms, 60000);
    assert_int_equal(c->call_timeout_ms, 600000);
    assert_int_equal(c->retries, 1);
    assert_int_equal(c->retry_backoff_ms, 50);
    assert_int_equal(c->retry_backoff_max_ms, 1000);
    assert_int_equal(c->retry_max_wait_ms, 2000);
    assert_int_equal(c->hedge_after_ms, 0);
    assert_int_equal(c->rescue_max_bytes, 65536);
    assert_int_equal(c->default_max_latency_ms, 2000);
    assert_int_equal(c->default_min_quality_tier, 1);
    const struct model_cfg *m = &c->models[0];
    assert_int_equal(m->tier, 1);
    assert_int_equal(m->context_tokens, 8192);
    assert_int_equal(m->prior_ttft_ms, 500);
    assert_int_equal(m->prior_tokens_per_s, 100);
    assert_int_equal(m->input_nusd_per_mtok, 0);
    assert_false(c->limits_fail_closed);
    assert_int_equal(c->limits_redis_timeout_ms, 100);
    assert_int_equal(c->limits_default_max_tokens, 1024);
    config_unref(c);
}

static void test_the_limits_section_is_read_and_checked(void **state)
{
    (void)state;
    char yaml[4096];
    snprintf(yaml, sizeof(yaml), "limits: {on_redis_failure: closed, "
             "redis_timeout_ms: 20, default_max_tokens: 256}\n%s",
             MINIMAL_PROVIDERS_AND_MODELS);
    struct config *c = load_ok(yaml, NULL);
    assert_true(c->limits_fail_closed);
    assert_int_equal(c->limits_redis_timeout_ms, 20);
    assert_int_equal(c->limits_default_max_tokens, 256);
    config_unref(c);
    snprintf(yaml, sizeof(yaml), "limits:\n  on_redis_failure: maybe\n"
             "  redis_timeout_ms: 0\n  speed: 1\n%s",
             MINIMAL_PROVIDERS_AND_MODELS);
    struct loaded l = load(yaml, NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 2, "limits.on_redis_failure", "\"maybe\"");
    assert_mistake(&l, 3, "limits.redis_timeout_ms", "\"0\"");
    assert_mistake(&l, 4, "limits", "unknown field \"speed\"");
    loaded_free(&l);
}

static void test_the_routing_knobs_have_defaults(void **state)
{
    (void)state;
    struct config *c = load_ok(MINIMAL_PROVIDERS_AND_MODELS, NULL);
    assert_int_equal(c->routing.percentile, 90);
    assert_int_equal(c->routing.window, 32);
    assert_int_equal(c->routing.max_age_ms, 30000);
    assert_int_equal(c->routing.safe_percentile, 97);
    assert_int_equal(c->routing.safe_extra_pct, 75);
    assert_int_equal(c->routing.bargain_percentile, 85);
    assert_int_equal(c->routing.bargain_ratio_pct, 300);
    assert_int_equal(c->routing.overdue_waits, 2);
    assert_int_equal(c->routing.first_token_margin_pct, 100);
    assert_int_equal(c->routing.breaker_failures, 5);
    assert_int_equal(c->default_max_ttft_ms, 0);
    assert_false(c->default_hedge);
    config_unref(c);
}

static void test_the_routing_knobs_are_read_and_checked(void **state)
{
    (void)state;
    char yaml[4096];
    snprintf(yaml, sizeof(yaml), "routing:\n"
             "  defaults: {max_latency_ms: 900, max_ttft_ms: 300, "
             "hedge: true}\n"
             "  latency: {percentile: 95, window: 16, max_age_ms: 60000, "
             "output_tokens_prior: 300, explore_after_ms: 15000, "
             "bargain_percentile: 80, bargain_ratio_pct: 0, "
             "overdue_waits: 3}\n"
             "  deadline: {margin_pct: 10, margin_ms: 20}\n"
             "  hedge: {margin_pct: 5, margin_ms: 0}\n"
             "  breaker: {failures: 3, error_pct: 40, min_requests: 20, "
             "open_ms: 5000}\n%s", MINIMAL_PROVIDERS_AND_MODELS);
    struct config *c = load_ok(yaml, NULL);
    assert_int_equal(c->default_max_latency_ms, 900);
    assert_int_equal(c->default_max_ttft_ms, 300);
    assert_true(c->default_hedge);
    assert_int_equal(c->routing.percentile, 95);
    assert_int_equal(c->routing.window, 16);
    assert_int_equal(c->routing.max_age_ms, 60000);
    assert_int_equal(c->routing.output_tokens_prior, 300);
    assert_int_equal(c->routing.explore_after_ms, 15000);
    assert_int_equal(c->routing.bargain_percentile, 80);
    assert_int_equal(c->routing.bargain_ratio_pct, 0);
    assert_int_equal(c->routing.overdue_waits, 3);
    assert_int_equal(c->routing.first_token_margin_pct, 10);
    assert_int_equal(c->routing.first_token_margin_ms, 20);
    assert_int_equal(c->routing.hedge_margin_pct, 5);
    assert_int_equal(c->routing.hedge_margin_ms, 0);
    assert_int_equal(c->routing.breaker_failures, 3);
    assert_int_equal(c->routing.breaker_error_pct, 40);
    assert_int_equal(c->routing.breaker_min_requests, 20);
    assert_int_equal(c->routing.breaker_open_ms, 5000);
    config_unref(c);
    snprintf(yaml, sizeof(yaml), "routing:\n"
             "  defaults:\n"
             "    hedge: maybe\n"                                /* 3 */
             "  latency:\n"
             "    percentile: 100\n"                             /* 5 */
             "    window: 200\n"                                 /* 6 */
             "    speed: 1\n"                                    /* 7 */
             "  breaker: {error_pct: 0}\n"                       /* 8 */
             "  knobs: {}\n%s",                                  /* 9 */
             MINIMAL_PROVIDERS_AND_MODELS);
    struct loaded l = load(yaml, NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 3, "routing.defaults.hedge", "true or false");
    assert_mistake(&l, 5, "routing.latency.percentile", "50 to 99");
    assert_mistake(&l, 6, "routing.latency.window", "4 to 64");
    assert_mistake(&l, 7, "routing.latency", "unknown field \"speed\" "
                   "(percentile, window, max_age_ms, output_tokens_prior, "
                   "explore_after_ms, safe_percentile, safe_extra_pct, "
                   "bargain_percentile, bargain_ratio_pct, overdue_waits)");
    assert_mistake(&l, 8, "routing.breaker.error_pct", "\"0\"");
    assert_mistake(&l, 9, "routing", "unknown field \"knobs\"");
    loaded_free(&l);
}

static void test_a_cache_write_price_defaults_to_the_input_price(
    void **state)
{
    (void)state;
    struct config *c = load_ok(
        "providers: {p: {kind: openai, base_url: \"http://127.0.0.1:1\"}}\n"
        "models:\n"
        "  - {name: a, provider: p, price: {input: 3, cache_write: 3.75}}\n"
        "  - {name: b, provider: p, price: {input: 0.5}}\n", NULL);
    assert_int_equal(c->models[0].cache_write_nusd_per_mtok, 3750000000LL);
    assert_int_equal(c->models[1].cache_write_nusd_per_mtok, 500000000LL);
    config_unref(c);
}

static void test_models_may_come_before_providers(void **state)
{
    (void)state;
    struct config *c = load_ok("models:\n"
                               "  - name: m\n"
                               "    provider: p\n"
                               "providers:\n"
                               "  p: {kind: openai, base_url: "
                               "\"http://h:1\"}\n",
                               NULL);
    assert_ptr_equal(c->models[0].provider, &c->providers[0]);
    config_unref(c);
}

static void test_the_example_config_of_the_repository_loads(void **state)
{
    (void)state;
    if (access("relay.example.yaml", R_OK) != 0) {
        skip(); /* run from elsewhere than the repository root */
    }
    setenv("RELAY_API_KEY", "example-key-0123456789", 1);
    struct buf errors;
    buf_init(&errors, 1 << 20);
    buf_append(&errors, "", 0);
    struct config *c = NULL;
    enum rl_err err = config_load("relay.example.yaml", &c, &errors);
    unsetenv("RELAY_API_KEY");
    if (err != RL_OK) {
        fail_msg("relay.example.yaml:\n%s", errors.p);
    }
    assert_true(c->nmodels > 0);
    assert_true(c->nkeys >= 1);
    config_unref(c);
    buf_free(&errors);
}

/* ---------------------------------------------------------------------
 * Mistakes, each with its line and field
 * ------------------------------------------------------------------- */

static const char mistakes_yaml[] =
    "listen: nonsense\n"                                        /* 1 */
    "workers: 0\n"                                              /* 2 */
    "log_level: loud\n"                                         /* 3 */
    "bogus_top: 1\n"                                            /* 4 */
    "server:\n"                                                 /* 5 */
    "  max_body_bytes: 12\n"                                    /* 6 */
    "  colour: blue\n"                                          /* 7 */
    "providers:\n"                                              /* 8 */
    "  p:\n"                                                    /* 9 */
    "    kind: smoke\n"                                         /* 10 */
    "    base_url: ftp://x\n"                                   /* 11 */
    "    extra: 1\n"                                            /* 12 */
    "  q:\n"                                                    /* 13 */
    "    base_url: http://q\n"                                  /* 14 */
    "models:\n"                                                 /* 15 */
    "  - name: a\n"                                             /* 16 */
    "    provider: p\n"                                         /* 17 */
    "    price: {input: 0.05}\n"                                /* 18 */
    "  - name: b\n"                                             /* 19 */
    "    provider: nope\n"                                      /* 20 */
    "    price: {input: abc, output: 0.0000000001, cached_input: -1}\n"
    "    tier: high\n"                                          /* 22 */
    "    fallbacks: [a, ghost, b]\n"                            /* 23 */
    "    shape: round\n"                                        /* 24 */
    "  - name: a\n"                                             /* 25 */
    "    provider: p\n"                                         /* 26 */
    "  - name: auto\n"                                          /* 27 */
    "    provider: p\n"                                         /* 28 */
    "  - provider: p\n"                                         /* 29 */
    "routing:\n"                                                /* 30 */
    "  defaults: {max_latency_ms: 0, min_quality_tier: x, speed: 1}\n"
    "auth:\n"                                                   /* 32 */
    "  keys: [short]\n";                                        /* 33 */

static void test_every_mistake_is_reported_with_line_and_field(void **state)
{
    (void)state;
    struct loaded l = load(mistakes_yaml, NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_null(l.cfg);
    assert_mistake(&l, 1, "listen", "HOST:PORT");
    assert_mistake(&l, 2, "workers", "from 1 to 256");
    assert_mistake(&l, 3, "log_level", "\"loud\"");
    assert_mistake(&l, 4, "bogus_top", "unknown top-level field");
    assert_mistake(&l, 6, "server.max_body_bytes", "\"12\"");
    assert_mistake(&l, 7, "server", "unknown field \"colour\"");
    assert_mistake(&l, 10, "providers.p.kind", "unknown kind \"smoke\"");
    assert_mistake(&l, 10, "providers.p.kind", "openai");
    assert_mistake(&l, 11, "providers.p.base_url", "http://");
    assert_mistake(&l, 12, "providers.p", "unknown field \"extra\"");
    assert_mistake(&l, 14, "providers.q", "missing \"kind\"");
    assert_mistake(&l, 20, "models[1].provider", "no provider \"nope\"");
    assert_mistake(&l, 21, "models[1].price.input", "\"abc\"");
    assert_mistake(&l, 21, "models[1].price.output", "0.0000000001");
    assert_mistake(&l, 21, "models[1].price.cached_input", "\"-1\"");
    assert_mistake(&l, 22, "models[1].tier", "\"high\"");
    assert_mistake(&l, 23, "models[1].fallbacks", "no model named \"ghost\"");
    assert_mistake(&l, 23, "models[1].fallbacks", "itself");
    assert_mistake(&l, 24, "models[1]", "unknown field \"shape\"");
    assert_mistake(&l, 25, "models[2]", "a model named \"a\" exists");
    assert_mistake(&l, 27, "models[3]", "\"auto\" is reserved");
    assert_mistake(&l, 29, "models[4]", "missing \"name\"");
    assert_mistake(&l, 31, "routing.defaults.max_latency_ms", "\"0\"");
    assert_mistake(&l, 31, "routing.defaults.min_quality_tier", "\"x\"");
    assert_mistake(&l, 31, "routing.defaults", "unknown field \"speed\"");
    assert_mistake(&l, 33, "auth.keys", "16 to 512");
    /* Nothing else: one line per mistake above (two checks share line 10),
     * plus models[1]'s missing
     * provider (its provider line was wrong). */
    assert_mistake(&l, 19, "models[1]", "missing \"provider\"");
    assert_int_equal(count_lines(l.errors.p), 26);
    loaded_free(&l);
}

static void test_an_unknown_provider_kind_is_refused(void **state)
{
    (void)state;
    struct loaded l = load("providers:\n"
                           "  p:\n"
                           "    kind: anthropic-ish\n"
                           "    base_url: http://h\n"
                           "models:\n"
                           "  - {name: m, provider: p}\n",
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 3, "providers.p.kind", "unknown kind");
    assert_int_equal(count_lines(l.errors.p), 1);
    loaded_free(&l);
}

static void test_backpressure_marks_out_of_range_are_refused(void **state)
{
    (void)state;
    /* Over 4 MiB, one 8 MiB event on top would pass the 16 MiB a client
     * may have unsent: the mark would never pause anything in time. */
    struct loaded l = load("server:\n"
                           "  output_high_water_bytes: 4194305\n"
                           "  write_timeout_ms: 0\n"
                           MINIMAL_PROVIDERS_AND_MODELS,
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 2, "server.output_high_water_bytes",
                   "from 65536 to 4194304");
    assert_mistake(&l, 3, "server.write_timeout_ms", "from 1 to");
    loaded_free(&l);
}

static void test_upstream_retries_out_of_range_are_refused(void **state)
{
    (void)state;
    struct loaded l = load("upstream:\n"
                           "  retries: 6\n"
                           "  retry_backoff_ms: 0\n"
                           MINIMAL_PROVIDERS_AND_MODELS,
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 2, "upstream.retries", "from 0 to 5");
    assert_mistake(&l, 3, "upstream.retry_backoff_ms", "from 1 to");
    loaded_free(&l);
}

static void test_an_unknown_fallback_is_refused(void **state)
{
    (void)state;
    struct loaded l = load(MINIMAL_PROVIDERS_AND_MODELS
                           "    fallbacks:\n"
                           "      - ghost\n",
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 9, "models[0].fallbacks", "no model named \"ghost\"");
    loaded_free(&l);
}

static void test_fallbacks_must_be_a_list(void **state)
{
    (void)state;
    struct loaded l = load(MINIMAL_PROVIDERS_AND_MODELS
                           "    fallbacks: ghost\n",
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 8, "models[0].fallbacks", "list of model names");
    loaded_free(&l);
}

static void test_a_duplicate_model_name_is_refused(void **state)
{
    (void)state;
    struct loaded l = load(MINIMAL_PROVIDERS_AND_MODELS
                           "  - name: m\n"
                           "    provider: p\n",
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 8, "models[1]", "exists already");
    loaded_free(&l);
}

static void test_the_name_auto_is_reserved(void **state)
{
    (void)state;
    struct loaded l = load(MINIMAL_PROVIDERS_AND_MODELS
                           "  - name: auto\n"
                           "    provider: p\n",
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 8, "models[1]", "reserved");
    loaded_free(&l);
}

static void test_no_models_is_a_mistake(void **state)
{
    (void)state;
    struct loaded l = load("providers:\n"
                           "  p: {kind: openai, base_url: \"http://h\"}\n"
                           "models: []\n",
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_non_null(strstr(l.errors.p, "models: no models configured"));
    loaded_free(&l);
}

static void test_sections_of_the_wrong_shape_are_reported(void **state)
{
    (void)state;
    struct loaded l = load("server: 12\n"                     /* 1 */
                           "auth:\n"                          /* 2 */
                           "  keys: one-key-only-here-123\n"  /* 3 */
                           "providers:\n"                     /* 4 */
                           "  p: {kind: openai, base_url: \"http://h\"}\n"
                           "models:\n"                        /* 6 */
                           "  - name: [a, b]\n"               /* 7 */
                           "    provider: p\n"                /* 8 */
                           "    price: 0.5\n"                 /* 9 */
                           "  - just-a-string\n",             /* 10 */
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 1, "server", "expected a mapping");
    assert_mistake(&l, 3, "auth.keys", "expected a list");
    assert_mistake(&l, 7, "models[0].name", "single value");
    assert_mistake(&l, 9, "models[0].price", "expected a mapping");
    assert_mistake(&l, 10, "models[1]", "expected a mapping");
    loaded_free(&l);
}

static void test_a_yaml_syntax_error_names_its_line(void **state)
{
    (void)state;
    struct loaded l = load("listen: 127.0.0.1:8080\n"
                           "models:\n"
                           "  - name: [unclosed\n"
                           "    provider: p\n",
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_null(l.cfg);
    assert_non_null(strstr(l.errors.p, ": (yaml): "));
    loaded_free(&l);
}

static void test_an_empty_file_is_a_mistake(void **state)
{
    (void)state;
    struct loaded l = load("", NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_non_null(strstr(l.errors.p, "empty"));
    loaded_free(&l);
}

static void test_a_missing_file_is_an_io_error(void **state)
{
    (void)state;
    struct buf errors;
    buf_init(&errors, 4096);
    struct config *c = (struct config *)1;
    assert_int_equal(config_load("/nonexistent/relay.yaml", &c, &errors),
                     RL_E_IO);
    assert_null(c);
    assert_non_null(strstr(errors.p, "/nonexistent/relay.yaml"));
    buf_free(&errors);
}

/*
 * Regression (fixed; src/config/config.c, load_models): the fallbacks of a model are
 * reported as "models[i].fallbacks" with i the index among the models that
 * were kept, not the model's index in the file. When an earlier list item
 * is not a mapping (skipped), the field names the wrong model. Input below:
 * expected "models[2].fallbacks", actual "models[1].fallbacks".
 */
static void test_fallback_mistakes_name_the_model_index_of_the_file(
    void **state)
{
    (void)state;
    struct loaded l = load(MINIMAL_PROVIDERS_AND_MODELS  /* models[0] */
                           "  - oops\n"                   /* models[1] */
                           "  - name: n\n"                /* models[2] */
                           "    provider: p\n"
                           "    fallbacks: [ghost]\n",    /* line 11 */
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 11, "models[2].fallbacks", "ghost");
    loaded_free(&l);
}

/*
 * Regression (fixed; src/config/config.c, top_pair, "providers"): a second
 * `providers:` key (YAML duplicate keys are not refused by libyaml) makes a
 * new array sized for the second section while nproviders keeps counting
 * from the first: a heap buffer overflow (ASan: heap-buffer-overflow in
 * providers_pair) and a leak of the first array. Expected: a mistake
 * "providers: given twice" (or any error), no memory error.
 */
static void test_a_section_given_twice_is_a_mistake_not_an_overflow(
    void **state)
{
    (void)state;
    struct loaded l = load("providers:\n"
                           "  a: {kind: openai, base_url: \"http://a\"}\n"
                           "providers:\n"
                           "  b: {kind: openai, base_url: \"http://b\"}\n"
                           "  c: {kind: openai, base_url: \"http://c\"}\n"
                           "models:\n"
                           "  - {name: m, provider: b}\n",
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    loaded_free(&l);
}

/* ---------------------------------------------------------------------
 * ${VAR} expansion and .env
 * ------------------------------------------------------------------- */

static void test_variables_expand_from_the_environment(void **state)
{
    (void)state;
    setenv("RELAY_T_KEY", "env-key-0123456789abcdef", 1);
    setenv("RELAY_T_PORT", "9393", 1);
    setenv("RELAY_T_URL", "http://upstream.test:81/v1", 1);
    unsetenv("RELAY_T_UNSET");
    struct config *c = load_ok(
        "listen: 127.0.0.1:${RELAY_T_PORT}\n"
        "auth:\n"
        "  keys: [${RELAY_T_KEY}, ${RELAY_T_UNSET}]\n" /* flow list */
        "providers:\n"
        "  p:\n"
        "    kind: openai\n"
        "    base_url: ${RELAY_T_URL}\n"
        "    api_key: ${RELAY_T_UNSET}\n"
        "models:\n"
        "  - name: m\n"
        "    provider: p\n"
        "    upstream: ${RELAY_T_UNSET:-default-upstream}\n",
        NULL);
    assert_int_equal(c->listen_port, 9393);
    assert_int_equal(c->nkeys, 1); /* an unset key adds no key */
    assert_sha256(c->key_sha256[0], "env-key-0123456789abcdef");
    assert_string_equal(c->providers[0].base_url,
                        "http://upstream.test:81/v1");
    assert_string_equal(c->providers[0].api_key, "");
    assert_string_equal(c->models[0].upstream, "default-upstream");
    config_unref(c);
    unsetenv("RELAY_T_KEY");
    unsetenv("RELAY_T_PORT");
    unsetenv("RELAY_T_URL");
}

static void test_variables_come_from_a_dotenv_beside_the_file(void **state)
{
    (void)state;
    unsetenv("RELAY_T_DOTENV");
    unsetenv("RELAY_T_QUOTED");
    setenv("RELAY_T_BOTH", "from-the-environment", 1);
    struct config *c = load_ok(
        "auth:\n"
        "  keys:\n"
        "    - ${RELAY_T_DOTENV}\n"
        "providers:\n"
        "  p:\n"
        "    kind: openai\n"
        "    base_url: http://h/v1\n"
        "    api_key: ${RELAY_T_QUOTED}\n"
        "models:\n"
        "  - name: m\n"
        "    provider: p\n"
        "    upstream: ${RELAY_T_BOTH}\n",
        "# a comment\n"
        "RELAY_T_DOTENV=dotenv-key-0123456789\n"
        "  export RELAY_T_QUOTED=\"quoted value\"  \n"
        "RELAY_T_BOTH=from-the-file\n");
    assert_int_equal(c->nkeys, 1);
    assert_sha256(c->key_sha256[0], "dotenv-key-0123456789");
    assert_string_equal(c->providers[0].api_key, "quoted value");
    /* The environment wins over the file. */
    assert_string_equal(c->models[0].upstream, "from-the-environment");
    config_unref(c);
    unsetenv("RELAY_T_BOTH");
}

static void test_expand_directly(void **state)
{
    (void)state;
    struct buf out;
    buf_init(&out, 1024);
    setenv("RELAY_T_A", "alpha", 1);
    setenv("RELAY_T_EMPTY", "", 1);
    unsetenv("RELAY_T_NONE");
    assert_int_equal(config_expand("plain", NULL, &out), RL_OK);
    assert_string_equal(out.p, "plain");
    assert_int_equal(config_expand("", NULL, &out), RL_OK);
    assert_string_equal(out.p, "");
    assert_int_equal(config_expand("x${RELAY_T_A}y${RELAY_T_A}", NULL, &out),
                     RL_OK);
    assert_string_equal(out.p, "xalphayalpha");
    assert_int_equal(config_expand("${RELAY_T_NONE:-d1}|${RELAY_T_EMPTY:-d2}"
                                   "|${RELAY_T_A:-d3}|${RELAY_T_NONE:-}",
                                   NULL, &out),
                     RL_OK);
    assert_string_equal(out.p, "d1|d2|alpha|");
    assert_int_equal(config_expand("${RELAY_T_NONE}", NULL, &out), RL_OK);
    assert_string_equal(out.p, "");
    assert_int_equal(config_expand("cost $5 and $$", NULL, &out), RL_OK);
    assert_string_equal(out.p, "cost $5 and $$");
    assert_int_equal(config_expand("${RELAY_T_NONE}", "RELAY_T_NONE=file\n",
                                   &out),
                     RL_OK);
    assert_string_equal(out.p, "file");
    /* A variable set but empty in the environment is taken from .env. */
    assert_int_equal(config_expand("${RELAY_T_EMPTY}",
                                   "RELAY_T_EMPTY=from-file\n", &out),
                     RL_OK);
    assert_string_equal(out.p, "from-file");
    /* A prefix of another name is not that name. */
    assert_int_equal(config_expand("${RELAY_T_NO}", "RELAY_T_NONE=file\n",
                                   &out),
                     RL_OK);
    assert_string_equal(out.p, "");
    assert_int_equal(config_expand("${RELAY_T_A", NULL, &out), RL_E_CONFIG);
    assert_int_equal(config_expand("${}", NULL, &out), RL_E_CONFIG);
    unsetenv("RELAY_T_A");
    unsetenv("RELAY_T_EMPTY");
    buf_free(&out);
}

/* ---------------------------------------------------------------------
 * Prices and references
 * ------------------------------------------------------------------- */

static void test_prices_parse_exactly(void **state)
{
    (void)state;
    struct {
        const char *s;
        int64_t nusd;
    } ok[] = {
        {"0", 0},
        {"0.0", 0},
        {"0.1", 100000000},
        {"0.05", 50000000},
        {"0.000000001", 1},
        {"10.5", 10500000000LL},
        {"3", 3000000000LL},
        {"1234.567890123", 1234567890123LL},
        {"007.25", 7250000000LL},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t v = -1;
        if (!config_parse_price(ok[i].s, &v)) {
            fail_msg("\"%s\" refused", ok[i].s);
        }
        assert_int_equal(v, ok[i].nusd);
    }
}

static void test_bad_prices_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "0.0000000001", /* ten decimals: below a nano-dollar */
        "",       "abc",  "-1",   "+1",  ".5",  "1e-3", "1,5",
        "1.2.3",  " 1",   "1 ",   "0x10", "5.25abc", "NaN", "inf",
        "999999999999999999999", /* would overflow */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = 42;
        if (config_parse_price(bad[i], &v)) {
            fail_msg("\"%s\" accepted as %lld", bad[i], (long long)v);
        }
        assert_int_equal(v, 42); /* untouched on failure */
    }
}

static void test_references_are_counted(void **state)
{
    (void)state;
    struct config *c = load_ok(MINIMAL_PROVIDERS_AND_MODELS, NULL);
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_ptr_equal(config_ref(c), c);
    assert_int_equal(atomic_load(&c->refs), 2);
    config_unref(c);
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_string_equal(c->models[0].name, "m"); /* still alive */
    config_unref(c); /* frees: ASan would see a double free or a leak */
    config_unref(NULL); /* harmless */
}

/* A NUL byte ended the text YAML saw: what came after it was dropped
 * without a word, here a second model (fuzz_config). */
static void test_a_nul_byte_is_an_error_not_the_end(void **state)
{
    (void)state;
    static const char text[] = MINIMAL_PROVIDERS_AND_MODELS "\n\0"
                               "  - {name: late, provider: p, upstream: x}\n";
    struct loaded l = load_bytes(text, sizeof(text) - 1, NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_null(l.cfg);
    int line = 1;
    for (const char *q = text; *q; q++) {
        line += *q == '\n';
    }
    assert_mistake(&l, line, "(file)", "NUL byte");
    loaded_free(&l);
}

/* A value quoted in an error kept its newline, so one mistake read as
 * two lines, the second forged by the file (fuzz_config). */
static void test_an_error_quoting_a_newline_is_one_line(void **state)
{
    (void)state;
    struct loaded l = load(MINIMAL_PROVIDERS_AND_MODELS
                           "    context: \"81\\n/x.yaml:1: fake: error\"\n",
                           NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 8, "models[0].context", "got \"81\\n/x.yaml:1: fake");
    assert_null(strstr(l.errors.p, "\n/x.yaml"));
    loaded_free(&l);
}

/* A key "" gave "relay.yaml:1: : unknown top-level field" (fuzz_config). */
static void test_an_empty_key_is_named_in_its_error(void **state)
{
    (void)state;
    struct loaded l = load("\"\": 1\n" MINIMAL_PROVIDERS_AND_MODELS, NULL);
    assert_int_equal(l.err, RL_E_CONFIG);
    assert_mistake(&l, 1, "\"\"", "unknown top-level field");
    loaded_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_full_config_is_read_field_by_field),
        cmocka_unit_test(test_keys_are_kept_only_as_hashes_and_prefixes),
        cmocka_unit_test(test_providers_are_read_with_their_adapter),
        cmocka_unit_test(test_models_prices_are_exact_nano_dollars),
        cmocka_unit_test(test_fallbacks_are_resolved_to_models_in_order),
        cmocka_unit_test(test_defaults_apply_when_sections_are_absent),
        cmocka_unit_test(test_the_limits_section_is_read_and_checked),
        cmocka_unit_test(test_the_routing_knobs_have_defaults),
        cmocka_unit_test(test_the_routing_knobs_are_read_and_checked),
        cmocka_unit_test(
            test_a_cache_write_price_defaults_to_the_input_price),
        cmocka_unit_test(test_models_may_come_before_providers),
        cmocka_unit_test(test_the_example_config_of_the_repository_loads),
        cmocka_unit_test(test_every_mistake_is_reported_with_line_and_field),
        cmocka_unit_test(test_an_unknown_provider_kind_is_refused),
        cmocka_unit_test(test_upstream_retries_out_of_range_are_refused),
        cmocka_unit_test(test_backpressure_marks_out_of_range_are_refused),
        cmocka_unit_test(test_an_unknown_fallback_is_refused),
        cmocka_unit_test(test_fallbacks_must_be_a_list),
        cmocka_unit_test(test_a_duplicate_model_name_is_refused),
        cmocka_unit_test(test_the_name_auto_is_reserved),
        cmocka_unit_test(test_no_models_is_a_mistake),
        cmocka_unit_test(test_sections_of_the_wrong_shape_are_reported),
        cmocka_unit_test(test_a_yaml_syntax_error_names_its_line),
        cmocka_unit_test(test_an_empty_file_is_a_mistake),
        cmocka_unit_test(test_a_missing_file_is_an_io_error),
        cmocka_unit_test(
            test_fallback_mistakes_name_the_model_index_of_the_file),
        cmocka_unit_test(
            test_a_section_given_twice_is_a_mistake_not_an_overflow),
        cmocka_unit_test(test_variables_expand_from_the_environment),
        cmocka_unit_test(test_variables_come_from_a_dotenv_beside_the_file),
        cmocka_unit_test(test_expand_directly),
        cmocka_unit_test(test_prices_parse_exactly),
        cmocka_unit_test(test_bad_prices_are_refused),
        cmocka_unit_test(test_references_are_counted),
        cmocka_unit_test(test_a_nul_byte_is_an_error_not_the_end),
        cmocka_unit_test(test_an_error_quoting_a_newline_is_one_line),
        cmocka_unit_test(test_an_empty_key_is_named_in_its_error),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
