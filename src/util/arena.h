/*
 * arena.h - a bump allocator for request-scoped memory.
 *
 * Everything allocated from a request's arena is released at once by
 * arena_free() in req_free(); nothing in it is freed one by one.
 */
#ifndef RL_ARENA_H
#define RL_ARENA_H

#include <stddef.h>

#include "util/str.h"

struct arena_block;

struct arena {
    struct arena_block *head; /* newest block, where allocation happens */
    size_t block_size;        /* bytes in a normal block */
};

void arena_init(struct arena *a, size_t block_size);
/* Releases every block; the arena is empty and reusable afterwards. */
void arena_free(struct arena *a);
/* Returns size bytes aligned for any type; memory belongs to the arena. */
void *arena_alloc(struct arena *a, size_t size);
/* Returns a NUL-terminated copy of s in the arena. */
char *arena_strndup(struct arena *a, const char *s, size_t len);
static inline char *arena_strdup_str(struct arena *a, struct str s)
{
    return arena_strndup(a, s.p, s.len);
}

#endif
