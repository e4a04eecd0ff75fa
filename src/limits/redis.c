/*
 * redis.c - the limits in Redis: one Lua script reserves, one reconciles,
 * each atomic, both over the keys of one API key under one hash tag:
 *
 *   relay:{k:<key_id>}:win    ZSET request_id -> admission ms (window)
 *   relay:{k:<key_id>}:wtok   HASH request_id -> tokens (reserved/actual)
 *   relay:{k:<key_id>}:fly    ZSET request_id -> start ms (in flight)
 *   relay:{k:<key_id>}:hold   HASH request_id -> budget hold, nano-dollars
 *   relay:{k:<key_id>}:sum    HASH tok -> sum of wtok, held -> sum of hold
 *   relay:{k:<key_id>}:spent:<period>  STRING spent nano-dollars
 *
 * Time is Redis' TIME inside the script, so every instance shares one
 * clock. The decisions are those of local.c's decide(), in the same order;
 * a change to one is a change to both (tests/unit/test_limits_*.c run the
 * same cases against each). Lua numbers are doubles: integers are exact
 * up to 2^53, i.e. $9M in nano-dollars or 9e15 tokens, far above any
 * budget or window. Read RESERVE_LUA first.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits/internal.h"
#include "redis/redis.h"
#include "util/alloc.h"

#define NKEYS 6
#define KEY_MAX (LIMITS_KEY_ID_MAX + 48)

/* KEYS: win wtok fly hold sum spent. ARGV: request_id rpm tpm
 * max_concurrent budget tokens cost seed spent_ttl_ms. Returns {outcome,
 * retry_ms, nreq, ntok, oldest_age_ms, spent, held}. */
static const char RESERVE_LUA[] =
    "local WIN, STALE = 60000, 600000\n"
    "local function s(x) return string.format('%d', x) end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local rid = ARGV[1]\n"
    "local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local maxc, budget = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local tokens, cost = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local seed, ttl = ARGV[8], tonumber(ARGV[9])\n"
    "local win, wtok, fly, hold, sum, spk = KEYS[1], KEYS[2], KEYS[3],\n"
    "  KEYS[4], KEYS[5], KEYS[6]\n"
    "local function drop(z, h, field, upto)\n"
    "  local ids = redis.call('ZRANGEBYSCORE', z, '-inf', s(upto))\n"
    "  if #ids == 0 then return end\n"
    "  local freed = 0\n"
    "  for _, id in ipairs(ids) do\n"
    "    freed = freed + tonumber(redis.call('HGET', h, id) or 0)\n"
    "    redis.call('HDEL', h, id)\n"
    "  end\n"
    "  redis.call('ZREMRANGEBYSCORE', z, '-inf', s(upto))\n"
    "  redis.call('HINCRBY', sum, field, s(-freed))\n"
    "end\n"
    "drop(win, wtok, 'tok', now - WIN)\n"
    "drop(fly, hold, 'held', now - STALE)\n"
    "local nreq = redis.call('ZCARD', win)\n"
    "local nfly = redis.call('ZCARD', fly)\n"
    "local ntok = tonumber(redis.call('HGET', sum, 'tok') or 0)\n"
    "local held = tonumber(redis.call('HGET', sum, 'held') or 0)\n"
    "if nreq == 0 and ntok ~= 0 then ntok = 0; redis.call('HSET', sum,"
    " 'tok', 0) end\n"
    "if nfly == 0 and held ~= 0 then held = 0; redis.call('HSET', sum,"
    " 'held', 0) end\n"
    "local spent = 0\n"
    "if budget > 0 then\n"
    "  local s = redis.call('GET', spk)\n"
    "  if s then spent = tonumber(s) else\n"
    "    spent = tonumber(seed)\n"
    "    if ttl > 0 then redis.call('SET', spk, seed, 'PX', ttl)\n"
    "    else redis.call('SET', spk, seed) end\n"
    "  end\n"
    "end\n"
    "local outcome, retry = 0, 0\n"
    "if tpm > 0 and tokens > tpm then outcome = 3\n"
    "elseif rpm > 0 and nreq + 1 > rpm then\n"
    "  outcome = 1\n"
    "  local k = nreq + 1 - rpm\n"
    "  local e = redis.call('ZRANGE', win, k - 1, k - 1, 'WITHSCORES')\n"
    "  retry = tonumber(e[2]) + WIN - now\n"
    "elseif tpm > 0 and ntok + tokens > tpm then\n"
    "  outcome = 2\n"
    "  local need, acc = ntok + tokens - tpm, 0\n"
    "  local es = redis.call('ZRANGE', win, 0, -1, 'WITHSCORES')\n"
    "  retry = WIN\n"
    "  for i = 1, #es, 2 do\n"
    "    acc = acc + tonumber(redis.call('HGET', wtok, es[i]) or 0)\n"
    "    if acc >= need then retry = tonumber(es[i + 1]) + WIN - now;"
    " break end\n"
    "  end\n"
    "elseif maxc > 0 and nfly >= maxc then outcome = 4; retry = 1000\n"
    "elseif budget > 0 and spent + held + cost > budget then outcome = 5\n"
    "end\n"
    "if outcome == 0 then\n"
    "  redis.call('ZADD', win, s(now), rid)\n"
    "  redis.call('HSET', wtok, rid, ARGV[6])\n"
    "  redis.call('HINCRBY', sum, 'tok', ARGV[6])\n"
    "  redis.call('ZADD', fly, s(now), rid)\n"
    "  if budget > 0 and cost > 0 then\n"
    "    redis.call('HSET', hold, rid, ARGV[7])\n"
    "    redis.call('HINCRBY', sum, 'held', ARGV[7])\n"
    "    held = held + cost\n"
    "  end\n"
    "  nreq, ntok = nreq + 1, ntok + tokens\n"
    "  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], STALE + WIN) end\n"
    "end\n"
    "local o = redis.call('ZRANGE', win, 0, 0, 'WITHSCORES')\n"
    "local age = -1\n"
    "if #o > 0 then age = now - tonumber(o[2]) end\n"
    "return {outcome, retry, nreq, ntok, age, spent, held}\n";

