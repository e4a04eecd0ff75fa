/*
 * fmt.h - text into a fixed char array without printf.
 *
 * For the short texts made on every request (routing explanations,
 * durations, parameter names): glibc's snprintf costs about a thousand
 * instructions a call, these a few dozen. Like snprintf, a text that does
 * not fit is cut and the array always ends in a NUL (when its size is not
 * 0); f->len is what was written.
 */
#ifndef RL_FMT_H
#define RL_FMT_H

#include <stddef.h>
#include <stdint.h>

struct fmt {
    char *p;    /* the caller's array */
    size_t cap; /* its size, NUL included */
    size_t len; /* bytes written, NUL excluded */
};

/* Starts writing to p (cap bytes), which becomes the empty string. */
void fmt_init(struct fmt *f, char *p, size_t cap);
void fmt_mem(struct fmt *f, const char *s, size_t n);
void fmt_str(struct fmt *f, const char *s);
/* v in decimal, at least width digits (zeros in front). */
void fmt_u64(struct fmt *f, uint64_t v, unsigned width);
void fmt_i64(struct fmt *f, int64_t v);

#endif
