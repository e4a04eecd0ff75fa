/*
 * alloc.c - aborting allocators (see alloc.h).
 */
#include "util/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t size)
{
    fprintf(stderr, "relay: out of memory allocating %zu bytes\n", size);
    abort();
}

void *rl_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) {
        oom(size);
    }
    return p;
}

void *rl_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        oom(n * size);
    }
    return p;
}

void *rl_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q) {
        oom(size);
    }
    return q;
}

char *rl_strndup(const char *s, size_t len)
{
    char *p = rl_malloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *rl_strdup(const char *s)
{
    return rl_strndup(s, strlen(s));
}
