/*
 * log.c - JSON-lines logger with per-thread batching (see log.h).
 */
#include "util/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"

#define LOG_LINE_MAX (64 * 1024)
#define LOG_BATCH_FLUSH (32 * 1024)

static _Atomic int min_level = LOG_INFO;
static _Atomic int out_fd = 2;
static __thread struct buf tl_buf;
static __thread bool tl_ready;
static __thread bool tl_batching;
static __thread time_t tl_stamp_sec;   /* the second tl_stamp shows */
static __thread char tl_stamp[24];     /* "2026-11-25T04:16:27" */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level)
{
    atomic_store(&min_level, (int)level);
}

bool log_level_parse(const char *s, enum log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error",
                                        "off"};
    for (int i = 0; i <= LOG_OFF; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

void log_set_fd(int fd)
{
    atomic_store(&out_fd, fd);
}

bool log_enabled(enum log_level level)
{
    return level != LOG_OFF && (int)level >= atomic_load(&min_level);
}

void log_thread_batching(bool on)
{
    if (!on) {
        log_flush();
    }
    tl_batching = on;
}

void log_thread_exit(void)
{
    log_flush();
    if (tl_ready) {
        buf_free(&tl_buf);
        tl_ready = false;
    }
    tl_batching = false;
}

static void write_all(const char *p, size_t len)
{
    int fd = atomic_load(&out_fd);
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return; /* nowhere to report a failing log; drop the line */
        }
        p += n;
        len -= (size_t)n;
    }
}

void log_flush(void)
{
    if (tl_ready && tl_buf.len) {
        write_all(tl_buf.p, tl_buf.len);
        buf_reset(&tl_buf);
    }
}

/* Appends the line's opening, up to and including the message. */
static enum rl_err line_start(enum log_level level, const char *msg)
{
    if (!tl_ready) {
        buf_init(&tl_buf, 4 * LOG_LINE_MAX);
        tl_ready = true;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != tl_stamp_sec) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        strftime(tl_stamp, sizeof(tl_stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        tl_stamp_sec = tv.tv_sec;
    }
    char ms[5] = {'.', (char)('0' + tv.tv_usec / 100000),
                  (char)('0' + tv.tv_usec / 10000 % 10),
                  (char)('0' + tv.tv_usec / 1000 % 10), 'Z'};
    enum rl_err err = buf_append_cstr(&tl_buf, "{\"ts\":\"");
    if (err == RL_OK) {
        err = buf_append_cstr(&tl_buf, tl_stamp);
    }
    if (err == RL_OK) {
        err = buf_append(&tl_buf, ms, sizeof(ms));
    }
    if (err == RL_OK) {
        err = buf_append_cstr(&tl_buf, "\",\"level\":\"");
    }
    if (err == RL_OK) {
        err = buf_append_cstr(&tl_buf, level_names[level]);
    }
    if (err == RL_OK) {
        err = buf_append_cstr(&tl_buf, "\",\"msg\":\"");
    }
    if (err == RL_OK) {
        err = buf_append_json_escaped(&tl_buf, msg, strlen(msg));
    }
    if (err == RL_OK) {
        err = buf_append_cstr(&tl_buf, "\"");
    }
    return err;
}

/* Closes the line started at start, or drops it when err says it failed
 * or it grew too long; then writes now if it must. */
static void line_end(enum log_level level, size_t start, enum rl_err err)
{
    if (err == RL_OK) {
        err = buf_append_cstr(&tl_buf, "}\n");
    }
    if (err != RL_OK || tl_buf.len - start > LOG_LINE_MAX) {
        tl_buf.len = start; /* a line too long to keep: drop it */
        if (tl_buf.p) {
            tl_buf.p[start] = '\0';
        }
        return;
    }
    if (!tl_batching || tl_buf.len >= LOG_BATCH_FLUSH || level >= LOG_WARN) {
        log_flush();
    }
}

void log_write_fields(enum log_level level, const char *msg,
                      struct str fields)
{
    if (!log_enabled(level)) {
        return;
    }
    size_t start = tl_ready ? tl_buf.len : 0;
    enum rl_err err = line_start(level, msg);
    if (err == RL_OK && fields.len) {
        err = buf_append(&tl_buf, ",", 1);
        if (err == RL_OK) {
            err = buf_append_str(&tl_buf, fields);
        }
    }
    line_end(level, start, err);
}

void log_write(enum log_level level, const char *msg, const char *fields, ...)
{
    if (!log_enabled(level)) {
        return;
    }
    size_t start = tl_ready ? tl_buf.len : 0;
    enum rl_err err = line_start(level, msg);
    if (err == RL_OK && fields && fields[0]) {
        err = buf_append_cstr(&tl_buf, ",");
        va_list ap;
        va_start(ap, fields);
        if (err == RL_OK) {
            err = buf_vprintf(&tl_buf, fields, ap);
        }
        va_end(ap);
    }
    line_end(level, start, err);
}
