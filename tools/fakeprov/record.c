/*
 * record.c - the ring of the last chat requests, for GET /_fake/requests.
 *
 * Each request is serialised once, when it arrives, into one heap string
 * (a JSON object); the body is embedded verbatim when it parsed as JSON,
 * so recording costs a memcpy, a malloc and a short critical section, and
 * the dump is a concatenation. The ring is shared by every worker behind
 * one mutex. `--no-record` turns it off (fake_record_init(0)).
 *
 * Read first: fake_record_add().
 */
#include "fakeprov.h"

#include <pthread.h>
#include <stdlib.h>

#include "util/alloc.h"
#include "util/clock.h"

#define RECORD_MAX_ENTRY (FAKE_MAX_BODY + FAKE_MAX_HEADERS * 2)

struct entry {
    char *json;  /* the request as one JSON object, heap */
    size_t len;  /* bytes in json */
};

static pthread_mutex_t ring_mu = PTHREAD_MUTEX_INITIALIZER;
static struct entry *ring;   /* cap entries, oldest at head */
static size_t ring_cap;      /* entries allocated; 0 = recording off */
static size_t ring_head;     /* index of the oldest entry */
static size_t ring_len;      /* entries in use */
static __thread struct buf scratch; /* per-thread serialisation buffer */
static __thread bool scratch_ready;

void fake_record_init(size_t cap)
{
    fake_record_clear();
    pthread_mutex_lock(&ring_mu);
    free(ring);
    ring_cap = cap;
    ring = cap ? rl_calloc(cap, sizeof(*ring)) : NULL;
    ring_head = 0;
    ring_len = 0;
    pthread_mutex_unlock(&ring_mu);
}

static void put_str(struct buf *b, const char *p, size_t n, bool lower)
{
    size_t start = b->len;
    (void)buf_append_cstr(b, "\"");
    (void)buf_append_json_escaped(b, p, n);
    for (size_t i = start; lower && i < b->len; i++) {
        if (b->p[i] >= 'A' && b->p[i] <= 'Z') {
            b->p[i] = (char)(b->p[i] - 'A' + 'a');
        }
    }
    (void)buf_append_cstr(b, "\"");
}

/* Serialises one request into b. */
static void serialise(struct buf *b, const char *method, struct str path,
                      const struct record_header *h, size_t nh,
                      struct str body, bool body_is_json)
{
    (void)buf_append_cstr(b, "{\"method\":");
    put_str(b, method, strlen(method), false);
    (void)buf_append_cstr(b, ",\"path\":");
    put_str(b, path.p, path.len, false);
    (void)buf_append_cstr(b, ",\"headers\":{");
    for (size_t i = 0; i < nh; i++) {
        if (i) {
            (void)buf_append_cstr(b, ",");
        }
        put_str(b, h[i].name.p, h[i].name.len, true);
        (void)buf_append_cstr(b, ":");
        put_str(b, h[i].value.p, h[i].value.len, false);
    }
    (void)buf_append_cstr(b, "},\"body\":");
    if (body_is_json) {
        (void)buf_append(b, body.p, body.len);
    } else {
        put_str(b, body.p, body.len, false);
    }
    (void)buf_printf(b, ",\"ts_ms\":%llu}",
                     (unsigned long long)clock_wall_ms());
}

void fake_record_add(const char *method, struct str path,
                     const struct record_header *h, size_t nh, struct str body,
                     bool body_is_json)
{
    if (ring_cap == 0) {
        return;
    }
    if (!scratch_ready) {
        buf_init(&scratch, RECORD_MAX_ENTRY);
        scratch_ready = true;
    }
    buf_reset(&scratch);
    serialise(&scratch, method, path, h, nh, body, body_is_json);
    struct entry e = {rl_strndup(scratch.p, scratch.len), scratch.len};
    char *evicted = NULL;
    pthread_mutex_lock(&ring_mu);
    if (ring_len == ring_cap) {
        evicted = ring[ring_head].json;
        ring[ring_head] = e;
        ring_head = (ring_head + 1) % ring_cap;
    } else {
        ring[(ring_head + ring_len) % ring_cap] = e;
        ring_len++;
    }
    pthread_mutex_unlock(&ring_mu);
    free(evicted);
}

void fake_record_dump(struct buf *out)
{
    (void)buf_append_cstr(out, "[");
    pthread_mutex_lock(&ring_mu);
    for (size_t i = 0; i < ring_len; i++) {
        const struct entry *e = &ring[(ring_head + i) % ring_cap];
        if (i) {
            (void)buf_append_cstr(out, ",");
        }
        (void)buf_append(out, e->json, e->len);
    }
    pthread_mutex_unlock(&ring_mu);
    (void)buf_append_cstr(out, "]");
}

void fake_record_clear(void)
{
    pthread_mutex_lock(&ring_mu);
    for (size_t i = 0; i < ring_len; i++) {
        free(ring[(ring_head + i) % ring_cap].json);
    }
    ring_head = 0;
    ring_len = 0;
    pthread_mutex_unlock(&ring_mu);
}

void fake_record_thread_free(void)
{
    if (scratch_ready) {
        buf_free(&scratch);
        scratch_ready = false;
    }
}
