/*
 * test_auth.c - unit tests of src/auth/auth.c: the Authorization header
 * against the configured keys (kept as SHA-256 hashes).
 *
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

#include "auth/auth.h"
#include "config/config.h"
#include "util/alloc.h"


#define KEY_A "glw_7Qk2aaaaaaaaaaaaaaaaaaaaaaaa"
#define KEY_B "sk-relay-second-key-000000000001"

/* Loads a config whose auth.keys are keys (a YAML flow list's inside). */
static struct config *load_with_keys(const char *keys)
{
    char dir[] = "/tmp/relay-test-auth.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/relay.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "auth:\n"
            "  keys: [%s]\n"
            "providers:\n"
            "  p: {kind: openai, base_url: \"http://h\"}\n"
            "models:\n"
            "  - {name: m, provider: p}\n",
            keys);
    fclose(f);
    struct buf errors;
    buf_init(&errors, 1 << 20);
    buf_append(&errors, "", 0);
    struct config *c = NULL;
    enum rl_err err = config_load(path, &c, &errors);
    unlink(path);
    rmdir(dir);
    if (err != RL_OK) {
        fail_msg("config: %s", errors.p);
    }
    buf_free(&errors);
    return c;
}

static int setup(void **state)
{
    *state = load_with_keys(KEY_A ", " KEY_B);
    return 0;
}

static int teardown(void **state)
{
    config_unref(*state);
    return 0;
}

static enum rl_err check(const struct config *c, const char *header,
                         struct auth_result *who)
{
    memset(who, 0, sizeof(*who));
    struct arena a;
    arena_init(&a, 1024);
    enum rl_err err = auth_check(c, str_from(header), &a, who);
    arena_free(&a); /* static keys put nothing in the arena */
    return err;
}

static void test_a_configured_key_is_accepted_with_its_prefix(void **state)
{
    struct config *c = *state;
    struct auth_result who;
    assert_int_equal(check(c, "Bearer " KEY_A, &who), RL_OK);
    assert_string_equal(who.key_prefix, "glw_7Qk2");
    assert_int_equal(check(c, "Bearer " KEY_B, &who), RL_OK);
    assert_string_equal(who.key_prefix, "sk-relay");
}

static void test_the_scheme_is_case_insensitive(void **state)
{
    struct config *c = *state;
    struct auth_result who;
    assert_int_equal(check(c, "bearer " KEY_A, &who), RL_OK);
    assert_int_equal(check(c, "BEARER " KEY_A, &who), RL_OK);
    assert_int_equal(check(c, "BeArEr " KEY_A, &who), RL_OK);
}

static void test_extra_spaces_around_the_key_are_tolerated(void **state)
{
    struct config *c = *state;
    struct auth_result who;
    assert_int_equal(check(c, "Bearer    " KEY_A, &who), RL_OK);
    assert_int_equal(check(c, "  Bearer " KEY_A "  ", &who), RL_OK);
    assert_int_equal(check(c, "Bearer \t" KEY_A "\t", &who), RL_OK);
}

static void test_a_missing_or_empty_header_is_refused(void **state)
{
    struct config *c = *state;
    struct auth_result who;
    assert_int_equal(check(c, "", &who), RL_E_UNAUTHORIZED);
    assert_int_equal(check(c, "   ", &who), RL_E_UNAUTHORIZED);
    assert_int_equal(check(c, "Bearer", &who), RL_E_UNAUTHORIZED);
    assert_int_equal(check(c, "Bearer ", &who), RL_E_UNAUTHORIZED);
    assert_int_equal(check(c, "Bearer      ", &who), RL_E_UNAUTHORIZED);
    assert_int_equal(who.refusal, AUTH_MALFORMED);
    assert_string_equal(who.key_prefix, "");
    assert_int_equal(check(c, "", &who), RL_E_UNAUTHORIZED);
    assert_int_equal(who.refusal, AUTH_MISSING);
}

