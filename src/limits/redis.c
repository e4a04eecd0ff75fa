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
#include <assert.h>
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
#define NREPLY 7 /* integers per ask in the reserve answer */

/* KEYS: w f s spent. ARGV: rpm tpm max_concurrent budget seed
 * spent_ttl_ms, then request_id tokens cost for each ask of the batch
 * (all of one key and rule). Decides the asks in order, as if each were
 * its own call at the same instant. Returns {now_ms, then outcome
 * retry_ms nreq ntok oldest_age_ms spent held for each ask}. O(log n) per
 * entry added or expired; nothing walks the window except a tpm
 * refusal's Retry-After. */
static const char RESERVE_LUA[] =
    "local WIN, STALE = 60000, 600000\n"
    "local function s(x) return string.format('%d', x) end\n"
    "local function amount(m)\n"
    "  return tonumber(string.match(m, ':(%-?%d+)$')) or 0\n"
    "end\n"
    /* Removes z's entries scored <= upto, oldest first, in growing
     * chunks; returns their summed amounts and the oldest kept score. */
    "local function drop(z, upto)\n"
    "  local freed, chunk = 0, 8\n"
    "  while true do\n"
    "    local es = redis.call('ZRANGE', z, '0', s(chunk - 1),"
    " 'WITHSCORES')\n"
    "    local n, first = 0, nil\n"
    "    for i = 1, #es, 2 do\n"
    "      local sc = tonumber(es[i + 1])\n"
    "      if sc > upto then first = sc; break end\n"
    "      freed, n = freed + amount(es[i]), n + 1\n"
    "    end\n"
    "    if n > 0 then redis.call('ZREMRANGEBYRANK', z, '0', s(n - 1)) end\n"
    "    if first or #es < 2 * chunk then return freed, first end\n"
    "    chunk = math.min(chunk * 4, 1024)\n"
    "  end\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local maxc, budget = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local seed, ttl = ARGV[5], tonumber(ARGV[6])\n"
    "local win, fly, sum, spk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n"
    "local usefly = maxc > 0 or budget > 0\n"
    "local tfreed, first = drop(win, now - WIN)\n"
    "local nreq = redis.call('ZCARD', win)\n"
    "local nold = nreq\n"
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
    /* The k-th oldest window entry's Retry-After; entries this batch
     * admitted (not yet added) are at now. */
    "local function at_rank(k)\n"
    "  if k > nold then return WIN end\n"
    "  local e = redis.call('ZRANGE', win, s(k - 1), s(k - 1), 'WITHSCORES')\n"
    "  return tonumber(e[2]) + WIN - now\n"
    "end\n"
    "local function tokens_free(need)\n"
    "  local acc, at = 0, 0\n"
    "  while true do\n"
    "    local es = redis.call('ZRANGE', win, s(at), s(at + 255),"
    " 'WITHSCORES')\n"
    "    for i = 1, #es, 2 do\n"
    "      acc = acc + amount(es[i])\n"
    "      if acc >= need then return tonumber(es[i + 1]) + WIN - now end\n"
    "    end\n"
    "    if #es < 512 then return WIN end\n"
    "    at = at + 256\n"
    "  end\n"
    "end\n"
    "local out, wadd, fadd = {now}, {}, {}\n"
    "for j = 7, #ARGV, 3 do\n"
    "  local rid, tokens, cost = ARGV[j], tonumber(ARGV[j + 1]),"
    " tonumber(ARGV[j + 2])\n"
    "  local outcome, retry = 0, 0\n"
    "  if tpm > 0 and tokens > tpm then outcome = 3\n"
    "  elseif rpm > 0 and nreq + 1 > rpm then\n"
    "    outcome = 1; retry = at_rank(nreq + 1 - rpm)\n"
    "  elseif tpm > 0 and ntok + tokens > tpm then\n"
    "    outcome = 2; retry = tokens_free(ntok + tokens - tpm)\n"
    "  elseif maxc > 0 and nfly >= maxc then outcome = 4; retry = 1000\n"
    "  elseif budget > 0 and spent + held + cost > budget then outcome = 5\n"
    "  end\n"
    "  if outcome == 0 then\n"
    "    local tk = 0\n"
    "    if tpm > 0 then tk = tokens end\n"
    "    wadd[#wadd + 1] = s(now)\n"
    "    wadd[#wadd + 1] = rid .. ':' .. s(tk)\n"
    "    nreq, ntok = nreq + 1, ntok + tk\n"
    "    if not first then first = now end\n"
    "    if usefly then\n"
    "      local h = 0\n"
    "      if budget > 0 and cost > 0 then h = cost end\n"
    "      fadd[#fadd + 1] = s(now)\n"
    "      fadd[#fadd + 1] = rid .. ':' .. s(h)\n"
    "      nfly, held = nfly + 1, held + h\n"
    "    end\n"
    "  end\n"
    "  local age = -1\n"
    "  if first then age = now - first end\n"
    "  local o = #out\n"
    "  out[o + 1], out[o + 2], out[o + 3], out[o + 4] = outcome, retry, nreq,"
    " ntok\n"
    "  out[o + 5], out[o + 6], out[o + 7] = age, spent, held\n"
    "end\n"
    "if #wadd > 0 then\n"
    "  redis.call('ZADD', win, unpack(wadd))\n"
    "  redis.call('PEXPIRE', win, '660000')\n"
    "end\n"
    "if #fadd > 0 then\n"
    "  redis.call('ZADD', fly, unpack(fadd))\n"
    "  redis.call('PEXPIRE', fly, '660000')\n"
    "end\n"
    "if ntok ~= tok0 or held ~= held0 then\n"
    "  redis.call('HSET', sum, 'tok', s(ntok), 'held', s(held))\n"
    "  redis.call('PEXPIRE', sum, '660000')\n"
    "end\n"
    "return out\n";

