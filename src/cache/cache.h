/*
 * cache.h - step 4, the exact cache: a hash of the normalised request
 * finds an identical prior answer (docs/cache.md).
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
#include "util/buf.h"
#include "util/err.h"
#include "util/str.h"

struct uv_loop_s;
struct config;
struct cache;
struct cache_pending;
struct cache_collect;

/* What the cache keys a request by, and how long its answer lives. */
struct cache_key {
    char name[128];    /* "relay:{c:<scope>}:<64 hex digits>" */
    uint64_t ttl_s;    /* life of an entry this request inserts */
    bool explicit_mode; /* the request set cache.mode itself */
};

/* An answer found in the cache; valid during the lookup callback only. */
struct cache_hit {
    struct str completion; /* OpenAI chat.completion JSON text */
    const char *model;     /* the configured model that answered */
    int64_t cost_nusd;     /* what the answer cost when it was made */
    int64_t created;       /* Unix seconds it was made */
    struct usage usage;    /* the answer's usage, as reported */
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
 * temperature is above cache.max_temperature without its own cache.mode.
 * scope: the key's id (or "global"). Pure.
 */
bool cache_key_make(const struct config *cfg, struct str raw,
                    const char *model_class, const char *scope,
                    struct cache_key *out);

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
bool cache_semantic_decide(double sim, double threshold, bool guard,
                           struct str stored, struct str asked,
                           char *reason, size_t n);

#endif
