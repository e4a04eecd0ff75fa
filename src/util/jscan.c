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

static bool skip_string(struct cursor *c)
{
    c->p++; /* the opening quote */
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"') {
            return true;
        }
        if (ch < 0x20) {
            return false;
        }
        if (ch == '\\') {
            if (c->p >= c->end) {
                return false;
            }
            char e = *c->p++;
            if (e == 'u') {
                for (int i = 0; i < 4; i++) {
                    if (c->p >= c->end || !strchr("0123456789abcdefABCDEF",
                                                  *c->p) || !*c->p) {
                        return false;
                    }
                    c->p++;
                }
            } else if (!strchr("\"\\/bfnrt", e) || !e) {
                return false;
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
    if (!digits(c)) {
        return false;
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

bool jscan(struct str text, struct jscan_item *items, size_t max, size_t *n)
{
    struct cursor c = {text.p, text.p + text.len};
    *n = 0;
    skip_ws(&c);
    if (c.p >= c.end || (*c.p != '{' && *c.p != '[')) {
        return false;
    }
    bool object = *c.p == '{';
    char close = object ? '}' : ']';
    c.p++;
    skip_ws(&c);
    bool empty = c.p < c.end && *c.p == close;
    if (empty) {
        c.p++;
    }
    while (!empty) {
        struct jscan_item it = {.start = (size_t)(c.p - text.p)};
        if (object) {
            if (c.p >= c.end || *c.p != '"') {
                return false;
            }
            const char *k = c.p + 1;
            if (!skip_string(&c)) {
                return false;
            }
            it.key = (struct str){k, (size_t)(c.p - 1 - k)};
            skip_ws(&c);
            if (c.p >= c.end || *c.p != ':') {
                return false;
            }
            c.p++;
            skip_ws(&c);
        }
        const char *v = c.p;
        if (!skip_value(&c, 1)) {
            return false;
        }
        it.value = (struct str){v, (size_t)(c.p - v)};
        it.type = *v;
        it.end = (size_t)(c.p - text.p);
        if (*n == max) {
            return false;
        }
        items[(*n)++] = it;
        skip_ws(&c);
        if (c.p >= c.end) {
            return false;
        }
        if (*c.p == close) {
            c.p++;
            break;
        }
        if (*c.p != ',') {
            return false;
        }
        c.p++;
        skip_ws(&c);
    }
    skip_ws(&c);
    return c.p == c.end;
}

const struct jscan_item *jscan_find(const struct jscan_item *items, size_t n,
                                    const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (str_eq_lit(items[i].key, name)) {
            return &items[i];
        }
    }
    return NULL;
}