/* KEYS as above. ARGV: request_id tokens cost budget(0/1) seed ttl_ms.
 * Idempotent: the spend is added only by the call that ends the in-flight
 * entry, so a retried reconcile counts once. */
static const char RECONCILE_LUA[] =
    "local function s(x) return string.format('%d', x) end\n"
    "local rid = ARGV[1]\n"
    "local tokens, cost = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local budget, seed, ttl = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])\n"
    "local old = redis.call('HGET', KEYS[2], rid)\n"
    "if old and redis.call('ZSCORE', KEYS[1], rid) then\n"
    "  redis.call('HINCRBY', KEYS[5], 'tok', s(tokens - tonumber(old)))\n"
    "  redis.call('HSET', KEYS[2], rid, ARGV[2])\n"
    "end\n"
    "if redis.call('ZREM', KEYS[3], rid) == 1 then\n"
    "  local h = redis.call('HGET', KEYS[4], rid)\n"
    "  if h then\n"
    "    redis.call('HDEL', KEYS[4], rid)\n"
    "    redis.call('HINCRBY', KEYS[5], 'held', s(-tonumber(h)))\n"
    "  end\n"
    "  if budget > 0 and cost > 0 then\n"
    "    if redis.call('EXISTS', KEYS[6]) == 0 then\n"
    "      if ttl > 0 then redis.call('SET', KEYS[6], seed, 'PX', ttl)\n"
    "      else redis.call('SET', KEYS[6], seed) end\n"
    "    end\n"
    "    redis.call('INCRBY', KEYS[6], ARGV[3])\n"
    "  end\n"
    "end\n"
    "return 1\n";

static struct redis_script reserve_script;
static struct redis_script reconcile_script;
static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void init_scripts(void)
{
    redis_script_init(&reserve_script, RESERVE_LUA);
    redis_script_init(&reconcile_script, RECONCILE_LUA);
}

/* The six key names of key_id; period "" gives a spent key never used. */
struct keyset {
    char names[NKEYS][KEY_MAX];
    const char *v[NKEYS];
};

static void keys_make(struct keyset *ks, const char *key_id,
                      const char *period)
{
    static const char *const suffix[NKEYS - 1] = {"win", "wtok", "fly",
                                                  "hold", "sum"};
    for (int i = 0; i < NKEYS - 1; i++) {
        snprintf(ks->names[i], KEY_MAX, "relay:{k:%s}:%s", key_id,
                 suffix[i]);
    }
    snprintf(ks->names[NKEYS - 1], KEY_MAX, "relay:{k:%s}:spent:%s", key_id,
             period);
    for (int i = 0; i < NKEYS; i++) {
        ks->v[i] = ks->names[i];
    }
}

