/*
 * accounting.h - step 6 of a request: price it and log it, exactly once.
 */
#ifndef RL_ACCOUNTING_H
#define RL_ACCOUNTING_H

#include <stddef.h>
#include <stdint.h>

#include "util/str.h"

struct req;
struct model_cfg;
struct usage;
struct store_row;

/* Returns the cost of usage on model in nano-dollars, from integer prices
 * per million tokens, rounded to the nearest nano-dollar, once. Cached
 * prompt tokens and tokens written to the prompt cache (both a part of
 * prompt_tokens) are priced at the cached-input and cache-write prices. */
int64_t price_cost_nusd(const struct model_cfg *model,
                        const struct usage *usage);

/* Estimates the tokens of text (JSON string text, escapes kept) as a BPE
 * tokenizer of the GPT/Llama families would count them (tokens.c). */
int64_t accounting_tokens_text(const char *p, size_t len);
/* Estimates the prompt tokens of a chat request (its JSON text): message
 * contents, tool calls and tool definitions, plus per-message overhead. */
int64_t accounting_tokens_prompt(struct str request);
/* Estimates the output tokens in an answer or a stream chunk (JSON text):
 * its content, refusal and tool-call argument strings. */
int64_t accounting_tokens_output(struct str answer);
/* The same for one stream chunk, cheaper: a chunk's content delta and its
 * tool-call arguments are not looked for both (refusals are not counted:
 * a refusal chunk has no tokens worth estimating). */
int64_t accounting_tokens_chunk(struct str chunk);

/* Fills row, the request_log row of r (already priced), with now_wall_us
 * the wall-clock time in Unix microseconds. */
void accounting_row(const struct req *r, int64_t now_wall_us,
                    struct store_row *row);

/* Prices r from its usage, estimating the usage (and marking it so) when
 * an answer came without one; a failed call costs nothing. Runs once: the
 * non-stream reply calls it for its x-relay-cost-usd header, and
 * accounting_finish() for every request. */
void accounting_price(struct req *r);

/* Prices r (if not yet), hands its row to the store and writes its one log line.
 * Called by req_free(); runs once per request. */
void accounting_finish(struct req *r);

#endif
