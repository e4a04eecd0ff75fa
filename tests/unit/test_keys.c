/*
 * test_keys.c - unit tests of API keys: their form (src/auth/keygen.c),
 * `relay keys` arguments and POST /admin/keys bodies (src/admin/spec.c,
 * cli.c), the store's key operations (src/store/keys.c) and the key cache
 * with auth_check (src/auth/keycache.c, auth.c) on a temporary SQLite.
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
#include "auth/auth.h"
#include "config/config.h"
#include "store/store.h"

static char tmpdir[] = "/tmp/relay-test-keys.XXXXXX";

/* ---------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------- */

static void test_a_key_is_glw_and_40_base62_with_its_prefix_and_hash(void **s)
{
    (void)s;
    struct auth_new_key k;
    assert_int_equal(auth_key_generate(&k), RL_OK);
    assert_int_equal(strlen(k.key), 44);
    assert_memory_equal(k.key, "glw_", 4);
    assert_true(auth_key_well_formed(k.key, strlen(k.key)));
    for (int i = 4; i < 44; i++) {
        char c = k.key[i];
        assert_true((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                    (c >= 'A' && c <= 'Z'));
    }
    assert_int_equal(strlen(k.prefix), 8);
    assert_memory_equal(k.prefix, k.key, 8);
    char hex[65];
    auth_sha256_hex(k.key, 44, hex);
    assert_string_equal(hex, k.sha256_hex);
    assert_int_equal(strlen(k.id), 20);
    assert_memory_equal(k.id, "key_", 4);
    struct auth_new_key k2;
    assert_int_equal(auth_key_generate(&k2), RL_OK);
    assert_string_not_equal(k.key, k2.key);
}

static void test_sha256_hex_of_a_known_text(void **s)
{
    (void)s;
    char hex[65];
    auth_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
                             "b00361a396177a9cb410ff61f20015ad");
}

/* Every accepted byte value maps to a character, each character to
 * exactly four byte values; bytes from 248 up are dropped. */
static void test_base62_takes_bytes_without_modulo_bias(void **s)
{
    (void)s;
    unsigned char all[256];
    for (int i = 0; i < 256; i++) {
        all[i] = (unsigned char)i;
    }
    char out[256];
    size_t n = auth_base62_take(all, 256, out, sizeof(out));
    assert_int_equal(n, AUTH_BASE62_LIMIT);
    int count[256] = {0};
    for (size_t i = 0; i < n; i++) {
        count[(unsigned char)out[i]]++;
    }
    int distinct = 0;
    for (int c = 0; c < 256; c++) {
        if (count[c]) {
            assert_int_equal(count[c], 4);
            distinct++;
        }
    }
    assert_int_equal(distinct, 62);
    unsigned char high[] = {248, 250, 255, 0};
    assert_int_equal(auth_base62_take(high, 4, out, 4), 1);
    assert_int_equal(out[0], '0');
    assert_int_equal(auth_base62_take(all, 256, out, 3), 3);
}

static void test_malformed_keys_are_not_well_formed(void **s)
{
    (void)s;
    assert_false(auth_key_well_formed("glw_abc", 7));
    char k[45];
    memset(k, 'a', 44);
    k[44] = '\0';
    assert_false(auth_key_well_formed(k, 44)); /* no glw_ */
    memcpy(k, "glw_", 4);
    assert_true(auth_key_well_formed(k, 44));
    k[10] = '-';
    assert_false(auth_key_well_formed(k, 44));
}

/* ---------------------------------------------------------------------
 * `relay keys` arguments
 * ------------------------------------------------------------------- */

