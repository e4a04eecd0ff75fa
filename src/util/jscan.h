/*
 * jscan.h - a non-allocating scan of one level of a JSON text.
 *
 * The hot path mostly passes JSON through: it needs to find a few members
 * (id, model, usage, choices) and replace or drop them, not to build a tree
 * and print it again. jscan finds the members of an object, or the elements
 * of an array, as spans of the original text, checking the syntax of what it
 * skips as it goes. Values are not decoded; strings keep their escapes.
 */
#ifndef RL_JSCAN_H
#define RL_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "util/str.h"

/* One member of an object (key empty for an array element). */
struct jscan_item {
    struct str key;   /* the key's text, without quotes, escapes kept */
    struct str value; /* the value's whole text */
    size_t start;     /* offset of the member's first byte (its key) */
    size_t end;       /* offset just past its value */
    char type;        /* first byte of the value: { [ " t f n, or digit/- */
};

/* Walks the members of an object or the elements of an array one by one,
 * for lists too long to hold at once. */
struct jscan_iter {
    const char *base; /* the text's start, for offsets */
    const char *p;    /* next byte */
    const char *end;  /* one past the text */
    bool object;      /* members (with keys) or elements */
    bool done;        /* the closing bracket was read */
    bool checked;     /* the text is known well-formed: values are stepped
                         over, not checked again */
};

/* Starts at the object or array text holds; false if it holds neither. */
bool jscan_iter_init(struct jscan_iter *it, struct str text);
/* The same for text a jscan already found well-formed (a part of it, say):
 * values are stepped over by their brackets and quotes alone, three times
 * faster. The items are jscan's; on text that is not well-formed the
 * result means nothing, but no byte past the text is read. */
bool jscan_iter_checked(struct jscan_iter *it, struct str text);
/* Returns 1 and the next item, 0 at a well-formed end, -1 on bad JSON. */
int jscan_iter_next(struct jscan_iter *it, struct jscan_item *out);

/* Starts in the middle of the object text holds, at offset: where a member
 * begins, after a comma. The caller knows the bytes before it to be the
 * well-formed start of the object (they match a text scanned before). */
void jscan_iter_at(struct jscan_iter *it, struct str text, size_t offset);

/* Appends the iterator's remaining items to items (*n of max used); false
 * on bad JSON or more than max items, as jscan(). */
bool jscan_rest(struct jscan_iter *it, struct jscan_item *items, size_t max,
                size_t *n);

/*
 * Scans the object (or array) that text holds, with optional white space
 * around it. Fills up to max items and sets *n to how many there are.
 * Returns false if the text is not one well-formed JSON object or array, or
 * has more than max items.
 */
bool jscan(struct str text, struct jscan_item *items, size_t max, size_t *n);
/* jscan() over text already checked (see jscan_iter_checked). */
bool jscan_checked(struct str text, struct jscan_item *items, size_t max,
                   size_t *n);

/* Returns the item whose key is name, or NULL. Inline: on the hot path
 * name is a literal, so its length and the compare are folded in. */
static inline const struct jscan_item *
jscan_find(const struct jscan_item *items, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++) {
        if (items[i].key.len == len &&
            (len == 0 || (items[i].key.p[0] == name[0] &&
                          memcmp(items[i].key.p, name, len) == 0))) {
            return &items[i];
        }
    }
    return NULL;
}

/* True if the n bytes at s are valid UTF-8 (no overlong forms, surrogates
 * or code points past U+10FFFF); else sets *bad_at to the first bad byte. */
bool jscan_utf8_valid(const char *s, size_t n, size_t *bad_at);

/* Decodes a JSON string value (with its quotes) into out, NUL-terminated.
 * Returns false if it is not a string, is malformed, or needs cap bytes or
 * more. */
bool jscan_string(struct str value, char *out, size_t cap, size_t *len);

/* True if the value's text is the literal null. */
static inline bool jscan_is_null(const struct jscan_item *it)
{
    return it && it->type == 'n';
}

#endif
