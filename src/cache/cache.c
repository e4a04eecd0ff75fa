/*
 * cache.c - a worker's exact cache: the LRU first, then Redis (shared by
 * every gateway) when redis: is set and up. Read cache_lookup() first.
 *
 * An entry's value is one header line, "v1 <cost_nusd> <created_s>
 * <expires_s> <model>", then the completion's JSON text. Redis' own TTL
 * expires it there; expires_s bounds its life in an LRU filled from Redis.
 * Inserts never wait: Redis' answer to SET is ignored.
 *
 * The LRU is the process's, shared by its workers under one mutex held
 * only to copy an entry in or out (a per-worker LRU would divide the hit
 * rate by the number of workers; docs/decisions.md 23).
 */
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cache/cache.h"
#include "cache/internal.h"
#include "config/config.h"
#include "redis/redis.h"
#include "util/alloc.h"
#include "util/log.h"

static pthread_mutex_t lru_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cache_lru *lru; /* the process's, under lru_lock */
static int lru_users;         /* caches using it */

static uint64_t mono_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Copies key's value into out (empty when absent). */
static void lru_get(const char *key, struct buf *out)
{
    pthread_mutex_lock(&lru_lock);
    struct str v = cache_lru_get(lru, key);
    buf_append_str(out, v);
    pthread_mutex_unlock(&lru_lock);
}

static void lru_put(const char *key, struct str v, uint64_t ttl_ms)
{
    pthread_mutex_lock(&lru_lock);
    cache_lru_put(lru, key, v, ttl_ms);
    pthread_mutex_unlock(&lru_lock);
}

struct cache_pending {
    struct cache *c;
    cache_lookup_fn cb;     /* NULL once cancelled */
    void *ctx;
    char key[128];
};

static void on_state(void *ctx, bool up)
{
    struct cache *c = ctx;
    if (up) {
        c->down_logged = false;
    } else if (!c->down_logged) {
        c->down_logged = true;
        log_write(LOG_WARN, "redis unreachable: the cache is in-process "
                  "only until it is back", NULL);
    }
}

struct cache *cache_new(struct uv_loop_s *loop, const struct config *cfg)
{
    if (!cfg->cache.enabled) {
        return NULL;
    }
    struct cache *c = rl_calloc(1, sizeof(*c));
    c->loop = loop;
    pthread_mutex_lock(&lru_lock);
    if (lru_users++ == 0) {
        lru = cache_lru_new(cfg->cache.memory_bytes, mono_ms, NULL);
    }
    pthread_mutex_unlock(&lru_lock);
    c->max_entry_bytes = cfg->cache.max_entry_bytes;
    c->sem = cache_semw_new(c, loop, cfg);
    if (cfg->redis && *cfg->redis) {
        struct redis_opts ro = {
            .command_timeout_ms = cfg->cache.redis_timeout_ms,
            .on_state = on_state,
            .state_ctx = c,
        };
        c->redis = redis_new(loop, cfg->redis, &ro);
    }
    return c;
}

void cache_free(struct cache *c)
{
    if (!c) {
        return;
    }
    redis_free(c->redis); /* a pending lookup answers a miss */
    cache_semw_free(c->sem);
    pthread_mutex_lock(&lru_lock);
    if (--lru_users == 0) {
        cache_lru_free(lru);
        lru = NULL;
    }
    pthread_mutex_unlock(&lru_lock);
    free(c);
}

bool cache_entry_decode(struct str value, struct cache_hit *hit, char *model,
                        size_t model_len)
{
    memset(hit, 0, sizeof(*hit));
    const char *nl = value.p ? memchr(value.p, '\n', value.len) : NULL;
    if (!nl || value.len < 3 || memcmp(value.p, "v1 ", 3) != 0) {
        return false;
    }
    char head[400];
    size_t hl = (size_t)(nl - value.p);
    if (hl >= sizeof(head)) {
        return false;
    }
    memcpy(head, value.p, hl);
    head[hl] = '\0';
    char *p = head + 3;
    hit->cost_nusd = strtoll(p, &p, 10);
    hit->created = strtoll(p, &p, 10);
    long long expires = strtoll(p, &p, 10);
    if (*p != ' ' || expires < (long long)time(NULL)) {
        return false;
    }
    snprintf(model, model_len, "%s", p + 1);
    hit->model = model;
    hit->completion = (struct str){nl + 1, value.len - hl - 1};
    json_t *o = json_loadb(hit->completion.p, hit->completion.len, 0, NULL);
    json_t *u = json_object_get(o, "usage");
    hit->usage = (struct usage){
        .prompt_tokens = json_integer_value(json_object_get(u,
                                                "prompt_tokens")),
        .completion_tokens = json_integer_value(json_object_get(u,
                                                "completion_tokens")),
        .present = json_is_object(u),
    };
    bool ok = json_is_object(o);
    json_decref(o);
    return ok;
}

