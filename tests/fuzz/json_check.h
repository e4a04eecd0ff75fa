/*
 * json_check.h - the fuzz targets' judge of "one well-formed JSON object":
 * RFC 8259's grammar, strictly, in valid UTF-8 (what a client's JSON parser
 * accepts), without jansson's own limits (it refuses \u0000 and integers
 * beyond 64 bits, which are valid JSON a client reads).
 *
 * Header-only; used by tests/fuzz/fuzz.h. Depth is bounded by
 * JSON_CHECK_MAX_DEPTH so that the judge itself cannot overflow its stack.
 */
#ifndef RL_JSON_CHECK_H
#define RL_JSON_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_CHECK_MAX_DEPTH 512

struct jcheck {
    const unsigned char *p;
    const unsigned char *end;
};

static bool jc_value(struct jcheck *c, int depth);

static void jc_ws(struct jcheck *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' ||
                             *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

static bool jc_lit(struct jcheck *c, const char *lit)
{
    for (; *lit; lit++, c->p++) {
        if (c->p >= c->end || *c->p != (unsigned char)*lit) {
            return false;
        }
    }
    return true;
}

/* One UTF-8 sequence of 2..4 bytes starting at c->p (RFC 3629). */
static bool jc_utf8(struct jcheck *c)
{
    unsigned char b = *c->p;
    size_t n;
    unsigned lo = 0x80;
    unsigned hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        n = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        n = 2;
        lo = b == 0xE0 ? 0xA0 : 0x80;
        hi = b == 0xED ? 0x9F : 0xBF;
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 3;
        lo = b == 0xF0 ? 0x90 : 0x80;
        hi = b == 0xF4 ? 0x8F : 0xBF;
    } else {
        return false;
    }
    if ((size_t)(c->end - c->p) <= n) {
        return false;
    }
    for (size_t i = 1; i <= n; i++) {
        unsigned v = c->p[i];
        if (v < (i == 1 ? lo : 0x80) || v > (i == 1 ? hi : 0xBF)) {
            return false;
        }
    }
    c->p += n + 1;
    return true;
}

static bool jc_hex4(struct jcheck *c)
{
    for (int i = 0; i < 4; i++, c->p++) {
        if (c->p >= c->end) {
            return false;
        }
        unsigned char h = *c->p;
        if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
              (h >= 'A' && h <= 'F'))) {
            return false;
        }
    }
    return true;
}

static bool jc_string(struct jcheck *c)
{
    c->p++; /* the opening quote */
    while (c->p < c->end) {
        unsigned char b = *c->p;
        if (b == '"') {
            c->p++;
            return true;
        }
        if (b < 0x20) {
            return false;
        }
        if (b == '\\') {
            c->p++;
            if (c->p >= c->end) {
                return false;
            }
            unsigned char e = *c->p++;
            if (e == 'u') {
                if (!jc_hex4(c)) {
                    return false;
                }
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return false;
            }
        } else if (b < 0x80) {
            c->p++;
        } else if (!jc_utf8(c)) {
            return false;
        }
    }
    return false;
}

static bool jc_digits(struct jcheck *c)
{
    const unsigned char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        c->p++;
    }
    return c->p > start;
}

static bool jc_number(struct jcheck *c)
{
    if (*c->p == '-') {
        c->p++;
    }
    if (c->p < c->end && *c->p == '0') {
        c->p++;
    } else if (!jc_digits(c)) {
        return false;
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!jc_digits(c)) {
            return false;
        }
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) {
            c->p++;
        }
        if (!jc_digits(c)) {
            return false;
        }
    }
    return true;
}

/* An object or an array: open '{' or '[' at c->p. */
static bool jc_container(struct jcheck *c, int depth)
{
    bool object = *c->p == '{';
    unsigned char close = object ? '}' : ']';
    c->p++;
    jc_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return true;
    }
    for (;;) {
        jc_ws(c);
        if (object) {
            if (c->p >= c->end || *c->p != '"' || !jc_string(c)) {
                return false;
            }
            jc_ws(c);
            if (c->p >= c->end || *c->p++ != ':') {
                return false;
            }
        }
        if (!jc_value(c, depth + 1)) {
            return false;
        }
        jc_ws(c);
        if (c->p >= c->end) {
            return false;
        }
        unsigned char b = *c->p++;
        if (b == close) {
            return true;
        }
        if (b != ',') {
            return false;
        }
    }
}

static bool jc_value(struct jcheck *c, int depth)
{
    if (depth > JSON_CHECK_MAX_DEPTH) {
        return false;
    }
    jc_ws(c);
    if (c->p >= c->end) {
        return false;
    }
    switch (*c->p) {
    case '{':
    case '[': return jc_container(c, depth);
    case '"': return jc_string(c);
    case 't': return jc_lit(c, "true");
    case 'f': return jc_lit(c, "false");
    case 'n': return jc_lit(c, "null");
    default:
        if (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) {
            return jc_number(c);
        }
        return false;
    }
}

/* True when p[0..len) is valid UTF-8 (RFC 3629; NUL counts as a byte). */
static inline bool json_check_utf8(const unsigned char *p, size_t len)
{
    struct jcheck c = {p, p + len};
    while (c.p < c.end) {
        if (*c.p < 0x80) {
            c.p++;
        } else if (!jc_utf8(&c)) {
            return false;
        }
    }
    return true;
}

/* True when p[0..len) is exactly one JSON object (whitespace around). */
static inline bool json_check_object(const char *p, size_t len)
{
    struct jcheck c = {(const unsigned char *)p,
                       (const unsigned char *)p + len};
    jc_ws(&c);
    if (c.p >= c.end || *c.p != '{') {
        return false;
    }
    if (!jc_value(&c, 0)) {
        return false;
    }
    jc_ws(&c);
    return c.p == c.end;
}

#endif
