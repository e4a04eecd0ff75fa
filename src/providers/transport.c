/*
 * transport.c - upstream HTTP on a worker's loop (see transport.h): the
 * dispatch between h1.c and libcurl, and libcurl's multi interface driven by
 * libuv.
 *
 * The curl side is the classic pairing: curl says which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to wake it (CURLMOPT_TIMERFUNCTION);
 * libuv says when a socket is ready; finished transfers are collected after
 * every action. Read transport_start() and on_socket() first.
 */
#include "providers/transport.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/alloc.h"

#define EASY_POOL_MAX 64

struct transport {
    uv_loop_t *loop;           /* the worker's loop */
    struct h1 *h1;             /* plain HTTP to local addresses */
    CURLM *multi;              /* everything else; owns its pool */
    uv_timer_t timer;          /* curl's timeout */
    CURL *pool[EASY_POOL_MAX]; /* idle easy handles */
    size_t npool;
};

/* A transfer through curl. */
struct curl_xfer {
    struct xfer base;          /* must be first */
    struct transport *t;
    CURL *easy;
    struct curl_slist *headers;
    struct xfer_cbs cbs;
    void *ctx;
    uint32_t retry_after_s;    /* from a Retry-After header */
    bool got_bytes;            /* response bytes arrived */
    bool stopped;              /* on_data asked to stop */
    bool paused;               /* transport_pause: do not take the answer */
    bool recv_paused;          /* curl holds the answer back for us */
    bool in_write;             /* inside on_write's on_data */
};

/* One watched socket; freed in its close callback. */
struct sock {
    uv_poll_t poll;            /* must be first */
    curl_socket_t fd;
    struct transport *t;
};

/* ---------------------------------------------------------------------
 * curl callbacks
 * ------------------------------------------------------------------- */

uint32_t transport_retry_after(const char *p, size_t n)
{
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' ||
                 p[n - 1] == '\n')) {
        n--;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0; /* an HTTP-date or not Retry-After at all */
        }
        if (v < 86400) {
            v = v * 10 + (uint32_t)(p[i] - '0');
        }
    }
    return v < 86400 ? v : 86400;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
    struct curl_xfer *x = ud;
    x->got_bytes = true;
    if (x->paused && !x->stopped) {
        /* Paused from inside on_data: curl keeps these bytes and hands
         * them over again when resumed. */
        x->recv_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    x->in_write = true;
    bool ok = !x->stopped && x->cbs.on_data(x->ctx, p, size * n);
    x->in_write = false;
    if (!ok) {
        x->stopped = true;
        return 0;
    }
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct curl_xfer *x = ud;
    size_t len = size * n;
    x->got_bytes = true;
    if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        x->retry_after_s = transport_retry_after(p + 12, len - 12);
    } else if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        /* The blank line ends a head; 1xx heads are not the answer's. */
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200) {
            x->cbs.on_headers(x->ctx, status, x->retry_after_s);
        }
    }
    return len;
}

static void curl_xfer_free(struct curl_xfer *x)
{
    struct transport *t = x->t;
    curl_slist_free_all(x->headers);
    if (t->npool < EASY_POOL_MAX) {
        t->pool[t->npool++] = x->easy;
    } else {
        curl_easy_cleanup(x->easy);
    }
    free(x);
}

static void check_done(struct transport *t)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(t->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        struct curl_xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(t->multi, easy);
        enum xfer_result res = XFER_OK;
        if (x->stopped) {
            res = XFER_ABORTED;
        } else if (code == CURLE_OPERATION_TIMEDOUT && !x->got_bytes) {
            res = XFER_TIMEOUT;
        } else if (code != CURLE_OK) {
            res = x->got_bytes ? XFER_BROKEN : XFER_CONNECT;
        }
        x->cbs.on_done(x->ctx, res,
                       code == CURLE_OK ? NULL : curl_easy_strerror(code));
        curl_xfer_free(x);
    }
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct sock *s = handle->data;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        flags |= (events & UV_READABLE) ? CURL_CSELECT_IN : 0;
        flags |= (events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0;
    }
    int running;
    struct transport *t = s->t;
    curl_multi_socket_action(t->multi, s->fd, flags, &running);
    check_done(t);
}

