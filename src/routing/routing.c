/*
 * routing.c - candidate planning.
 *
 * Today: a named model with its configured fallbacks, or for "auto" every
 * model that meets the quality floor ordered by list price. Live latency
 * prediction and per-request cost come with the routing engine.
 */
#include "routing/routing.h"

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "util/jscan.h"

/* The price of a typical request, to order candidates: a thousand tokens
 * in and a thousand out. */
static int64_t list_price(const struct model_cfg *m)
{
    return m->input_nusd_per_mtok + m->output_nusd_per_mtok;
}

static int by_price(const void *a, const void *b)
{
    const struct model_cfg *ma = *(const struct model_cfg *const *)a;
    const struct model_cfg *mb = *(const struct model_cfg *const *)b;
    int64_t pa = list_price(ma);
    int64_t pb = list_price(mb);
    if (pa != pb) {
        return pa < pb ? -1 : 1;
    }
    return mb->tier - ma->tier; /* same price: the better one first */
}

/* Reads routing.min_quality_tier, or returns dflt. */
static int quality_floor(struct str routing, int dflt)
{
    struct jscan_item items[32];
    size_t n;
    if (!routing.len || !jscan(routing, items, 32, &n)) {
        return dflt;
    }
    const struct jscan_item *t = jscan_find(items, n, "min_quality_tier");
    if (!t || t->value.len == 0 || t->value.len > 6) {
        return dflt;
    }
    int v = 0;
    for (size_t i = 0; i < t->value.len; i++) {
        if (t->value.p[i] < '0' || t->value.p[i] > '9') {
            return dflt;
        }
        v = v * 10 + (t->value.p[i] - '0');
    }
    return v;
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

/* A named model, then the fallbacks the key allows. */
static enum rl_err plan_named(const struct config *cfg, const char *model,
                              const struct routing_key *key, struct arena *a,
                              const struct model_cfg *const **plan,
                              size_t *nplan)
{
    const struct model_cfg *m = config_model(cfg, model, strlen(model));
    if (!m) {
        return RL_E_MODEL_NOT_FOUND;
    }
    const struct model_cfg **p =
        arena_alloc(a, (1 + m->nfallbacks) * sizeof(*p));
    size_t n = 0;
    p[n++] = m;
    for (size_t i = 0; i < m->nfallbacks; i++) {
        if (routing_key_allows(key, m->fallbacks[i]->name)) {
            p[n++] = m->fallbacks[i];
        }
    }
    *plan = p;
    *nplan = n;
    return RL_OK;
}

enum rl_err routing_plan(const struct config *cfg, const char *model,
                         struct str routing, const struct routing_key *key,
                         struct arena *a, const struct model_cfg *const **plan,
                         size_t *nplan)
{
    if (strcmp(model, "auto") != 0) {
        return plan_named(cfg, model, key, a, plan, nplan);
    }
    int dflt = key && key->min_quality_tier >= 0
                   ? key->min_quality_tier
                   : cfg->default_min_quality_tier;
    int floor = quality_floor(routing, dflt);
    const struct model_cfg **p = arena_alloc(a, cfg->nmodels * sizeof(*p));
    size_t n = 0;
    int best = -1; /* the best tier among the allowed models */
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const struct model_cfg *m = &cfg->models[i];
        if (!routing_key_allows(key, m->name)) {
            continue;
        }
        best = m->tier > best ? m->tier : best;
        if (m->tier >= floor) {
            p[n++] = m;
        }
    }
    if (best < 0) {
        return RL_E_FORBIDDEN;
    }
    if (n == 0) {
        /* Nothing meets the floor: the best models still answer. */
        for (size_t i = 0; i < cfg->nmodels; i++) {
            const struct model_cfg *m = &cfg->models[i];
            if (m->tier == best && routing_key_allows(key, m->name)) {
                p[n++] = m;
            }
        }
    }
    qsort(p, n, sizeof(*p), by_price);
    *plan = p;
    *nplan = n;
    return RL_OK;
}
