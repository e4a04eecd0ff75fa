/*
 * internal.h - what loop.c and conn.c share inside src/server/.
 */
#ifndef RL_SERVER_INTERNAL_H
#define RL_SERVER_INTERNAL_H

#include <http_parser.h>
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

/* One request being read out of received bytes (http.c). */
struct http_in {
    http_parser parser;
    const struct server_limits *limits; /* applied to the next request */
    struct buf head;           /* URL and header bytes of the request */
    struct http_request req;   /* being received, or complete */
    size_t hdr_off[SERVER_MAX_HEADERS][4]; /* name/value offsets in head */
    size_t url_len;            /* bytes of URL at the start of head */
    bool in_value;             /* the parser is inside a header value */
    bool head_done;            /* the head is complete: later header
                                  fields are a chunked body's trailers */
    bool receiving;            /* a request has started arriving */
    bool complete;             /* req is whole; parsing waits for the
                                  next http_in_execute() */
    bool http10;               /* the request was HTTP/1.0: no chunking */
    bool keep_alive;           /* the client allows another request */
    enum rl_err reject;        /* why parsing stopped, RL_OK if it did not */
    void (*on_continue)(void *ctx); /* the head asked for 100 Continue:
                                       called before its body is read */
    void *ctx;                 /* for on_continue */
};

/* Initialises h for a new connection; limits must outlive h (the pointer
 * may be changed between calls to apply new limits). */
void http_in_init(struct http_in *h, const struct server_limits *limits);
void http_in_free(struct http_in *h);
/*
 * Parses n bytes, stopping after the end of a request: *used says how many
 * were taken, and h->complete whether h->req is now a whole request (the
 * bytes after it belong to later ones: pass them in the next call, which
 * starts the next request). Returns RL_OK, or why the bytes cannot be a
 * request (RL_E_BAD_HTTP, RL_E_HEADERS_TOO_LARGE, RL_E_BODY_TOO_LARGE):
 * then nothing more can be parsed on this connection.
 */
enum rl_err http_in_execute(struct http_in *h, const char *p, size_t n,
                            size_t *used);

/* Accepts one pending connection on w's listener (SERVER_MAIN) or its
 * second one (SERVER_EXTRA). */
void conn_accept(struct worker *w, int listener);
/* Writes the output connections held during this loop iteration. */
void conn_flush(struct worker *w);
/* Applies read and idle timeouts; when draining, closes idle connections
 * and, past the deadline, all of them. */
void conn_sweep(struct worker *w, uint64_t now_us);

#endif
