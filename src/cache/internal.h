/*
 * internal.h - what the cache's files share (not for other folders).
 */
#ifndef RL_CACHE_INTERNAL_H
#define RL_CACHE_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/str.h"

struct cache_lru;
struct cache_semw;
struct config;
struct redis;
struct uv_loop_s;

struct cache_hit;

/* cache.c: reads an exact entry's value, as stored in Redis ("v1 cost
 * created expires model\n" then the completion), into hit, whose strings
 * point into value and model (model_len bytes); false when it is not an
 * entry or has expired (tests/fuzz/fuzz_redis.c). */
bool cache_entry_decode(struct str value, struct cache_hit *hit, char *model,
                        size_t model_len);

/* A worker's cache (cache.c). */
struct cache {
    struct uv_loop_s *loop;
    struct redis *redis;    /* NULL without redis: */
    size_t max_entry_bytes;
    bool down_logged;       /* one line per outage */
    struct cache_semw *sem; /* the semantic part's worker side, or NULL
                               when the process has no encoder */
};

/* ---- semantic.c ------------------------------------------------------ */

/* Starts the process's semantic part on first use (the encoder from
 * cfg->cache.model, the encoder pool, the index and its sync thread) and
 * returns c's worker side on loop, or NULL when there is no encoder.
 * Freed by cache_semw_free (the process's part with its last user). */
struct cache_semw *cache_semw_new(struct cache *c, struct uv_loop_s *loop,
                                  const struct config *cfg);
void cache_semw_free(struct cache_semw *w);

/* Returns the current time in ms for the LRU (injected by tests). */
typedef uint64_t (*cache_clock_fn)(void *ctx);

/* Returns an LRU holding at most max_bytes of keys and values; now_ms
 * tells the time. The caller owns it: cache_lru_free(). */
struct cache_lru *cache_lru_new(size_t max_bytes, cache_clock_fn now_ms,
                                void *clock_ctx);
void cache_lru_free(struct cache_lru *l);
/* Stores a copy of value under key until ttl_ms from now, evicting the
 * least recently used entries past the bound (a value larger than the
 * bound is not stored). */
void cache_lru_put(struct cache_lru *l, const char *key, struct str value,
                   uint64_t ttl_ms);
/* Returns key's value (owned by l, valid until the next put or free), or
 * an empty str when absent or expired; marks it recently used. */
struct str cache_lru_get(struct cache_lru *l, const char *key);
/* Bytes held now (keys and values). */
size_t cache_lru_bytes(const struct cache_lru *l);

/* ---- exact.c ---------------------------------------------------------- */

/* Returns the exact key's JSON object for req (a chat request object):
 * the model class, the messages (text parts joined) and the answer-
 * changing parameters. The caller owns it (json_decref). */
json_t *cache_key_json(json_t *req, const char *model_class);
/* Appends key's canonical text (sorted keys, compact, ASCII) to out. */
enum rl_err cache_key_text(json_t *key, struct buf *out);
/* Writes SHA-256(p, len) as 64 lower-case hex digits and a NUL. */
void cache_sha256_hex(const char *p, size_t len, char out[65]);
/* Reads 64 lower-case hex digits into 32 bytes; false on another
 * character. */
bool cache_hex_to_32(const char *hex, unsigned char out[32]);

/* ---- index.c: one HNSW graph ---------------------------------------- */

struct cache_index;

/* One neighbour found. */
struct cache_index_hit {
    uint32_t slot; /* as cache_index_add returned it */
    float sim;     /* dot product (cosine of unit vectors) */
};

/* Returns an empty graph of dim-float vectors; seed draws the levels.
 * The caller owns it: cache_index_free(). */
struct cache_index *cache_index_new(size_t dim, uint64_t seed);
void cache_index_free(struct cache_index *ix);
/* Adds a copy of v (unit length) and returns its slot: a deleted slot
 * when there is one, else a new one. */
uint32_t cache_index_add(struct cache_index *ix, const float *v);
/* Deletes slot: never returned again until it is reused by an add. */
void cache_index_delete(struct cache_index *ix, uint32_t slot);
/* Writes up to k live neighbours of q, the most similar first, to out
 * (beam ef); returns how many. */
size_t cache_index_search(const struct cache_index *ix, const float *q,
                          size_t k, size_t ef, struct cache_index_hit *out);
/* Live slots. */
size_t cache_index_live(const struct cache_index *ix);
/* Bytes held by the graph (vectors and links). */
size_t cache_index_bytes(const struct cache_index *ix);
/* The dot product of two dim-float vectors. */
float cache_index_dot(const float *a, const float *b, size_t dim);
/* Frees the calling thread's search scratch. */
void cache_index_thread_exit(void);

/* ---- semset.c: the entries of every scope --------------------------- */

struct cache_semset;

/* An entry to add; everything is copied. */
struct cache_semset_item {
    const char *scope;         /* "key_..." or "global" */
    unsigned char id[32];      /* SHA-256 of the exact entry (its name) */
    unsigned char ctx[32];     /* context hash (cache_semantic_split) */
    const float *vec;          /* the embedding, unit length */
    struct str text;           /* the embedded prompt */
    int64_t expires_s;         /* Unix seconds */
};

/* A lookup. */
struct cache_semset_ask {
    const char *scope;
    unsigned char ctx[32];
    const float *vec;
    struct str text;           /* the asked prompt, for the guard */
    double threshold;
    bool guard;                /* cache.near_miss_guard */
};

/* What a lookup found: on a hit the entry; on a miss the nearest entry
 * of the same context (similarity -1: none) and why it was refused. */
struct cache_semset_found {
    bool hit;
    unsigned char id[32];
    double similarity;
    char reason[160];
};

struct cache_semset_stats {
    size_t entries; /* live */
    size_t scopes;  /* graphs */
    size_t bytes;   /* vectors, links, texts and bookkeeping */
};

/* Returns an empty set bounded to max_entries. The caller owns it. */
struct cache_semset *cache_semset_new(size_t dim, size_t max_entries);
void cache_semset_free(struct cache_semset *s);
/* Adds it unless (scope, id) is there already or it has expired; evicts
 * the oldest entries past the bound. Returns whether it was added. */
bool cache_semset_put(struct cache_semset *s,
                      const struct cache_semset_item *it, int64_t now_s);
/* Removes (scope, id) when present. */
void cache_semset_remove(struct cache_semset *s, const char *scope,
                         const unsigned char id[32]);
/* Removes every entry expired at now_s; returns how many. */
size_t cache_semset_expire(struct cache_semset *s, int64_t now_s);
/* Looks ask up among the live entries of its scope and context; fills
 * out and returns out->hit. */
bool cache_semset_find(struct cache_semset *s,
                       const struct cache_semset_ask *ask, int64_t now_s,
                       struct cache_semset_found *out);
void cache_semset_stats(struct cache_semset *s,
                        struct cache_semset_stats *out);

#endif
