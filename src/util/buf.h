/*
 * buf.h - growable byte buffers with a cap.
 *
 * Every buffer is given its cap at creation; an append past it fails with
 * RL_E_CAP and leaves the buffer as it was, so a caller can answer 413 or
 * fail an upstream call instead of growing without bound.
 */
#ifndef RL_BUF_H
#define RL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/err.h"
#include "util/str.h"

struct buf {
    char *p;    /* heap data, NUL-terminated after len when p != NULL */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated */
    size_t max; /* largest len allowed, in bytes */
};

/* Initialises an empty buffer that may grow to max bytes. */
void buf_init(struct buf *b, size_t max);
/* Frees the data; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);
/* Empties the buffer, keeping its allocation. */
static inline void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->p) {
        b->p[0] = '\0';
    }
}
/* Makes room for n more bytes; RL_E_CAP past the cap. */
enum rl_err buf_reserve(struct buf *b, size_t n);
/* Appends n bytes: buf_append_grow() when they do not fit in place. */
enum rl_err buf_append_grow(struct buf *b, const void *data, size_t n);

/* Inline: appends run dozens of times per request, nearly always into room
 * the buffer has; a literal's length and copy are then folded in. */
static inline enum rl_err buf_append(struct buf *b, const void *data,
                                     size_t n)
{
    if (b->cap - b->len > n && b->max - b->len >= n) {
        if (n) { /* data may be NULL then */
            memcpy(b->p + b->len, data, n);
        }
        b->len += n;
        b->p[b->len] = '\0';
        return RL_OK;
    }
    return buf_append_grow(b, data, n);
}

static inline enum rl_err buf_append_str(struct buf *b, struct str s)
{
    return buf_append(b, s.p, s.len);
}

static inline enum rl_err buf_append_cstr(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}
enum rl_err buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
enum rl_err buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Appends s as the inside of a JSON string (quotes not included). */
enum rl_err buf_append_json_escaped(struct buf *b, const char *s, size_t n);
/* Appends v in decimal (no printf: these run per request). */
enum rl_err buf_append_u64(struct buf *b, uint64_t v);
enum rl_err buf_append_i64(struct buf *b, int64_t v);
/* Appends v / 10^digits with exactly digits decimals: (1234, 3) is
 * "1.234"; used for microseconds as milliseconds and nano-dollars as USD. */
enum rl_err buf_append_fixed(struct buf *b, int64_t v, unsigned digits);

/* Drops the first n bytes, moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);
/* Takes the data out of the buffer; the caller frees it. */
char *buf_steal(struct buf *b, size_t *len);

#endif
