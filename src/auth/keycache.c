/*
 * keycache.c - every store key in memory, refreshed by one thread, read by
 * the workers without a lock on the hot path.
 *
 * The thread keeps the authoritative list (from store_keys_since: a full
 * load at start, then every poll_ms the changes after the last version
 * seen) and, on any change, builds an immutable snapshot: an
 * open-addressing table by SHA-256. It publishes the snapshot under a
 * mutex and bumps an atomic generation. A worker keeps a reference to the
 * snapshot it last used in a thread-local; on each lookup it compares one
 * atomic load with its generation and only when they differ (a few times
 * a second at most) takes the mutex to swap references. Snapshots are
 * refcounted, so an old one is freed by whoever drops it last. Every
 * spend_ms the thread also reads each budgeted key's spend this period.
 * When the store is unreachable the last snapshot stays in force; that is
 * logged once when it goes and once when it is back. Read poll_once()
 * first; the reasoning is in docs/internals/keys.md.
 */
#include "auth/keycache.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"
#include "util/alloc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define POLL_MS_DEFAULT 250
#define SPEND_MS_DEFAULT 5000
#define RETRY_MS 1000

struct slot {
    unsigned char sha256[32];
    bool used;
    struct keycache_key key;
};

struct snap {
    _Atomic long refs;
    struct slot *slots;
    size_t cap; /* a power of two, at least twice the keys */
};

/* A key of the authoritative list, with its spend. */
struct held {
    struct store_key row;
    int64_t spent_nusd;
};

static struct {
    pthread_mutex_t pub_mu;  /* guards current */
    struct snap *current;    /* one reference held here */
    _Atomic uint64_t generation; /* bumped with each publish */
    pthread_mutex_t poll_mu; /* one poll at a time; guards all below */
    pthread_cond_t wake;     /* keycache_stop wakes the thread */
    bool started;
    bool stopping;
    char url[1024];
    struct keycache_opts opts;
    struct store_db db;      /* conn NULL while unreachable */
    bool down;               /* "unreachable" was logged */
    uint64_t next_try_ms;
    uint64_t spend_ms;       /* when spends were last read */
    struct held *keys;
    size_t nkeys;
    size_t cap;
    _Atomic int64_t version; /* highest applied */
    pthread_t thread;
} S = {
    .pub_mu = PTHREAD_MUTEX_INITIALIZER,
    .poll_mu = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

static _Thread_local struct snap *mine;
static _Thread_local uint64_t mine_gen;

/* ---------------------------------------------------------------------
 * Snapshots
 * ------------------------------------------------------------------- */

static void snap_unref(struct snap *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1) {
        return;
    }
    for (size_t i = 0; i < s->cap; i++) {
        struct keycache_key *k = &s->slots[i].key;
        for (size_t m = 0; m < k->nmodels; m++) {
            free(k->models[m]);
        }
        free(k->models);
    }
    free(s->slots);
    free(s);
}

static size_t slot_of(const unsigned char h[32], size_t cap)
{
    uint64_t x;
    memcpy(&x, h, sizeof(x));
    return (size_t)x & (cap - 1);
}

static bool hex_to_bytes(const char *hex, unsigned char out[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = hex[2 * i + k];
            unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                         : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                                                : 16;
            if (d == 16) {
                return false;
            }
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return true;
}

/* Reads the models JSON array into k (malformed text: no list). */
static void parse_models(const char *text, struct keycache_key *k)
{
    json_t *a = json_loads(text, 0, NULL);
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    k->models = n ? rl_calloc(n, sizeof(*k->models)) : NULL;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (s) {
            k->models[k->nmodels++] = rl_strdup(s);
        }
    }
    json_decref(a);
}

static int int_member(json_t *o, const char *name, int unset)
{
    json_t *v = json_object_get(o, name);
    if (json_is_boolean(v)) {
        return json_is_true(v);
    }
    return json_is_integer(v) ? (int)json_integer_value(v) : unset;
}

static void parse_routing(const char *text, struct auth_routing *r)
{
    json_t *o = json_loads(text, 0, NULL);
    r->max_latency_ms = int_member(o, "max_latency_ms", 0);
    r->min_quality_tier = int_member(o, "min_quality_tier", 0);
    r->max_ttft_ms = int_member(o, "max_ttft_ms", 0);
    r->hedge = int_member(o, "hedge", -1);
    json_decref(o);
}

static void fill(struct keycache_key *k, const struct held *h)
{
    const struct store_key *row = &h->row;
    memcpy(k->id, row->id, sizeof(k->id));
    memcpy(k->name, row->name, sizeof(k->name));
    memcpy(k->prefix, row->prefix, sizeof(k->prefix));
    k->revoked = row->revoked_at[0] != '\0';
    k->rpm = row->rpm;
    k->tpm = row->tpm;
    k->max_concurrent = row->max_concurrent;
    k->budget_nusd = row->budget_nusd;
    k->budget_period = (enum auth_period)row->budget_period;
    k->spent_nusd = h->spent_nusd;
    parse_models(row->models, k);
    parse_routing(row->routing, &k->routing);
    json_t *cache = json_loads(row->cache, 0, NULL);
    json_t *th = json_object_get(cache, "threshold");
    k->cache_threshold = json_is_number(th) ? json_number_value(th) : 0;
    k->cache_any_temperature =
        json_is_true(json_object_get(cache, "any_temperature"));
    json_decref(cache);
}

