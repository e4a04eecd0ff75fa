/*
 * internal.h - what the cache's files share (not for other folders).
 */
#ifndef RL_CACHE_INTERNAL_H
#define RL_CACHE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "util/str.h"

struct cache_lru;

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

#endif
