/*
 * h1.c - a small HTTP/1.1 client for plain http:// upstreams: one POST per
 * transfer over a per-worker pool of keep-alive connections.
 *
 * Why not curl for these: local providers (Ollama, vLLM, llama.cpp, the
 * fake) are reached over loopback, where curl's per-request work (option
 * setup, liveness polls, socket re-registration) cost more than the rest of
 * the gateway together; see docs/decisions.md. Only numeric addresses and
 * localhost are taken, so nothing here resolves names, and TLS never comes
 * here. A request sent on a reused connection that dies before any answer
 * byte (the server closed it while idle) is sent once more on a new one.
 * A paused transfer (h1_pause: its client is behind) stops reading its
 * connection; idle pooled connections always read, to see their end.
 * Read h1_start() and on_read() first.
 */
#include <arpa/inet.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "providers/transport.h"
#include "util/alloc.h"

#define H1_READ_BUF 65536
#define H1_MAX_IDLE 512 /* idle connections kept per address */
#define H1_MAX_REQUEST_HEAD 16384

struct h1_conn;

/* Connections to one address. */
struct h1_pool {
    struct sockaddr_storage addr; /* where to connect */
    char hostport[300];           /* for the Host header and lookups */
    struct h1_conn *idle;         /* ready for a request */
    size_t nidle;
    struct h1_pool *next;
};

struct h1 {
    uv_loop_t *loop;
    struct h1_pool *pools;
    char rbuf[H1_READ_BUF]; /* reads land here; parsed at once */
    bool rbuf_busy;         /* a read callback is using rbuf */
};

struct h1_xfer;

struct h1_conn {
    uv_tcp_t tcp;             /* must be first */
    struct h1 *h;
    struct h1_pool *pool;
    struct h1_conn *next_idle;
    struct h1_xfer *x;        /* the transfer using it, or NULL when idle */
    uv_connect_t connect;
    uv_write_t write;
    struct buf out;           /* request bytes being written */
    bool connected;
    bool reading;             /* uv_read_start is in effect */
    bool writing;             /* write is in flight */
    bool closing;
    int served;               /* responses received on it */
};

struct h1_xfer {
    struct xfer base;         /* must be first */
    struct h1 *h;
    struct h1_pool *pool;
    struct h1_conn *c;
    struct xfer_cbs cbs;
    void *ctx;
    struct buf request;       /* the whole request, kept for a resend */
    struct h1_resp resp;      /* the response being read */
    bool retried;             /* already resent once */
    bool paused;              /* h1_pause: do not read the answer */
};

static void conn_close(struct h1_conn *c);
static bool send_on(struct h1_xfer *x, struct h1_conn *c);
static void sync_reading(struct h1_conn *c);

/* ---------------------------------------------------------------------
 * Addresses and pools
 * ------------------------------------------------------------------- */

