/*
 * jscan.c - one level of a JSON text as spans (see jscan.h).
 *
 * skip_value() checks the grammar of everything it steps over (strings,
 * numbers, literals, nested containers, to a bounded depth), so a member
 * list is only returned for text that is well-formed JSON. UTF-8 inside
 * strings is not checked: the text comes from a provider and goes on to the
 * client unchanged.
 */
#include "util/jscan.h"

#include <stdint.h>
#include <string.h>

#define JSCAN_MAX_DEPTH 64

struct cursor {
    const char *p;   /* next byte */
    const char *end; /* one past the last */
};

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end &&
           (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) {
        c->p++;
    }
}

/* Bytes that end a run of plain string text: the quote, the backslash
 * and the control characters JSON forbids inside strings. */
static const unsigned char special[256] = {
    [0 ... 0x1F] = 1,
    ['"'] = 1,
    ['\\'] = 1,
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool hex4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4) {
        return false;
    }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) {
            return false;
        }
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return true;
}

/* Checks a \ escape at c->p (just past the backslash). A \u escape of a
 * UTF-16 surrogate must be a high one followed by a low one: a lone one
 * names no character (jansson, and so many providers, refuse it). */
static bool skip_escape(struct cursor *c)
{
    if (c->p >= c->end) {
        return false;
    }
    char e = *c->p++;
    if (e == 'u') {
        unsigned cp;
        if (!hex4(c->p, c->end, &cp)) {
            return false;
        }
        c->p += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' ||
                !hex4(c->p + 2, c->end, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                return false;
            }
            c->p += 6;
        }
        return true;
    }
    return e && strchr("\"\\/bfnrt", e);
}

/* The rest of a string after a backslash at p: the slow path, kept out of
 * line so that plain text needs no saved registers. */
static __attribute__((noinline)) bool skip_string_escaped(struct cursor *c,
                                                          const char *p)
{
    for (;;) {
        c->p = p + 1; /* past the backslash */
        if (!skip_escape(c)) {
            return false;
        }
        const unsigned char *q = (const unsigned char *)c->p;
        const unsigned char *end = (const unsigned char *)c->end;
        while (q < end && !special[*q]) {
            q++;
        }
        if (q >= end || *q < 0x20) {
            return false;
        }
        if (*q == '"') {
            c->p = (const char *)q + 1;
            return true;
        }
        p = (const char *)q;
    }
}

static inline bool skip_string(struct cursor *c)
{
    const unsigned char *p = (const unsigned char *)c->p + 1;
    const unsigned char *end = (const unsigned char *)c->end;
    /* One table load per byte, four bytes a round while they last. */
    while (end - p >= 4) {
        if (special[p[0]]) {
            goto stop;
        }
        if (special[p[1]]) {
            p += 1;
            goto stop;
        }
        if (special[p[2]]) {
            p += 2;
            goto stop;
        }
        if (special[p[3]]) {
            p += 3;
            goto stop;
        }
        p += 4;
    }
    while (p < end && !special[*p]) {
        p++;
    }
    if (p >= end) {
        return false;
    }
stop:
    if (*p == '"') {
        c->p = (const char *)p + 1;
        return true;
    }
    if (*p < 0x20) {
        return false;
    }
    return skip_string_escaped(c, (const char *)p);
}

/* Steps past a string of text known well-formed: a backslash takes the
 * byte after it, nothing is checked. */
static bool pass_string(struct cursor *c)
{
    const unsigned char *p = (const unsigned char *)c->p + 1;
    const unsigned char *end = (const unsigned char *)c->end;
    while (p < end) {
        if (!special[*p]) {
            p++;
        } else if (*p == '"') {
            c->p = (const char *)p + 1;
            return true;
        } else {
            p += *p == '\\' ? 2 : 1;
        }
    }
    return false;
}

/* What stepping over checked text looks for. */
enum { K_PLAIN, K_QUOTE, K_OPEN, K_CLOSE };
static const unsigned char kind[256] = {
    ['"'] = K_QUOTE, ['{'] = K_OPEN, ['['] = K_OPEN,
    ['}'] = K_CLOSE, [']'] = K_CLOSE,
};
static const unsigned char scalar_end[256] = {
    [','] = 1, ['}'] = 1, [']'] = 1, [' '] = 1, ['\t'] = 1, ['\n'] = 1,
    ['\r'] = 1,
};

