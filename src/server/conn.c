/*
 * conn.c - one client connection: reading and parsing requests, keep-alive
 * and pipelining, timeouts, and writing responses whole or streamed.
 *
 * A connection serves one request at a time. When a request is complete the
 * parser pauses and the request goes to the on_request hook; bytes of later
 * (pipelined) requests wait in the input buffer until the response is
 * complete, so responses leave in order. A client that goes away while its
 * request is being served is reported once through the abort hook.
 *
 * Backpressure: a client that reads a stream more slowly than it is made
 * is told to its producer through the backlog hook (hold() and
 * on_written(): one comparison per chunk), and a client that takes no byte
 * of waiting output for server.write_timeout_ms is dropped by the sweep
 * (write_stalled()). CONN_MAX_PENDING_OUT stays as a last resort. Read
 * on_read() and complete_response() first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/internal.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#define CONN_MAX_PENDING_OUT (16u * 1024 * 1024) /* unsent bytes allowed */
#define CONN_READ_CHUNK 65536

struct conn {
    uv_tcp_t tcp;              /* must be first: the handle's memory */
    struct worker *w;
    int listener;              /* SERVER_MAIN or SERVER_EXTRA */
    struct conn *prev;         /* in w->conns */
    struct conn *next;
    struct buf in;             /* received bytes not parsed yet */
    struct http_in http;       /* the request being received or served */
    bool busy;                 /* a request is being served */
    bool streaming;            /* a streamed response is open */
    bool closing;              /* uv_close was called */
    bool close_after_flush;    /* close once pending output is written */
    bool reading;              /* uv_read_start is in effect */
    bool in_parse;             /* parse_buffered is on the stack */
    size_t pending_out;        /* bytes handed to uv_write, not yet done */
    struct buf held;           /* stream bytes gathered this iteration */
    bool flush_queued;         /* c is on w->flush */
    struct conn *flush_next;   /* in w->flush */
    uint64_t last_active_us;   /* for the idle timeout */
    void (*abort_fn)(void *);  /* tell the server side the client left */
    void *abort_ctx;
    size_t high_water;         /* pending + held bytes that make the
                                  client "behind" (server_on_backlog) */
    bool behind;               /* over high_water, not yet under half */
    void (*backlog_fn)(void *, bool); /* told when behind changes */
    void *backlog_ctx;
    uint64_t queued_bytes;     /* bytes ever handed to uv_write */
    uint64_t sent_seen;        /* of those, taken by the kernel at the
                                  last sweep */
    uint64_t progress_us;      /* that sweep saw output move, or none
                                  waiting: the write timeout runs from it */
};

struct write_req {
    uv_write_t req;   /* must be first */
    struct conn *c;
    size_t len;       /* bytes in data */
    char data[];
};

static void conn_close(struct conn *c);
static void resume(struct conn *c);
static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *out);
static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *b);

/* ---------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------- */

/* The client's backlog crossed a mark: tell the producer, if any. */
static void set_behind(struct conn *c, bool behind)
{
    c->behind = behind;
    if (c->backlog_fn) {
        c->backlog_fn(c->backlog_ctx, behind);
    }
}

static void on_written(uv_write_t *req, int status)
{
    struct write_req *wr = (struct write_req *)req;
    struct conn *c = wr->c;
    c->pending_out -= wr->len;
    free(wr);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->close_after_flush && c->pending_out == 0) {
        conn_close(c);
        return;
    }
    /* Last: resuming the producer may write to c at once. */
    if (c->behind && !c->closing &&
        c->pending_out + c->held.len <= c->high_water / 2) {
        set_behind(c, false);
    }
}

/* Writes n bytes, as much as possible at once; queues the rest. Returns
 * false when the connection is closing or the client reads too slowly. */
static bool write_out(struct conn *c, const char *p, size_t n)
{
    if (c->closing) {
        return false;
    }
    if (c->pending_out == 0) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        int rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (rc > 0) {
            p += rc;
            n -= (size_t)rc;
        } else if (rc != UV_EAGAIN) {
            conn_close(c);
            return false;
        }
    }
    if (n == 0) {
        return true;
    }
    /* A client that lets output pile up is dropped. A whole response
     * larger than the allowance, written when nothing is queued, is queued
     * once: its size is bounded where it was made (a completion by the
     * transport's cap), and cutting it would only lose it. */
    if (c->pending_out > 0 && c->pending_out + n > CONN_MAX_PENDING_OUT) {
        log_write(LOG_WARN, "closing a client that does not read",
                  "\"pending_bytes\":%zu", c->pending_out);
        conn_close(c);
        return false;
    }
    struct write_req *wr = rl_malloc(sizeof(*wr) + n);
    memcpy(wr->data, p, n);
    wr->c = c;
    wr->len = n;
    c->pending_out += n;
    c->queued_bytes += n;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        c->pending_out -= n;
        free(wr);
        conn_close(c);
        return false;
    }
    return true;
}

