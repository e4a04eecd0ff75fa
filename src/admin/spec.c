/*
 * spec.c - what a new key is to be, from the command line or a JSON body,
 * checked the same way for both: names, limits, budget in exact
 * nano-dollars (no floats), allowed models, routing defaults. Pure
 * functions; read admin_cli_parse() and admin_body_parse() first.
 */
#include "admin/admin.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "util/jscan.h"

#define LIMIT_MAX 1000000000000LL /* any count above this is a typo */
#define ROUTING_MAX_MS 600000

/* Parses a whole non-negative decimal integer up to max. */
static bool whole(const char *s, int64_t max, int64_t *out)
{
    if (!s || !isdigit((unsigned char)s[0])) {
        return false;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0 || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static bool model_char(char c)
{
    return isalnum((unsigned char)c) || strchr("._:/@+-", c);
}

/* ---------------------------------------------------------------------
 * Pieces of a spec
 * ------------------------------------------------------------------- */

static bool set_models(struct store_key *spec, json_t *names, char *err,
                       size_t n)
{
    char *text = json_dumps(names, JSON_COMPACT);
    bool fits = text && strlen(text) < sizeof(spec->models);
    if (fits) {
        snprintf(spec->models, sizeof(spec->models), "%s", text);
    } else {
        snprintf(err, n, "models: the list is longer than %zu bytes",
                 sizeof(spec->models) - 1);
    }
    free(text);
    return fits;
}

bool admin_spec_models_csv(struct store_key *spec, const char *csv,
                           char *err, size_t n)
{
    json_t *names = json_array();
    bool ok = true;
    const char *p = csv ? csv : "";
    while (ok && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        for (size_t i = 0; i < len && ok; i++) {
            ok = model_char(p[i]);
        }
        if (!ok || len == 0 || len > 127) {
            snprintf(err, n, "models: '%.*s' is not a model name; give "
                     "names as in `relay models`, separated by commas",
                     (int)(len > 60 ? 60 : len), p);
            ok = false;
            break;
        }
        json_array_append_new(names, json_stringn(p, len));
        p += len + (end ? 1 : 0);
    }
    ok = ok && set_models(spec, names, err, n);
    json_decref(names);
    return ok;
}

/* Checks one routing default and adds it to o. */
static bool routing_value(json_t *o, const char *key, const char *value,
                          char *err, size_t n)
{
    int64_t v = 0;
    if (strcmp(key, "hedge") == 0) {
        bool on = strcmp(value, "true") == 0 || strcmp(value, "1") == 0;
        bool off = strcmp(value, "false") == 0 || strcmp(value, "0") == 0;
        if (!on && !off) {
            snprintf(err, n, "routing: hedge must be true or false, not "
                     "'%.40s'", value);
            return false;
        }
        json_object_set_new(o, key, json_boolean(on));
        return true;
    }
    bool ms = strcmp(key, "max_latency_ms") == 0 ||
              strcmp(key, "max_ttft_ms") == 0;
    bool tier = strcmp(key, "min_quality_tier") == 0;
    if (!ms && !tier) {
        snprintf(err, n, "routing: unknown field '%.40s'; use "
                 "max_latency_ms, min_quality_tier, max_ttft_ms or hedge",
                 key);
        return false;
    }
    if (!whole(value, ms ? ROUTING_MAX_MS : 100, &v) || v == 0) {
        snprintf(err, n, "routing: %s must be a whole number from 1 to %d, "
                 "not '%.40s'", key, ms ? ROUTING_MAX_MS : 100, value);
        return false;
    }
    json_object_set_new(o, key, json_integer(v));
    return true;
}

static bool set_routing(struct store_key *spec, json_t *o, char *err,
                        size_t n)
{
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    bool fits = text && strlen(text) < sizeof(spec->routing);
    if (fits) {
        snprintf(spec->routing, sizeof(spec->routing), "%s", text);
    } else {
        snprintf(err, n, "routing: too long");
    }
    free(text);
    return fits;
}

bool admin_spec_routing_pairs(struct store_key *spec, const char *pairs,
                              char *err, size_t n)
{
    json_t *o = json_object();
    bool ok = true;
    const char *p = pairs ? pairs : "";
    while (ok && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char pair[128];
        snprintf(pair, sizeof(pair), "%.*s", (int)len, p);
        char *eq = strchr(pair, '=');
        if (!eq || eq == pair || len >= sizeof(pair)) {
            snprintf(err, n, "routing: '%.60s' is not KEY=VALUE, as in "
                     "max_latency_ms=600,min_quality_tier=2", pair);
            ok = false;
            break;
        }
        *eq = '\0';
        ok = routing_value(o, pair, eq + 1, err, n);
        p += len + (end ? 1 : 0);
    }
    ok = ok && set_routing(spec, o, err, n);
    json_decref(o);
    return ok;
}

/* Writes the key's cache settings c (consumed) into spec as JSON text. */
static void cache_json_store(struct store_key *spec, json_t *c)
{
    char *s = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(6));
    snprintf(spec->cache, sizeof(spec->cache), "%s", s ? s : "{}");
    free(s);
    json_decref(c);
}

bool admin_spec_cache_threshold(struct store_key *spec, const char *text,
                                char *err, size_t n)
{
    char *end = NULL;
    double t = text ? strtod(text, &end) : 0;
    if (!text || end == text || *end || !(t > 0 && t <= 1) ||
        strlen(text) > 20) {
        snprintf(err, n, "cache_threshold: expected a cosine similarity "
                 "above 0 and at most 1, like 0.95, not '%.40s'",
                 text ? text : "");
        return false;
    }
    json_t *c = json_loads(spec->cache[0] ? spec->cache : "{}", 0, NULL);
    if (!json_is_object(c)) {
        json_decref(c);
        c = json_object();
    }
    json_object_set_new(c, "threshold", json_real(t));
    cache_json_store(spec, c);
    return true;
}

bool admin_spec_cache_any_temperature(struct store_key *spec, bool yes)
{
    json_t *c = json_loads(spec->cache[0] ? spec->cache : "{}", 0, NULL);
    if (!json_is_object(c)) {
        json_decref(c);
        c = json_object();
    }
    if (yes) {
        json_object_set_new(c, "any_temperature", json_true());
    } else {
        json_object_del(c, "any_temperature");
    }
    cache_json_store(spec, c);
    return true;
}

bool admin_spec_budget_usd(struct store_key *spec, const char *usd,
                           char *err, size_t n)
{
    if (!usd || !config_parse_price(usd, &spec->budget_nusd) ||
        spec->budget_nusd == 0) {
        snprintf(err, n, "budget_usd: expected an amount in USD above 0 "
                 "with at most 9 decimals, like 50 or 12.5, not '%.40s'",
                 usd ? usd : "");
        return false;
    }
    return true;
}

bool admin_spec_check(const struct store_key *spec, char *err, size_t n)
{
    size_t len = strlen(spec->name);
    bool name_ok = len > 0 && len < sizeof(spec->name) - 1;
    for (size_t i = 0; i < len && name_ok; i++) {
        name_ok = (unsigned char)spec->name[i] >= ' ' &&
                  spec->name[i] != 0x7f;
    }
    if (!name_ok) {
        snprintf(err, n, "name: give the key a name of 1 to %zu visible "
                 "characters (e.g. prod-chat)", sizeof(spec->name) - 2);
        return false;
    }
    if (spec->budget_nusd && spec->budget_period == STORE_PERIOD_NONE) {
        snprintf(err, n, "period: a budget needs a period: day, week, "
                 "month or total");
        return false;
    }
    if (!spec->budget_nusd && spec->budget_period != STORE_PERIOD_NONE) {
        snprintf(err, n, "budget_usd: a period needs a budget (e.g. 50)");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------
 * The JSON body of POST /admin/keys
 * ------------------------------------------------------------------- */

/* Sets one limit from a JSON value's text. */
static bool body_limit(const struct jscan_item *it, int64_t *dst, char *err,
                       size_t n)
{
    char text[32];
    snprintf(text, sizeof(text), "%.*s",
             (int)(it->value.len < 31 ? it->value.len : 31), it->value.p);
    if (jscan_is_null(it)) {
        *dst = 0;
        return true;
    }
    if (!whole(text, LIMIT_MAX, dst) || it->value.len > 30) {
        snprintf(err, n, "%.*s: expected a whole number >= 0 (0: no "
                 "limit)", (int)it->key.len, it->key.p);
        return false;
    }
    return true;
}

static bool body_models(const struct jscan_item *it, struct store_key *spec,
                        char *err, size_t n)
{
    json_t *a = json_loadb(it->value.p, it->value.len, JSON_DECODE_ANY,
                           NULL);
    bool ok = json_is_array(a) || json_is_null(a);
    for (size_t i = 0; ok && json_is_array(a) && i < json_array_size(a);
         i++) {
        const char *s = json_string_value(json_array_get(a, i));
        ok = s && *s && strlen(s) < 128;
        for (const char *c = s; ok && *c; c++) {
            ok = model_char(*c);
        }
    }
    if (!ok) {
        snprintf(err, n, "models: expected a list of model names, as in "
                 "[\"llama-3.1-8b\"]");
    } else if (json_is_array(a)) {
        ok = set_models(spec, a, err, n);
    }
    json_decref(a);
    return ok;
}

static bool body_routing(const struct jscan_item *it, struct store_key *spec,
                         char *err, size_t n)
{
    json_t *in = json_loadb(it->value.p, it->value.len, JSON_DECODE_ANY,
                            NULL);
    json_t *o = json_object();
    bool ok = json_is_object(in) || json_is_null(in);
    const char *key;
    json_t *v;
    json_object_foreach(json_is_object(in) ? in : NULL, key, v)
    {
        if (!ok) {
            break;
        }
        char text[32] = "";
        if (json_is_integer(v)) {
            snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
        } else if (json_is_boolean(v)) {
            snprintf(text, sizeof(text), "%s",
                     json_is_true(v) ? "true" : "false");
        }
        ok = routing_value(o, key, text, err, n);
    }
    if (!json_is_object(in) && !json_is_null(in)) {
        snprintf(err, n, "routing: expected an object such as "
                 "{\"max_latency_ms\": 600}");
    }
    ok = ok && set_routing(spec, o, err, n);
    json_decref(o);
    json_decref(in);
    return ok;
}

/* "cache": {"threshold": 0.95} (or null: none). */
static bool body_cache(const struct jscan_item *it, struct store_key *spec,
                       char *err, size_t n)
{
    if (jscan_is_null(it)) {
        snprintf(spec->cache, sizeof(spec->cache), "{}");
        return true;
    }
    json_t *in = json_loadb(it->value.p, it->value.len, JSON_DECODE_ANY,
                            NULL);
    json_t *th = json_object_get(in, "threshold");
    json_t *any = json_object_get(in, "any_temperature");
    bool ok = json_is_object(in) &&
              json_object_size(in) == (th ? 1u : 0u) + (any ? 1u : 0u) &&
              (!any || json_is_boolean(any));
    snprintf(spec->cache, sizeof(spec->cache), "{}");
    if (!ok) {
        snprintf(err, n, "cache: expected an object such as "
                 "{\"threshold\": 0.95, \"any_temperature\": true}");
    }
    if (ok && th) {
        char text[32];
        snprintf(text, sizeof(text), "%.6g", json_number_value(th));
        ok = json_is_number(th) &&
             admin_spec_cache_threshold(spec, text, err, n);
    }
    if (ok && any) {
        admin_spec_cache_any_temperature(spec, json_is_true(any));
    }
    json_decref(in);
    return ok;
}

/* Reads one member of the body into spec; sets *param to its name. */
static bool body_member(const struct jscan_item *it, struct store_key *spec,
                        char *err, size_t n, const char **param)
{
    static const char *const names[] = {
        "name", "rpm", "tpm", "max_concurrent", "budget_usd", "period",
        "models", "routing", "cache", NULL,
    };
    *param = NULL;
    for (int i = 0; names[i]; i++) {
        if (str_eq_lit(it->key, names[i])) {
            *param = names[i];
        }
    }
    char text[128];
    const char *p = *param ? *param : "";
    if (!*param) {
        snprintf(err, n, "unknown field '%.*s'; the fields are name, rpm, "
                 "tpm, max_concurrent, budget_usd, period, models, routing, "
                 "cache",
                 (int)(it->key.len > 40 ? 40 : it->key.len), it->key.p);
        *param = "body";
        return false;
    }
    if (strcmp(p, "rpm") == 0 || strcmp(p, "tpm") == 0 ||
        strcmp(p, "max_concurrent") == 0) {
        int64_t *dst = p[0] == 'r' ? &spec->rpm
                       : p[0] == 't' ? &spec->tpm
                                     : &spec->max_concurrent;
        return body_limit(it, dst, err, n);
    }
    if (strcmp(p, "models") == 0) {
        return body_models(it, spec, err, n);
    }
    if (strcmp(p, "routing") == 0) {
        return body_routing(it, spec, err, n);
    }
    if (strcmp(p, "cache") == 0) {
        return body_cache(it, spec, err, n);
    }
    if (strcmp(p, "budget_usd") == 0) {
        /* The number's own digits, so 0.1 is exactly 100,000,000. */
        if (jscan_is_null(it)) {
            spec->budget_nusd = 0;
            return true;
        }
        snprintf(text, sizeof(text), "%.*s",
                 (int)(it->value.len < 100 ? it->value.len : 100),
                 it->value.p);
        return admin_spec_budget_usd(spec, text, err, n);
    }
    size_t len = 0;
    if (!jscan_string(it->value, text, sizeof(text), &len)) {
        snprintf(err, n, "%s: expected a string", p);
        return false;
    }
    if (strcmp(p, "name") == 0) {
        /* Too long a name is cut to the field, then refused by the
         * check, which wants it shorter than the field. */
        store_copy_text(spec->name, sizeof(spec->name), text);
        return true;
    }
    if (!store_period_parse(text, &spec->budget_period)) {
        snprintf(err, n, "period: expected day, week, month or total");
        return false;
    }
    return true;
}

bool admin_body_parse(struct str body, struct store_key *spec, char *err,
                      size_t n, const char **param)
{
    memset(spec, 0, sizeof(*spec));
    snprintf(spec->models, sizeof(spec->models), "[]");
    snprintf(spec->routing, sizeof(spec->routing), "{}");
    snprintf(spec->cache, sizeof(spec->cache), "{}");
    *param = NULL;
    struct jscan_item items[16];
    size_t nitems = 0;
    if (!jscan(body, items, 16, &nitems) ||
        (body.len && str_trim(body).p[0] != '{')) {
        snprintf(err, n, "The body must be a JSON object such as "
                 "{\"name\": \"prod-chat\", \"rpm\": 60}.");
        return false;
    }
    for (size_t i = 0; i < nitems; i++) {
        if (!body_member(&items[i], spec, err, n, param)) {
            return false;
        }
    }
    if (!admin_spec_check(spec, err, n)) {
        *param = strncmp(err, "name", 4) == 0     ? "name"
                 : strncmp(err, "period", 6) == 0 ? "period"
                                                  : "budget_usd";
        return false;
    }
    *param = NULL;
    return true;
}

/* ---------------------------------------------------------------------
 * A key as JSON
 * ------------------------------------------------------------------- */

json_t *admin_key_json(const struct store_key *k)
{
    json_t *models = json_loads(k->models, 0, NULL);
    json_t *routing = json_loads(k->routing, 0, NULL);
    json_t *cache = json_loads(k->cache, 0, NULL);
    if (!json_is_object(cache)) {
        json_decref(cache);
        cache = json_object();
    }
    if (!json_is_array(models)) {
        json_decref(models);
        models = json_array();
    }
    if (!json_is_object(routing)) {
        json_decref(routing);
        routing = json_object();
    }
    char usd[48];
    snprintf(usd, sizeof(usd), "%" PRId64 ".%09" PRId64,
             k->budget_nusd / 1000000000, k->budget_nusd % 1000000000);
    return json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s?, s:s?, s:o, s:o, s:s, "
        "s:s?, s:I, s:o}",
        "id", k->id, "name", k->name, "prefix", k->prefix, "rpm",
        (json_int_t)k->rpm, "tpm", (json_int_t)k->tpm, "max_concurrent",
        (json_int_t)k->max_concurrent, "budget_nusd",
        (json_int_t)k->budget_nusd, "budget_usd",
        k->budget_nusd ? usd : NULL, "period",
        k->budget_period ? store_period_name(k->budget_period) : NULL,
        "models", models, "routing", routing, "created_at",
        k->created_at, "revoked_at", k->revoked_at[0] ? k->revoked_at : NULL,
        "version", (json_int_t)k->version, "cache", cache);
}
