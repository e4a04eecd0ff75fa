/*
 * routing.h - step 3 of a request: which models to try, in which order.
 */
#ifndef RL_ROUTING_H
#define RL_ROUTING_H

#include <stddef.h>

#include "util/arena.h"
#include "util/err.h"
#include "util/str.h"

struct config;
struct model_cfg;

/*
 * Plans the candidates for the model a client asked for. For a configured
 * name: that model, then its fallbacks. For "auto": every model at or above
 * the quality floor (routing.min_quality_tier in the request's "routing"
 * object text, else the
 * configured default), cheapest first. Returns memory from a. Returns
 * RL_E_MODEL_NOT_FOUND for an unknown name.
 */
enum rl_err routing_plan(const struct config *cfg, const char *model,
                         struct str routing, struct arena *a,
                         const struct model_cfg *const **plan,
                         size_t *nplan);

#endif