static const char *reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

/* Appends the status line and the common headers to b. */
static void head(struct conn *c, struct buf *b, int status,
                 const char *content_type, struct str headers)
{
    if (c->w->draining) {
        c->http.keep_alive = false;
    }
    buf_append_cstr(b, "HTTP/1.1 ");
    buf_append_u64(b, (uint64_t)status);
    buf_append(b, " ", 1);
    buf_append_cstr(b, reason(status));
    buf_append_cstr(b, "\r\nContent-Type: ");
    buf_append_cstr(b, content_type);
    buf_append_cstr(b, c->http.keep_alive ? "\r\n" : "\r\nConnection: close\r\n");
    buf_append_str(b, headers);
}

/* The response is complete: serve the next request or close. */
static void complete_response(struct conn *c)
{
    c->busy = false;
    c->streaming = false;
    c->abort_fn = NULL;
    c->abort_ctx = NULL;
    c->behind = false;
    c->backlog_fn = NULL;
    c->backlog_ctx = NULL;
    c->last_active_us = clock_now_us();
    if (!c->http.keep_alive || c->w->draining) {
        if (c->pending_out == 0) {
            conn_close(c);
        } else {
            c->close_after_flush = true;
        }
        return;
    }
    resume(c);
}

void server_respond(struct conn *c, int status, const char *content_type,
                    struct str headers, struct str body)
{
    if (!c->busy || c->closing) {
        return; /* the client left; nothing to send to */
    }
    struct buf b;
    buf_init(&b, body.len + 16384);
    head(c, &b, status, content_type, headers);
    buf_append_cstr(&b, "Content-Length: ");
    buf_append_u64(&b, body.len);
    buf_append(&b, "\r\n\r\n", 4);
    if (c->http.req.method != SERVER_HEAD) {
        buf_append_str(&b, body); /* HEAD: the length, not the bytes */
    }
    write_out(c, b.p, b.len);
    buf_free(&b);
    if (!c->closing) {
        complete_response(c);
    }
}

/* Gathers stream bytes; conn_flush() writes them all at the end of this
 * loop iteration, so the chunks of one upstream read leave in one write.
 * With p NULL, adds n bytes at the end for the caller to fill in place.
 * Past the high-water mark the producer is told to wait (set_behind). */
static bool hold(struct conn *c, const char *p, size_t n)
{
    if (c->closing) {
        return false;
    }
    size_t waiting = c->pending_out + c->held.len + n;
    if (waiting > CONN_MAX_PENDING_OUT) {
        log_write(LOG_WARN, "closing a client that does not read",
                  "\"pending_bytes\":%zu", c->pending_out + c->held.len);
        conn_close(c);
        return false;
    }
    if (p) {
        buf_append(&c->held, p, n);
    } else {
        /* Room for the caller to fill in place. */
        if (buf_reserve(&c->held, n) != RL_OK) {
            conn_close(c);
            return false;
        }
        c->held.len += n;
        c->held.p[c->held.len] = '\0';
    }
    if (!c->flush_queued) {
        c->flush_queued = true;
        c->flush_next = c->w->flush;
        c->w->flush = c;
    }
    if (waiting > c->high_water && !c->behind) {
        set_behind(c, true); /* the producer only stops: no write here */
    }
    return true;
}

/* Writes what hold() gathered. A client behind that took it all at once
 * (no write left to complete) has caught up here. */
static bool flush_held(struct conn *c)
{
    if (c->held.len == 0 || c->closing) {
        buf_reset(&c->held);
        return !c->closing;
    }
    bool ok = write_out(c, c->held.p, c->held.len);
    buf_reset(&c->held);
    if (ok && c->behind && c->pending_out <= c->high_water / 2) {
        set_behind(c, false); /* may hold more output at once */
    }
    return ok && !c->closing;
}

void conn_flush(struct worker *w)
{
    while (w->flush) {
        struct conn *c = w->flush;
        w->flush = c->flush_next;
        c->flush_queued = false;
        flush_held(c);
    }
}

