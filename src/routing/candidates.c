/*
 * candidates.c - which models a request may go to at all, and the
 * preferences that decide among them.
 *
 * routing_opts_read() reads the request's "routing" object and fills what
 * it does not say from the key's defaults, then relay.yaml's
 * routing.defaults; a bad value is the client's mistake (400) with a
 * message naming the field. routing_candidates_list() lists every model
 * for "auto", or the named model and its fallbacks, and marks those the
 * key's allow list or the request's allow/deny lists exclude. The quality
 * floor, the context fit, the breakers and the latency bar are applied
 * by routing.c, which predicts.
 */
#include <stdio.h>
#include <string.h>

#include "routing/engine.h"
#include "util/fmt.h"
#include "util/jscan.h"

#define MAX_ROUTING_MEMBERS 16
#define MAX_LIST 64
#define MAX_NAME 128

static enum rl_err bad(struct routing_plan *plan, const char *field,
                       const char *fmt, const char *got)
{
    snprintf(plan->param, sizeof(plan->param), "routing%s%s",
             field ? "." : "", field ? field : "");
    char what[200];
    snprintf(what, sizeof(what), fmt, got);
    snprintf(plan->message, sizeof(plan->message), "%s %s", plan->param,
             what);
    return RL_E_INVALID_REQUEST;
}

/* Reads a whole number from lo to hi; null leaves *out alone. */
static enum rl_err read_int(const struct jscan_item *it, const char *field,
                            int lo, int hi, int *out,
                            struct routing_plan *plan)
{
    if (jscan_is_null(it)) {
        return RL_OK;
    }
    int64_t v = 0;
    bool ok = it->value.len > 0 && it->value.len <= 9;
    for (size_t i = 0; ok && i < it->value.len; i++) {
        char c = it->value.p[i];
        ok = c >= '0' && c <= '9';
        v = v * 10 + (c - '0');
    }
    if (!ok || v < lo || v > hi) {
        char buf[32];
        char fmt[96];
        snprintf(fmt, sizeof(fmt), "must be a whole number from %d to %d "
                 "(got %%s).", lo, hi);
        return bad(plan, field, fmt, str_shown(it->value, buf, sizeof(buf)));
    }
    *out = (int)v;
    return RL_OK;
}

/* Reads an array of configured model names into the arena. */
static enum rl_err read_names(const struct config *cfg,
                              const struct jscan_item *it, const char *field,
                              struct arena *a, const char ***out, size_t *n,
                              struct routing_plan *plan)
{
    struct jscan_item items[MAX_LIST];
    size_t count = 0;
    if (it->type != '[' || !jscan(it->value, items, MAX_LIST, &count)) {
        return bad(plan, field, "must be an array of at most 64 model "
                   "names%s.", "");
    }
    const char **names = arena_alloc(a, (count + 1) * sizeof(*names));
    for (size_t i = 0; i < count; i++) {
        char name[MAX_NAME];
        size_t len;
        char buf[32];
        if (!jscan_string(items[i].value, name, sizeof(name), &len)) {
            return bad(plan, field, "must hold model names as strings (got "
                       "%s).", str_shown(items[i].value, buf, sizeof(buf)));
        }
        if (!config_model(cfg, name, len)) {
            return bad(plan, field, "names no configured model: '%s' (GET "
                       "/v1/models lists them).",
                       str_shown((struct str){name, len}, buf, sizeof(buf)));
        }
        names[i] = arena_strndup(a, name, len);
    }
    *out = names;
    *n = count;
    return RL_OK;
}

static enum rl_err read_member(const struct config *cfg,
                               const struct jscan_item *it, struct arena *a,
                               struct routing_opts *o,
                               struct routing_plan *plan)
{
    struct str k = it->key;
    if (str_eq_lit(k, "max_latency_ms")) {
        return read_int(it, "max_latency_ms", 1, 600000, &o->max_latency_ms,
                        plan);
    }
    if (str_eq_lit(k, "max_ttft_ms")) {
        return read_int(it, "max_ttft_ms", 1, 600000, &o->max_ttft_ms, plan);
    }
    if (str_eq_lit(k, "min_quality_tier")) {
        return read_int(it, "min_quality_tier", 0, 100, &o->min_quality_tier,
                        plan);
    }
    if (str_eq_lit(k, "hedge")) {
        if (it->type != 't' && it->type != 'f' && !jscan_is_null(it)) {
            char buf[32];
            return bad(plan, "hedge", "must be true or false (got %s).",
                       str_shown(it->value, buf, sizeof(buf)));
        }
        o->hedge = jscan_is_null(it) ? o->hedge : it->type == 't';
        return RL_OK;
    }
    if (str_eq_lit(k, "allow")) {
        o->has_allow = !jscan_is_null(it);
        return o->has_allow ? read_names(cfg, it, "allow", a, &o->allow,
                                         &o->nallow, plan)
                            : RL_OK;
    }
    if (str_eq_lit(k, "deny")) {
        return jscan_is_null(it) ? RL_OK
                                 : read_names(cfg, it, "deny", a, &o->deny,
                                              &o->ndeny, plan);
    }
    char buf[40];
    return bad(plan, NULL, "has no field '%s' (max_latency_ms, max_ttft_ms, "
               "min_quality_tier, allow, deny, hedge).",
               str_shown(k, buf, sizeof(buf)));
}

