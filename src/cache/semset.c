/*
 * semset.c - the process's semantic entries: one HNSW graph (index.c) per
 * scope, each entry's prompt text, context hash, entry id and life, one
 * list of all entries in arrival order (the oldest is evicted past
 * cache.max_entries), and the lookup that applies the one decision
 * (cache_semantic_decide) to the nearest neighbours of the same context.
 *
 * Thread-safe: a rwlock; finds share it, changes take it alone. The
 * caller passes the time (seconds), so tests control expiry. Read
 * cache_semset_put() and cache_semset_find() first.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "cache/internal.h"
#include "util/alloc.h"

#define SCOPE_BUCKETS 256
#define FIND_K 8     /* neighbours looked at per lookup */
#define FIND_EF 64   /* beam of a lookup */

struct scope;

struct entry {
    struct scope *scope;
    uint32_t slot;               /* in scope->ix */
    unsigned char id[32];        /* the exact entry holding the answer */
    unsigned char ctx[32];       /* context hash */
    int64_t expires_s;           /* Unix seconds */
    char *text;                  /* the embedded prompt, owned */
    size_t text_len;
    struct entry *older, *newer; /* arrival order, all scopes */
    struct entry *next_id;       /* chain of the id table */
};

struct scope {
    char name[48];
    struct cache_index *ix;
    struct entry **by_slot;      /* [nslots] */
    size_t nslots;
    struct scope *next;          /* bucket chain */
};

struct cache_semset {
    pthread_rwlock_t lock;
    size_t dim;
    size_t max_entries;
    size_t entries;              /* live */
    size_t text_bytes;           /* prompt texts held */
    uint64_t seed;
    struct scope *bucket[SCOPE_BUCKETS];
    struct entry *oldest, *newest;
    struct entry **ids;          /* [nids] chains by (scope, id) */
    size_t nids;                 /* a power of two */
};

