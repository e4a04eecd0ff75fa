/*
 * cache.h - step 4: the exact cache (a hash of the normalised request
 * finds an identical prior answer), then the semantic cache (the nearest
 * prior prompt of the same context, by the cosine of their embeddings)
 * (docs/cache.md).
 *
 * One struct cache per worker: an in-process LRU (first level, bounded in
 * bytes) and, when redis: is set, its own Redis connection shared by every
 * gateway (relay:{c:<scope>}:<sha256 hex>). Redis down: the cache goes on
 * in-process only, logged once per outage, never an error to the client.
 * Read cache_key_make() (exact.c) and cache_lookup() (cache.c) first.
 */
#ifndef RL_CACHE_H
#define RL_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "providers/provider.h"
#include "util/arena.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/str.h"

struct uv_loop_s;
struct config;
struct cache;
struct cache_pending;
struct cache_collect;
struct cache_sem_pending;

/* What the cache keys a request by, and how long its answer lives. */
struct cache_key {
    char name[128];    /* "relay:{c:<scope>}:<64 hex digits>" */
    char scope[48];    /* the key's id, its prefix, or "global" */
    uint64_t ttl_s;    /* life of an entry this request inserts */
    bool explicit_mode; /* the request set cache.mode itself */
    bool semantic;     /* a neighbour may answer it (mode is not exact;
                          cache_semantic_prepare may clear it) */
    double threshold;  /* least similarity of a neighbour: the request's
                          cache.threshold, else the key's, else
                          cache.threshold (0 until prepared) */
    bool guard;        /* cache.near_miss_guard */
    const char *text;  /* the embedded prompt (in the request's arena) */
    size_t text_len;
    char ctx[65];      /* context hash, hex (cache_semantic_split) */
};

/* An answer found in the cache; valid during the lookup callback only. */
struct cache_hit {
    struct str completion; /* OpenAI chat.completion JSON text */
    const char *model;     /* the configured model that answered */
    int64_t cost_nusd;     /* what the answer cost when it was made */
    int64_t created;       /* Unix seconds it was made */
    struct usage usage;    /* the answer's usage, as reported */
    bool semantic;         /* found by the semantic cache */
    double similarity;     /* of the two prompts, when semantic */
};

/* Called exactly once per cache_lookup(): hit is NULL on a miss. */
typedef void (*cache_lookup_fn)(void *ctx, const struct cache_hit *hit);

/*
 * Appends the canonical JSON text of raw (a checked chat request body) and
 * model_class to out: messages (role, content with text parts joined,
 * name, tool calls), the answer-changing parameters (temperature in 0.1
 * bands), never user, stream, stream_options, routing, cache, metadata.
 * Pure. RL_E_INVALID_REQUEST when raw is not a JSON object.
 */
enum rl_err cache_normalise(struct str raw, const char *model_class,
                            struct buf *out);

/*
 * Decides whether the cache takes part in a request and fills out: false
 * when the cache is disabled, the request says cache.mode: off, or its
 * temperature is above cache.max_temperature without its own cache.mode
 * or its key's opt-in (any_temperature).
 * scope: the key's id (or "global"). Pure.
 */
bool cache_key_make(const struct config *cfg, struct str raw,
                    const char *model_class, const char *scope,
                    bool any_temperature, struct cache_key *out);

/*
 * Creates a worker's cache on loop from cfg (its Redis connection when
 * redis: is set). Returns NULL when cfg->cache.enabled is false. The
 * caller owns the result: cache_free().
 */
struct cache *cache_new(struct uv_loop_s *loop, const struct config *cfg);
/* Frees c; a pending lookup is answered as a miss first. NULL: no-op. */
void cache_free(struct cache *c);

/*
 * Looks k up: the LRU, then Redis when it is up. cb is called exactly
 * once, maybe before this returns (answered in-process); when Redis is
 * asked, *pending is set and may be passed to cache_lookup_cancel().
 */
void cache_lookup(struct cache *c, const struct cache_key *k,
                  cache_lookup_fn cb, void *ctx,
                  struct cache_pending **pending);
/* The caller is gone: the lookup's callback will not be called. */
void cache_lookup_cancel(struct cache_pending *p);

/*
 * Stores a complete, successful answer under k, in the LRU and (without
 * waiting) in Redis. completion is copied. Answers over max_entry_bytes
 * are dropped.
 */
void cache_insert(struct cache *c, const struct cache_key *k,
                  struct str completion, const char *model,
                  int64_t cost_nusd, const struct usage *usage);

/* Returns a collector of a stream's chunks, at most max_bytes of answer;
 * the caller owns it: cache_collect_free(). */