static int parse(struct admin_cli *cli, char *err, const char *a0, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "keys";
    va_list ap;
    va_start(ap, a0);
    for (const char *a = a0; a && argc < 31; a = va_arg(ap, const char *)) {
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    return admin_cli_parse(argc, argv, cli, err, 512);
}

static void test_create_arguments_fill_the_spec(void **s)
{
    (void)s;
    struct admin_cli c;
    char err[512];
    assert_int_equal(parse(&c, err, "create", "--name", "prod-chat", "--rpm",
                           "60", "--tpm=100000", "--budget-usd", "50",
                           "--period", "week", "--models", "a,b.c",
                           "--routing",
                           "max_latency_ms=600,min_quality_tier=2,hedge=false",
                           "--max-concurrent", "4", "--config", "x.yaml",
                           NULL),
                     0);
    assert_int_equal(c.cmd, ADMIN_CREATE);
    assert_string_equal(c.spec.name, "prod-chat");
    assert_int_equal(c.spec.rpm, 60);
    assert_int_equal(c.spec.tpm, 100000);
    assert_int_equal(c.spec.max_concurrent, 4);
    assert_int_equal(c.spec.budget_nusd, 50000000000LL);
    assert_int_equal(c.spec.budget_period, STORE_PERIOD_WEEK);
    assert_string_equal(c.spec.models, "[\"a\",\"b.c\"]");
    assert_string_equal(c.spec.routing, "{\"hedge\":false,"
                        "\"max_latency_ms\":600,\"min_quality_tier\":2}");
    assert_string_equal(c.config, "x.yaml");
}

static void test_budget_usd_is_exact_in_nano_dollars(void **s)
{
    (void)s;
    struct admin_cli c;
    char err[512];
    assert_int_equal(parse(&c, err, "create", "--name", "n", "--budget-usd",
                           "0.1", "--period", "day", NULL), 0);
    assert_int_equal(c.spec.budget_nusd, 100000000);
    assert_int_equal(parse(&c, err, "create", "--name", "n", "--budget-usd",
                           "12.000000001", "--period", "total", NULL), 0);
    assert_int_equal(c.spec.budget_nusd, 12000000001LL);
}

static void test_bad_arguments_are_usage_errors_with_a_message(void **s)
{
    (void)s;
    struct admin_cli c;
    char err[512];
    assert_int_equal(parse(&c, err, "create", "--rpm", "5", NULL), 2);
    assert_non_null(strstr(err, "name"));
    assert_int_equal(parse(&c, err, "create", "--name", "n", "--rpm", "-1",
                           NULL), 2);
    assert_non_null(strstr(err, "--rpm"));
    assert_int_equal(parse(&c, err, "create", "--name", "n", "--budget-usd",
                           "1e3", "--period", "day", NULL), 2);
    assert_non_null(strstr(err, "budget_usd"));
    assert_int_equal(parse(&c, err, "create", "--name", "n", "--budget-usd",
                           "5", NULL), 2);
    assert_non_null(strstr(err, "period"));
    assert_int_equal(parse(&c, err, "create", "--name", "n", "--routing",
                           "max_latency_ms", NULL), 2);
    assert_non_null(strstr(err, "KEY=VALUE"));
    assert_int_equal(parse(&c, err, "create", "--name", "n", "--routing",
                           "speed=9", NULL), 2);
    assert_non_null(strstr(err, "speed"));
    assert_int_equal(parse(&c, err, "create", "--name", "n", "--models",
                           "a,,b", NULL), 2);
    assert_int_equal(parse(&c, err, "revoke", NULL), 2);
    assert_int_equal(parse(&c, err, "frobnicate", NULL), 2);
    assert_int_equal(parse(&c, err, "list", "--bogus", NULL), 2);
    assert_int_equal(parse(&c, err, "list", "--json", "--all", NULL), 0);
    assert_true(c.json && c.all);
    assert_int_equal(parse(&c, err, "revoke", "glw_AbCd", NULL), 0);
    assert_string_equal(c.target, "glw_AbCd");
    assert_int_equal(parse(&c, err, "create", "--help", NULL), 0);
    assert_true(c.help);
}

/* ---------------------------------------------------------------------
 * POST /admin/keys bodies
 * ------------------------------------------------------------------- */

static bool body(const char *text, struct store_key *k, char *err,
                 const char **param)
{
    return admin_body_parse(str_from(text), k, err, 512, param);
}

static void test_an_admin_body_fills_the_spec(void **s)
{
    (void)s;
    struct store_key k;
    char err[512];
    const char *param = NULL;
    assert_true(body("{\"name\":\"a\",\"rpm\":60,\"tpm\":1000,"
                     "\"budget_usd\":0.25,\"period\":\"month\","
                     "\"models\":[\"m1\"],\"routing\":{\"max_ttft_ms\":300},"
                     "\"max_concurrent\":2}", &k, err, &param));
    assert_string_equal(k.name, "a");
    assert_int_equal(k.rpm, 60);
    assert_int_equal(k.budget_nusd, 250000000);
    assert_int_equal(k.budget_period, STORE_PERIOD_MONTH);
    assert_string_equal(k.models, "[\"m1\"]");
    assert_string_equal(k.routing, "{\"max_ttft_ms\":300}");
    assert_int_equal(k.max_concurrent, 2);
}

static void test_bad_admin_bodies_name_the_field(void **s)
{
    (void)s;
    struct store_key k;
    char err[512];
    const char *param = NULL;
    assert_false(body("{\"name\":\"a\",\"rpm\":\"x\"}", &k, err, &param));
    assert_string_equal(param, "rpm");
    assert_false(body("{\"name\":\"a\",\"rpm\":1.5}", &k, err, &param));
    assert_string_equal(param, "rpm");
    assert_false(body("{\"rpm\":1}", &k, err, &param));
    assert_string_equal(param, "name");
    assert_false(body("{\"name\":\"a\",\"models\":\"m\"}", &k, err, &param));
    assert_string_equal(param, "models");
    assert_false(body("{\"name\":\"a\",\"routing\":{\"x\":1}}", &k, err,
                      &param));
    assert_string_equal(param, "routing");
    assert_false(body("{\"name\":\"a\",\"budget_usd\":-1,\"period\":"
                      "\"day\"}", &k, err, &param));
    assert_string_equal(param, "budget_usd");
    assert_false(body("{\"name\":\"a\",\"period\":\"year\"}", &k, err,
                      &param));
    assert_string_equal(param, "period");
    assert_false(body("[1]", &k, err, &param));
    assert_false(body("{\"name\":\"a\",\"extra\":1}", &k, err, &param));
    assert_non_null(strstr(err, "extra"));
}

/* ---------------------------------------------------------------------
 * The store and the key cache on SQLite
 * ------------------------------------------------------------------- */

static void make_key(struct store_db *db, const char *name,
                     const char *models, struct auth_new_key *nk)
{
    assert_int_equal(auth_key_generate(nk), RL_OK);
    struct store_key k;
    memset(&k, 0, sizeof(k));
    snprintf(k.name, sizeof(k.name), "%s", name);
    memcpy(k.id, nk->id, sizeof(k.id));
    memcpy(k.prefix, nk->prefix, sizeof(k.prefix));
    memcpy(k.sha256_hex, nk->sha256_hex, sizeof(k.sha256_hex));
    snprintf(k.models, sizeof(k.models), "%s", models);
    k.rpm = 7;
    char err[512];
    assert_int_equal(store_key_insert(db, &k, err, sizeof(err)), RL_OK);
    assert_true(k.version > 0);
}

static enum rl_err check_key(const char *key, struct auth_result *who,
                             struct arena *a)
{
    static struct config empty; /* no static keys */
    char header[128];
    snprintf(header, sizeof(header), "Bearer %s", key);
    return auth_check(&empty, str_from(header), a, who);
}

static void test_versions_grow_with_every_change(void **s)
{
    (void)s;
    char url[600];
    snprintf(url, sizeof(url), "sqlite:%s/v.db", tmpdir);
    struct store_db db;
    char err[512];
    assert_int_equal(store_db_open(url, true, &db, err, sizeof(err)), RL_OK);
    struct auth_new_key a;
    struct auth_new_key b;
    make_key(&db, "a", "[]", &a);
    make_key(&db, "b", "[]", &b);
    struct store_key rev;
    assert_int_equal(store_key_revoke(&db, a.id, &rev, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(store_key_revoke(&db, a.id, &rev, err, sizeof(err)),
                     RL_E_NOT_FOUND);
    struct store_key *rows = NULL;
    size_t n = 0;
    assert_int_equal(store_keys_since(&db, 0, &rows, &n, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].id, b.id); /* a changed last */
    assert_true(rows[0].version < rows[1].version);
    assert_int_equal(rows[1].version, 3);
    assert_true(rows[1].revoked_at[0]);
    free(rows);
    assert_int_equal(store_keys_since(&db, 3, &rows, &n, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(n, 0);
    free(rows);
    store_db_close(&db);
}

static void test_the_cache_finds_a_key_then_refuses_it_once_revoked(void **s)
{
    (void)s;
    char url[600];
    snprintf(url, sizeof(url), "sqlite:%s/c.db", tmpdir);
    struct store_db db;
    char err[512];
    assert_int_equal(store_db_open(url, true, &db, err, sizeof(err)), RL_OK);
    struct auth_new_key nk;
    make_key(&db, "cached", "[\"m1\",\"m2\"]", &nk);
    struct keycache_opts o = {.poll_ms = 60000}; /* refreshed by hand */
    assert_int_equal(keycache_start(url, &o), RL_OK);
    struct arena a;
    arena_init(&a, 1024);
    struct auth_result who;
    assert_int_equal(check_key(nk.key, &who, &a), RL_OK);
    assert_true(who.from_store);
    assert_string_equal(who.key_id, nk.id);
    assert_string_equal(who.name, "cached");
    assert_string_equal(who.key_prefix, nk.prefix);
    assert_int_equal(who.rpm, 7);
    assert_int_equal(who.nmodels, 2);
    assert_true(auth_model_allowed(&who, "m2"));
    assert_true(auth_model_allowed(&who, "auto"));
    assert_false(auth_model_allowed(&who, "m3"));
    assert_int_equal(who.routing.hedge, -1);

    struct auth_new_key later;
    make_key(&db, "later", "[]", &later);
    assert_int_equal(check_key(later.key, &who, &a), RL_E_UNAUTHORIZED);
    assert_int_equal(who.refusal, AUTH_UNKNOWN);
    keycache_refresh();
    assert_int_equal(check_key(later.key, &who, &a), RL_OK);

    struct store_key rev;
    assert_int_equal(store_key_revoke(&db, nk.prefix, &rev, err,
                                      sizeof(err)), RL_OK);
    assert_int_equal(check_key(nk.key, &who, &a), RL_OK); /* not yet */
    keycache_refresh();
    assert_int_equal(check_key(nk.key, &who, &a), RL_E_UNAUTHORIZED);
    assert_int_equal(who.refusal, AUTH_REVOKED);
    assert_int_equal(keycache_version(), 3);
    arena_free(&a);
    keycache_stop();
    store_db_close(&db);
}

static void test_periods_start_on_utc_boundaries(void **s)
{
    (void)s;
    int64_t t = 1733152245000000LL; /* Mon 2024-12-02 15:10:45 UTC */
    assert_int_equal(store_period_start_us(STORE_PERIOD_DAY, t),
                     1733097600000000LL);
    assert_int_equal(store_period_start_us(STORE_PERIOD_WEEK, t),
                     1733097600000000LL);
    assert_int_equal(store_period_start_us(STORE_PERIOD_MONTH, t),
                     1733011200000000LL);
    assert_int_equal(store_period_start_us(STORE_PERIOD_TOTAL, t), 0);
    int64_t sun = 1733065200000000LL; /* Sun 2024-12-01 15:00 UTC */
    assert_int_equal(store_period_start_us(STORE_PERIOD_WEEK, sun),
                     1732492800000000LL); /* Mon 2024-11-25 */
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir)) {
        return -1;
    }
    if (!getenv("RELAY_MIGRATIONS")) {
        setenv("RELAY_MIGRATIONS", "migrations", 1);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_a_key_is_glw_and_40_base62_with_its_prefix_and_hash),
        cmocka_unit_test(test_sha256_hex_of_a_known_text),
        cmocka_unit_test(test_base62_takes_bytes_without_modulo_bias),
        cmocka_unit_test(test_malformed_keys_are_not_well_formed),
        cmocka_unit_test(test_create_arguments_fill_the_spec),
        cmocka_unit_test(test_budget_usd_is_exact_in_nano_dollars),
        cmocka_unit_test(test_bad_arguments_are_usage_errors_with_a_message),
        cmocka_unit_test(test_an_admin_body_fills_the_spec),
        cmocka_unit_test(test_bad_admin_bodies_name_the_field),
        cmocka_unit_test(test_versions_grow_with_every_change),
        cmocka_unit_test(
            test_the_cache_finds_a_key_then_refuses_it_once_revoked),
        cmocka_unit_test(test_periods_start_on_utc_boundaries),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
