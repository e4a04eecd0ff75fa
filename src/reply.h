/*
 * reply.h - what a client receives for a request: the x-relay headers, an
 * error, a whole completion, stream chunks and the stream's end.
 *
 * Each function records the outcome in the request (status, error type) so
 * that accounting logs what the client actually saw.
 */
#ifndef RL_REPLY_H
#define RL_REPLY_H

#include <jansson.h>

#include "providers/provider.h"
#include "util/err.h"

struct req;
struct api_error;
struct limits_verdict;
struct cache_hit;

/* Answers with err (message and param may be NULL for the defaults). */
void reply_error(struct req *r, enum rl_err err, const char *message,
                 const char *param);
/* Answers with e as it is (a code or message errors_from_rl has not). */
void reply_api_error(struct req *r, struct api_error *e);
/* Answers a request that step 2 refused: 429 with OpenAI's wording and
 * Retry-After (none when waiting cannot help), or 503 when the limits
 * cannot be checked. */
void reply_limited(struct req *r, const struct limits_verdict *v);
/* Answers with a provider's error: a whole response if nothing was sent
 * yet, else an SSE error event that ends the stream without [DONE]. */
void reply_provider_error(struct req *r, const struct provider_error *pe);
/* Answers 200 with a whole completion (OpenAI JSON text); members: its
 * top-level members when the adapter found them (NULL or n 0: scanned
 * here). */
void reply_completion(struct req *r, struct str completion,
                      const struct chunk_members *members);
/* Answers from the cache: a completion, or the same replayed as an SSE
 * stream when the request streams; priced 0, its savings recorded. */
void reply_cached(struct req *r, const struct cache_hit *hit);
/* Opens the SSE stream (headers). */
void reply_stream_begin(struct req *r);
/* Sends one chunk (OpenAI JSON text). Returns false if the client left. */
bool reply_stream_chunk(struct req *r, struct str chunk,
                        const struct chunk_members *members);
/* Ends a complete stream with [DONE]. */
void reply_stream_done(struct req *r);
/* Answers 200 with a JSON body the caller built (model list, health). */
void reply_json(struct req *r, int status, struct str body);

#endif