void server_stream_begin(struct conn *c, int status, struct str headers)
{
    struct buf b;
    buf_init(&b, 16384);
    if (c->http.http10) {
        /* HTTP/1.0 has no chunks: the end of the stream is the close. */
        c->http.keep_alive = false;
    }
    head(c, &b, status, "text/event-stream", headers);
    buf_append_cstr(&b, c->http.http10 ? "Cache-Control: no-cache\r\n\r\n"
                                  : "Cache-Control: no-cache\r\n"
                                    "Transfer-Encoding: chunked\r\n\r\n");
    c->streaming = true;
    hold(c, b.p, b.len);
    buf_free(&b);
}

bool server_stream_write(struct conn *c, struct str data)
{
    if (!c->streaming || c->closing || data.len == 0) {
        return !c->closing;
    }
    if (c->http.http10) {
        return hold(c, data.p, data.len);
    }
    /* The chunk-size line, in hex, without printf on this per-token path,
     * then the data and its CRLF, in one append. */
    char digits[16];
    size_t nd = 0;
    for (size_t v = data.len; v; v >>= 4) {
        digits[nd++] = "0123456789abcdef"[v & 15];
    }
    size_t at = c->held.len;
    if (!hold(c, NULL, nd + 2 + data.len + 2)) {
        return false;
    }
    char *p = c->held.p + at;
    while (nd) {
        *p++ = digits[--nd];
    }
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, data.p, data.len);
    p += data.len;
    *p++ = '\r';
    *p = '\n';
    return true;
}

void server_stream_end(struct conn *c)
{
    if (c->closing) {
        return;
    }
    bool ok = c->http.http10 || hold(c, "0\r\n\r\n", 5);
    if (ok && flush_held(c)) {
        complete_response(c);
    }
}

void server_on_abort(struct conn *c, void (*fn)(void *ctx), void *ctx)
{
    c->abort_fn = fn;
    c->abort_ctx = ctx;
}

void server_on_backlog(struct conn *c, void (*fn)(void *ctx, bool behind),
                       void *ctx)
{
    c->backlog_fn = fn;
    c->backlog_ctx = ctx;
}

bool server_draining(const struct conn *c)
{
    return c->w->draining;
}

int server_listener(const struct conn *c)
{
    return c->listener;
}

struct str server_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (str_case_eq(req->headers[i].name, name)) {
            return req->headers[i].value;
        }
    }
    return (struct str){"", 0};
}

/* ---------------------------------------------------------------------
 * Closing
 * ------------------------------------------------------------------- */

