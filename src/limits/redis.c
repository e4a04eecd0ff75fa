/*
 * redis.c - the limits in Redis: one Lua script reserves, one reconciles,
 * each atomic, both over the keys of one API key under one hash tag:
 *
 *   relay:{k:<key_id>}:w      ZSET "<request_id>:<tokens>" -> admission ms
 *   relay:{k:<key_id>}:f      ZSET "<request_id>:<hold>" -> start ms (in
 *                             flight; only for a cap or a budget)
 *   relay:{k:<key_id>}:s      HASH tok -> sum of the w tokens, held -> sum
 *                             of the f holds
 *   relay:{k:<key_id>}:spent:<period>  STRING spent nano-dollars
 *
 * A member carries its own amount, so expiring entries needs no look-up:
 * the script reads the oldest members of a ZSET, adds the amounts after
 * their last ':' and removes them by rank. The client remembers what it
 * reserved (struct limits_hold), so reconcile swaps "<id>:<reserved>" for
 * "<id>:<used>" at the same score; the swap is also what makes it
 * idempotent (a retry finds no "<id>:<reserved>" to remove).
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

#define NKEYS 4
#define KEY_MAX (LIMITS_KEY_ID_MAX + 48)
#define NREPLY 8

/* KEYS: w f s spent. ARGV: request_id rpm tpm max_concurrent budget
 * tokens cost seed spent_ttl_ms. Returns {outcome, retry_ms, nreq, ntok,
 * oldest_age_ms, spent, held, now_ms}. O(log n) per entry added or
 * expired; nothing walks the window except a tpm refusal's Retry-After. */
static const char RESERVE_LUA[] =
    "local WIN, STALE = 60000, 600000\n"
    "local function s(x) return string.format('%d', x) end\n"
    "local function amount(m)\n"
    "  return tonumber(string.match(m, ':(%-?%d+)$')) or 0\n"
    "end\n"
    /* Removes z's entries scored <= upto, oldest first, in growing
     * chunks; returns their summed amounts and the oldest kept score. */
    "local function drop(z, upto)\n"
    "  local freed, chunk = 0, 4\n"
    "  while true do\n"
    "    local es = redis.call('ZRANGE', z, 0, chunk - 1, 'WITHSCORES')\n"
    "    local n, first = 0, nil\n"
    "    for i = 1, #es, 2 do\n"
    "      local sc = tonumber(es[i + 1])\n"
    "      if sc > upto then first = sc; break end\n"
    "      freed, n = freed + amount(es[i]), n + 1\n"
    "    end\n"
    "    if n > 0 then redis.call('ZREMRANGEBYRANK', z, 0, n - 1) end\n"
    "    if first or #es < 2 * chunk then return freed, first end\n"
    "    chunk = math.min(chunk * 4, 1024)\n"
    "  end\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local rid = ARGV[1]\n"
    "local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local maxc, budget = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local tokens, cost = tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local seed, ttl = ARGV[8], tonumber(ARGV[9])\n"
    "local win, fly, sum, spk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"
    "local usefly = maxc > 0 or budget > 0\n"
    "local tfreed, first = drop(win, now - WIN)\n"
    "local nreq = redis.call('ZCARD', win)\n"
    "local hfreed, nfly = 0, 0\n"
    "if usefly then\n"
    "  hfreed = drop(fly, now - STALE)\n"
    "  nfly = redis.call('ZCARD', fly)\n"
    "end\n"
    "local tok0, held0 = 0, 0\n"
    "if tpm > 0 or usefly or tfreed ~= 0 then\n"
    "  local st = redis.call('HMGET', sum, 'tok', 'held')\n"
    "  tok0, held0 = tonumber(st[1]) or 0, tonumber(st[2]) or 0\n"
    "end\n"
    "local ntok, held = tok0 - tfreed, held0 - hfreed\n"
    "if nreq == 0 then ntok = 0 end\n"
    "if usefly and nfly == 0 then held = 0 end\n"
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
    "  local need, acc, at = ntok + tokens - tpm, 0, 0\n"
    "  retry = WIN\n"
    "  while acc < need do\n"
    "    local es = redis.call('ZRANGE', win, at, at + 255, 'WITHSCORES')\n"
    "    for i = 1, #es, 2 do\n"
    "      acc = acc + amount(es[i])\n"
    "      if acc >= need then retry = tonumber(es[i + 1]) + WIN - now;"
    " break end\n"
    "    end\n"
    "    if #es < 512 then break end\n"
    "    at = at + 256\n"
    "  end\n"
    "elseif maxc > 0 and nfly >= maxc then outcome = 4; retry = 1000\n"
    "elseif budget > 0 and spent + held + cost > budget then outcome = 5\n"
    "end\n"
    "if outcome == 0 then\n"
    "  local tk = 0\n"
    "  if tpm > 0 then tk = tokens end\n"
    "  redis.call('ZADD', win, s(now), rid .. ':' .. s(tk))\n"
    "  redis.call('PEXPIRE', win, STALE + WIN)\n"
    "  nreq, ntok = nreq + 1, ntok + tk\n"
    "  if not first then first = now end\n"
    "  if usefly then\n"
    "    local h = 0\n"
    "    if budget > 0 and cost > 0 then h = cost end\n"
    "    redis.call('ZADD', fly, s(now), rid .. ':' .. s(h))\n"
    "    redis.call('PEXPIRE', fly, STALE + WIN)\n"
    "    held = held + h\n"
    "  end\n"
    "end\n"
    "if ntok ~= tok0 or held ~= held0 then\n"
    "  redis.call('HSET', sum, 'tok', s(ntok), 'held', s(held))\n"
    "  redis.call('PEXPIRE', sum, STALE + WIN)\n"
    "end\n"
    "local age = -1\n"
    "if first then age = now - first end\n"
    "return {outcome, retry, nreq, ntok, age, spent, held, now}\n";