/* Parses http://HOST[:PORT]/path with a numeric or localhost HOST. */
static bool parse_url(const char *url, struct sockaddr_storage *addr,
                      char *hostport, size_t hp_len, const char **path)
{
    if (strncmp(url, "http://", 7) != 0) {
        return false;
    }
    const char *host = url + 7;
    const char *slash = strchr(host, '/');
    size_t hlen = slash ? (size_t)(slash - host) : strlen(host);
    if (hlen == 0 || hlen >= hp_len || hlen >= 256) {
        return false;
    }
    memcpy(hostport, host, hlen);
    hostport[hlen] = '\0';
    *path = slash ? slash : "/";
    char name[256];
    int port = 80;
    const char *colon = strrchr(hostport, ':');
    const char *bracket = strchr(hostport, ']');
    size_t nlen = hlen;
    if (colon && (!bracket || colon > bracket)) {
        char *end = NULL;
        long p = strtol(colon + 1, &end, 10);
        if (!end || *end || p <= 0 || p > 65535) {
            return false;
        }
        port = (int)p;
        nlen = (size_t)(colon - hostport);
    }
    memcpy(name, hostport, nlen);
    name[nlen] = '\0';
    memset(addr, 0, sizeof(*addr));
    struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
    if (strcasecmp(name, "localhost") == 0) {
        snprintf(name, sizeof(name), "127.0.0.1");
    }
    if (inet_pton(AF_INET, name, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return true;
    }
    if (name[0] == '[' && nlen > 2) {
        name[nlen - 1] = '\0';
        if (inet_pton(AF_INET6, name + 1, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons((uint16_t)port);
            return true;
        }
    }
    return false;
}

bool h1_accepts(const char *url)
{
    struct sockaddr_storage addr;
    char hp[300];
    const char *path;
    return parse_url(url, &addr, hp, sizeof(hp), &path);
}

static struct h1_pool *pool_for(struct h1 *h, const struct sockaddr_storage *a,
                                const char *hostport)
{
    for (struct h1_pool *p = h->pools; p; p = p->next) {
        if (strcmp(p->hostport, hostport) == 0) {
            return p;
        }
    }
    struct h1_pool *p = rl_calloc(1, sizeof(*p));
    p->addr = *a;
    snprintf(p->hostport, sizeof(p->hostport), "%s", hostport);
    p->next = h->pools;
    h->pools = p;
    return p;
}

static void idle_remove(struct h1_conn *c)
{
    struct h1_conn **pp = &c->pool->idle;
    while (*pp && *pp != c) {
        pp = &(*pp)->next_idle;
    }
    if (*pp) {
        *pp = c->next_idle;
        c->pool->nidle--;
    }
    c->next_idle = NULL;
}

/* ---------------------------------------------------------------------
 * Ending a transfer
 * ------------------------------------------------------------------- */

static void xfer_free(struct h1_xfer *x)
{
    buf_free(&x->request);
    h1_resp_free(&x->resp);
    free(x);
}

/* Detaches x from its connection and reports how it ended. */
static void finish(struct h1_xfer *x, enum xfer_result res,
                   const char *detail)
{
    if (x->c) {
        x->c->x = NULL;
        x->c = NULL;
    }
    x->cbs.on_done(x->ctx, res, detail);
    xfer_free(x);
}

/* The connection failed under x: resend once if that is safe, else fail. */
static void conn_failed(struct h1_xfer *x, const char *detail)
{
    struct h1_conn *c = x->c;
    bool reused = c && c->served > 0;
    c->x = NULL;
    x->c = NULL;
    conn_close(c);
    if (!x->resp.got_bytes && reused && !x->retried) {
        /* The server closed a keep-alive connection as we reused it. */
        x->retried = true;
        if (!send_on(x, NULL)) {
            finish(x, XFER_CONNECT, "could not open a socket");
        }
        return;
    }
    finish(x, x->resp.got_bytes ? XFER_BROKEN : XFER_CONNECT, detail);
}

/* ---------------------------------------------------------------------
 * Response parsing (struct h1_resp, transport.h)
 * ------------------------------------------------------------------- */

/* The header value gathered is complete: Retry-After's is read. */
static void value_done(struct h1_resp *r)
{
    if (r->in_retry_after) {
        r->retry_after_s = transport_retry_after(r->hvalue.p ? r->hvalue.p
                                                             : "",
                                                 r->hvalue.len);
    }
    r->in_retry_after = false;
    buf_reset(&r->hname);
    buf_reset(&r->hvalue);
}

/* A name or a value may come in several calls, split where a read ended:
 * the name is gathered until its value starts, the value until the next
 * name or the end of the head. */
static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct h1_resp *r = p->data;
    if (r->hvalue.len || r->in_retry_after) {
        value_done(r);
    }
    buf_append(&r->hname, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct h1_resp *r = p->data;
    if (r->hname.len) {
        r->in_retry_after = strcasecmp(r->hname.p, "retry-after") == 0;
        buf_reset(&r->hname);
    }
    if (r->in_retry_after && buf_append(&r->hvalue, at, len) != RL_OK) {
        buf_reset(&r->hvalue);
        buf_append_cstr(&r->hvalue, "-"); /* too long to be seconds */
    }
    return 0;
}

/* An interim head (1xx) is not the answer: it is skipped, and the answer
 * that follows it is read as a response of its own. */
static bool interim(const http_parser *p)
{
    return p->status_code >= 100 && p->status_code < 200;
}

static int on_headers_complete(http_parser *p)
{
    struct h1_resp *r = p->data;
    value_done(r);
    if (p->status_code < 100) {
        return -1; /* "HTTP/1.1 000": no status at all */
    }
    /* Even an interim head says the server has the request: it is not
     * sent again if the connection then fails. */
    r->got_bytes = true;
    if (interim(p)) {
        r->retry_after_s = 0;
        return 1; /* no body, whatever its head says (RFC 9110 15.2) */
    }
    r->cbs.on_headers(r->ctx, (long)p->status_code, r->retry_after_s);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct h1_resp *r = p->data;
    if (!r->cbs.on_data(r->ctx, at, len)) {
        r->stop = true;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct h1_resp *r = p->data;
    if (interim(p)) {
        return 0;
    }
    r->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void h1_resp_init(struct h1_resp *r, const struct xfer_cbs *cbs, void *ctx)
{
    memset(r, 0, sizeof(*r));
    r->cbs = *cbs;
    r->ctx = ctx;
    buf_init(&r->hname, 256);
    buf_init(&r->hvalue, 256);
    h1_resp_reset(r);
}

void h1_resp_reset(struct h1_resp *r)
{
    http_parser_init(&r->parser, HTTP_RESPONSE);
    r->parser.data = r;
    buf_reset(&r->hname);
    buf_reset(&r->hvalue);
    r->retry_after_s = 0;
    r->in_retry_after = false;
    r->got_bytes = false;
    r->done = false;
    r->stop = false;
    r->extra = false;
}

void h1_resp_free(struct h1_resp *r)
{
    buf_free(&r->hname);
    buf_free(&r->hvalue);
}

enum http_errno h1_resp_feed(struct h1_resp *r, const char *p, size_t n)
{
    if (r->done) {
        r->extra = r->extra || n > 0;
        return HPE_OK;
    }
    size_t used = http_parser_execute(&r->parser, &settings, n ? p : NULL, n);
    enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);
    /* Bytes after the answer belong to no request: the connection is out
     * of step and must not serve another one. */
    r->extra = r->done && used < n;
    if (err == HPE_OK && r->parser.upgrade) {
        return HPE_UNKNOWN; /* 101: Relay never asks to switch protocols */
    }
    if (err == HPE_PAUSED && r->done) {
        return HPE_OK;
    }
    return err;
}

bool h1_resp_keep(const struct h1_resp *r)
{
    return r->done && !r->extra && http_should_keep_alive(&r->parser);
}

/* The response on c is complete: pool the connection, report success. */
static void complete(struct h1_conn *c)
{
    struct h1_xfer *x = c->x;
    bool keep = h1_resp_keep(&x->resp);
    c->x = NULL;
    x->c = NULL;
    c->served++;
    if (keep && !c->closing && c->pool->nidle < H1_MAX_IDLE) {
        sync_reading(c); /* a pause ends with the answer */
        c->next_idle = c->pool->idle;
        c->pool->idle = c;
        c->pool->nidle++;
    } else {
        conn_close(c);
    }
    finish(x, XFER_OK, NULL);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    struct h1_conn *c = handle->data;
    *out = uv_buf_init(c->h->rbuf, H1_READ_BUF);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *b)
{
    struct h1_conn *c = stream->data;
    struct h1_xfer *x = c->x;
    if (n == 0) {
        return;
    }
    if (!x) {
        /* Bytes or EOF on an idle connection: the server is done with it. */
        idle_remove(c);
        conn_close(c);
        return;
    }
    /* EOF (n < 0) may end a response that runs until close. */
    enum http_errno err = h1_resp_feed(&x->resp, b->base, n < 0 ? 0 : (size_t)n);
    if (x->resp.done) {
        complete(c);
    } else if (n < 0) {
        conn_failed(x, uv_strerror((int)n));
    } else if (x->resp.stop) {
        c->x = NULL;
        x->c = NULL;
        conn_close(c);
        finish(x, XFER_ABORTED, "stopped");
    } else if (err != HPE_OK) {
        c->x = NULL;
        x->c = NULL;
        conn_close(c);
        finish(x, x->resp.got_bytes ? XFER_BROKEN : XFER_CONNECT,
               http_errno_description(err));
    }
}

/* ---------------------------------------------------------------------
 * Connections and sending
 * ------------------------------------------------------------------- */

/* Reads on c unless its transfer is paused. */
static void sync_reading(struct h1_conn *c)
{
    bool want = c->connected && !c->closing && !(c->x && c->x->paused);
    if (want == c->reading) {
        return;
    }
    c->reading = want;
    if (want) {
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void on_closed(uv_handle_t *handle)
{
    struct h1_conn *c = handle->data;
    buf_free(&c->out);
    free(c);
}

static void conn_close(struct h1_conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *req, int status)
{
    struct h1_conn *c = req->data;
    c->writing = false;
    if (status < 0 && c->x && !c->closing) {
        conn_failed(c->x, uv_strerror(status));
    }
}

/* Writes x's request on c (connected). */
static void write_request(struct h1_conn *c)
{
    struct h1_xfer *x = c->x;
    h1_resp_reset(&x->resp);
    uv_buf_t b = uv_buf_init(x->request.p, (unsigned)x->request.len);
    int rc = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (rc == (int)x->request.len) {
        return;
    }
    /* On an error, uv_write below fails too and says so in on_written, so
     * that no callback ever runs from inside h1_start(). */
    size_t sent = rc > 0 ? (size_t)rc : 0;
    buf_reset(&c->out);
    buf_append(&c->out, x->request.p + sent, x->request.len - sent);
    b = uv_buf_init(c->out.p, (unsigned)c->out.len);
    c->write.data = c;
    c->writing = true;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        /* Only a handle that is not a connected stream fails here, which a
         * pooled or just-connected connection never is. */
        c->writing = false;
        conn_failed(x, "write failed");
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct h1_conn *c = req->data;
    if (c->closing) {
        return;
    }
    struct h1_xfer *x = c->x;
    if (status < 0) {
        if (x) {
            c->x = NULL;
            x->c = NULL;
            conn_close(c);
            finish(x, XFER_CONNECT, uv_strerror(status));
        } else {
            conn_close(c);
        }
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    sync_reading(c);
    if (x) {
        write_request(c);
    }
}

static struct h1_conn *conn_new(struct h1 *h, struct h1_pool *pool)
{
    struct h1_conn *c = rl_calloc(1, sizeof(*c));
    c->h = h;
    c->pool = pool;
    buf_init(&c->out, 64u * 1024 * 1024);
    uv_tcp_init(h->loop, &c->tcp);
    c->tcp.data = c;
    c->connect.data = c;
    int rc = uv_tcp_connect(&c->connect, &c->tcp,
                            (const struct sockaddr *)&pool->addr, on_connect);
    if (rc != 0) {
        conn_close(c);
        return NULL;
    }
    return c;
}

/* Sends x on c, or on a pooled or new connection when c is NULL. Returns
 * false, having called nothing, if no connection could be opened. */
static bool send_on(struct h1_xfer *x, struct h1_conn *c)
{
    struct h1_pool *pool = x->pool;
    while (!c && pool->idle) {
        c = pool->idle;
        pool->idle = c->next_idle;
        pool->nidle--;
        c->next_idle = NULL;
        if (c->closing) {
            c = NULL;
        }
    }
    if (!c) {
        c = conn_new(x->h, pool);
        if (!c) {
            return false;
        }
    }
    c->x = x;
    x->c = c;
    if (c->connected) {
        sync_reading(c);
        write_request(c);
    }
    return true;
}

/* ---------------------------------------------------------------------
 * Public
 * ------------------------------------------------------------------- */

struct h1 *h1_new(uv_loop_t *loop)
{
    struct h1 *h = rl_calloc(1, sizeof(*h));
    h->loop = loop;
    return h;
}

void h1_free(struct h1 *h)
{
    struct h1_pool *p = h->pools;
    while (p) {
        struct h1_pool *next = p->next;
        while (p->idle) {
            struct h1_conn *c = p->idle;
            p->idle = c->next_idle;
            conn_close(c);
        }
        free(p);
        p = next;
    }
    free(h);
}

struct xfer *h1_start(struct h1 *h, const struct xfer_req *req,
                      const struct xfer_cbs *cbs, void *ctx)
{
    struct sockaddr_storage addr;
    char hostport[300];
    const char *path;
    if (!parse_url(req->url, &addr, hostport, sizeof(hostport), &path)) {
        return NULL;
    }
    struct h1_xfer *x = rl_calloc(1, sizeof(*x));
    x->base.h1 = true;
    x->h = h;
    x->pool = pool_for(h, &addr, hostport);
    x->cbs = *cbs;
    x->ctx = ctx;
    h1_resp_init(&x->resp, cbs, ctx);
    buf_init(&x->request, req->body.len + H1_MAX_REQUEST_HEAD);
    buf_append_cstr(&x->request, "POST ");
    buf_append_cstr(&x->request, path);
    buf_append_cstr(&x->request, " HTTP/1.1\r\nHost: ");
    buf_append_cstr(&x->request, hostport);
    buf_append_cstr(&x->request, "\r\nUser-Agent: relay/0.1\r\n"
                                 "Content-Type: application/json\r\n"
                                 "Content-Length: ");
    buf_append_u64(&x->request, req->body.len);
    enum rl_err err = buf_append(&x->request, "\r\n", 2);
    const char *line = req->headers->p;
    while (err == RL_OK && line && *line) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        err = buf_append(&x->request, line, n);
        if (err == RL_OK) {
            err = buf_append(&x->request, "\r\n", 2);
        }
        line = nl ? nl + 1 : NULL;
    }
    if (err == RL_OK) {
        err = buf_append(&x->request, "\r\n", 2);
    }
    if (err == RL_OK) {
        err = buf_append_str(&x->request, req->body);
    }
    if (err != RL_OK) {
        xfer_free(x);
        return NULL;
    }
    if (!send_on(x, NULL)) {
        xfer_free(x);
        return NULL;
    }
    return &x->base;
}

void h1_pause(struct xfer *base, bool pause)
{
    struct h1_xfer *x = (struct h1_xfer *)base;
    x->paused = pause;
    if (x->c) {
        sync_reading(x->c);
    }
}

void h1_cancel(struct xfer *base)
{
    struct h1_xfer *x = (struct h1_xfer *)base;
    if (x->c) {
        /* The answer is half read: the connection cannot be reused. */
        x->c->x = NULL;
        conn_close(x->c);
    }
    xfer_free(x);
}
