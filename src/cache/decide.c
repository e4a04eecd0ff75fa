/*
 * decide.c - whether a semantic neighbour answers a prompt: the
 * similarity threshold, then the near-miss guard (nearmiss.c).
 */
#include <stdio.h>

#include "cache/cache.h"
#include "cache/nearmiss.h"

bool cache_semantic_decide(double sim, double threshold, bool guard,
                           struct str stored, struct str asked,
                           char *reason, size_t n)
{
    if (!(sim >= threshold)) {
        snprintf(reason, n, "similarity %.3f is below the threshold %.3f",
                 sim, threshold);
        return false;
    }
    if (guard && cache_nearmiss_differs(stored, asked, reason, n)) {
        return false;
    }
    if (n) {
        reason[0] = '\0';
    }
    return true;
}
