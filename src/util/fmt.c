/*
 * fmt.c - text into a fixed char array without printf (fmt.h).
 */
#include "util/fmt.h"

#include <string.h>

void fmt_init(struct fmt *f, char *p, size_t cap)
{
    f->p = p;
    f->cap = cap;
    f->len = 0;
    if (cap) {
        p[0] = '\0';
    }
}

void fmt_mem(struct fmt *f, const char *s, size_t n)
{
    if (f->cap == 0) {
        return;
    }
    size_t room = f->cap - 1 - f->len;
    n = n < room ? n : room;
    memcpy(f->p + f->len, s, n);
    f->len += n;
    f->p[f->len] = '\0';
}

void fmt_str(struct fmt *f, const char *s)
{
    fmt_mem(f, s, strlen(s));
}

void fmt_u64(struct fmt *f, uint64_t v, unsigned width)
{
    char tmp[24];
    size_t n = sizeof(tmp);
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v || (width && sizeof(tmp) - n < width && n > 0));
    fmt_mem(f, tmp + n, sizeof(tmp) - n);
}

void fmt_i64(struct fmt *f, int64_t v)
{
    if (v < 0) {
        fmt_mem(f, "-", 1);
        fmt_u64(f, (uint64_t)0 - (uint64_t)v, 0);
        return;
    }
    fmt_u64(f, (uint64_t)v, 0);
}