enum rl_err routing_opts_read(const struct config *cfg,
                              const struct routing_request *rq,
                              const struct routing_key *key, struct arena *a,
                              struct routing_opts *o,
                              struct routing_plan *plan)
{
    memset(o, 0, sizeof(*o));
    o->max_latency_ms = cfg->default_max_latency_ms;
    o->max_ttft_ms = cfg->default_max_ttft_ms;
    o->min_quality_tier = cfg->default_min_quality_tier;
    o->hedge = cfg->default_hedge;
    if (key) {
        o->max_latency_ms =
            key->max_latency_ms > 0 ? key->max_latency_ms : o->max_latency_ms;
        o->max_ttft_ms =
            key->max_ttft_ms > 0 ? key->max_ttft_ms : o->max_ttft_ms;
        o->min_quality_tier = key->min_quality_tier >= 0
                                  ? key->min_quality_tier
                                  : o->min_quality_tier;
        o->hedge = key->hedge >= 0 ? key->hedge == 1 : o->hedge;
    }
    struct str text = str_trim(rq->routing);
    if (text.len == 0 || str_eq_lit(text, "null")) {
        return RL_OK;
    }
    struct jscan_item items[MAX_ROUTING_MEMBERS];
    size_t n = 0;
    if (text.p[0] != '{' || !jscan(text, items, MAX_ROUTING_MEMBERS, &n)) {
        return bad(plan, NULL, "must be an object such as "
                   "{\"max_latency_ms\": 800}%s.", "");
    }
    for (size_t i = 0; i < n; i++) {
        enum rl_err err = read_member(cfg, &items[i], a, o, plan);
        if (err != RL_OK) {
            return err;
        }
    }
    return RL_OK;
}

bool routing_key_allows(const struct routing_key *key, const char *name)
{
    if (!key || key->nallow == 0) {
        return true;
    }
    for (size_t i = 0; i < key->nallow; i++) {
        if (strcmp(key->allow[i], name) == 0) {
            return true;
        }
    }
    return false;
}

static bool listed(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* Adds m to plan->cand, with the reason it may not be used, if any. */
static void add(struct routing_plan *plan, const struct model_cfg *m,
                const struct routing_key *key, const struct routing_opts *o)
{
    for (size_t i = 0; i < plan->ncand; i++) {
        if (plan->cand[i].model == m) {
            return; /* a fallback listed twice, or the model itself */
        }
    }
    struct routing_candidate *c = &plan->cand[plan->ncand++];
    memset(c, 0, sizeof(*c));
    c->model = m;
    const char *why = NULL;
    if (!routing_key_allows(key, m->name)) {
        why = ": not allowed";
    } else if (listed(o->deny, o->ndeny, m->name)) {
        why = ": denied";
    } else if (o->has_allow && !listed(o->allow, o->nallow, m->name)) {
        why = ": not in routing.allow";
    }
    if (why) {
        struct fmt f;
        fmt_init(&f, c->why, sizeof(c->why));
        fmt_str(&f, m->name);
        fmt_str(&f, why);
    }
}

enum rl_err routing_candidates_list(const struct config *cfg,
                                    const struct routing_request *rq,
                                    const struct routing_key *key,
                                    const struct routing_opts *o,
                                    struct arena *a,
                                    struct routing_plan *plan)
{
    plan->ncand = 0;
    if (strcmp(rq->model, "auto") == 0) {
        plan->cand = arena_alloc(a, (cfg->nmodels + 1) * sizeof(*plan->cand));
        for (size_t i = 0; i < cfg->nmodels; i++) {
            add(plan, &cfg->models[i], key, o);
        }
        return RL_OK;
    }
    const struct model_cfg *m = config_model(cfg, rq->model,
                                             strlen(rq->model));
    if (!m) {
        return RL_E_MODEL_NOT_FOUND;
    }
    plan->cand = arena_alloc(a, (m->nfallbacks + 1) * sizeof(*plan->cand));
    /* The caller checked the key for the model itself: it was asked for
     * by name. The request's own deny list still applies to fallbacks. */
    add(plan, m, NULL, &(struct routing_opts){0});
    for (size_t i = 0; i < m->nfallbacks; i++) {
        add(plan, m->fallbacks[i], key, o);
    }
    return RL_OK;
}
