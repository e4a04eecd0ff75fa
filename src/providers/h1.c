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
    http_parser parser;
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
    struct buf hname;         /* the header name being parsed */
    uint32_t retry_after_s;
    bool in_retry_after;      /* the value being parsed is Retry-After */
    bool got_bytes;           /* response bytes arrived */
    bool retried;             /* already resent once */
    bool done;                /* the message is complete */
    bool stop;                /* on_data asked to stop */
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
    buf_free(&x->hname);
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
    if (!x->got_bytes && reused && !x->retried) {
        /* The server closed a keep-alive connection as we reused it. */
        x->retried = true;
        if (!send_on(x, NULL)) {
            finish(x, XFER_CONNECT, "could not open a socket");
        }
        return;
    }
    finish(x, x->got_bytes ? XFER_BROKEN : XFER_CONNECT, detail);
}

/* ---------------------------------------------------------------------
 * Response parsing
 * ------------------------------------------------------------------- */

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct h1_conn *c = p->data;
    struct h1_xfer *x = c->x;
    if (x->in_retry_after || x->hname.len == 0 || x->hname.p == NULL) {
        buf_reset(&x->hname);
    }
    if (x->in_retry_after) {
        x->in_retry_after = false;
    }
    buf_append(&x->hname, at, len);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct h1_conn *c = p->data;
    struct h1_xfer *x = c->x;
    if (x->hname.len && strcasecmp(x->hname.p, "retry-after") == 0) {
        x->in_retry_after = true;
        for (size_t i = 0; i < len; i++) {
            if (at[i] >= '0' && at[i] <= '9' && x->retry_after_s < 86400) {
                x->retry_after_s = x->retry_after_s * 10 +
                                   (uint32_t)(at[i] - '0');
            }
        }
    }
    buf_reset(&x->hname);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct h1_conn *c = p->data;
    struct h1_xfer *x = c->x;
    x->got_bytes = true;
    x->cbs.on_headers(x->ctx, (long)p->status_code, x->retry_after_s);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct h1_conn *c = p->data;
    struct h1_xfer *x = c->x;
    if (!x->cbs.on_data(x->ctx, at, len)) {
        x->stop = true;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct h1_conn *c = p->data;
    c->x->done = true;
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

/* The response on c is complete: pool the connection, report success. */
static void complete(struct h1_conn *c)
{
    struct h1_xfer *x = c->x;
    bool keep = http_should_keep_alive(&c->parser);
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
    if (n < 0) {
        /* EOF may end a response that runs until close. */
        http_parser_execute(&c->parser, &settings, NULL, 0);
        if (x->done) {
            complete(c);
        } else {
            conn_failed(x, uv_strerror((int)n));
        }
        return;
    }
    size_t used = http_parser_execute(&c->parser, &settings, b->base,
                                      (size_t)n);
    (void)used;
    enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
    if (x->done) {
        complete(c);
    } else if (x->stop) {
        c->x = NULL;
        x->c = NULL;
        conn_close(c);
        finish(x, XFER_ABORTED, "stopped");
    } else if (err != HPE_OK) {
        c->x = NULL;
        x->c = NULL;
        conn_close(c);
        finish(x, x->got_bytes ? XFER_BROKEN : XFER_CONNECT,
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
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
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
    buf_init(&x->hname, 256);
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