/* KEYS as above (one key, one period). ARGV, for each hold of the batch:
 * request_id reserved_tokens used_tokens admitted_ms fly(0/1) hold cost
 * budget(0/1) seed ttl_ms. Idempotent: each change happens only in the
 * call whose ZREM removes the old member, so a retried reconcile counts
 * once. */
static const char RECONCILE_LUA[] =
    "local function s(x) return string.format('%d', x) end\n"
    "local dtok, dheld, wadd = 0, 0, {}\n"
    "for j = 1, #ARGV, 10 do\n"
    "  local rid = ARGV[j]\n"
    "  if ARGV[j + 1] ~= ARGV[j + 2] and\n"
    "     redis.call('ZREM', KEYS[1], rid .. ':' .. ARGV[j + 1]) == 1 then\n"
    "    wadd[#wadd + 1] = ARGV[j + 3]\n"
    "    wadd[#wadd + 1] = rid .. ':' .. ARGV[j + 2]\n"
    "    dtok = dtok + tonumber(ARGV[j + 2]) - tonumber(ARGV[j + 1])\n"
    "  end\n"
    "  if ARGV[j + 4] == '1' and\n"
    "     redis.call('ZREM', KEYS[2], rid .. ':' .. ARGV[j + 5]) == 1 then\n"
    "    dheld = dheld - tonumber(ARGV[j + 5])\n"
    "    if ARGV[j + 7] == '1' and tonumber(ARGV[j + 6]) > 0 then\n"
    "      if redis.call('EXISTS', KEYS[4]) == 0 then\n"
    "        if tonumber(ARGV[j + 9]) > 0 then\n"
    "          redis.call('SET', KEYS[4], ARGV[j + 8], 'PX', ARGV[j + 9])\n"
    "        else redis.call('SET', KEYS[4], ARGV[j + 8]) end\n"
    "      end\n"
    "      redis.call('INCRBY', KEYS[4], ARGV[j + 6])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if #wadd > 0 then redis.call('ZADD', KEYS[1], unpack(wadd)) end\n"
    "if dtok ~= 0 then redis.call('HINCRBY', KEYS[3], 'tok', s(dtok)) end\n"
    "if dheld ~= 0 then redis.call('HINCRBY', KEYS[3], 'held', s(dheld))"
    " end\n"
    "if dtok ~= 0 or dheld ~= 0 then\n"
    "  redis.call('PEXPIRE', KEYS[3], '660000')\n"
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

/* The ARGV of one script call: decimal texts and pointers to them. */
struct args {
    int n;            /* arguments so far */
    const char **v;   /* cap pointers */
    char (*text)[24]; /* cap decimal texts, for num() */
};

static void args_init(struct args *a, int cap)
{
    a->n = 0;
    a->v = rl_malloc((size_t)cap * sizeof(*a->v));
    a->text = rl_malloc((size_t)cap * sizeof(*a->text));
}

static void args_free(struct args *a)
{
    free(a->v);
    free(a->text);
}

static void num(struct args *a, int64_t v)
{
    snprintf(a->text[a->n], sizeof(a->text[0]), "%lld", (long long)v);
    a->v[a->n] = a->text[a->n];
    a->n++;
}

