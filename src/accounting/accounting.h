/*
 * accounting.h - step 6 of a request: price it and log it, exactly once.
 */
#ifndef RL_ACCOUNTING_H
#define RL_ACCOUNTING_H

#include <stdint.h>

struct req;
struct model_cfg;
struct usage;
struct store_row;

/* Returns the cost of usage on model in nano-dollars, from integer prices
 * per million tokens, rounded to the nearest nano-dollar. Cached prompt
 * tokens (a part of prompt_tokens) are priced at the cached-input price. */
int64_t price_cost_nusd(const struct model_cfg *model,
                        const struct usage *usage);

/* Fills row, the request_log row of r (already priced), with now_wall_us
 * the wall-clock time in Unix microseconds. */
void accounting_row(const struct req *r, int64_t now_wall_us,
                    struct store_row *row);

/* Prices r, hands its row to the store and writes its one log line.
 * Called by req_free(); runs once per request. */
void accounting_finish(struct req *r);

#endif
