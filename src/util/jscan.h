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

#include "util/str.h"

/* One member of an object (key empty for an array element). */
struct jscan_item {
    struct str key;   /* the key's text, without quotes, escapes kept */
    struct str value; /* the value's whole text */
    size_t start;     /* offset of the member's first byte (its key) */
    size_t end;       /* offset just past its value */
    char type;        /* first byte of the value: { [ " t f n, or digit/- */
};

/*
 * Scans the object (or array) that text holds, with optional white space
 * around it. Fills up to max items and sets *n to how many there are.
 * Returns false if the text is not one well-formed JSON object or array, or
 * has more than max items.
 */
bool jscan(struct str text, struct jscan_item *items, size_t max, size_t *n);

/* Returns the item whose key is name, or NULL. */
const struct jscan_item *jscan_find(const struct jscan_item *items, size_t n,
                                    const char *name);

/* True if the value's text is the literal null. */
static inline bool jscan_is_null(const struct jscan_item *it)
{
    return it && it->type == 'n';
}

#endif