/* Steps over one value of checked text: strings by their quotes,
 * containers by counting brackets outside strings. */
static bool skip_checked(struct cursor *c)
{
    if (c->p >= c->end) {
        return false;
    }
    unsigned char k = kind[(unsigned char)*c->p];
    if (k == K_QUOTE) {
        return pass_string(c);
    }
    if (k != K_OPEN) {
        while (c->p < c->end && !scalar_end[(unsigned char)*c->p]) {
            c->p++;
        }
        return true;
    }
    size_t depth = 0;
    while (c->p < c->end) {
        k = kind[(unsigned char)*c->p];
        if (k == K_PLAIN) {
            c->p++;
        } else if (k == K_QUOTE) {
            if (!pass_string(c)) {
                return false;
            }
        } else {
            c->p++;
            if (k == K_OPEN) {
                depth++;
            } else if (--depth == 0) {
                return true;
            }
        }
    }
    return false;
}

static bool digits(struct cursor *c)
{
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        c->p++;
    }
    return c->p > start;
}

static bool skip_number(struct cursor *c)
{
    if (*c->p == '-') {
        c->p++;
    }
    const char *first = c->p;
    if (!digits(c)) {
        return false;
    }
    if (*first == '0' && c->p - first > 1) {
        return false; /* JSON forbids leading zeros: 01 */
    }
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c)) {
            return false;
        }
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) {
            c->p++;
        }
        if (!digits(c)) {
            return false;
        }
    }
    return true;
}

static bool skip_literal(struct cursor *c, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) {
        return false;
    }
    c->p += n;
    return true;
}

static bool skip_value(struct cursor *c, int depth);

/* Steps over the members of an object or the elements of an array. */
static bool skip_container(struct cursor *c, int depth)
{
    bool object = *c->p == '{';
    char close = object ? '}' : ']';
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return true;
    }
    for (;;) {
        if (object) {
            if (c->p >= c->end || *c->p != '"' || !skip_string(c)) {
                return false;
            }
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':') {
                return false;
            }
            c->p++;
            skip_ws(c);
        }
        if (!skip_value(c, depth + 1)) {
            return false;
        }
        skip_ws(c);
        if (c->p >= c->end) {
            return false;
        }
        if (*c->p == close) {
            c->p++;
            return true;
        }
        if (*c->p != ',') {
            return false;
        }
        c->p++;
        skip_ws(c);
    }
}

static bool skip_value(struct cursor *c, int depth)
{
    if (c->p >= c->end || depth > JSCAN_MAX_DEPTH) {
        return false;
    }
    switch (*c->p) {
    case '{':
    case '[':
        return skip_container(c, depth);
    case '"':
        return skip_string(c);
    case 't':
        return skip_literal(c, "true");
    case 'f':
        return skip_literal(c, "false");
    case 'n':
        return skip_literal(c, "null");
    default:
        return skip_number(c);
    }
}

bool jscan_iter_init(struct jscan_iter *it, struct str text)
{
    it->base = text.p;
    it->p = text.p;
    it->end = text.p + text.len;
    struct cursor c = {it->p, it->end};
    skip_ws(&c);
    if (c.p >= c.end || (*c.p != '{' && *c.p != '[')) {
        return false;
    }
    it->object = *c.p == '{';
    c.p++;
    skip_ws(&c);
    it->done = false;
    it->checked = false;
    if (c.p < c.end && *c.p == (it->object ? '}' : ']')) {
        c.p++;
        it->done = true;
    }
    it->p = c.p;
    return true;
}

int jscan_iter_next(struct jscan_iter *it, struct jscan_item *out)
{
    if (it->done) {
        struct cursor c = {it->p, it->end};
        skip_ws(&c);
        return c.p == c.end ? 0 : -1;
    }
    struct cursor c = {it->p, it->end};
    char close = it->object ? '}' : ']';
    struct jscan_item item = {.start = (size_t)(c.p - it->base)};
    if (it->object) {
        if (c.p >= c.end || *c.p != '"') {
            return -1;
        }
        const char *k = c.p + 1;
        if (!skip_string(&c)) {
            return -1;
        }
        item.key = (struct str){k, (size_t)(c.p - 1 - k)};
        skip_ws(&c);
        if (c.p >= c.end || *c.p != ':') {
            return -1;
        }
        c.p++;
        skip_ws(&c);
    }
    const char *v = c.p;
    if (!(it->checked ? skip_checked(&c) : skip_value(&c, 1))) {
        return -1;
    }
    item.value = (struct str){v, (size_t)(c.p - v)};
    item.type = *v;
    item.end = (size_t)(c.p - it->base);
    skip_ws(&c);
    if (c.p >= c.end) {
        return -1;
    }
    if (*c.p == close) {
        c.p++;
        it->done = true;
    } else if (*c.p == ',') {
        c.p++;
        skip_ws(&c);
    } else {
        return -1;
    }
    it->p = c.p;
    *out = item;
    return 1;
}

