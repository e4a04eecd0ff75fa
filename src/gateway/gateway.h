/*
 * gateway.h - `relay serve`: the server hooks, the HTTP routes, and the
 * per-worker context every request of a worker shares.
 */
#ifndef RL_GATEWAY_H
#define RL_GATEWAY_H

#include <stdint.h>

#include "server/server.h"

struct config;
struct req;
struct upstream;
struct metrics;

/* What one worker thread owns; never touched by another thread. */
struct cache;

struct gw_worker {
    int id;                        /* worker number */
    struct uv_loop_s *loop;        /* its event loop */
    struct config *cfg;            /* current snapshot (one reference) */
    struct server_limits limits;   /* from cfg */
    struct upstream *upstream;     /* its upstream connections */
    struct limits *limiter;        /* its rate limiter (and Redis link) */
    struct cache *cache;           /* its exact cache (own Redis link), or
                                      NULL when cache.enabled is false */
    struct metrics *metrics;       /* its metric counters (it alone writes
                                      them; scrapes read them) */
    struct req *dead;              /* requests to free at the tick */
    uint64_t rng;                  /* request ids (xorshift state) */
    uint64_t log_flushed_ms;       /* loop time of the last log flush */
};

/* Runs the gateway until SIGTERM or SIGINT; reloads cfg_path on SIGHUP.
 * Takes ownership of cfg. Returns the process exit status. */
int gateway_serve(struct config *cfg, const char *listen_override);

#endif
