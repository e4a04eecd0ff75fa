/*
 * internal.h - what limits.c, redis.c and local.c share; nothing outside
 * src/limits/ includes it (the module's header is limits.h).
 */
#ifndef RL_LIMITS_INTERNAL_H
#define RL_LIMITS_INTERNAL_H

#include "limits/limits.h"

struct redis;

/* What the script and the local limiter answer, the same for both. */
struct limits_raw {
    enum limits_outcome outcome;
    uint64_t retry_after_ms; /* 0 for a budget refusal: limits.c fills it */
    int64_t nreq;            /* requests in the window (with this one) */
    int64_t ntok;            /* tokens reserved in the window */
    int64_t oldest_age_ms;   /* age of the oldest entry; -1 when empty */
    int64_t spent_nusd;      /* spent in the period */
    int64_t held_nusd;       /* held by requests in flight */
    uint64_t admitted_ms;    /* Redis: TIME of the decision (the score of
                                the window entry); local: 0 */
};

/* The budget period of one reserve. */
struct limits_when {
    uint64_t now_ms;      /* wall clock of the decision */
    char period[16];      /* limits_period_name(); "" without a budget */
    uint64_t end_ms;      /* end of the period, 0: never */
    uint64_t ttl_ms;      /* for the spent counter: past the end, or 0 */
};

enum hold_kind { HOLD_NONE, HOLD_LOCAL, HOLD_REDIS };

struct limits_hold {
    enum hold_kind kind;
    char *key_id;       /* heap copies (HOLD_NONE: NULL) */
    char *request_id;
    struct limits_when when;
    bool budget;        /* the rule had a budget */
    int64_t seed_nusd;  /* spent_seed_nusd of the ask */
    uint64_t seq;       /* HOLD_LOCAL: the entry's sequence number */
    /* HOLD_REDIS: what the entries say, so reconcile can name them. */
    bool tpm;             /* the rule had a tpm: the tokens are settled */
    bool fly;             /* an in-flight entry exists (a cap or budget) */
    int64_t tokens;       /* in the window member (0 without tpm) */
    int64_t held_nusd;    /* in the in-flight member (0 without budget) */
    uint64_t admitted_ms; /* the window entry's score, Redis time */
};

/* The clock of limits_clock_set(). */
uint64_t limits_now_ms(void);

/* local.c: decides ask at when->now_ms and, when admitted, fills the
 * sequence number of the entry into *seq. Thread-safe. */
void limits_local_reserve(const struct limits_ask *ask,
                          const struct limits_when *when,
                          struct limits_raw *out, uint64_t *seq);
/* local.c: settles a HOLD_LOCAL hold (not freed here). Thread-safe. */
void limits_local_reconcile(const struct limits_hold *h, int64_t tokens,
                            int64_t cost_nusd);

#define LIMITS_BATCH_MAX 64 /* asks or holds per script call */

/* redis.c: the answers to a batch of reserves: raws[i] for asks[i], or
 * raws NULL for all n on any failure (down, timeout, a bad reply). */
typedef void (*limits_raws_fn)(void *ctx, const struct limits_raw *raws,
                               int n);

/* redis.c: runs the reserve script once for n (1..LIMITS_BATCH_MAX) asks
 * of one key, rule and period (those of asks[0] and when); same contract
 * as redis_eval(). The asks are copied. */
enum rl_err limits_redis_reserve(struct redis *r,
                                 const struct limits_ask *const *asks,
                                 int n, const struct limits_when *when,
                                 limits_raws_fn cb, void *ctx);

/* redis.c: reads the reserve script's answer for n asks into raws; false
 * if it is not 1 + 7n integers in range (tests/fuzz/fuzz_redis.c). */
struct redisReply;
bool limits_redis_parse_reserve(const struct redisReply *r, int n,
                                struct limits_raw *raws);

/* One hold to settle and its real usage. */
struct limits_settle {
    struct limits_hold *hold;
    int64_t tokens;
    int64_t cost_nusd;
};

/* redis.c: runs the reconcile script once for n (1..LIMITS_BATCH_MAX)
 * holds of one key and period; done(ctx, ok) once if RL_OK. The holds
 * stay the caller's. Only worth calling for holds that
 * limits_redis_settles(). */
enum rl_err limits_redis_reconcile(struct redis *r,
                                   const struct limits_settle *items,
                                   int n, void (*done)(void *ctx, bool ok),
                                   void *ctx);

/* redis.c: false when reconciling h with tokens would change nothing in
 * Redis (no in-flight entry, and no tpm or the tokens as reserved). */
bool limits_redis_settles(const struct limits_hold *h, int64_t tokens);

#endif
