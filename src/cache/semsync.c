/*
 * semsync.c - the semantic index's writer thread, with its own libuv loop
 * and Redis connection (see semsync.h).
 *
 * Redis layout (docs/cache.md): each semantic entry is one record of the
 * stream relay:{c:<scope>}:sem (fields fp, id, ctx, exp, vec, text:
 * model fingerprint, the exact entry's SHA-256 holding the answer, the
 * context hash, expiry in Unix seconds, the embedding as little-endian
 * float32, the prompt), trimmed to about cache.max_entries records; the
 * sorted set SEMSYNC_SCOPES_KEY scores each scope by its last write.
 * Every sync_ms the thread asks which scopes were written lately (all of
 * them at start and every FULL_EVERY polls) and reads each one's stream
 * from where it stopped, PAGE records at a time. Entries already known
 * (this process's own) are skipped by the index. Read poll() first.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cache/semsync.h"
#include "redis/redis.h"
#include "util/alloc.h"
#include "util/log.h"

#define PAGE 256          /* records per XRANGE */
#define SWEEP_MS 5000     /* expired entries are removed this often */
#define FULL_EVERY 50     /* polls between two reads of every scope */
#define SKEW_MS 5000      /* writers' clocks may be this far behind */

enum msg_kind { MSG_PUT, MSG_REMOVE };

struct msg {
    struct msg *next;
    enum msg_kind kind;
    char scope[48];
    unsigned char id[32];
    unsigned char ctx[32];
    int64_t expires_s;
    char *text;
    size_t text_len;
    float vec[];
};

struct cursor {
    char scope[48];
    char last[48];   /* the last stream id read ("0-0": none) */
    bool dirty;      /* to read */
};

static struct {
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;      /* inbox, stop */
    struct msg *inbox, *inbox_tail;
    bool stop;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t poll_timer;
    uv_timer_t sweep_timer;
    struct redis *redis;
    struct cache_semset *set;
    char fp[17];
    size_t dim;
    uint64_t sync_ms;
    struct cursor *cur;
    size_t ncur, capcur;
    bool polling;            /* a poll is in flight */
    int outstanding;         /* XRANGEs in flight */
    unsigned polls;          /* done, for FULL_EVERY */
    int64_t since_ms;        /* scopes written since (wall ms) */
    int64_t poll_ms;         /* when this poll began */
    bool full;               /* this poll reads every scope */
    atomic_bool ready;       /* the first full read is done */
    uint64_t t0_ms;          /* the thread started (loop clock) */
    size_t loaded;           /* entries added from Redis */
} Y = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------
 * Messages from the workers
 * ------------------------------------------------------------------- */

static void post(struct msg *m)
{
    pthread_mutex_lock(&Y.mu);
    bool live = Y.running && !Y.stop;
    if (live) {
        if (Y.inbox_tail) {
            Y.inbox_tail->next = m;
        } else {
            Y.inbox = m;
        }
        Y.inbox_tail = m;
        uv_async_send(&Y.wake);
    }
    pthread_mutex_unlock(&Y.mu);
    if (!live) {
        free(m->text);
        free(m);
    }
}

void cache_semsync_put(const struct cache_semset_item *it)
{
    struct msg *m = rl_calloc(1, sizeof(*m) + Y.dim * sizeof(float));
    m->kind = MSG_PUT;
    snprintf(m->scope, sizeof(m->scope), "%s", it->scope);
    memcpy(m->id, it->id, 32);
    memcpy(m->ctx, it->ctx, 32);
    m->expires_s = it->expires_s;
    m->text = rl_malloc(it->text.len + 1);
    memcpy(m->text, it->text.p, it->text.len);
    m->text_len = it->text.len;
    memcpy(m->vec, it->vec, Y.dim * sizeof(float));
    post(m);
}

void cache_semsync_remove(const char *scope, const unsigned char id[32])
{
    struct msg *m = rl_calloc(1, sizeof(*m));
    m->kind = MSG_REMOVE;
    snprintf(m->scope, sizeof(m->scope), "%s", scope);
    memcpy(m->id, id, 32);
    post(m);
}

bool cache_semsync_ready(void)
{
    return atomic_load(&Y.ready);
}

static void apply(struct msg *m)
{
    if (m->kind == MSG_REMOVE) {
        cache_semset_remove(Y.set, m->scope, m->id);
        return;
    }
    struct cache_semset_item it = {
        .scope = m->scope,
        .vec = m->vec,
        .text = {m->text, m->text_len},
        .expires_s = m->expires_s,
    };
    memcpy(it.id, m->id, 32);
    memcpy(it.ctx, m->ctx, 32);
    cache_semset_put(Y.set, &it, (int64_t)time(NULL));
}

static void close_all(void);