static size_t name_hash(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

static size_t id_hash(const struct scope *sc, const unsigned char id[32])
{
    uint64_t v;
    memcpy(&v, id, sizeof(v));
    return (size_t)(v ^ (uintptr_t)sc);
}

struct cache_semset *cache_semset_new(size_t dim, size_t max_entries)
{
    struct cache_semset *s = rl_calloc(1, sizeof(*s));
    pthread_rwlock_init(&s->lock, NULL);
    s->dim = dim;
    s->max_entries = max_entries ? max_entries : 1;
    s->nids = 1024;
    s->ids = rl_calloc(s->nids, sizeof(*s->ids));
    s->seed = 0x2545F4914F6CDD1DULL;
    return s;
}

void cache_semset_free(struct cache_semset *s)
{
    if (!s) {
        return;
    }
    for (struct entry *e = s->oldest; e;) {
        struct entry *n = e->newer;
        free(e->text);
        free(e);
        e = n;
    }
    for (size_t b = 0; b < SCOPE_BUCKETS; b++) {
        for (struct scope *sc = s->bucket[b]; sc;) {
            struct scope *n = sc->next;
            cache_index_free(sc->ix);
            free(sc->by_slot);
            free(sc);
            sc = n;
        }
    }
    free(s->ids);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

static struct scope *scope_find(const struct cache_semset *s,
                                const char *name)
{
    struct scope *sc = s->bucket[name_hash(name) % SCOPE_BUCKETS];
    while (sc && strcmp(sc->name, name) != 0) {
        sc = sc->next;
    }
    return sc;
}

static struct scope *scope_get(struct cache_semset *s, const char *name)
{
    struct scope *sc = scope_find(s, name);
    if (sc) {
        return sc;
    }
    sc = rl_calloc(1, sizeof(*sc));
    snprintf(sc->name, sizeof(sc->name), "%s", name);
    sc->ix = cache_index_new(s->dim, s->seed++);
    size_t b = name_hash(name) % SCOPE_BUCKETS;
    sc->next = s->bucket[b];
    s->bucket[b] = sc;
    return sc;
}

static struct entry **id_slot(struct cache_semset *s, const struct scope *sc,
                              const unsigned char id[32])
{
    struct entry **p = &s->ids[id_hash(sc, id) & (s->nids - 1)];
    while (*p && ((*p)->scope != sc || memcmp((*p)->id, id, 32) != 0)) {
        p = &(*p)->next_id;
    }
    return p;
}

static void ids_grow(struct cache_semset *s)
{
    size_t n = s->nids * 2;
    struct entry **t = rl_calloc(n, sizeof(*t));
    for (struct entry *e = s->oldest; e; e = e->newer) {
        size_t b = id_hash(e->scope, e->id) & (n - 1);
        e->next_id = t[b];
        t[b] = e;
    }
    free(s->ids);
    s->ids = t;
    s->nids = n;
}

/* Unlinks and frees e (the write lock held). */
static void drop(struct cache_semset *s, struct entry *e)
{
    struct entry **p = id_slot(s, e->scope, e->id);
    *p = e->next_id;
    if (e->older) {
        e->older->newer = e->newer;
    } else {
        s->oldest = e->newer;
    }
    if (e->newer) {
        e->newer->older = e->older;
    } else {
        s->newest = e->older;
    }
    cache_index_delete(e->scope->ix, e->slot);
    e->scope->by_slot[e->slot] = NULL;
    s->entries--;
    s->text_bytes -= e->text_len;
    free(e->text);
    free(e);
}

bool cache_semset_put(struct cache_semset *s,
                      const struct cache_semset_item *it, int64_t now_s)
{
    if (it->expires_s <= now_s) {
        return false;
    }
    pthread_rwlock_wrlock(&s->lock);
    struct scope *sc = scope_get(s, it->scope);
    if (*id_slot(s, sc, it->id)) {
        pthread_rwlock_unlock(&s->lock);
        return false; /* known (our own insert read back from Redis) */
    }
    while (s->entries >= s->max_entries && s->oldest) {
        drop(s, s->oldest);
    }
    if (s->entries >= s->nids * 2) {
        ids_grow(s);
    }
    struct entry *e = rl_calloc(1, sizeof(*e));
    e->scope = sc;
    memcpy(e->id, it->id, 32);
    memcpy(e->ctx, it->ctx, 32);
    e->expires_s = it->expires_s;
    e->text = rl_malloc(it->text.len + 1);
    memcpy(e->text, it->text.p, it->text.len);
    e->text[it->text.len] = '\0';
    e->text_len = it->text.len;
    e->slot = cache_index_add(sc->ix, it->vec);
    if (e->slot >= sc->nslots) {
        size_t n = sc->nslots ? 2 * sc->nslots : 16;
        while (n <= e->slot) {
            n *= 2;
        }
        sc->by_slot = rl_realloc(sc->by_slot, n * sizeof(*sc->by_slot));
        memset(sc->by_slot + sc->nslots, 0,
               (n - sc->nslots) * sizeof(*sc->by_slot));
        sc->nslots = n;
    }
    sc->by_slot[e->slot] = e;
    struct entry **p = id_slot(s, sc, it->id);
    *p = e;
    e->older = s->newest;
    if (s->newest) {
        s->newest->newer = e;
    } else {
        s->oldest = e;
    }
    s->newest = e;
    s->entries++;
    s->text_bytes += e->text_len;
    pthread_rwlock_unlock(&s->lock);
    return true;
}

void cache_semset_remove(struct cache_semset *s, const char *scope,
                         const unsigned char id[32])
{
    pthread_rwlock_wrlock(&s->lock);
    struct scope *sc = scope_find(s, scope);
    struct entry *e = sc ? *id_slot(s, sc, id) : NULL;
    if (e) {
        drop(s, e);
    }
    pthread_rwlock_unlock(&s->lock);
}

size_t cache_semset_expire(struct cache_semset *s, int64_t now_s)
{
    size_t n = 0;
    pthread_rwlock_wrlock(&s->lock);
    for (struct entry *e = s->oldest; e;) {
        struct entry *next = e->newer;
        if (e->expires_s <= now_s) {
            drop(s, e);
            n++;
        }
        e = next;
    }
    pthread_rwlock_unlock(&s->lock);
    return n;
}

bool cache_semset_find(struct cache_semset *s,
                       const struct cache_semset_ask *ask, int64_t now_s,
                       struct cache_semset_found *out)
{
    memset(out, 0, sizeof(*out));
    out->similarity = -1;
    snprintf(out->reason, sizeof(out->reason), "no entry of this context");
    pthread_rwlock_rdlock(&s->lock);
    struct scope *sc = scope_find(s, ask->scope);
    struct cache_index_hit hit[FIND_K];
    size_t n = sc ? cache_index_search(sc->ix, ask->vec, FIND_K, FIND_EF,
                                       hit)
                  : 0;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        const struct entry *e = sc->by_slot[hit[i].slot];
        if (!e || memcmp(e->ctx, ask->ctx, 32) != 0 ||
            e->expires_s <= now_s) {
            continue;
        }
        char why[sizeof(out->reason)];
        found = cache_semantic_decide(hit[i].sim, ask->threshold,
                                      ask->guard,
                                      (struct str){e->text, e->text_len},
                                      ask->text, why, sizeof(why));
        if (found || out->similarity < 0) {
            out->similarity = hit[i].sim;
            memcpy(out->id, e->id, 32);
            memcpy(out->reason, why, sizeof(why));
        }
    }
    pthread_rwlock_unlock(&s->lock);
    out->hit = found;
    return found;
}

void cache_semset_stats(struct cache_semset *s,
                        struct cache_semset_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_rwlock_rdlock(&s->lock);
    out->entries = s->entries;
    out->bytes = s->text_bytes + s->entries * sizeof(struct entry) +
                 s->nids * sizeof(*s->ids);
    for (size_t b = 0; b < SCOPE_BUCKETS; b++) {
        for (struct scope *sc = s->bucket[b]; sc; sc = sc->next) {
            out->scopes++;
            out->bytes += sizeof(*sc) + cache_index_bytes(sc->ix) +
                          sc->nslots * sizeof(*sc->by_slot);
        }
    }
    pthread_rwlock_unlock(&s->lock);
}
