/*
 * retry.h - the pure decisions behind a call's retries, hedges and stream
 * rescue (upstream.c): how an attempt's failure is classed, how long a retry
 * waits, what text a chunk carries, whether a cut stream's new answer goes
 * on from the text already sent. No I/O, no clocks, no globals.
 *
 * Internal to src/providers/.
 */
#ifndef RL_RETRY_H
#define RL_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "providers/provider.h"
#include "util/buf.h"
#include "util/str.h"

/* Classes a finished attempt: err as the transport and adapter judged it,
 * pe the error they filled, status the upstream's HTTP status (0: none). */
enum attempt_outcome retry_outcome(enum rl_err err,
                                   const struct provider_error *pe,
                                   long status);

/*
 * Returns the delay before retry round (1 for the first retry): base_ms
 * doubled round - 1 times, capped at max_ms (or base_ms when max_ms is
 * smaller), then stretched by a jitter drawn from rnd to somewhere in
 * [d, 2d]. Never 0 when base_ms is not.
 */
uint64_t retry_backoff_ms(int round, uint64_t base_ms, uint64_t max_ms,
                          uint64_t rnd);

/* What one OpenAI chunk carries, for hedging and rescue. */
struct chunk_look {
    bool text;   /* choices[0].delta.content is a non-empty string */
    bool other;  /* tool calls, a refusal, several choices: output that is
                    not plain text */
    bool finish; /* a choice has a finish_reason */
};

/*
 * Looks at an OpenAI chat.completion.chunk (JSON text; members its
 * top-level members or NULL) and appends the decoded text of
 * choices[0].delta.content to text, if any (text NULL: only looks).
 * Returns false if the chunk is not JSON of that shape, or the text does
 * not fit in text's cap.
 */
bool retry_chunk_look(struct str chunk, const struct chunk_members *members,
                      struct buf *text, struct chunk_look *out);

/* True if the request asks for a reproducible answer: "temperature": 0, or
 * a "seed". raw is the client's JSON object. */
bool retry_deterministic(struct str raw);

enum retry_match {
    RETRY_MATCH_MORE,     /* text is a further part of sent: keep reading */
    RETRY_MATCH_DONE,     /* sent is matched; the new text starts at rest */
    RETRY_MATCH_DIVERGED, /* the new answer differs from what was sent */
};

/*
 * Matches text, the next piece of a new answer, against sent (the text the
 * client already has), of which *matched bytes were matched before. Moves
 * *matched on. On RETRY_MATCH_DONE, *rest is where text's new part begins
 * (text.len when there is none).
 */
enum retry_match retry_prefix_match(struct str sent, size_t *matched,
                                    struct str text, size_t *rest);

/* How many bytes of whitespace (space, tab, newline, carriage return)
 * text ends with: Anthropic refuses a final assistant turn that ends with
 * whitespace (400), so a prefill leaves them out. */
size_t retry_trailing_space(struct str text);

/*
 * Writes into out the client's request raw (a JSON object with a
 * "messages" array) with one more message at its end, {"role":
 * "assistant", "content": text}: the text already streamed, for a
 * provider that continues a final assistant message. False if raw has no
 * messages array, or the result does not fit out's cap.
 */
bool retry_prefill_request(struct str raw, struct str text, struct buf *out);

/*
 * Drops from the start of a continuation the whitespace ws that the
 * prefill left out (its first *matched bytes matched before): returns how
 * many bytes of piece, the next text of the continuation, repeat ws and
 * are not to be sent again. *done becomes true once ws is all matched or
 * a byte differs (the continuation begins elsewhere: nothing more is
 * dropped).
 */
size_t retry_skip_space(struct str ws, size_t *matched, struct str piece,
                        bool *done);

#endif