/* KEYS as above. ARGV: request_id reserved_tokens used_tokens admitted_ms
 * fly(0/1) hold cost budget(0/1) seed ttl_ms. Idempotent: each change
 * happens only in the call whose ZREM removes the old member, so a
 * retried reconcile counts once. */
static const char RECONCILE_LUA[] =
    "local function s(x) return string.format('%d', x) end\n"
    "local rid = ARGV[1]\n"
    "local dtok, dheld = 0, 0\n"
    "if ARGV[2] ~= ARGV[3] and\n"
    "   redis.call('ZREM', KEYS[1], rid .. ':' .. ARGV[2]) == 1 then\n"
    "  redis.call('ZADD', KEYS[1], ARGV[4], rid .. ':' .. ARGV[3])\n"
    "  dtok = tonumber(ARGV[3]) - tonumber(ARGV[2])\n"
    "end\n"
    "if ARGV[5] == '1' and\n"
    "   redis.call('ZREM', KEYS[2], rid .. ':' .. ARGV[6]) == 1 then\n"
    "  dheld = -tonumber(ARGV[6])\n"
    "  local seed, ttl = ARGV[9], tonumber(ARGV[10])\n"
    "  if ARGV[8] == '1' and tonumber(ARGV[7]) > 0 then\n"
    "    if redis.call('EXISTS', KEYS[4]) == 0 then\n"
    "      if ttl > 0 then redis.call('SET', KEYS[4], seed, 'PX', ttl)\n"
    "      else redis.call('SET', KEYS[4], seed) end\n"
    "    end\n"
    "    redis.call('INCRBY', KEYS[4], ARGV[7])\n"
    "  end\n"
    "end\n"
    "if dtok ~= 0 then redis.call('HINCRBY', KEYS[3], 'tok', s(dtok)) end\n"
    "if dheld ~= 0 then redis.call('HINCRBY', KEYS[3], 'held', s(dheld))"
    " end\n"
    "if dtok ~= 0 or dheld ~= 0 then\n"
    "  redis.call('PEXPIRE', KEYS[3], 660000)\n"
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

/* The four key names of key_id; period "" gives a spent key never
 * used. */
struct keyset {
    char names[NKEYS][KEY_MAX];
    const char *v[NKEYS];
};

static void keys_make(struct keyset *ks, const char *key_id,
                      const char *period)
{
    static const char *const suffix[NKEYS - 1] = {"w", "f", "s"};
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
    char s[10][24];
    const char *v[10];
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

/* Reads the script's 8 integers into raw; false if the reply is not so. */
static bool parse_raw(const struct redisReply *r, struct limits_raw *raw)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != NREPLY) {
        return false;
    }
    long long v[NREPLY];
    for (int i = 0; i < NREPLY; i++) {
        if (r->element[i]->type != REDIS_REPLY_INTEGER) {
            return false;
        }
        v[i] = r->element[i]->integer;
    }
    if (v[0] < LIMITS_ADMITTED || v[0] > LIMITS_OVER_BUDGET || v[1] < 0 ||
        v[7] < 0) {
        return false;
    }
    raw->outcome = (enum limits_outcome)v[0];
    raw->retry_after_ms = (uint64_t)v[1];
    raw->nreq = v[2];
    raw->ntok = v[3];
    raw->oldest_age_ms = v[4];
    raw->spent_nusd = v[5];
    raw->held_nusd = v[6];
    raw->admitted_ms = (uint64_t)v[7];
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

bool limits_redis_settles(const struct limits_hold *h, int64_t tokens)
{
    return h->fly || (h->tpm && tokens != h->tokens);
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
    num(&n, 1, h->tokens);
    num(&n, 2, h->tpm ? tokens : h->tokens);
    num(&n, 3, (int64_t)h->admitted_ms);
    num(&n, 4, h->fly ? 1 : 0);
    num(&n, 5, h->held_nusd);
    num(&n, 6, cost_nusd);
    num(&n, 7, h->budget ? 1 : 0);
    num(&n, 8, h->seed_nusd);
    num(&n, 9, (int64_t)h->when.ttl_ms);
    struct call *c = rl_calloc(1, sizeof(*c));
    c->done = done;
    c->ctx = ctx;
    enum rl_err err = redis_eval(r, &reconcile_script, NKEYS, ks.v, NULL, 10,
                                 n.v, NULL, on_reconcile_reply, c);
    if (err != RL_OK) {
        free(c);
    }
    return err;
}