/* Decimal text of n arguments, for ARGV. */
struct nums {
    char s[9][24];
    const char *v[9];
};

static void num(struct nums *n, int i, int64_t v)
{
    snprintf(n->s[i], sizeof(n->s[i]), "%lld", (long long)v);
    n->v[i] = n->s[i];
}

/* ---------------------------------------------------------------------
 * Reserve
 * ------------------------------------------------------------------- */

struct call {
    limits_raw_fn raw_cb;
    void (*done)(void *ctx, bool ok);
    void *ctx;
};

/* Reads the script's 7 integers into raw; false if the reply is not so. */
static bool parse_raw(const struct redisReply *r, struct limits_raw *raw)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 7) {
        return false;
    }
    long long v[7];
    for (int i = 0; i < 7; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER) {
            return false;
        }
        v[i] = r->element[i]->integer;
    }
    if (v[0] < LIMITS_ADMITTED || v[0] > LIMITS_OVER_BUDGET || v[1] < 0) {
        return false;
    }
    raw->outcome = (enum limits_outcome)v[0];
    raw->retry_after_ms = (uint64_t)v[1];
    raw->nreq = v[2];
    raw->ntok = v[3];
    raw->oldest_age_ms = v[4];
    raw->spent_nusd = v[5];
    raw->held_nusd = v[6];
    return true;
}

static void on_reserve_reply(void *ctx, struct redisReply *reply,
                             enum rl_err err)
{
    struct call *c = ctx;
    struct limits_raw raw;
    bool ok = err == RL_OK && parse_raw(reply, &raw);
    c->raw_cb(c->ctx, ok ? &raw : NULL);
    free(c);
}

enum rl_err limits_redis_reserve(struct redis *r,
                                 const struct limits_ask *ask,
                                 const struct limits_when *when,
                                 limits_raw_fn cb, void *ctx)
{
    pthread_once(&scripts_once, init_scripts);
    struct keyset ks;
    keys_make(&ks, ask->rule.key_id, when->period);
    struct nums n;
    n.v[0] = ask->request_id;
    num(&n, 1, ask->rule.rpm);
    num(&n, 2, ask->rule.tpm);
    num(&n, 3, ask->rule.max_concurrent);
    num(&n, 4, ask->rule.budget_nusd);
    num(&n, 5, ask->tokens);
    num(&n, 6, ask->cost_nusd);
    num(&n, 7, ask->spent_seed_nusd);
    num(&n, 8, (int64_t)when->ttl_ms);
    struct call *c = rl_calloc(1, sizeof(*c));
    c->raw_cb = cb;
    c->ctx = ctx;
    enum rl_err err = redis_eval(r, &reserve_script, NKEYS, ks.v, NULL, 9,
                                 n.v, NULL, on_reserve_reply, c);
    if (err != RL_OK) {
        free(c);
    }
    return err;
}

/* ---------------------------------------------------------------------
 * Reconcile
 * ------------------------------------------------------------------- */

static void on_reconcile_reply(void *ctx, struct redisReply *reply,
                               enum rl_err err)
{
    struct call *c = ctx;
    bool ok = err == RL_OK && reply->type == REDIS_REPLY_INTEGER;
    if (c->done) {
        c->done(c->ctx, ok);
    }
    free(c);
}

enum rl_err limits_redis_reconcile(struct redis *r,
                                   const struct limits_hold *h,
                                   int64_t tokens, int64_t cost_nusd,
                                   void (*done)(void *ctx, bool ok),
                                   void *ctx)
{
    pthread_once(&scripts_once, init_scripts);
    struct keyset ks;
    keys_make(&ks, h->key_id, h->when.period);
    struct nums n;
    n.v[0] = h->request_id;
    num(&n, 1, tokens);
    num(&n, 2, cost_nusd);
    num(&n, 3, h->budget ? 1 : 0);
    num(&n, 4, h->seed_nusd);
    num(&n, 5, (int64_t)h->when.ttl_ms);
    struct call *c = rl_calloc(1, sizeof(*c));
    c->done = done;
    c->ctx = ctx;
    enum rl_err err = redis_eval(r, &reconcile_script, NKEYS, ks.v, NULL, 6,
                                 n.v, NULL, on_reconcile_reply, c);
    if (err != RL_OK) {
        free(c);
    }
    return err;
}
