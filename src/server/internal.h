/*
 * internal.h - what loop.c and conn.c share inside src/server/.
 */
#ifndef RL_SERVER_INTERNAL_H
#define RL_SERVER_INTERNAL_H

#include <pthread.h>
#include <uv.h>

#include "server/server.h"

struct worker_msg {
    void (*fn)(void *wctx, void *arg); /* run in the worker thread */
    void *arg;
    struct worker_msg *next;
};

/* One thread with its own loop, listener and connections. */
struct worker {
    int id;                       /* 0..n-1 */
    pthread_t thread;
    uv_loop_t loop;
    int listen_fd;                /* bound and listening, SO_REUSEPORT */
    uv_tcp_t listener;
    int extra_fd;                 /* the second address's socket, or -1 */
    uv_tcp_t extra;               /* its handle, when extra_fd >= 0 */
    uv_async_t wake;              /* messages and drain */
    uv_timer_t sweep;             /* timeouts of connections */
    uv_check_t tick;              /* once per loop iteration */
    pthread_mutex_t mu;           /* guards inbox and drain_requested */
    struct worker_msg *inbox;     /* messages from other threads */
    bool drain_requested;         /* set by server_drain_and_join */
    bool draining;                /* no longer accepting */
    bool stopped;                 /* worker_stop ran */
    uint64_t drain_deadline_us;   /* then in-flight requests are cut */
    struct conn *conns;           /* open connections */
    struct conn *flush;           /* connections with held output */
    size_t nconns;
    void *wctx;                   /* from hooks.worker_start */
    const struct server_hooks *hooks;
};

/* Accepts one pending connection on w's listener (SERVER_MAIN) or its
 * second one (SERVER_EXTRA). */
void conn_accept(struct worker *w, int listener);
/* Writes the output connections held during this loop iteration. */
void conn_flush(struct worker *w);
/* Applies read and idle timeouts; when draining, closes idle connections
 * and, past the deadline, all of them. */
void conn_sweep(struct worker *w, uint64_t now_us);

#endif
