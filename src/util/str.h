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

#endif