static struct snap *build(void)
{
    struct snap *s = rl_calloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    s->cap = 16;
    while (s->cap < 2 * S.nkeys) {
        s->cap *= 2;
    }
    s->slots = rl_calloc(s->cap, sizeof(*s->slots));
    for (size_t i = 0; i < S.nkeys; i++) {
        unsigned char h[32];
        if (!hex_to_bytes(S.keys[i].row.sha256_hex, h)) {
            continue; /* not a hash we wrote: no key can match it */
        }
        size_t at = slot_of(h, s->cap);
        while (s->slots[at].used) {
            at = (at + 1) & (s->cap - 1);
        }
        s->slots[at].used = true;
        memcpy(s->slots[at].sha256, h, 32);
        fill(&s->slots[at].key, &S.keys[i]);
    }
    return s;
}

static void publish(struct snap *s)
{
    pthread_mutex_lock(&S.pub_mu);
    struct snap *old = S.current;
    S.current = s;
    atomic_fetch_add(&S.generation, 1);
    pthread_mutex_unlock(&S.pub_mu);
    snap_unref(old);
}

const struct keycache_key *keycache_lookup(const unsigned char sha256[32])
{
    if (atomic_load_explicit(&S.generation, memory_order_acquire) !=
        mine_gen) {
        pthread_mutex_lock(&S.pub_mu);
        struct snap *s = S.current;
        if (s) {
            atomic_fetch_add(&s->refs, 1);
        }
        mine_gen = atomic_load(&S.generation);
        pthread_mutex_unlock(&S.pub_mu);
        snap_unref(mine);
        mine = s;
    }
    const struct snap *s = mine;
    if (!s) {
        return NULL;
    }
    for (size_t at = slot_of(sha256, s->cap); s->slots[at].used;
         at = (at + 1) & (s->cap - 1)) {
        if (CRYPTO_memcmp(s->slots[at].sha256, sha256, 32) == 0) {
            return &s->slots[at].key;
        }
    }
    return NULL;
}

void keycache_thread_exit(void)
{
    snap_unref(mine);
    mine = NULL;
    mine_gen = 0;
}

int64_t keycache_version(void)
{
    return atomic_load(&S.version);
}

/* ---------------------------------------------------------------------
 * The authoritative list (poll thread, under poll_mu)
 * ------------------------------------------------------------------- */

static void apply(const struct store_key *rows, size_t n)
{
    /* A full load brings each id once: no need to look for it. */
    bool full = S.nkeys == 0;
    for (size_t i = 0; i < n; i++) {
        struct held *h = NULL;
        for (size_t k = 0; k < S.nkeys && !full; k++) {
            if (strcmp(S.keys[k].row.id, rows[i].id) == 0) {
                h = &S.keys[k];
                break;
            }
        }
        if (!h) {
            if (S.nkeys == S.cap) {
                S.cap = S.cap ? S.cap * 2 : 64;
                S.keys = rl_realloc(S.keys, S.cap * sizeof(*S.keys));
            }
            h = &S.keys[S.nkeys++];
            h->spent_nusd = 0;
        }
        h->row = rows[i];
        if (rows[i].version > S.version) {
            atomic_store(&S.version, rows[i].version);
        }
    }
}

/* Logs what happened with the store, once per change of state. */
static void say(bool down, const char *why)
{
    if (down == S.down) {
        return;
    }
    S.down = down;
    if (!down) {
        log_write(LOG_INFO, "key cache: the store answers again; key "
                  "changes are applied", "\"version\":%lld",
                  (long long)S.version);
        return;
    }
    struct buf b;
    buf_init(&b, 4096);
    buf_append(&b, "", 0);
    buf_append_json_escaped(&b, why, strlen(why));
    log_write(LOG_ERROR, "key cache: the store is unreachable; the keys "
              "loaded last stay in force until it answers",
              "\"store\":\"%s\",\"detail\":\"%s\"",
              S.db.engine ? S.db.engine->name : "", b.p ? b.p : "");
    buf_free(&b);
}

