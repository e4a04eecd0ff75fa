/*
 * redis_seen.h - what one redis_command() callback saw, for the tests of
 * src/redis/ (test_redis_client.c, test_redis_cluster.c): a reply_fn that
 * records the call, and loop conditions for harness_run_until().
 */
#ifndef RL_REDIS_SEEN_H
#define RL_REDIS_SEEN_H

#include <hiredis/hiredis.h>
#include <stdio.h>

#include "redis/redis.h"

/* What one callback saw. */
struct seen {
    int calls;
    enum rl_err err;
    long long integer;
    char str[160];
    int type;
};

static void on_reply(void *ctx, struct redisReply *reply, enum rl_err err)
{
    struct seen *s = ctx;
    s->calls++;
    s->err = err;
    if (reply) {
        s->type = reply->type;
        s->integer = reply->integer;
        if (reply->str) {
            snprintf(s->str, sizeof(s->str), "%s", reply->str);
        }
    }
}

static bool client_up(void *arg)
{
    return redis_up(arg);
}

static bool seen_called(void *arg)
{
    return ((struct seen *)arg)->calls > 0;
}

#endif
