/*
 * table.c - the process-wide table of live routing statistics, one entry
 * per model name and per provider name, and the routing clock.
 *
 * Statistics outlive configuration snapshots: a reload makes new model_cfg
 * objects, so entries are keyed by name, not by pointer. The table is an
 * open-addressed array of pointers that only ever gains entries (until
 * routing_table_reset()), so a lookup reads published pointers without a
 * lock; only creating an entry takes the table's mutex. Each entry has its
 * own mutex for its few hundred bytes of arithmetic (docs/decisions.md 19).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "routing/engine.h"
#include "util/alloc.h"
#include "util/clock.h"

#define TABLE_SLOTS 1024 /* models + providers ever seen; a power of two */

static _Atomic(struct routing_entry *) slots[TABLE_SLOTS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(uint64_t (*)(void)) injected_clock;

static uint32_t hash_name(char kind, const char *name)
{
    uint32_t h = 2166136261u ^ (unsigned char)kind; /* FNV-1a */
    for (const char *p = name; *p; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    return h;
}

static bool entry_is(const struct routing_entry *e, char kind,
                     const char *name)
{
    return e->name[0] == kind && strcmp(e->name + 2, name) == 0;
}

static struct routing_entry *entry_new(char kind, const char *name)
{
    struct routing_entry *e = rl_calloc(1, sizeof(*e));
    size_t len = strlen(name);
    e->name = rl_malloc(len + 3);
    e->name[0] = kind;
    e->name[1] = ':';
    memcpy(e->name + 2, name, len + 1);
    pthread_mutex_init(&e->lock, NULL);
    return e;
}

struct routing_entry *routing_table_get(char kind, const char *name)
{
    uint32_t h = hash_name(kind, name);
    for (uint32_t i = 0; i < TABLE_SLOTS; i++) {
        uint32_t at = (h + i) & (TABLE_SLOTS - 1);
        struct routing_entry *e =
            atomic_load_explicit(&slots[at], memory_order_acquire);
        if (e && entry_is(e, kind, name)) {
            return e;
        }
        if (e) {
            continue;
        }
        /* An empty slot: the name is new, unless another thread is adding
         * it right now. Decide under the lock. */
        pthread_mutex_lock(&table_lock);
        e = atomic_load_explicit(&slots[at], memory_order_acquire);
        if (!e) {
            e = entry_new(kind, name);
            atomic_store_explicit(&slots[at], e, memory_order_release);
        }
        pthread_mutex_unlock(&table_lock);
        if (entry_is(e, kind, name)) {
            return e;
        }
    }
    return NULL;
}

size_t routing_breakers_list(struct routing_breaker_info *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < TABLE_SLOTS && n < cap; i++) {
        struct routing_entry *e =
            atomic_load_explicit(&slots[i], memory_order_acquire);
        if (!e || (e->name[0] != 'm' && e->name[0] != 'p')) {
            continue; /* not a breaker: the pool of lengths */
        }
        pthread_mutex_lock(&e->lock);
        enum routing_breaker st = e->health.state;
        pthread_mutex_unlock(&e->lock);
        out[n++] = (struct routing_breaker_info){
            .provider = e->name[0] == 'p',
            .name = e->name + 2,
            .state = st == ROUTING_OPEN ? 1 : st == ROUTING_HALF_OPEN ? 2 : 0,
        };
    }
    return n;
}

void routing_table_reset(void)
{
    pthread_mutex_lock(&table_lock);
    for (size_t i = 0; i < TABLE_SLOTS; i++) {
        struct routing_entry *e = atomic_load(&slots[i]);
        if (e) {
            pthread_mutex_destroy(&e->lock);
            free(e->name);
            free(e);
            atomic_store(&slots[i], NULL);
        }
    }
    pthread_mutex_unlock(&table_lock);
}

uint64_t routing_now_us(void)
{
    uint64_t (*fn)(void) = atomic_load_explicit(&injected_clock,
                                                memory_order_relaxed);
    return fn ? fn() : clock_now_us();
}

void routing_clock_set(uint64_t (*now_us)(void))
{
    atomic_store(&injected_clock, now_us);
}
