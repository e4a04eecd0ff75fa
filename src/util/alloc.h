/*
 * alloc.h - allocation that aborts on failure, as Redis' zmalloc does.
 *
 * Caps on every buffer and per-request arenas keep failure rare; when it
 * happens there is no sound way to go on, so we say so and abort.
 */
#ifndef RL_ALLOC_H
#define RL_ALLOC_H

#include <stddef.h>

void *rl_malloc(size_t size);
void *rl_calloc(size_t n, size_t size);
void *rl_realloc(void *p, size_t size);
/* Returns a heap copy of the len bytes at s, NUL-terminated. */
char *rl_strndup(const char *s, size_t len);
char *rl_strdup(const char *s);

#endif
