/*
 * str.h - sized string views.
 *
 * A struct str points into a buffer it does not own; it is valid as long as
 * that buffer is. Copy (rl_strndup, arena_strndup) only when the data must
 * outlive the buffer.
 */
#ifndef RL_STR_H
#define RL_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

struct str {
    const char *p; /* first byte, not NUL-terminated in general */
    size_t len;    /* length in bytes */
};

#define STR_LIT(s) ((struct str){(s), sizeof(s) - 1})

static inline struct str str_from(const char *s)
{
    return (struct str){s, s ? strlen(s) : 0};
}

static inline bool str_eq(struct str a, struct str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline bool str_eq_lit(struct str a, const char *lit)
{
    return str_eq(a, str_from(lit));
}

/* Case-insensitive equality, for HTTP header names. */
static inline bool str_case_eq(struct str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && strncasecmp(a.p, lit, n) == 0;
}

static inline bool str_starts_with(struct str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len >= n && memcmp(a.p, lit, n) == 0;
}

/* Returns a with leading and trailing spaces and tabs removed. */
static inline struct str str_trim(struct str a)
{
    while (a.len && (a.p[0] == ' ' || a.p[0] == '\t')) {
        a.p++;
        a.len--;
    }
    while (a.len && (a.p[a.len - 1] == ' ' || a.p[a.len - 1] == '\t')) {
        a.len--;
    }
    return a;
}

/* Bytes of a client's text that may be repeated in an error message or a
 * log line (str_shown). Keys are 16 characters or more, and are logged by
 * their first 8 only: a key sent in the wrong field is not repeated
 * either. */
#define STR_SHOWN_MAX 8

/*
 * Writes s into out (n bytes, NUL-terminated) as a message or a log line
 * may repeat a client's text: whole up to STR_SHOWN_MAX bytes, else its
 * first STR_SHOWN_MAX bytes (not cutting a UTF-8 sequence) and "...".
 * Returns out; n >= STR_SHOWN_MAX + 4 holds any s.
 */
static inline const char *str_shown(struct str s, char *out, size_t n)
{
    size_t k = s.len <= STR_SHOWN_MAX ? s.len : STR_SHOWN_MAX;
    while (k > 0 && k < s.len && ((unsigned char)s.p[k] & 0xC0) == 0x80) {
        k--; /* s.p[k] goes on a sequence: cut before that sequence */
    }
    const char *more = k < s.len ? "..." : "";
    size_t m = strlen(more);
    if (n == 0) {
        return out;
    }
    if (k + m + 1 > n) {
        k = 0;
        m = n > 3 ? 3 : 0;
    }
    memcpy(out, s.p, k);
    memcpy(out + k, more, m);
    out[k + m] = '\0';
    return out;
}

#endif
