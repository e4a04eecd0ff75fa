/*
 * price.c - cost from token usage, in integers: prices are nano-dollars per
 * million tokens, costs nano-dollars. No float ever touches money.
 */
#include "accounting/accounting.h"
#include "config/config.h"
#include "providers/provider.h"

#define TOKENS_PER_PRICE_UNIT 1000000

int64_t price_cost_nusd(const struct model_cfg *model,
                        const struct usage *usage)
{
    /* The canonical record counts every input token in prompt_tokens
     * (OpenAI's convention; adapters of providers that count cache reads
     * and writes apart, as Anthropic does, add them in). */
    int64_t cached = usage->cached_tokens;
    if (cached > usage->prompt_tokens) {
        cached = usage->prompt_tokens;
    }
    int64_t written = usage->cache_write_tokens;
    if (written > usage->prompt_tokens - cached) {
        written = usage->prompt_tokens - cached;
    }
    int64_t uncached = usage->prompt_tokens - cached - written;
    /* Sum the products first and divide once, so rounding happens once;
     * 128 bits, as tokens times nano-dollars per million can pass 2^63. */
    __int128 scaled =
        (__int128)uncached * model->input_nusd_per_mtok +
        (__int128)cached * model->cached_nusd_per_mtok +
        (__int128)written * model->cache_write_nusd_per_mtok +
        (__int128)usage->completion_tokens * model->output_nusd_per_mtok;
    return (int64_t)((scaled + TOKENS_PER_PRICE_UNIT / 2) /
                     TOKENS_PER_PRICE_UNIT);
}
