/*
 * lru.c - the cache's in-process level: a hash table of entries on a
 * recency list, bounded in bytes, each entry with its expiry time.
 *
 * Belongs to one worker's thread. The clock is injected (unit tests).
 */
#include <stdlib.h>
#include <string.h>

#include "cache/internal.h"
#include "util/alloc.h"

#define NBUCKETS 4096

struct entry {
    struct entry *next_hash;  /* same bucket */
    struct entry *prev, *next; /* recency: head is the most recent */
    char *key;
    char *value;
    size_t value_len;
    size_t bytes;             /* key + value + the entry itself */
    uint64_t expires_ms;
};

struct cache_lru {
    struct entry *bucket[NBUCKETS];
    struct entry *head, *tail;
    size_t bytes;       /* held now */
    size_t max_bytes;   /* the bound */
    cache_clock_fn now_ms;
    void *clock_ctx;
};

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h % NBUCKETS;
}

struct cache_lru *cache_lru_new(size_t max_bytes, cache_clock_fn now_ms,
                                void *clock_ctx)
{
    struct cache_lru *l = rl_calloc(1, sizeof(*l));
    l->max_bytes = max_bytes;
    l->now_ms = now_ms;
    l->clock_ctx = clock_ctx;
    return l;
}

static void unlink_list(struct cache_lru *l, struct entry *e)
{
    if (e->prev) {
        e->prev->next = e->next;
    } else {
        l->head = e->next;
    }
    if (e->next) {
        e->next->prev = e->prev;
    } else {
        l->tail = e->prev;
    }
    e->prev = e->next = NULL;
}

static void push_head(struct cache_lru *l, struct entry *e)
{
    e->next = l->head;
    e->prev = NULL;
    if (l->head) {
        l->head->prev = e;
    }
    l->head = e;
    if (!l->tail) {
        l->tail = e;
    }
}

static void drop(struct cache_lru *l, struct entry *e)
{
    struct entry **p = &l->bucket[hash(e->key)];
    while (*p != e) {
        p = &(*p)->next_hash;
    }
    *p = e->next_hash;
    unlink_list(l, e);
    l->bytes -= e->bytes;
    free(e->key);
    free(e->value);
    free(e);
}

static struct entry *find(struct cache_lru *l, const char *key)
{
    for (struct entry *e = l->bucket[hash(key)]; e; e = e->next_hash) {
        if (strcmp(e->key, key) == 0) {
            return e;
        }
    }
    return NULL;
}

void cache_lru_free(struct cache_lru *l)
{
    if (!l) {
        return;
    }
    while (l->head) {
        drop(l, l->head);
    }
    free(l);
}

void cache_lru_put(struct cache_lru *l, const char *key, struct str value,
                   uint64_t ttl_ms)
{
    struct entry *old = find(l, key);
    if (old) {
        drop(l, old);
    }
    size_t klen = strlen(key);
    size_t bytes = sizeof(struct entry) + klen + 1 + value.len;
    if (bytes > l->max_bytes) {
        return;
    }
    while (l->bytes + bytes > l->max_bytes && l->tail) {
        drop(l, l->tail);
    }
    struct entry *e = rl_calloc(1, sizeof(*e));
    e->key = rl_malloc(klen + 1);
    memcpy(e->key, key, klen + 1);
    e->value = rl_malloc(value.len + 1);
    memcpy(e->value, value.p, value.len);
    e->value[value.len] = '\0';
    e->value_len = value.len;
    e->bytes = bytes;
    e->expires_ms = l->now_ms(l->clock_ctx) + ttl_ms;
    size_t b = hash(key);
    e->next_hash = l->bucket[b];
    l->bucket[b] = e;
    push_head(l, e);
    l->bytes += bytes;
}

struct str cache_lru_get(struct cache_lru *l, const char *key)
{
    struct entry *e = find(l, key);
    if (!e) {
        return (struct str){NULL, 0};
    }
    if (l->now_ms(l->clock_ctx) >= e->expires_ms) {
        drop(l, e);
        return (struct str){NULL, 0};
    }
    unlink_list(l, e);
    push_head(l, e);
    return (struct str){e->value, e->value_len};
}

size_t cache_lru_bytes(const struct cache_lru *l)
{
    return l->bytes;
}