static void test_other_schemes_and_bare_keys_are_refused(void **state)
{
    struct config *c = *state;
    struct auth_result who;
    assert_int_equal(check(c, KEY_A, &who), RL_E_UNAUTHORIZED);
    assert_int_equal(check(c, "Basic " KEY_A, &who), RL_E_UNAUTHORIZED);
    assert_int_equal(check(c, "Token " KEY_A, &who), RL_E_UNAUTHORIZED);
    assert_int_equal(check(c, "Bearer" KEY_A, &who), RL_E_UNAUTHORIZED);
    assert_int_equal(check(c, "Bearer: " KEY_A, &who), RL_E_UNAUTHORIZED);
    assert_int_equal(who.refusal, AUTH_NOT_BEARER);
}

static void test_a_wrong_key_is_refused(void **state)
{
    struct config *c = *state;
    struct auth_result who;
    assert_int_equal(check(c, "Bearer glw_7Qk2aaaaaaaaaaaaaaaaaaaaaaab",
                           &who),
                     RL_E_UNAUTHORIZED);
    /* A prefix or an extension of a key is not the key. */
    assert_int_equal(check(c, "Bearer glw_7Qk2aaaaaaaaaaaaaaaaaaaaaaa", &who),
                     RL_E_UNAUTHORIZED);
    assert_int_equal(check(c, "Bearer " KEY_A "a", &who), RL_E_UNAUTHORIZED);
    /* Keys are case-sensitive. */
    assert_int_equal(check(c, "Bearer GLW_7QK2AAAAAAAAAAAAAAAAAAAAAAAA",
                           &who),
                     RL_E_UNAUTHORIZED);
    /* Two keys in one header are not either key. */
    assert_int_equal(check(c, "Bearer " KEY_A " " KEY_B, &who),
                     RL_E_UNAUTHORIZED);
}

static void test_a_very_long_key_is_refused_without_harm(void **state)
{
    struct config *c = *state;
    struct auth_result who;
    size_t n = 1u << 20;
    char *h = rl_malloc(n + 8);
    memcpy(h, "Bearer ", 7);
    memset(h + 7, 'k', n);
    h[7 + n] = '\0';
    assert_int_equal(check(c, h, &who), RL_E_UNAUTHORIZED);
    free(h);
}

static void test_no_configured_keys_refuse_everything(void **state)
{
    (void)state;
    struct config *c = load_with_keys("");
    assert_int_equal(c->nkeys, 0);
    struct auth_result who;
    assert_int_equal(check(c, "Bearer " KEY_A, &who), RL_E_UNAUTHORIZED);
    config_unref(c);
}

/*
 * Regression: a configured key longer than 512 characters used to load but
 * could never authenticate (auth.c refuses longer presented keys). The
 * configuration now refuses it, with the line and the limit.
 */
static void test_a_configured_key_over_512_characters_is_refused(void **state)
{
    (void)state;
    char dir[] = "/tmp/relay-test-auth.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/relay.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    char key[601];
    memset(key, 'L', 600);
    key[600] = '\0';
    fprintf(f, "auth:\n  keys: [%s]\nproviders:\n  p: {kind: openai, "
            "base_url: \"http://h\"}\nmodels:\n  - {name: m, provider: p}\n",
            key);
    fclose(f);
    struct buf errors;
    buf_init(&errors, 1 << 20);
    buf_append(&errors, "", 0);
    struct config *c = NULL;
    enum rl_err err = config_load(path, &c, &errors);
    unlink(path);
    rmdir(dir);
    assert_int_equal(err, RL_E_CONFIG);
    assert_null(c);
    assert_non_null(strstr(errors.p, "relay.yaml:2: auth.keys: a key must "
                                     "be 16 to 512 characters long"));
    buf_free(&errors);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_a_configured_key_is_accepted_with_its_prefix, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_the_scheme_is_case_insensitive,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_extra_spaces_around_the_key_are_tolerated, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_missing_or_empty_header_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_other_schemes_and_bare_keys_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_wrong_key_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_very_long_key_is_refused_without_harm, setup, teardown),
        cmocka_unit_test(test_no_configured_keys_refuse_everything),
        cmocka_unit_test(test_a_configured_key_over_512_characters_is_refused),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
