/*
 * accounting.h - step 6 of a request: price it and log it, exactly once.
 */
#ifndef RL_ACCOUNTING_H
#define RL_ACCOUNTING_H

#include <stdint.h>

struct req;
struct model_cfg;
struct usage;

/* Returns the cost of usage on model in nano-dollars, from integer prices
 * per million tokens, rounded to the nearest nano-dollar. Cached prompt
 * tokens (a part of prompt_tokens) are priced at the cached-input price. */
int64_t price_cost_nusd(const struct model_cfg *model,
                        const struct usage *usage);

/* Prices r and writes its one request-log line. Called by req_free(); runs
 * once per request. */
void accounting_finish(struct req *r);

#endif