/* Answers cb from value (a miss when it is no valid entry). */
static void answer(struct str value, cache_lookup_fn cb, void *ctx)
{
    struct cache_hit hit;
    char model[256];
    bool ok = cache_entry_decode(value, &hit, model, sizeof(model));
    cb(ctx, ok ? &hit : NULL);
}

static void on_get(void *ctx, struct redisReply *reply, enum rl_err err)
{
    struct cache_pending *p = ctx;
    struct str value = {NULL, 0};
    if (err == RL_OK && reply->type == REDIS_REPLY_STRING) {
        value = (struct str){reply->str, reply->len};
        struct cache_hit hit;
        char model[256];
        if (cache_entry_decode(value, &hit, model, sizeof(model))) {
            /* The first level learns it, for the rest of its life. */
            const char *e = value.p + 3;
            char *q;
            strtoll(e, &q, 10);
            strtoll(q, &q, 10);
            long long exp = strtoll(q, NULL, 10) - (long long)time(NULL);
            lru_put(p->key, value,
                          exp > 0 ? (uint64_t)exp * 1000 : 0);
        }
    }
    if (p->cb) {
        answer(value, p->cb, p->ctx);
    }
    free(p);
}

void cache_lookup(struct cache *c, const struct cache_key *k,
                  cache_lookup_fn cb, void *ctx,
                  struct cache_pending **pending)
{
    *pending = NULL;
    struct buf copy;
    buf_init(&copy, c->max_entry_bytes + 512);
    lru_get(k->name, &copy);
    if (copy.len || !c->redis || !redis_up(c->redis)) {
        answer((struct str){copy.p, copy.len}, cb, ctx);
        buf_free(&copy);
        return;
    }
    buf_free(&copy);
    struct cache_pending *p = rl_calloc(1, sizeof(*p));
    p->c = c;
    p->cb = cb;
    p->ctx = ctx;
    snprintf(p->key, sizeof(p->key), "%s", k->name);
    const char *argv[] = {"GET", p->key};
    if (redis_command(c->redis, 2, argv, NULL, on_get, p) != RL_OK) {
        free(p);
        answer((struct str){NULL, 0}, cb, ctx);
        return;
    }
    *pending = p;
}

void cache_lookup_cancel(struct cache_pending *p)
{
    p->cb = NULL; /* on_get frees it */
}

static void on_set(void *ctx, struct redisReply *reply, enum rl_err err)
{
    (void)ctx;
    (void)reply;
    (void)err; /* best effort: a lost insert is a later miss */
}

void cache_insert(struct cache *c, const struct cache_key *k,
                  struct str completion, const char *model,
                  int64_t cost_nusd, const struct usage *usage)
{
    (void)usage; /* the completion carries it */
    if (completion.len > c->max_entry_bytes) {
        return;
    }
    struct buf v;
    buf_init(&v, c->max_entry_bytes + 512);
    long long now = (long long)time(NULL);
    buf_printf(&v, "v1 %lld %lld %lld %.200s\n", (long long)cost_nusd, now,
               now + (long long)k->ttl_s, model);
    if (buf_append_str(&v, completion) == RL_OK) {
        lru_put(k->name, (struct str){v.p, v.len},
                      k->ttl_s * 1000);
        if (c->redis && redis_up(c->redis)) {
            char ttl[24];
            snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)k->ttl_s);
            const char *argv[] = {"SET", k->name, v.p, "EX", ttl};
            size_t lens[] = {3, strlen(k->name), v.len, 2, strlen(ttl)};
            redis_command(c->redis, 5, argv, lens, on_set, NULL);
        }
    }
    buf_free(&v);
}
