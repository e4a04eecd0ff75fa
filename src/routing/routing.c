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

enum rl_err routing_plan(const struct config *cfg, const char *model,
                         struct str routing, struct arena *a,
                         const struct model_cfg *const **plan,
                         size_t *nplan)
{
    if (strcmp(model, "auto") != 0) {
        const struct model_cfg *m = config_model(cfg, model, strlen(model));
        if (!m) {
            return RL_E_MODEL_NOT_FOUND;
        }
        const struct model_cfg **p =
            arena_alloc(a, (1 + m->nfallbacks) * sizeof(*p));
        p[0] = m;
        for (size_t i = 0; i < m->nfallbacks; i++) {
            p[1 + i] = m->fallbacks[i];
        }
        *plan = p;
        *nplan = 1 + m->nfallbacks;
        return RL_OK;
    }
    int floor = quality_floor(routing, cfg->default_min_quality_tier);
    const struct model_cfg **p = arena_alloc(a, cfg->nmodels * sizeof(*p));
    size_t n = 0;
    for (size_t i = 0; i < cfg->nmodels; i++) {
        if (cfg->models[i].tier >= floor) {
            p[n++] = &cfg->models[i];
        }
    }
    if (n == 0) {
        /* Nothing meets the floor: the best models still answer. */
        int best = 0;
        for (size_t i = 0; i < cfg->nmodels; i++) {
            best = cfg->models[i].tier > best ? cfg->models[i].tier : best;
        }
        for (size_t i = 0; i < cfg->nmodels; i++) {
            if (cfg->models[i].tier == best) {
                p[n++] = &cfg->models[i];
            }
        }
    }
    qsort(p, n, sizeof(*p), by_price);
    *plan = p;
    *nplan = n;
    return RL_OK;
}