static void on_wake(uv_async_t *a)
{
    (void)a;
    pthread_mutex_lock(&Y.mu);
    struct msg *list = Y.inbox;
    Y.inbox = Y.inbox_tail = NULL;
    bool stop = Y.stop;
    pthread_mutex_unlock(&Y.mu);
    while (list) {
        struct msg *m = list;
        list = m->next;
        if (!stop) {
            apply(m);
        }
        free(m->text);
        free(m);
    }
    if (stop) {
        close_all();
    }
}

/* ---------------------------------------------------------------------
 * Reading Redis
 * ------------------------------------------------------------------- */

static void schedule(uint64_t ms);

static struct cursor *cursor_get(const char *scope, size_t len)
{
    for (size_t i = 0; i < Y.ncur; i++) {
        if (strlen(Y.cur[i].scope) == len &&
            memcmp(Y.cur[i].scope, scope, len) == 0) {
            return &Y.cur[i];
        }
    }
    if (len >= sizeof(Y.cur[0].scope)) {
        return NULL;
    }
    if (Y.ncur == Y.capcur) {
        Y.capcur = Y.capcur ? 2 * Y.capcur : 16;
        Y.cur = rl_realloc(Y.cur, Y.capcur * sizeof(*Y.cur));
    }
    struct cursor *c = &Y.cur[Y.ncur++];
    memset(c, 0, sizeof(*c));
    memcpy(c->scope, scope, len);
    snprintf(c->last, sizeof(c->last), "0-0");
    return c;
}

/* The value of field name in the flat field/value array f, or NULL. */
static const redisReply *field(const redisReply *f, const char *name)
{
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i];
        if (k->type == REDIS_REPLY_STRING && strlen(name) == k->len &&
            memcmp(k->str, name, k->len) == 0 &&
            f->element[i + 1]->type == REDIS_REPLY_STRING) {
            return f->element[i + 1];
        }
    }
    return NULL;
}

/* Adds one stream record to the index when it is valid and ours. */
static void take(const char *scope, const redisReply *f, float *vec)
{
    const redisReply *fp = field(f, "fp");
    const redisReply *id = field(f, "id");
    const redisReply *ctx = field(f, "ctx");
    const redisReply *exp = field(f, "exp");
    const redisReply *v = field(f, "vec");
    const redisReply *text = field(f, "text");
    struct cache_semset_item it = {.scope = scope, .vec = vec};
    if (!fp || !id || !ctx || !exp || !v || !text || fp->len != 16 ||
        memcmp(fp->str, Y.fp, 16) != 0 || v->len != Y.dim * sizeof(float) ||
        id->len != 64 || !cache_hex_to_32(id->str, it.id) ||
        ctx->len != 64 || !cache_hex_to_32(ctx->str, it.ctx)) {
        return; /* another model, or not a record of ours */
    }
    memcpy(vec, v->str, v->len);
    it.expires_s = strtoll(exp->str, NULL, 10);
    it.text = (struct str){text->str, text->len};
    if (cache_semset_put(Y.set, &it, (int64_t)time(NULL))) {
        Y.loaded++;
    }
}

static void poll_end(void)
{
    Y.polling = false;
    Y.polls++;
    bool more = false;
    for (size_t i = 0; i < Y.ncur; i++) {
        more = more || Y.cur[i].dirty;
    }
    if (!more && !atomic_load(&Y.ready)) {
        atomic_store(&Y.ready, true);
        log_write(LOG_INFO, "semantic index read from redis",
                  "\"entries\":%zu,\"scopes\":%zu,\"ms\":%llu", Y.loaded,
                  Y.ncur,
                  (unsigned long long)(uv_now(&Y.loop) - Y.t0_ms));
    }
    schedule(more ? 0 : Y.sync_ms);
}

static void on_range(void *ctx, struct redisReply *reply, enum rl_err err)
{
    struct cursor *c = &Y.cur[(size_t)(uintptr_t)ctx];
    if (err == RL_OK && reply->type == REDIS_REPLY_ARRAY) {
        float *vec = rl_malloc(Y.dim * sizeof(float));
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *r = reply->element[i];
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                r->element[0]->type != REDIS_REPLY_STRING ||
                r->element[1]->type != REDIS_REPLY_ARRAY ||
                r->element[0]->len >= sizeof(c->last)) {
                continue;
            }
            take(c->scope, r->element[1], vec);
            memcpy(c->last, r->element[0]->str, r->element[0]->len);
            c->last[r->element[0]->len] = '\0';
        }
        free(vec);
        c->dirty = reply->elements == PAGE;
    } else if (err == RL_OK) {
        c->dirty = false; /* an error reply (a key of another type) */
    }
    if (--Y.outstanding == 0) {
        poll_end();
    }
}

static void read_dirty(void)
{
    for (size_t i = 0; i < Y.ncur; i++) {
        struct cursor *c = &Y.cur[i];
        if (!c->dirty) {
            continue;
        }
        char key[96], from[52];
        snprintf(key, sizeof(key), "relay:{c:%s}:sem", c->scope);
        snprintf(from, sizeof(from), "(%s", c->last);
        const char *argv[] = {"XRANGE", key, from, "+", "COUNT", "256"};
        if (redis_command(Y.redis, 6, argv, NULL, on_range,
                          (void *)(uintptr_t)i) == RL_OK) {
            Y.outstanding++;
        }
    }
    if (Y.outstanding == 0) {
        poll_end();
    }
}

