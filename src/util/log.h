/*
 * log.h - structured logging: one JSON object per line.
 *
 * Lines are formatted into a per-thread buffer. A thread that runs an event
 * loop turns batching on and calls log_flush() once per loop iteration, so
 * the hot path pays for a memcpy, not a system call; other threads write
 * each line at once. Never log an API key or prompt text.
 */
#ifndef RL_LOG_H
#define RL_LOG_H

#include <stdbool.h>

#include "util/str.h"

enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
    LOG_OFF
};

/* Sets the lowest level written (default LOG_INFO). */
void log_set_level(enum log_level level);
/* Parses "debug|info|warn|error|off"; returns false on anything else. */
bool log_level_parse(const char *s, enum log_level *out);
/* Sets the file descriptor lines go to (default 2, standard error). */
void log_set_fd(int fd);
bool log_enabled(enum log_level level);
/* Turns batching on or off for the calling thread (see above). */
void log_thread_batching(bool on);
/*
 * Writes one line {"ts":"...","level":"...","msg":"...",<fields>}. fields is
 * a printf format producing the inside of a JSON object ("\"k\":1,\"s\":\"x\"")
 * or NULL; strings in it must already be JSON-escaped.
 */
void log_write(enum log_level level, const char *msg, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));
/* As log_write, with the fields already formatted (the inside of a JSON
 * object), for lines written per request. */
void log_write_fields(enum log_level level, const char *msg,
                      struct str fields);
/* Writes what the calling thread has batched and frees its buffer; call
 * when a thread that logged ends (the next line allocates it again). */
void log_thread_exit(void);
/* Writes what the calling thread has batched. */
void log_flush(void);

#endif
