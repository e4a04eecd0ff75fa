/*
 * transport.h - HTTP requests to providers, on a worker's libuv loop.
 *
 * Internal to src/providers/. One transport per worker thread, owning that
 * worker's upstream connections, so nothing here is shared between threads.
 * Plain http:// to a numeric address or localhost (local servers, the fake
 * provider) goes through h1.c, a small keep-alive HTTP/1.1 client; anything
 * else (https, names to resolve, proxies) through libcurl's multi interface.
 * Both report the same way: headers, body bytes, and how it ended.
 */
#ifndef RL_TRANSPORT_H
#define RL_TRANSPORT_H

#include <stdbool.h>
#include <http_parser.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"
#include "util/str.h"

struct transport;
struct xfer;

/* How a transfer ended. */
enum xfer_result {
    XFER_OK,      /* the whole response arrived */
    XFER_CONNECT, /* no connection, or it failed before any response byte */
    XFER_BROKEN,  /* the connection failed after response bytes came */
    XFER_ABORTED, /* on_data asked to stop */
    XFER_TIMEOUT, /* the connection could not be made in time */
};

struct xfer_cbs {
    /* The status line and headers arrived. retry_after_s: Retry-After in
     * seconds, 0 when absent. */
    void (*on_headers)(void *ctx, long status, uint32_t retry_after_s);
    /* Body bytes, already decoded from chunked encoding. Returns false to
     * stop the transfer, which then ends with XFER_ABORTED. */
    bool (*on_data)(void *ctx, const char *p, size_t n);
    /* Called once at the end, unless the transfer was cancelled; detail is
     * a short reason for failures. */
    void (*on_done)(void *ctx, enum xfer_result res, const char *detail);
};

struct xfer_req {
    const char *url;             /* absolute http:// or https:// URL */
    const struct buf *headers;   /* "Name: value\n" lines */
    struct str body;             /* JSON, must stay valid until the end */
    uint64_t connect_timeout_ms; /* TCP (and TLS) connect */
};

struct transport *transport_new(uv_loop_t *loop);
/* Closes idle connections; every transfer must have ended before. */
void transport_free(struct transport *t);
/* Starts a POST. Returns NULL (and calls nothing) if it cannot start. */
struct xfer *transport_start(struct transport *t, const struct xfer_req *req,
                             const struct xfer_cbs *cbs, void *ctx);
/* Stops a transfer; no callback follows. Not from inside its callbacks. */
void transport_cancel(struct xfer *x);
/* Stops reading x's response (pause true) until it is resumed: the
 * provider is held back by TCP flow control, no on_data comes meanwhile
 * (but the rest of the bytes already read may, when called from inside
 * on_data). Resuming may call on_data before it returns (curl). May be
 * called from inside on_data. */
void transport_pause(struct xfer *x, bool pause);

/* ---- internal to transport.c and h1.c ---- */

/* The first member of each implementation's transfer. */
struct xfer {
    bool h1; /* h1.c's, else curl's */
};

struct h1;
struct h1 *h1_new(uv_loop_t *loop);
void h1_free(struct h1 *h);
/* Returns false if the URL is not one h1 handles (see above). */
bool h1_accepts(const char *url);
struct xfer *h1_start(struct h1 *h, const struct xfer_req *req,
                      const struct xfer_cbs *cbs, void *ctx);
void h1_cancel(struct xfer *x);
void h1_pause(struct xfer *x, bool pause);

/*
 * The response half of h1.c, without a socket (h1.c's on_read feeds it,
 * and so does tests/fuzz/fuzz_h1.c): the bytes of one response go to
 * http_parser, the head's status and Retry-After to cbs.on_headers once
 * (interim 1xx heads are skipped, as curl does), the body, de-chunked, to
 * cbs.on_data. cbs.on_done is not called here.
 */
struct h1_resp {
    http_parser parser;
    struct xfer_cbs cbs;
    void *ctx;
    struct buf hname;       /* the header name being parsed */
    struct buf hvalue;      /* the Retry-After value being parsed */
    uint32_t retry_after_s;
    bool in_retry_after;    /* the value being parsed is Retry-After */
    bool got_bytes;         /* a head arrived (an interim one too) */
    bool done;              /* the message is complete */
    bool stop;              /* on_data asked to stop */
    bool extra;             /* bytes came after the answer */
};

void h1_resp_init(struct h1_resp *r, const struct xfer_cbs *cbs, void *ctx);
/* Readies r for a new response (a request sent, or sent again). */
void h1_resp_reset(struct h1_resp *r);
void h1_resp_free(struct h1_resp *r);
/* Feeds n bytes of the response; n == 0 is the end of the connection
 * (which ends a body that runs until close). Returns the parser's error,
 * HPE_OK while more may come or once r->done; HPE_CB_body when on_data
 * stopped it (r->stop). Nothing is fed once r->done. */
enum http_errno h1_resp_feed(struct h1_resp *r, const char *p, size_t n);
/* True when the connection may serve another request: the answer is
 * complete, nothing came after it, and neither side asked to close. */
bool h1_resp_keep(const struct h1_resp *r);

/* Retry-After's delta-seconds (RFC 9110 10.2.3), capped at 86400; 0 for
 * anything else (an HTTP-date, several values, garbage). */
uint32_t transport_retry_after(const char *p, size_t n);

#endif
