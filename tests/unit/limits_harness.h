/*
 * limits_harness.h - what the limits tests share: a callback that records
 * the verdict and the hold, and a rule builder.
 */
#ifndef RL_LIMITS_HARNESS_H
#define RL_LIMITS_HARNESS_H

#include <stdio.h>
#include <string.h>

#include "limits/limits.h"

/* What one reserve's callback saw. */
struct got {
    int calls;
    struct limits_verdict v;
    struct limits_hold *hold;
};

static inline void on_verdict(void *ctx, const struct limits_verdict *v,
                       struct limits_hold *hold)
{
    struct got *g = ctx;
    g->calls++;
    g->v = *v;
    g->hold = hold;
}

static inline bool got_called(void *arg)
{
    return ((struct got *)arg)->calls > 0;
}

/* An ask for key_id with the request id "<key_id>-<n>" in idbuf. */
static inline struct limits_ask ask_for(const char *key_id, char *idbuf,
                                 size_t idlen, int n)
{
    struct limits_ask a;
    memset(&a, 0, sizeof(a));
    a.rule.key_id = key_id;
    snprintf(idbuf, idlen, "%s-%d", key_id, n);
    a.request_id = idbuf;
    return a;
}

#endif