static void on_closed(uv_handle_t *handle)
{
    struct conn *c = handle->data;
    struct worker *w = c->w;
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    w->nconns--;
    if (c->flush_queued) {
        struct conn **pp = &w->flush;
        while (*pp != c) {
            pp = &(*pp)->flush_next;
        }
        *pp = c->flush_next;
    }
    buf_free(&c->held);
    buf_free(&c->in);
    http_in_free(&c->http);
    free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    if (c->busy && c->abort_fn) {
        void (*fn)(void *) = c->abort_fn;
        c->abort_fn = NULL;
        fn(c->abort_ctx);
    }
    c->busy = false;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Answers a request that could not be read, then closes. */
static void reject(struct conn *c, enum rl_err err)
{
    c->http.keep_alive = false;
    c->http.receiving = false;
    c->busy = true;
    c->w->hooks->on_reject(c->w->wctx, c, err);
}

/* ---------------------------------------------------------------------
 * Parsing (the request itself is read by http.c)
 * ------------------------------------------------------------------- */

static const struct server_limits *limits_of(struct conn *c)
{
    return c->w->hooks->limits(c->w->wctx);
}

/* The head asked for 100 Continue: say it before the body comes. */
static void send_continue(void *ctx)
{
    write_out(ctx, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

/* Parses what is buffered and dispatches complete requests, one at a time.
 * A response completed from inside on_request lands back in this loop
 * instead of recursing, so a flood of pipelined requests answered at once
 * cannot grow the stack. */
static void parse_buffered(struct conn *c)
{
    if (c->in_parse) {
        return; /* the loop below, further up the stack, goes on */
    }
    c->in_parse = true;
    while (!c->busy && !c->closing && c->in.len > 0) {
        size_t used = 0;
        c->http.limits = limits_of(c);
        enum rl_err err = http_in_execute(&c->http, c->in.p, c->in.len,
                                          &used);
        if (err != RL_OK) {
            buf_reset(&c->in);
            reject(c, err);
            break;
        }
        /* The head buffer holds what the request needs, so the consumed
         * bytes can go; the rest are later requests. */
        buf_consume(&c->in, used);
        if (c->http.complete) {
            c->busy = true;
            size_t hw = c->http.limits->output_high_water_bytes;
            c->high_water = hw ? hw : CONN_MAX_PENDING_OUT;
            c->w->hooks->on_request(c->w->wctx, c, &c->http.req);
            continue;
        }
        if (used == 0) {
            break;
        }
    }
    c->in_parse = false;
}

static void resume(struct conn *c)
{
    parse_buffered(c);
    if (!c->closing && !c->reading) {
        c->reading = true;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

/* ---------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    struct conn *c = handle->data;
    if (buf_reserve(&c->in, CONN_READ_CHUNK) != RL_OK) {
        *out = uv_buf_init(NULL, 0); /* over the cap: reads stop */
        return;
    }
    *out = uv_buf_init(c->in.p + c->in.len, CONN_READ_CHUNK);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct conn *c = stream->data;
    if (n < 0) {
        /* EOF or error: a request in flight is aborted, and an idle
         * connection simply ends. */
        conn_close(c);
        return;
    }
    if (n == 0) {
        if (!b->base) {
            /* The input cap was reached while a request is served: stop
             * reading until the response is complete. */
            uv_read_stop(stream);
            c->reading = false;
        }
        return;
    }
    c->in.len += (size_t)n;
    c->in.p[c->in.len] = '\0';
    c->last_active_us = clock_now_us();
    parse_buffered(c);
}

void conn_accept(struct worker *w, int listener)
{
    struct conn *c = rl_calloc(1, sizeof(*c));
    c->w = w;
    c->listener = listener;
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    c->next = w->conns;
    if (w->conns) {
        w->conns->prev = c;
    }
    w->conns = c;
    w->nconns++;
    uv_tcp_t *from = listener == SERVER_EXTRA ? &w->extra : &w->listener;
    if (uv_accept((uv_stream_t *)from, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    const struct server_limits *lim = limits_of(c);
    /* The input may hold one whole request plus a pipelined head. */
    buf_init(&c->in, lim->max_body_bytes + 2 * lim->max_header_bytes +
                         CONN_READ_CHUNK);
    buf_init(&c->held, CONN_MAX_PENDING_OUT);
    c->high_water = CONN_MAX_PENDING_OUT;
    http_in_init(&c->http, lim);
    c->http.on_continue = send_continue;
    c->http.ctx = c;
    c->last_active_us = clock_now_us();
    c->progress_us = c->last_active_us;
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* True when output has waited write_timeout_ms without the kernel taking
 * a byte of it (a client that stopped reading: its socket buffer is full).
 * Progress is seen from libuv's write queue, here and not per write. */
static bool write_stalled(struct conn *c, uint64_t now_us,
                          uint64_t timeout_ms)
{
    uint64_t sent = c->queued_bytes -
                    uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (c->pending_out == 0 || sent != c->sent_seen) {
        c->sent_seen = sent;
        c->progress_us = now_us;
        return false;
    }
    return timeout_ms && now_us - c->progress_us > timeout_ms * 1000;
}

void conn_sweep(struct worker *w, uint64_t now_us)
{
    const struct server_limits *lim = w->hooks->limits(w->wctx);
    struct conn *next;
    for (struct conn *c = w->conns; c; c = next) {
        next = c->next;
        if (c->closing) {
            continue;
        }
        if (w->draining && now_us > w->drain_deadline_us) {
            conn_close(c); /* past the grace period: cut what is left */
            continue;
        }
        if (write_stalled(c, now_us, lim->write_timeout_ms)) {
            log_write(LOG_WARN, "closing a client that does not read",
                      "\"pending_bytes\":%zu,\"stalled_ms\":%llu",
                      c->pending_out + c->held.len,
                      (unsigned long long)(now_us - c->progress_us) / 1000);
            conn_close(c);
            continue;
        }
        if (c->busy) {
            continue;
        }
        if (c->http.receiving &&
            now_us - c->http.req.start_us > lim->read_timeout_ms * 1000) {
            reject(c, RL_E_TIMEOUT);
            continue;
        }
        bool idle = !c->http.receiving && c->in.len == 0 && c->pending_out == 0 &&
                    c->held.len == 0;
        if (idle && (w->draining || now_us - c->last_active_us >
                                        lim->idle_timeout_ms * 1000)) {
            conn_close(c);
        }
    }
}
