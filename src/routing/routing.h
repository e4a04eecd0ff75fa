/*
 * routing.h - step 3 of a request: which models to try, in which order.
 */
#ifndef RL_ROUTING_H
#define RL_ROUTING_H

#include <stdbool.h>
#include <stddef.h>

#include "util/arena.h"
#include "util/err.h"
#include "util/str.h"

struct config;
struct model_cfg;

/* What the API key says about routing. */
struct routing_key {
    const char *const *allow; /* model names the key may use */
    size_t nallow;            /* 0: every model */
    int min_quality_tier;     /* the key's default floor; -1: none */
};

/* True if key (NULL: no restriction) may use the model called name. */
bool routing_key_allows(const struct routing_key *key, const char *name);

/*
 * Plans the candidates for the model a client asked for. For a configured
 * name: that model, then its fallbacks that key allows. For "auto": every
 * model key allows at or above the quality floor (routing.min_quality_tier
 * in the request's "routing" object text, else the key's, else the
 * configured default), cheapest first. key may be NULL. Returns memory
 * from a. Returns RL_E_MODEL_NOT_FOUND for an unknown name, RL_E_FORBIDDEN
 * when key allows no model at all for "auto". Whether key may use a
 * model asked for by name is the caller's check (routing_key_allows), so
 * that it can say so in its own words.
 */
enum rl_err routing_plan(const struct config *cfg, const char *model,
                         struct str routing, const struct routing_key *key,
                         struct arena *a, const struct model_cfg *const **plan,
                         size_t *nplan);

#endif
