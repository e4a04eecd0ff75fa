/*
 * transport.c - curl multi on a libuv loop (see transport.h).
 *
 * The classic pairing: curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to wake it (CURLMOPT_TIMERFUNCTION);
 * libuv tells curl when a socket is ready. Finished transfers are collected
 * after every action and handed to the done callback. Read on_socket() and
 * on_poll() first.
 */
#include "providers/transport.h"

#include <stdbool.h>
#include <stdlib.h>

#include "util/alloc.h"

#define EASY_POOL_MAX 64

struct transport {
    uv_loop_t *loop;        /* the worker's loop */
    CURLM *multi;           /* owns the connection pool */
    uv_timer_t timer;       /* curl's timeout */
    transport_done_fn done; /* told about each finished transfer */
    CURL *pool[EASY_POOL_MAX]; /* idle easy handles */
    size_t npool;
    bool closing;           /* transport_free has started */
};

/* One watched socket; freed in its close callback. */
struct sock {
    uv_poll_t poll;          /* must be first: the handle's memory */
    curl_socket_t fd;
    struct transport *t;
};

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
        curl_multi_remove_handle(t->multi, easy);
        t->done(easy, code);
    }
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct sock *s = handle->data;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE) {
            flags |= CURL_CSELECT_IN;
        }
        if (events & UV_WRITABLE) {
            flags |= CURL_CSELECT_OUT;
        }
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

static void free_sock(uv_handle_t *handle)
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
            uv_close((uv_handle_t *)&s->poll, free_sock);
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

struct transport *transport_new(uv_loop_t *loop, transport_done_fn done)
{
    struct transport *t = rl_calloc(1, sizeof(*t));
    t->loop = loop;
    t->done = done;
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

static void free_transport(uv_handle_t *handle)
{
    free(handle->data);
}

void transport_free(struct transport *t)
{
    for (size_t i = 0; i < t->npool; i++) {
        curl_easy_cleanup(t->pool[i]);
    }
    /* Cleaning the multi handle closes pooled connections, which removes
     * their sockets through on_socket while the loop still runs. */
    curl_multi_cleanup(t->multi);
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, free_transport);
}

CURL *transport_easy_get(struct transport *t)
{
    if (t->npool) {
        CURL *easy = t->pool[--t->npool];
        curl_easy_reset(easy);
        return easy;
    }
    return curl_easy_init();
}

void transport_easy_put(struct transport *t, CURL *easy)
{
    if (t->npool < EASY_POOL_MAX) {
        t->pool[t->npool++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
}

int transport_add(struct transport *t, CURL *easy)
{
    return (int)curl_multi_add_handle(t->multi, easy);
}

void transport_remove(struct transport *t, CURL *easy)
{
    curl_multi_remove_handle(t->multi, easy);
}
