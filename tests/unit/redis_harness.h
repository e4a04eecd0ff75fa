/*
 * redis_harness.h - a throw-away redis-server for unit tests, and a helper
 * to run a libuv loop until a condition holds.
 *
 * harness_redis_start() runs /usr/bin/redis-server on a free 127.0.0.1
 * port with no persistence in a mkdtemp directory and waits until it
 * accepts connections; a test binary that cannot start it must fail, not
 * skip. harness_redis_stop() ends it by its PID (the one we started).
 */
#ifndef RL_REDIS_HARNESS_H
#define RL_REDIS_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define HARNESS_REDIS_BIN "/usr/bin/redis-server"

struct harness_redis {
    pid_t pid;      /* the server we started, or 0 */
    int port;       /* its port on 127.0.0.1 */
    char dir[64];   /* its working directory (mkdtemp) */
    char url[64];   /* redis://127.0.0.1:<port> */
};

static void harness_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Returns a port that was free a moment ago (bind to 0, read, close). */
static int harness_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool harness_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* Starts (or restarts, on the same port and directory) the server. */
static bool harness_redis_spawn(struct harness_redis *h)
{
    char port[16];
    char logfile[96];
    snprintf(port, sizeof(port), "%d", h->port);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", h->dir);
    pid_t pid = fork();
    if (pid < 0) {
        return false;
    }
    if (pid == 0) {
        execl(HARNESS_REDIS_BIN, "redis-server", "--port", port, "--bind",
              "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
              h->dir, "--daemonize", "no", "--loglevel", "warning",
              "--logfile", logfile,
              (char *)NULL);
        _exit(127);
    }
    h->pid = pid;
    for (int i = 0; i < 500; i++) {
        if (harness_port_open(h->port)) {
            return true;
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            h->pid = 0;
            return false;
        }
        harness_sleep_ms(10);
    }
    return false;
}

static bool harness_redis_start(struct harness_redis *h)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->dir, sizeof(h->dir), "/tmp/relay-redis-test.XXXXXX");
    if (!mkdtemp(h->dir)) {
        return false;
    }
    h->port = harness_free_port();
    if (h->port <= 0) {
        return false;
    }
    snprintf(h->url, sizeof(h->url), "redis://127.0.0.1:%d", h->port);
    return harness_redis_spawn(h);
}

/* Stops the server (SIGTERM, then SIGKILL) and waits for it. */
static void harness_redis_kill(struct harness_redis *h)
{
    if (h->pid <= 0) {
        return;
    }
    kill(h->pid, SIGCONT);
    kill(h->pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        int status;
        if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
            h->pid = 0;
            return;
        }
        harness_sleep_ms(10);
    }
    kill(h->pid, SIGKILL);
    waitpid(h->pid, NULL, 0);
    h->pid = 0;
}

static void harness_redis_stop(struct harness_redis *h)
{
    harness_redis_kill(h);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "could not remove %s\n", h->dir);
    }
}

static void harness_on_guard(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs loop until cond(arg) holds (NULL: never) or ms pass; returns
 * whether cond held. */
static bool harness_run_until(uv_loop_t *loop, bool (*cond)(void *),
                              void *arg, uint64_t ms)
{
    bool fired = false;
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    guard.data = &fired;
    /* Repeating: when it fires at the top of an iteration (the loop's
     * cached time was stale), the poll that follows must still wake. */
    uv_timer_start(&guard, harness_on_guard, ms, ms ? ms : 1);
    bool ok = false;
    while (!fired) {
        if (cond && cond(arg)) {
            ok = true;
            break;
        }
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

/* Runs loop for about ms milliseconds. */
static void harness_run_for(uv_loop_t *loop, uint64_t ms)
{
    harness_run_until(loop, NULL, NULL, ms);
}

#endif