static void on_scopes(void *ctx, struct redisReply *reply, enum rl_err err)
{
    (void)ctx;
    if (err != RL_OK || reply->type != REDIS_REPLY_ARRAY) {
        Y.polling = false;
        schedule(Y.sync_ms);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *s = reply->element[i];
        struct cursor *c = s->type == REDIS_REPLY_STRING
                               ? cursor_get(s->str, s->len)
                               : NULL;
        if (c) {
            c->dirty = true;
        }
    }
    if (Y.full) {
        Y.since_ms = Y.poll_ms;
    } else if (Y.poll_ms > Y.since_ms) {
        Y.since_ms = Y.poll_ms;
    }
    read_dirty();
}

static void poll_start(uv_timer_t *t)
{
    (void)t;
    if (Y.polling || !Y.redis || !redis_up(Y.redis)) {
        schedule(Y.sync_ms);
        return;
    }
    Y.polling = true;
    Y.poll_ms = wall_ms();
    Y.full = Y.polls % FULL_EVERY == 0 || !atomic_load(&Y.ready);
    char since[32];
    if (Y.full) {
        snprintf(since, sizeof(since), "-inf");
    } else {
        snprintf(since, sizeof(since), "%lld",
                 (long long)(Y.since_ms - SKEW_MS));
    }
    const char *argv[] = {"ZRANGEBYSCORE", SEMSYNC_SCOPES_KEY, since, "+inf"};
    if (redis_command(Y.redis, 4, argv, NULL, on_scopes, NULL) != RL_OK) {
        Y.polling = false;
        schedule(Y.sync_ms);
    }
}

static void schedule(uint64_t ms)
{
    uv_timer_start(&Y.poll_timer, poll_start, ms, 0);
}

static void sweep(uv_timer_t *t)
{
    (void)t;
    cache_semset_expire(Y.set, (int64_t)time(NULL));
}

/* ---------------------------------------------------------------------
 * The thread
 * ------------------------------------------------------------------- */

static void close_all(void)
{
    uv_timer_stop(&Y.poll_timer);
    uv_timer_stop(&Y.sweep_timer);
    uv_close((uv_handle_t *)&Y.poll_timer, NULL);
    uv_close((uv_handle_t *)&Y.sweep_timer, NULL);
    uv_close((uv_handle_t *)&Y.wake, NULL);
    redis_free(Y.redis);
    Y.redis = NULL;
}

static void *sync_main(void *arg)
{
    const char *url = arg;
    log_thread_batching(false);
    if (url) {
        struct redis_opts ro = {.command_timeout_ms = 2000};
        Y.redis = redis_new(&Y.loop, url, &ro);
    }
    if (!Y.redis) {
        atomic_store(&Y.ready, true);
    }
    Y.t0_ms = uv_now(&Y.loop);
    schedule(0);
    uv_timer_start(&Y.sweep_timer, sweep, SWEEP_MS, SWEEP_MS);
    uv_run(&Y.loop, UV_RUN_DEFAULT);
    free((void *)url);
    cache_index_thread_exit();
    log_thread_exit();
    return NULL;
}

void cache_semsync_start(struct cache_semset *set, const char *redis_url,
                         const char fp[17], size_t dim, uint64_t sync_ms)
{
    Y.set = set;
    memcpy(Y.fp, fp, 17);
    Y.dim = dim;
    Y.sync_ms = sync_ms ? sync_ms : 200;
    Y.stop = false;
    Y.polling = false;
    Y.outstanding = 0;
    Y.polls = 0;
    Y.loaded = 0;
    atomic_store(&Y.ready, false);
    uv_loop_init(&Y.loop);
    uv_async_init(&Y.loop, &Y.wake, on_wake);
    uv_timer_init(&Y.loop, &Y.poll_timer);
    uv_timer_init(&Y.loop, &Y.sweep_timer);
    char *url = redis_url && *redis_url ? rl_strdup(redis_url) : NULL;
    Y.running = true;
    pthread_create(&Y.thread, NULL, sync_main, url);
}

void cache_semsync_stop(void)
{
    if (!Y.running) {
        return;
    }
    pthread_mutex_lock(&Y.mu);
    Y.stop = true;
    uv_async_send(&Y.wake);
    pthread_mutex_unlock(&Y.mu);
    pthread_join(Y.thread, NULL);
    uv_loop_close(&Y.loop);
    pthread_mutex_lock(&Y.mu);
    Y.running = false;
    pthread_mutex_unlock(&Y.mu);
    free(Y.cur);
    Y.cur = NULL;
    Y.ncur = Y.capcur = 0;
}
