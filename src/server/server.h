/*
 * server.h - HTTP/1.1 serving: worker threads with their own event loops,
 * client connections, parsed requests, responses whole or streamed, and the
 * one table that turns errors into OpenAI error responses.
 *
 * The server knows nothing about LLMs. It calls the hooks it was given: once
 * per worker at start and stop, and once per complete request. A request is
 * answered with server_respond() or with server_stream_begin(), any number of
 * server_stream_write() and server_stream_end(); until then the connection
 * reads no further request (pipelined requests wait in its buffer, in order).
 */
#ifndef RL_SERVER_H
#define RL_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/str.h"

struct conn;
struct uv_loop_s;

#define SERVER_MAX_HEADERS 100

/* HTTP methods the server tells apart; others are SERVER_OTHER. */
enum server_method {
    SERVER_GET,
    SERVER_HEAD,
    SERVER_POST,
    SERVER_OTHER,
    SERVER_DELETE,
};

struct http_header {
    struct str name;  /* as sent */
    struct str value; /* trimmed */
};

/* One parsed request; valid until its response is complete. */
struct http_request {
    enum server_method method;
    struct str path;            /* the URL's path */
    struct str query;           /* after '?', without it */
    struct http_header headers[SERVER_MAX_HEADERS];
    size_t nheaders;
    struct buf body;            /* decoded body (chunked or not) */
    uint64_t start_us;          /* first byte of the request */
    uint64_t complete_us;       /* last byte of the request */
};

/* Limits applied to every connection; read again for each request. */
struct server_limits {
    size_t max_body_bytes;      /* larger bodies: 413 */
    size_t max_header_bytes;    /* larger request heads: 431 */
    uint64_t read_timeout_ms;   /* a request must arrive within this: 408 */
    uint64_t idle_timeout_ms;   /* idle keep-alive connections close */
    uint64_t shutdown_grace_ms; /* in-flight work allowed when draining */
    size_t output_high_water_bytes; /* unsent stream output that pauses
                                       its producer (server_on_backlog);
                                       0: no backpressure */
    uint64_t write_timeout_ms;  /* output waiting that long without a byte
                                   taken closes the connection; 0: never */
};

struct server_hooks {
    /* Called in each worker thread before it accepts; returns the worker's
     * context, passed to the other hooks. */
    void *(*worker_start)(struct uv_loop_s *loop, int id, void *arg);
    /* Called in the worker thread once its last connection has closed
     * after a drain; must close what worker_start opened. */
    void (*worker_stop)(void *wctx);
    /* A complete request; answer it now or later (see above). */
    void (*on_request)(void *wctx, struct conn *c, struct http_request *req);
    /* A request that could not be read (bad HTTP, too large, too slow):
     * answer it with errors_respond(); the connection closes after. */
    void (*on_reject)(void *wctx, struct conn *c, enum rl_err err);
    /* The limits to apply now. */
    const struct server_limits *(*limits)(void *wctx);
    /* Called once per loop iteration, for batched work such as logs. */
    void (*on_tick)(void *wctx);
    void *arg; /* passed to worker_start */
};

struct server_opts {
    const char *host; /* address to listen on */
    int port;         /* 0: any free port */
    int workers;      /* threads, each accepting on the port */
    const char *extra_host; /* a second address (the dashboard), or NULL */
    int extra_port;         /* its port; 0: any free port */
};

/* Which address a connection came in on (server_listener). */
enum server_listener_id {
    SERVER_MAIN = 0,  /* opts.host:opts.port */
    SERVER_EXTRA = 1, /* opts.extra_host:opts.extra_port */
};

/*
 * Starts the workers and returns; the caller's thread handles signals.
 * Returns RL_E_IO (and logs why) when the address cannot be bound.
 */
enum rl_err server_start(const struct server_opts *opts,
                         const struct server_hooks *hooks);
/* Runs fn(wctx, arg) in every worker thread, soon. */
void server_broadcast(void (*fn)(void *wctx, void *arg), void *arg);
/* Stops accepting, lets in-flight requests finish within the grace period,
 * then waits for every worker to end. */
void server_drain_and_join(void);
/* Returns the port the server listens on (after server_start). */
int server_port(void);
/* Returns the port of the second address, or 0 when there is none. */
int server_extra_port(void);

/* ----- answering a request ------------------------------------------ */

/* Returns the value of header name (case-insensitive), or an empty str. */
struct str server_header(const struct http_request *req, const char *name);
/* Returns the address c came in on: SERVER_MAIN or SERVER_EXTRA. */
int server_listener(const struct conn *c);
/* True once the worker is draining: /readyz says 503. */
bool server_draining(const struct conn *c);
/*
 * Tells the connection whom to tell if the client goes away before the
 * response is complete: fn(ctx) is called once, and after it the caller
 * must not touch c again.
 */
void server_on_abort(struct conn *c, void (*fn)(void *ctx), void *ctx);
/*
 * Tells the connection whom to tell when the client falls behind a
 * streamed response: fn(ctx, true) once its unsent output passes
 * server.output_high_water_bytes (the producer should stop; fn must not
 * write to c), then fn(ctx, false) from a write's completion once it is
 * back under half of that (the producer may go on, and write at once).
 * Forgotten when the response completes; fn NULL forgets it sooner.
 */
void server_on_backlog(struct conn *c, void (*fn)(void *ctx, bool behind),
                       void *ctx);
/* Sends a whole response. headers are extra "Name: value\r\n" lines. */
void server_respond(struct conn *c, int status, const char *content_type,
                    struct str headers, struct str body);
/* Starts a text/event-stream response (chunked). */
void server_stream_begin(struct conn *c, int status, struct str headers);
/* Sends bytes of a stream as they are; returns false when the connection
 * can take no more (the client is gone or too slow): the abort hook runs. */
bool server_stream_write(struct conn *c, struct str data);
/* Ends the stream; the response is complete. */
void server_stream_end(struct conn *c);

/* ----- OpenAI errors ------------------------------------------------- */

/* An error as the client sees it. */
struct api_error {
    int status;             /* HTTP status */
    const char *type;       /* OpenAI error type */
    const char *code;       /* OpenAI error code, or NULL */
    const char *param;      /* the offending parameter, or NULL */
    char message[512];      /* what happened and what to do */
    uint32_t retry_after_s; /* Retry-After header when not 0 */
};

/* Fills e for err, with message (NULL: a default for err). */
void errors_from_rl(enum rl_err err, const char *message, const char *param,
                    struct api_error *e);
/* Appends {"error":{...}} for e to out. */
void errors_body(const struct api_error *e, struct buf *out);
/* Sends e as a whole response; extra headers as in server_respond. */
void errors_respond(struct conn *c, const struct api_error *e,
                    struct str headers);

/* ----- SSE ----------------------------------------------------------- */

/* Appends "data: <json>\n\n". */
enum rl_err sse_event(struct buf *out, struct str json);
/* Appends "data: [DONE]\n\n". */
enum rl_err sse_done(struct buf *out);

#endif
