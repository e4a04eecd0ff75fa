/*
 * arena.c - bump allocation in linked blocks (see arena.h).
 */
#include "util/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#include "util/alloc.h"

struct arena_block {
    struct arena_block *next; /* older block */
    size_t used;              /* bytes handed out from data */
    size_t size;              /* bytes in data */
    alignas(max_align_t) unsigned char data[];
};

void arena_init(struct arena *a, size_t block_size)
{
    a->head = NULL;
    a->block_size = block_size ? block_size : 4096;
}

void arena_free(struct arena *a)
{
    struct arena_block *b = a->head;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

void *arena_alloc(struct arena *a, size_t size)
{
    const size_t align = alignof(max_align_t);
    size = (size + align - 1) & ~(align - 1);
    struct arena_block *b = a->head;
    if (!b || b->size - b->used < size) {
        size_t n = size > a->block_size ? size : a->block_size;
        b = rl_malloc(sizeof(*b) + n);
        b->size = n;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    for (size_t i = 0; i < len; i++) {
        p[i] = s[i];
    }
    p[len] = '\0';
    return p;
}