struct cache_collect *cache_collect_new(size_t max_bytes);
void cache_collect_free(struct cache_collect *cc);
/* Adds one OpenAI chunk (JSON text) to cc. */
void cache_collect_chunk(struct cache_collect *cc, struct str chunk);
/* Appends the completion the chunks make, with usage u when present,
 * to out; false when the stream
 * was too large, unreadable, or a choice had no finish_reason. */
bool cache_collect_finish(struct cache_collect *cc, const struct usage *u,
                          struct buf *out);

/*
 * Replays completion (chat.completion JSON text) as stream chunks, in
 * order: per choice a role chunk, a content chunk, a tool-calls chunk,
 * a finish chunk; then a usage chunk ("choices": []). emit gets each
 * chunk's JSON text, valid during the call. false: not a completion.
 */
bool cache_replay(struct str completion,
                  void (*emit)(void *ctx, struct str chunk), void *ctx);

/*
 * The semantic cache's one decision, shared by the running cache and
 * `relay cache compare`: would prompt asked be answered by the stored
 * prompt stored, their embeddings' cosine similarity being sim? true when
 * sim >= threshold and, with guard, the near-miss guard finds no
 * difference in meaning between the two texts (decide.c). On false,
 * writes why to reason (n bytes, NUL-terminated). Pure.
 */
/* The cosine similarity of two L2-normalised embeddings of dim floats,
 * computed exactly as the index computes it (so `relay cache compare`
 * decides a pair at the threshold as the running cache does). */
float cache_similarity(const float *a, const float *b, size_t dim);

bool cache_semantic_decide(double sim, double threshold, bool guard,
                           struct str stored, struct str asked,
                           char *reason, size_t n);

/*
 * Splits a chat request for the semantic cache (docs/cache.md, "What is
 * embedded"): appends the text that is embedded to text (the last
 * message's content, text parts joined; it must be a user's message) and
 * writes to ctx_hex the SHA-256 (hex) of everything else that must match
 * exactly: the exact key's canonical request (model class, system prompt,
 * earlier turns, tools, response_format, answer-changing parameters, the
 * last message's role and name) without that one text. false when the
 * request has no such text (the last message is no user text). Pure.
 */
bool cache_semantic_split(struct str raw, const char *model_class,
                          struct buf *text, char ctx_hex[65]);

/*
 * Prepares k (made by cache_key_make) for a semantic lookup: splits raw,
 * copies the text into arena, and settles the threshold (the request's,
 * else key_threshold when > 0, else cfg's). Clears k->semantic when the
 * process has no encoder or the request has no text to embed.
 */
void cache_semantic_prepare(const struct config *cfg, struct cache_key *k,
                            struct str raw, const char *model_class,
                            double key_threshold, struct arena *arena);

/* The semantic part's figures, for the metrics. */
struct cache_semantic_stats {
    bool on;             /* an encoder is loaded */
    uint64_t entries;    /* in the index */
    uint64_t queue_full; /* lookups refused by a full queue */
    uint64_t timeouts;   /* lookups answered late (exact-only) */
    uint64_t too_long;   /* prompts longer than the encoder's window */
};

/* Fills out (thread-safe; the index's count takes its read lock). */
void cache_semantic_stats(struct cache_semantic_stats *out);

/* Whether this process embeds prompts (a model was loaded). */
bool cache_semantic_enabled(void);

/*
 * Called once per cache_semantic_lookup(): hit is NULL on a miss; vec is
 * the prompt's embedding (dim floats, valid during the call) when it was
 * computed, else NULL (queue full, too slow, too long).
 */
typedef void (*cache_semantic_fn)(void *ctx, const struct cache_hit *hit,
                                  const float *vec, size_t dim);

/*
 * Looks k up semantically: embeds k->text on the encoder pool, finds the
 * nearest prompts of the same scope and context, decides with
 * cache_semantic_decide(), then fetches the neighbour's answer as
 * cache_lookup does. cb is called exactly once, maybe before this returns
 * (a miss at once: the queue is full); otherwise *pending is set and may
 * be passed to cache_semantic_cancel(). An embed slower than
 * cache.embed_timeout_ms is answered as a miss without a vector.
 */
void cache_semantic_lookup(struct cache *c, const struct cache_key *k,
                           cache_semantic_fn cb, void *ctx,
                           struct cache_sem_pending **pending);
/* The caller is gone: the callback will not be called. */
void cache_semantic_cancel(struct cache_sem_pending *p);

/*
 * Adds the answer stored under k (by cache_insert, just before) to the
 * semantic index with vec (the prompt's embedding, dim floats, copied):
 * in this process (off the loop) and in Redis for the other gateways.
 */
void cache_semantic_insert(struct cache *c, const struct cache_key *k,
                           const float *vec, size_t dim);

#endif