static void on_timer(uv_timer_t *timer)
{
    struct transport *t = timer->data;
    int running;
    curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(t);
}

static void free_handle_data(uv_handle_t *handle)
{
    free(handle->data);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp)
{
    (void)easy;
    struct transport *t = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, free_handle_data);
            curl_multi_assign(t->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = rl_calloc(1, sizeof(*s));
        s->fd = fd;
        s->t = t;
        if (uv_poll_init_socket(t->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(t->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
        events |= UV_READABLE;
    }
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
        events |= UV_WRITABLE;
    }
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static int on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct transport *t = userp;
    if (timeout_ms < 0) {
        uv_timer_stop(&t->timer);
    } else {
        uv_timer_start(&t->timer, on_timer, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * curl transfers
 * ------------------------------------------------------------------- */

/* Turns "Name: value\n" lines into a curl header list. */
static struct curl_slist *header_list(const struct buf *lines)
{
    struct curl_slist *list = NULL;
    list = curl_slist_append(list, "Content-Type: application/json");
    list = curl_slist_append(list, "Expect:"); /* no 100-continue wait */
    const char *p = lines->p;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char line[4096];
        if (n < sizeof(line)) {
            memcpy(line, p, n);
            line[n] = '\0';
            list = curl_slist_append(list, line);
        }
        p = nl ? nl + 1 : NULL;
    }
    return list;
}

static struct xfer *curl_start(struct transport *t, const struct xfer_req *req,
                               const struct xfer_cbs *cbs, void *ctx)
{
    struct curl_xfer *x = rl_calloc(1, sizeof(*x));
    x->t = t;
    x->cbs = *cbs;
    x->ctx = ctx;
    if (t->npool) {
        x->easy = t->pool[--t->npool];
        curl_easy_reset(x->easy);
    } else {
        x->easy = curl_easy_init();
    }
    x->headers = header_list(req->headers);
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body.p);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)req->body.len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)req->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "relay/0.1");
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    if (curl_multi_add_handle(t->multi, e) != CURLM_OK) {
        curl_xfer_free(x);
        return NULL;
    }
    return &x->base;
}

/* ---------------------------------------------------------------------
 * Public
 * ------------------------------------------------------------------- */

struct transport *transport_new(uv_loop_t *loop)
{
    struct transport *t = rl_calloc(1, sizeof(*t));
    t->loop = loop;
    t->h1 = h1_new(loop);
    t->multi = curl_multi_init();
    uv_timer_init(loop, &t->timer);
    t->timer.data = t;
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t);
    /* Keep enough idle upstream connections for a busy worker. */
    curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, 512L);
    return t;
}

void transport_free(struct transport *t)
{
    h1_free(t->h1);
    for (size_t i = 0; i < t->npool; i++) {
        curl_easy_cleanup(t->pool[i]);
    }
    /* Cleaning the multi handle closes pooled connections, which removes
     * their sockets through on_socket while the loop still runs. */
    curl_multi_cleanup(t->multi);
    uv_timer_stop(&t->timer);
    t->timer.data = t;
    uv_close((uv_handle_t *)&t->timer, free_handle_data);
}

struct xfer *transport_start(struct transport *t, const struct xfer_req *req,
                             const struct xfer_cbs *cbs, void *ctx)
{
    if (h1_accepts(req->url)) {
        return h1_start(t->h1, req, cbs, ctx);
    }
    return curl_start(t, req, cbs, ctx);
}

void transport_pause(struct xfer *base, bool pause)
{
    if (base->h1) {
        h1_pause(base, pause);
        return;
    }
    struct curl_xfer *x = (struct curl_xfer *)base;
    x->paused = pause;
    if (pause && !x->in_write && !x->recv_paused) {
        x->recv_paused = true;
        curl_easy_pause(x->easy, CURLPAUSE_RECV);
    } else if (!pause && x->recv_paused) {
        /* May hand over the bytes curl kept, before it returns. */
        x->recv_paused = false;
        curl_easy_pause(x->easy, CURLPAUSE_CONT);
    }
}

void transport_cancel(struct xfer *base)
{
    if (base->h1) {
        h1_cancel(base);
        return;
    }
    struct curl_xfer *x = (struct curl_xfer *)base;
    curl_multi_remove_handle(x->t->multi, x->easy);
    curl_xfer_free(x);
}
