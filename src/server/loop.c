/*
 * loop.c - worker threads, each with its own libuv loop, all accepting on
 * the same port (SO_REUSEPORT), and the drain on shutdown.
 *
 * Nothing here knows what a request means: requests go to the hooks given
 * to server_start(). Threads share nothing on the hot path; the only lock is
 * a worker's inbox, used for rare messages (reload, drain). Read
 * server_start() and worker_main() first.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/internal.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#define SWEEP_MS 100
#define LISTEN_BACKLOG 1024

static struct worker *workers;
static int nworkers;
static int bound_port;
static int extra_port;

static void on_connection(uv_stream_t *server, int status)
{
    struct worker *w = server->data;
    if (status < 0) {
        log_write(LOG_WARN, "accept failed", "\"error\":\"%s\"",
                  uv_strerror(status));
        return;
    }
    conn_accept(w, server == (uv_stream_t *)&w->extra ? SERVER_EXTRA
                                                       : SERVER_MAIN);
}

static void stop_worker(struct worker *w)
{
    if (w->stopped) {
        return;
    }
    w->stopped = true;
    w->hooks->worker_stop(w->wctx);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->sweep, NULL);
    uv_close((uv_handle_t *)&w->tick, NULL);
}

static void begin_drain(struct worker *w)
{
    if (w->draining) {
        return;
    }
    w->draining = true;
    uint64_t grace = w->hooks->limits(w->wctx)->shutdown_grace_ms;
    w->drain_deadline_us = clock_now_us() + grace * 1000;
    uv_close((uv_handle_t *)&w->listener, NULL);
    if (w->extra_fd >= 0) {
        uv_close((uv_handle_t *)&w->extra, NULL);
    }
    log_write(LOG_INFO, "draining", "\"worker\":%d,\"connections\":%zu",
              w->id, w->nconns);
    conn_sweep(w, clock_now_us());
}

static void on_wake(uv_async_t *async)
{
    struct worker *w = async->data;
    pthread_mutex_lock(&w->mu);
    struct worker_msg *m = w->inbox;
    w->inbox = NULL;
    bool drain = w->drain_requested;
    pthread_mutex_unlock(&w->mu);
    while (m) {
        struct worker_msg *next = m->next;
        m->fn(w->wctx, m->arg);
        free(m);
        m = next;
    }
    if (drain) {
        begin_drain(w);
    }
}

static void on_sweep(uv_timer_t *timer)
{
    struct worker *w = timer->data;
    conn_sweep(w, clock_now_us());
    if (w->draining && w->nconns == 0) {
        stop_worker(w);
    }
}

static void on_tick(uv_check_t *check)
{
    struct worker *w = check->data;
    conn_flush(w);
    if (w->hooks->on_tick) {
        w->hooks->on_tick(w->wctx);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    log_thread_batching(true);
    w->wctx = w->hooks->worker_start(&w->loop, w->id, w->hooks->arg);
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    uv_tcp_open(&w->listener, w->listen_fd);
    int rc = uv_listen((uv_stream_t *)&w->listener, LISTEN_BACKLOG,
                       on_connection);
    if (rc != 0 && w->extra_fd >= 0) {
        close(w->extra_fd); /* never opened as a handle: nothing to close */
        w->extra_fd = -1;
    } else if (w->extra_fd >= 0) {
        uv_tcp_init(&w->loop, &w->extra);
        w->extra.data = w;
        uv_tcp_open(&w->extra, w->extra_fd);
        rc = uv_listen((uv_stream_t *)&w->extra, LISTEN_BACKLOG,
                       on_connection);
    }
    if (rc != 0) {
        log_write(LOG_ERROR, "listen failed", "\"error\":\"%s\"",
                  uv_strerror(rc));
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    log_thread_exit();
    return NULL;
}

/* Returns a bound, listening socket with SO_REUSEPORT, or -1. With
 * exclusive set, first makes sure no other socket holds the port:
 * SO_REUSEPORT would otherwise let a second gateway share it silently. */