void jscan_iter_at(struct jscan_iter *it, struct str text, size_t offset)
{
    it->base = text.p;
    it->p = text.p + offset;
    it->end = text.p + text.len;
    it->object = true;
    it->done = false;
    it->checked = false;
}

bool jscan_iter_checked(struct jscan_iter *it, struct str text)
{
    if (!jscan_iter_init(it, text)) {
        return false;
    }
    it->checked = true;
    return true;
}

bool jscan_rest(struct jscan_iter *it, struct jscan_item *items, size_t max,
                size_t *n)
{
    struct jscan_item item;
    int rc;
    while ((rc = jscan_iter_next(it, &item)) == 1) {
        if (*n == max) {
            return false;
        }
        items[(*n)++] = item;
    }
    return rc == 0;
}

bool jscan(struct str text, struct jscan_item *items, size_t max, size_t *n)
{
    struct jscan_iter it;
    *n = 0;
    if (!jscan_iter_init(&it, text)) {
        return false;
    }
    return jscan_rest(&it, items, max, n);
}

bool jscan_checked(struct str text, struct jscan_item *items, size_t max,
                   size_t *n)
{
    struct jscan_iter it;
    *n = 0;
    if (!jscan_iter_checked(&it, text)) {
        return false;
    }
    return jscan_rest(&it, items, max, n);
}

bool jscan_utf8_valid(const char *s, size_t n, size_t *bad_at)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* Eight ASCII bytes at a time: every provider event and answer
         * goes through here, and they are mostly ASCII. */
        uint64_t w;
        while (n - i >= 8 && (memcpy(&w, p + i, 8),
                              (w & 0x8080808080808080ull) == 0)) {
            i += 8;
        }
        if (i >= n) {
            break;
        }
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80;
        unsigned hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
            hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing past U+10FFFF */
        } else {
            *bad_at = i;
            return false;
        }
        if (need >= n - i) {
            *bad_at = i;
            return false;
        }
        for (size_t k = 1; k <= need; k++) {
            unsigned b = p[i + k];
            unsigned l = k == 1 ? lo : 0x80;
            unsigned h = k == 1 ? hi : 0xBF;
            if (b < l || b > h) {
                *bad_at = i;
                return false;
            }
        }
        i += need + 1;
    }
    return true;
}

static size_t put_utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool jscan_string(struct str value, char *out, size_t cap, size_t *len)
{
    if (value.len < 2 || value.p[0] != '"' || cap == 0) {
        return false;
    }
    const char *p = value.p + 1;
    const char *end = value.p + value.len - 1;
    size_t n = 0;
    while (p < end) {
        char tmp[4];
        size_t k = 1;
        if (*p != '\\') {
            tmp[0] = *p++;
        } else {
            p++;
            char e = p < end ? *p++ : 0;
            unsigned cp;
            switch (e) {
            case '"': tmp[0] = '"'; break;
            case '\\': tmp[0] = '\\'; break;
            case '/': tmp[0] = '/'; break;
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'n': tmp[0] = '\n'; break;
            case 'r': tmp[0] = '\r'; break;
            case 't': tmp[0] = '\t'; break;
            case 'u':
                if (!hex4(p, end, &cp)) {
                    return false;
                }
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo2;
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                        !hex4(p + 2, end, &lo2) || lo2 < 0xDC00 ||
                        lo2 > 0xDFFF) {
                        return false;
                    }
                    p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo2 - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return false;
                }
                k = put_utf8(cp, tmp);
                break;
            default:
                return false;
            }
        }
        if (n + k >= cap) {
            return false;
        }
        memcpy(out + n, tmp, k);
        n += k;
    }
    out[n] = '\0';
    *len = n;
    return true;
}
