/*
 * request.c - creating and freeing a request (see request.h).
 */
#include "request.h"

#include "cache/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounting/accounting.h"
#include "config/config.h"
#include "gateway/gateway.h"
#include "routing/routing.h"
#include "metrics/metrics.h"
#include "server/server.h"
#include "util/alloc.h"
#include "util/clock.h"

#define REQ_ARENA_BLOCK 4096
#define REQ_MAX_CHUNK (8u * 1024 * 1024) /* one serialised chunk */
#define REQ_MAX_PATH 256                 /* logged bytes of the URL path */
#define REQ_ROUTE_TEXT 512               /* the x-relay-route value */

/* xorshift64*: fast, good enough for ids; seeded from the OS per worker. */
static uint64_t next_random(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static const char *method_name(enum server_method m)
{
    switch (m) {
    case SERVER_GET: return "GET";
    case SERVER_HEAD: return "HEAD";
    case SERVER_POST: return "POST";
    case SERVER_DELETE: return "DELETE";
    default: return "OTHER";
    }
}

struct req *req_new(struct gw_worker *w, struct conn *c,
                    const struct http_request *http)
{
    struct req *r = rl_calloc(1, sizeof(*r));
    arena_init(&r->arena, REQ_ARENA_BLOCK);
    r->w = w;
    r->cfg = config_ref(w->cfg);
    r->conn = c;
    /* "req_", 11 hex digits of the wall-clock millisecond, 13 random hex
     * digits (52 bits), without printf. Ids that grow with time land at
     * the right end of the request log's unique index instead of on a
     * random page of it: the SQLite writer's cost per row fell by half
     * (decisions.md). */
    uint64_t a = clock_wall_ms();
    uint64_t b = next_random(&w->rng);
    memcpy(r->id, "req_", 4);
    for (int i = 0; i < 11; i++) {
        r->id[4 + i] = "0123456789abcdef"[(a >> (40 - 4 * i)) & 15];
    }
    for (int i = 0; i < 13; i++) {
        r->id[15 + i] = "0123456789abcdef"[(b >> (60 - 4 * i)) & 15];
    }
    r->id[28] = '\0';
    r->method = http ? method_name(http->method) : "POST";
    if (http) {
        size_t n = http->path.len < REQ_MAX_PATH ? http->path.len
                                                 : REQ_MAX_PATH;
        r->path = arena_strndup(&r->arena, http->path.p, n);
        r->start_us = http->complete_us;
    } else {
        r->path = "-"; /* the request could not be read */
        r->start_us = clock_now_us();
    }
    buf_init(&r->out, REQ_MAX_CHUNK);
    buf_init(&r->brand, 1024);
    return r;
}

void req_hide_path(struct req *r, size_t keep)
{
    size_t len = strlen(r->path);
    if (keep > len) {
        keep = len;
    }
    char shown[STR_SHOWN_MAX + 4];
    str_shown((struct str){r->path + keep, len - keep}, shown, sizeof(shown));
    size_t n = strlen(shown);
    char *p = arena_alloc(&r->arena, keep + n + 1);
    memcpy(p, r->path, keep);
    memcpy(p + keep, shown, n + 1);
    r->path = p;
}

const char *req_route_text(struct req *r)
{
    if (!r->route_text) {
        char *t = arena_alloc(&r->arena, REQ_ROUTE_TEXT);
        t[0] = '\0';
        if (r->route) {
            routing_explain(r->route, t, REQ_ROUTE_TEXT);
        }
        r->route_text = t;
    }
    return r->route_text;
}

void req_free(struct req *r)
{
    if (r->call) {
        provider_call_cancel(r->call);
        r->call = NULL;
    }
    if (!r->end_us) {
        r->end_us = clock_now_us();
    }
    accounting_finish(r);
    if (r->in_flight) {
        metrics_in_flight_add(r->w->metrics, -1);
    }
    cache_collect_free(r->cache_collect);
    buf_free(&r->out);
    buf_free(&r->brand);
    config_unref(r->cfg);
    arena_free(&r->arena);
    free(r);
}

void req_free_later(struct req *r)
{
    r->next_dead = r->w->dead;
    r->w->dead = r;
}