static int open_listener(const char *host, int port, bool exclusive)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    int family;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        family = AF_INET;
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        family = AF_INET6;
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        len = sizeof(*v6);
    } else {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (exclusive && port != 0 &&
        bind(fd, (struct sockaddr *)&ss, len) != 0) {
        int saved = errno; /* in use: by another process, since we are
                              the first of ours */
        close(fd);
        errno = saved;
        return -1;
    }
    if (exclusive && port != 0) {
        /* Bound without SO_REUSEPORT: start again with it. */
        close(fd);
        fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return -1;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Opens the socket of every worker on host:port (fd_of picks which of a
 * worker's sockets); sets *bound. Closes them all and logs on failure. */
static bool open_all(const char *host, int port, int *(*fd_of)(int i),
                     const char *hint, int *bound)
{
    for (int i = 0; i < nworkers; i++) {
        *fd_of(i) = open_listener(host, port, i == 0);
        if (*fd_of(i) < 0) {
            log_write(LOG_ERROR, "cannot listen",
                      "\"address\":\"%s:%d\",\"error\":\"%s\","
                      "\"hint\":\"is another process using the port? "
                      "%s\"", host, port, strerror(errno), hint);
            for (int j = 0; j < i; j++) {
                close(*fd_of(j));
            }
            return false;
        }
        port = port_of(*fd_of(i)); /* port 0: all share the first */
    }
    *bound = port;
    return true;
}

static int *main_fd(int i)
{
    return &workers[i].listen_fd;
}

static int *extra_fd(int i)
{
    return &workers[i].extra_fd;
}

enum rl_err server_start(const struct server_opts *opts,
                         const struct server_hooks *hooks)
{
    nworkers = opts->workers > 0 ? opts->workers : 1;
    workers = rl_calloc((size_t)nworkers, sizeof(*workers));
    for (int i = 0; i < nworkers; i++) {
        workers[i].extra_fd = -1;
    }
    extra_port = 0;
    if (!open_all(opts->host, opts->port, main_fd, "change listen: in the "
                  "config or pass --listen", &bound_port)) {
        return RL_E_IO;
    }
    if (opts->extra_host &&
        !open_all(opts->extra_host, opts->extra_port, extra_fd, "change "
                  "dashboard.listen in the config", &extra_port)) {
        for (int j = 0; j < nworkers; j++) {
            close(workers[j].listen_fd);
        }
        return RL_E_IO;
    }
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        w->id = i;
        w->hooks = hooks;
        pthread_mutex_init(&w->mu, NULL);
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->wake, on_wake);
        w->wake.data = w;
        uv_timer_init(&w->loop, &w->sweep);
        w->sweep.data = w;
        uv_timer_start(&w->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
        uv_check_init(&w->loop, &w->tick);
        w->tick.data = w;
        uv_check_start(&w->tick, on_tick);
        pthread_create(&w->thread, NULL, worker_main, w);
    }
    return RL_OK;
}

int server_port(void)
{
    return bound_port;
}

int server_extra_port(void)
{
    return extra_port;
}

void server_broadcast(void (*fn)(void *wctx, void *arg), void *arg)
{
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        struct worker_msg *m = rl_malloc(sizeof(*m));
        m->fn = fn;
        m->arg = arg;
        pthread_mutex_lock(&w->mu);
        m->next = w->inbox;
        w->inbox = m;
        pthread_mutex_unlock(&w->mu);
        uv_async_send(&w->wake);
    }
}

void server_drain_and_join(void)
{
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        pthread_mutex_lock(&w->mu);
        w->drain_requested = true;
        pthread_mutex_unlock(&w->mu);
        uv_async_send(&w->wake);
    }
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        pthread_join(w->thread, NULL);
        /* Messages that arrived after the loop ended are dropped. */
        struct worker_msg *m = w->inbox;
        while (m) {
            struct worker_msg *next = m->next;
            free(m);
            m = next;
        }
        uv_loop_close(&w->loop);
        pthread_mutex_destroy(&w->mu);
    }
    free(workers);
    workers = NULL;
    nworkers = 0;
}