static void str(struct args *a, const char *v)
{
    a->v[a->n++] = v;
}

/* ---------------------------------------------------------------------
 * Reserve
 * ------------------------------------------------------------------- */

struct call {
    limits_raws_fn raws_cb;
    void (*done)(void *ctx, bool ok);
    void *ctx;
    int n;            /* asks in the batch */
};

/* Reads one ask's 7 integers from v into raw; false if out of range. */
static bool raw_from(const long long *v, uint64_t now_ms,
                     struct limits_raw *raw)
{
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
    raw->admitted_ms = now_ms;
    return true;
}

bool limits_redis_parse_reserve(const struct redisReply *r, int n,
                                struct limits_raw *raws)
{
    size_t want = 1 + (size_t)NREPLY * (size_t)n;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != want) {
        return false;
    }
    long long v[NREPLY];
    if (r->element[0]->type != REDIS_REPLY_INTEGER ||
        r->element[0]->integer < 0) {
        return false;
    }
    uint64_t now_ms = (uint64_t)r->element[0]->integer;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < NREPLY; k++) {
            const struct redisReply *e = r->element[1 + i * NREPLY + k];
            if (e->type != REDIS_REPLY_INTEGER) {
                return false;
            }
            v[k] = e->integer;
        }
        if (!raw_from(v, now_ms, &raws[i])) {
            return false;
        }
    }
    return true;
}

static void on_reserve_reply(void *ctx, struct redisReply *reply,
                             enum rl_err err)
{
    struct call *c = ctx;
    struct limits_raw raws[LIMITS_BATCH_MAX];
    bool ok = err == RL_OK && limits_redis_parse_reserve(reply, c->n, raws);
    c->raws_cb(c->ctx, ok ? raws : NULL, c->n);
    free(c);
}

enum rl_err limits_redis_reserve(struct redis *r,
                                 const struct limits_ask *const *asks,
                                 int n, const struct limits_when *when,
                                 limits_raws_fn cb, void *ctx)
{
    assert(n > 0 && n <= LIMITS_BATCH_MAX);
    pthread_once(&scripts_once, init_scripts);
    const struct limits_ask *a0 = asks[0];
    struct keyset ks;
    keys_make(&ks, a0->rule.key_id, when->period);
    struct args a;
    args_init(&a, 6 + 3 * n);
    num(&a, a0->rule.rpm);
    num(&a, a0->rule.tpm);
    num(&a, a0->rule.max_concurrent);
    num(&a, a0->rule.budget_nusd);
    num(&a, a0->spent_seed_nusd);
    num(&a, (int64_t)when->ttl_ms);
    for (int i = 0; i < n; i++) {
        str(&a, asks[i]->request_id);
        num(&a, asks[i]->tokens);
        num(&a, asks[i]->cost_nusd);
    }
    struct call *c = rl_calloc(1, sizeof(*c));
    c->raws_cb = cb;
    c->ctx = ctx;
    c->n = n;
    enum rl_err err = redis_eval(r, &reserve_script, NKEYS, ks.v, NULL, a.n,
                                 a.v, NULL, on_reserve_reply, c);
    args_free(&a);
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
                                   const struct limits_settle *items,
                                   int n, void (*done)(void *ctx, bool ok),
                                   void *ctx)
{
    assert(n > 0 && n <= LIMITS_BATCH_MAX);
    pthread_once(&scripts_once, init_scripts);
    const struct limits_hold *h0 = items[0].hold;
    struct keyset ks;
    keys_make(&ks, h0->key_id, h0->when.period);
    struct args a;
    args_init(&a, 10 * n);
    for (int i = 0; i < n; i++) {
        const struct limits_hold *h = items[i].hold;
        str(&a, h->request_id);
        num(&a, h->tokens);
        num(&a, h->tpm ? items[i].tokens : h->tokens);
        num(&a, (int64_t)h->admitted_ms);
        num(&a, h->fly ? 1 : 0);
        num(&a, h->held_nusd);
        num(&a, items[i].cost_nusd);
        num(&a, h->budget ? 1 : 0);
        num(&a, h->seed_nusd);
        num(&a, (int64_t)h->when.ttl_ms);
    }
    struct call *c = rl_calloc(1, sizeof(*c));
    c->done = done;
    c->ctx = ctx;
    enum rl_err err = redis_eval(r, &reconcile_script, NKEYS, ks.v, NULL, a.n,
                                 a.v, NULL, on_reconcile_reply, c);
    args_free(&a);
    if (err != RL_OK) {
        free(c);
    }
    return err;
}
