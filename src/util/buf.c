/*
 * buf.c - capped growable buffers (see buf.h).
 */
#include "util/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

void buf_init(struct buf *b, size_t max)
{
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

enum rl_err buf_reserve(struct buf *b, size_t n)
{
    if (n > b->max || b->len > b->max - n) {
        return RL_E_CAP;
    }
    size_t need = b->len + n + 1; /* room for the NUL */
    if (need <= b->cap) {
        return RL_OK;
    }
    size_t cap = b->cap ? b->cap : 1024; /* few reallocs for JSON-sized data */
    while (cap < need) {
        cap *= 2;
    }
    b->p = rl_realloc(b->p, cap);
    b->cap = cap;
    return RL_OK;
}

enum rl_err buf_append_grow(struct buf *b, const void *data, size_t n)
{
    enum rl_err err = buf_reserve(b, n);
    if (err != RL_OK) {
        return err;
    }
    if (n) {
        memcpy(b->p + b->len, data, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
    return RL_OK;
}

enum rl_err buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    /* Try the room we have first: one formatting pass in the common case. */
    size_t want = b->max - b->len < 128 ? b->max - b->len : 128;
    if (buf_reserve(b, want) != RL_OK) {
        return RL_E_CAP;
    }
    /* What may be written: the allocation, but never past the cap. */
    size_t room = b->cap - b->len;
    if (room > b->max - b->len + 1) {
        room = b->max - b->len + 1;
    }
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(b->p + b->len, room, fmt, copy);
    va_end(copy);
    if (n < 0) {
        b->p[b->len] = '\0';
        return RL_E_INTERNAL;
    }
    if ((size_t)n < room) {
        b->len += (size_t)n;
        return RL_OK;
    }
    b->p[b->len] = '\0';
    enum rl_err err = buf_reserve(b, (size_t)n);
    if (err != RL_OK) {
        return err;
    }
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return RL_OK;
}

enum rl_err buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum rl_err err = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return err;
}

/* Bytes a JSON string cannot hold as they are. */
static const unsigned char json_special[256] = {
    [0 ... 0x1F] = 1,
    ['"'] = 1,
    ['\\'] = 1,
};

enum rl_err buf_append_json_escaped(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!json_special[c]) {
            continue; /* one load for the common byte */
        }
        const char *esc = NULL;
        char u[7];
        if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c == '\n') {
            esc = "\\n";
        } else if (c == '\r') {
            esc = "\\r";
        } else if (c == '\t') {
            esc = "\\t";
        } else if (c < 0x20) {
            u[0] = '\\';
            u[1] = 'u';
            u[2] = '0';
            u[3] = '0';
            u[4] = hex[c >> 4];
            u[5] = hex[c & 15];
            u[6] = '\0';
            esc = u;
        }
        if (esc) {
            enum rl_err err = buf_append(b, s + start, i - start);
            if (err == RL_OK) {
                err = buf_append_cstr(b, esc);
            }
            if (err != RL_OK) {
                return err;
            }
            start = i + 1;
        }
    }
    return buf_append(b, s + start, n - start);
}

enum rl_err buf_append_u64(struct buf *b, uint64_t v)
{
    char tmp[24];
    size_t n = sizeof(tmp);
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return buf_append(b, tmp + n, sizeof(tmp) - n);
}

enum rl_err buf_append_i64(struct buf *b, int64_t v)
{
    if (v < 0) {
        enum rl_err err = buf_append(b, "-", 1);
        if (err != RL_OK) {
            return err;
        }
        return buf_append_u64(b, (uint64_t)0 - (uint64_t)v);
    }
    return buf_append_u64(b, (uint64_t)v);
}

enum rl_err buf_append_fixed(struct buf *b, int64_t v, unsigned digits)
{
    uint64_t div = 1;
    for (unsigned i = 0; i < digits; i++) {
        div *= 10;
    }
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    enum rl_err err = v < 0 ? buf_append(b, "-", 1) : RL_OK;
    if (err == RL_OK) {
        err = buf_append_u64(b, mag / div);
    }
    if (err != RL_OK || digits == 0) {
        return err;
    }
    char frac[24];
    uint64_t f = mag % div;
    for (unsigned i = digits; i > 0; i--) {
        frac[i] = (char)('0' + f % 10);
        f /= 10;
    }
    frac[0] = '.';
    return buf_append(b, frac, digits + 1);
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = '\0';
}

char *buf_steal(struct buf *b, size_t *len)
{
    char *p = b->p;
    if (len) {
        *len = b->len;
    }
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