/* Reads each budgeted key's spend this period; true if one changed. */
static bool read_spends(char *err, size_t n, bool *failed)
{
    bool changed = false;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    for (int p = STORE_PERIOD_DAY; p <= STORE_PERIOD_TOTAL && !*failed;
         p++) {
        bool wanted = false;
        for (size_t i = 0; i < S.nkeys && !wanted; i++) {
            wanted = S.keys[i].row.budget_nusd > 0 &&
                     (int)S.keys[i].row.budget_period == p;
        }
        struct store_spend *rows = NULL;
        size_t nrows = 0;
        if (!wanted) {
            continue;
        }
        if (store_keys_spend(&S.db,
                             store_period_start_us((enum store_period)p,
                                                   now_us),
                             &rows, &nrows, err, n) != RL_OK) {
            *failed = true;
            break;
        }
        for (size_t i = 0; i < S.nkeys; i++) {
            struct held *h = &S.keys[i];
            if (h->row.budget_nusd <= 0 || (int)h->row.budget_period != p) {
                continue;
            }
            int64_t spent = 0;
            for (size_t k = 0; k < nrows; k++) {
                if (strcmp(rows[k].key_id, h->row.id) == 0) {
                    spent = rows[k].spent_nusd;
                }
            }
            changed |= spent != h->spent_nusd;
            h->spent_nusd = spent;
        }
        free(rows);
    }
    return changed;
}

static uint64_t now_ms(void)
{
    return clock_now_us() / 1000;
}

/* One round: connect if needed, read changes (and spends when due),
 * publish a new snapshot if anything changed. */
static void poll_once(void)
{
    char err[1024] = "";
    if (!S.db.conn) {
        if (now_ms() < S.next_try_ms) {
            return;
        }
        if (store_db_open(S.url, true, &S.db, err, sizeof(err)) != RL_OK) {
            S.next_try_ms = now_ms() + RETRY_MS;
            say(true, err);
            return;
        }
    }
    struct store_key *rows = NULL;
    size_t n = 0;
    bool failed = store_keys_since(&S.db, atomic_load(&S.version), &rows,
                                   &n, err, sizeof(err)) != RL_OK;
    bool changed = !failed && (n > 0 || !S.current);
    if (!failed) {
        apply(rows, n);
    }
    free(rows);
    if (!failed && (n > 0 || now_ms() - S.spend_ms >= S.opts.spend_ms)) {
        S.spend_ms = now_ms();
        changed |= read_spends(err, sizeof(err), &failed);
    }
    if (failed) {
        store_db_close(&S.db);
        S.next_try_ms = now_ms() + RETRY_MS;
        say(true, err);
        return;
    }
    say(false, NULL);
    if (changed) {
        publish(build());
    }
}

void keycache_refresh(void)
{
    pthread_mutex_lock(&S.poll_mu);
    if (S.started) {
        S.next_try_ms = 0;
        poll_once();
    }
    pthread_mutex_unlock(&S.poll_mu);
}

static void *keycache_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&S.poll_mu);
    while (!S.stopping) {
        poll_once();
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + S.opts.poll_ms * 1000000;
        until.tv_sec += (time_t)(ns / 1000000000);
        until.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&S.wake, &S.poll_mu, &until);
    }
    pthread_mutex_unlock(&S.poll_mu);
    log_thread_exit();
    return NULL;
}

/* ---------------------------------------------------------------------
 * Start and stop
 * ------------------------------------------------------------------- */

enum rl_err keycache_start(const char *url, const struct keycache_opts *o)
{
    if (S.started || (url && strcmp(url, "none") == 0)) {
        return RL_OK; /* no store: only the static keys of auth.keys */
    }
    struct store_target t;
    char err[1024];
    if (store_target_parse(url, &t, err, sizeof(err)) != RL_OK) {
        log_write(LOG_ERROR, "key cache: cannot use the store URL",
                  "\"store\":\"%s\"", t.shown);
        return RL_E_CONFIG;
    }
    snprintf(S.url, sizeof(S.url), "%s", url ? url : "");
    S.opts.poll_ms = o && o->poll_ms ? o->poll_ms : POLL_MS_DEFAULT;
    S.opts.spend_ms = o && o->spend_ms ? o->spend_ms : SPEND_MS_DEFAULT;
    S.stopping = false;
    S.down = false;
    S.next_try_ms = 0;
    S.spend_ms = 0;
    atomic_store(&S.version, 0);
    S.started = true;
    /* The first load here, so keys work from the first request. */
    pthread_mutex_lock(&S.poll_mu);
    poll_once();
    pthread_mutex_unlock(&S.poll_mu);
    log_write(LOG_INFO, "key cache loaded", "\"keys\":%zu,\"version\":%lld,"
              "\"connected\":%s", S.nkeys, (long long)S.version,
              S.db.conn ? "true" : "false");
    if (pthread_create(&S.thread, NULL, keycache_main, NULL) != 0) {
        abort(); /* as an allocation failure */
    }
    return RL_OK;
}

void keycache_stop(void)
{
    if (!S.started) {
        return;
    }
    pthread_mutex_lock(&S.poll_mu);
    S.stopping = true;
    pthread_cond_signal(&S.wake);
    pthread_mutex_unlock(&S.poll_mu);
    pthread_join(S.thread, NULL);
    pthread_mutex_lock(&S.poll_mu);
    S.started = false;
    store_db_close(&S.db);
    free(S.keys);
    S.keys = NULL;
    S.nkeys = S.cap = 0;
    pthread_mutex_unlock(&S.poll_mu);
    publish(NULL);
    keycache_thread_exit();
}
