/*
 * limits.c - the entry of step 2: chooses Redis (redis.c) or the
 * in-process limiter (local.c) for each reserve, turns their common answer
 * into a verdict, keeps the fail-open/fail-closed policy, queues
 * reconciles while Redis is down, and writes the x-ratelimit-* headers.
 *
 * It does not decide anything itself: the arithmetic lives twice, in the
 * Lua script and in local.c, with the same tests. Reserves and reconciles
 * for Redis are gathered per key during a loop iteration and sent as one
 * script call each (a batch), from a prepare handle just before the loop
 * polls: the script's fixed cost is paid once per batch, not per request.
 * Read limits_reserve() first, then send_batches() and on_raw().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "limits/internal.h"
#include "redis/redis.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/fmt.h"
#include "util/log.h"

#define DAY_MS 86400000ull
#define RETRY_QUEUE_MAX 4096 /* reconciles kept per worker while down */

/* A Redis reconcile waiting for Redis to come back. */
struct requeue {
    struct limits_hold *hold;
    int64_t tokens;
    int64_t cost_nusd;
    struct requeue *next;
};

/* Reserves or reconciles of one key (and rule, and period) gathered
 * during one loop iteration, for one script call. */
struct batch {
    bool reconcile;               /* holds to settle, else reserves */
    int n;                        /* items used */
    struct limits_pending *asks[LIMITS_BATCH_MAX];  /* reserves */
    struct limits_settle items[LIMITS_BATCH_MAX];   /* reconciles */
    struct limits *l;
    struct batch *next;
};

struct limits {
    struct redis *redis;          /* NULL: in-process only */
    uv_prepare_t *sender;         /* sends the batches; own allocation,
                                     freed by its close callback */
    struct batch *batches;        /* gathered this iteration, not sent */
    enum limits_policy policy;
    bool closing;                 /* in limits_free */
    bool down_logged;             /* "redis down" was logged, not "back" */
    struct limits_pending *pendings; /* reserves waiting on Redis */
    struct requeue *queue;        /* reconciles to send when Redis is up */
    struct requeue **queue_tail;
    size_t nqueue;
    struct limits_stats stats;
};

struct limits_pending {
    struct limits *l;
    struct limits_pending *prev, *next;
    limits_cb cb;                 /* NULL once cancelled */
    void *ctx;
    struct limits_ask ask;        /* strings point at the copies below */
    char *key_id;
    char *request_id;
    struct limits_when when;
};

static uint64_t (*clock_fn)(void);

void limits_clock_set(uint64_t (*wall_ms)(void))
{
    clock_fn = wall_ms;
}

uint64_t limits_now_ms(void)
{
    return clock_fn ? clock_fn() : clock_wall_ms();
}

/* ---------------------------------------------------------------------
 * Periods and verdicts
 * ------------------------------------------------------------------- */

void limits_period_name(enum limits_period p, uint64_t wall_ms, char *out,
                        size_t n, uint64_t *end_ms)
{
    time_t secs = (time_t)(wall_ms / 1000);
    uint64_t day0 = wall_ms - wall_ms % DAY_MS;
    struct tm tm;
    gmtime_r(&secs, &tm);
    *end_ms = 0;
    switch (p) {
    case LIMITS_PERIOD_DAY:
        snprintf(out, n, "d%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday);
        *end_ms = day0 + DAY_MS;
        break;
    case LIMITS_PERIOD_WEEK: {
        uint64_t monday = day0 - (uint64_t)((tm.tm_wday + 6) % 7) * DAY_MS;
        time_t thu = (time_t)((monday + 3 * DAY_MS) / 1000);
        struct tm th; /* the ISO year is the year of the week's Thursday */
        gmtime_r(&thu, &th);
        snprintf(out, n, "w%04dW%02d", th.tm_year + 1900, th.tm_yday / 7 + 1);
        *end_ms = monday + 7 * DAY_MS;
        break;
    }
    case LIMITS_PERIOD_MONTH: {
        snprintf(out, n, "m%04d%02d", tm.tm_year + 1900, tm.tm_mon + 1);
        struct tm next = {.tm_year = tm.tm_year, .tm_mon = tm.tm_mon + 1,
                          .tm_mday = 1};
        *end_ms = (uint64_t)timegm(&next) * 1000;
        break;
    }
    case LIMITS_PERIOD_TOTAL:
        snprintf(out, n, "t");
        break;
    default:
        snprintf(out, n, "%s", "");
        break;
    }
}

static void when_make(const struct limits_rule *r, struct limits_when *w)
{
    memset(w, 0, sizeof(*w));
    w->now_ms = limits_now_ms();
    if (r->budget_nusd <= 0) {
        return;
    }
    enum limits_period p = r->period == LIMITS_PERIOD_NONE
                               ? LIMITS_PERIOD_TOTAL
                               : r->period;
    limits_period_name(p, w->now_ms, w->period, sizeof(w->period),
                       &w->end_ms);
    /* The counter outlives its period by a day, for late reconciles. */
    w->ttl_ms = w->end_ms ? w->end_ms - w->now_ms + DAY_MS : 0;
}

static int64_t at_least_0(int64_t v)
{
    return v > 0 ? v : 0;
}

static void verdict_fill(const struct limits_ask *a,
                         const struct limits_when *w,
                         const struct limits_raw *raw, bool local,
                         struct limits_verdict *v)
{
    const struct limits_rule *r = &a->rule;
    memset(v, 0, sizeof(*v));
    v->outcome = raw->outcome;
    v->retry_after_ms = raw->retry_after_ms;
    if (raw->outcome == LIMITS_OVER_BUDGET && w->end_ms > w->now_ms) {
        v->retry_after_ms = w->end_ms - w->now_ms;
    }
    uint64_t reset = raw->oldest_age_ms >= 0 &&
                             raw->oldest_age_ms < LIMITS_WINDOW_MS
                         ? (uint64_t)(LIMITS_WINDOW_MS - raw->oldest_age_ms)
                         : 0;
    if (r->rpm > 0) {
        v->limit_requests = r->rpm;
        v->remaining_requests = at_least_0(r->rpm - raw->nreq);
        v->reset_requests_ms = reset;
    }
    if (r->tpm > 0) {
        v->limit_tokens = r->tpm;
        v->remaining_tokens = at_least_0(r->tpm - raw->ntok);
        v->reset_tokens_ms = reset;
    }
    if (r->budget_nusd > 0) {
        v->budget_nusd = r->budget_nusd;
        v->budget_remaining_nusd = at_least_0(r->budget_nusd -
                                              raw->spent_nusd -
                                              raw->held_nusd);
    }
    v->local = local;
}

static struct limits_hold *hold_new(enum hold_kind kind,
                                    const struct limits_ask *a,
                                    const struct limits_when *w)
{
    struct limits_hold *h = rl_calloc(1, sizeof(*h));
    h->kind = kind;
    if (kind != HOLD_NONE) {
        h->key_id = rl_strdup(a->rule.key_id);
        h->request_id = rl_strdup(a->request_id);
        h->when = *w;
        h->budget = a->rule.budget_nusd > 0;
        h->seed_nusd = a->spent_seed_nusd;
    }
    return h;
}

static void hold_free(struct limits_hold *h)
{
    free(h->key_id);
    free(h->request_id);
    free(h);
}

/* ---------------------------------------------------------------------
 * Deciding in-process
 * ------------------------------------------------------------------- */

/* Decides a with local.c and calls cb; or LIMITS_UNAVAILABLE when
 * fail-closed with Redis configured. */
static void decide_here(struct limits *l, const struct limits_ask *a,
                        const struct limits_when *w, limits_cb cb, void *ctx)
{
    struct limits_verdict v;
    if (l->redis && (l->policy == LIMITS_FAIL_CLOSED || l->closing)) {
        memset(&v, 0, sizeof(v));
        v.outcome = LIMITS_UNAVAILABLE;
        l->stats.unavailable++;
        cb(ctx, &v, NULL);
        return;
    }
    struct limits_raw raw;
    uint64_t seq = 0;
    limits_local_reserve(a, w, &raw, &seq);
    l->stats.local_decisions++;
    verdict_fill(a, w, &raw, true, &v);
    struct limits_hold *h = NULL;
    if (raw.outcome == LIMITS_ADMITTED) {
        h = hold_new(HOLD_LOCAL, a, w);
        h->seq = seq;
    }
    cb(ctx, &v, h);
}

/* ---------------------------------------------------------------------
 * Reserving over Redis
 * ------------------------------------------------------------------- */

static void pending_unlink_free(struct limits_pending *p)
{
    struct limits *l = p->l;
    if (p->prev) {
        p->prev->next = p->next;
    } else {
        l->pendings = p->next;
    }
    if (p->next) {
        p->next->prev = p->prev;
    }
    free(p->key_id);
    free(p->request_id);
    free(p);
}

/* A Redis hold, with what the script wrote for it (see redis.c). */
static struct limits_hold *redis_hold_new(const struct limits_ask *a,
                                          const struct limits_when *w,
                                          const struct limits_raw *raw)
{
    struct limits_hold *h = hold_new(HOLD_REDIS, a, w);
    const struct limits_rule *r = &a->rule;
    h->tpm = r->tpm > 0;
    h->fly = r->max_concurrent > 0 || r->budget_nusd > 0;
    h->tokens = h->tpm ? a->tokens : 0;
    h->held_nusd = r->budget_nusd > 0 && a->cost_nusd > 0 ? a->cost_nusd
                                                          : 0;
    h->admitted_ms = raw->admitted_ms;
    return h;
}

static void on_raw(void *ctx, const struct limits_raw *raw)
{
    struct limits_pending *p = ctx;
    struct limits *l = p->l;
    if (!raw) {
        l->stats.redis_failures++;
        if (p->cb) {
            decide_here(l, &p->ask, &p->when, p->cb, p->ctx);
        }
        pending_unlink_free(p);
        return;
    }
    l->stats.redis_decisions++;
    struct limits_hold *h = NULL;
    if (raw->outcome == LIMITS_ADMITTED) {
        h = redis_hold_new(&p->ask, &p->when, raw);
    }
    if (p->cb) {
        struct limits_verdict v;
        verdict_fill(&p->ask, &p->when, raw, false, &v);
        p->cb(p->ctx, &v, h);
    } else if (h) {
        limits_reconcile(l, h, 0, 0); /* cancelled: release at once */
    }
    pending_unlink_free(p);
}

static bool no_limits(const struct limits_rule *r)
{
    return r->rpm <= 0 && r->tpm <= 0 && r->max_concurrent <= 0 &&
           r->budget_nusd <= 0;
}

static bool key_id_ok(const char *id)
{
    return id && id[0] && strlen(id) <= LIMITS_KEY_ID_MAX &&
           !strpbrk(id, "{}");
}

static void add_reserve(struct limits *l, struct limits_pending *p);
static void add_settle(struct limits *l, struct limits_hold *h,
                       int64_t tokens, int64_t cost_nusd);

/* Starts a reserve over Redis: gathered into this iteration's batch for
 * its key, answered by on_raw(). Always true since reserves are batched;
 * a batch that cannot be sent is decided in-process, later. */
static bool reserve_redis(struct limits *l, const struct limits_ask *ask,
                          const struct limits_when *w, limits_cb cb,
                          void *ctx, struct limits_pending **pending)
{
    struct limits_pending *p = rl_calloc(1, sizeof(*p));
    p->l = l;
    p->cb = cb;
    p->ctx = ctx;
    p->ask = *ask;
    p->key_id = rl_strdup(ask->rule.key_id);
    p->request_id = rl_strdup(ask->request_id);
    p->ask.rule.key_id = p->key_id;
    p->ask.request_id = p->request_id;
    p->when = *w;
    add_reserve(l, p);
    p->next = l->pendings;
    if (l->pendings) {
        l->pendings->prev = p;
    }
    l->pendings = p;
    if (pending) {
        *pending = p;
    }
    return true;
}

enum rl_err limits_reserve(struct limits *l, const struct limits_ask *ask,
                           limits_cb cb, void *ctx,
                           struct limits_pending **pending)
{
    if (pending) {
        *pending = NULL;
    }
    if (no_limits(&ask->rule)) {
        struct limits_verdict v;
        memset(&v, 0, sizeof(v));
        v.local = l->redis == NULL;
        cb(ctx, &v, hold_new(HOLD_NONE, ask, NULL));
        return RL_OK;
    }
    if (!key_id_ok(ask->rule.key_id) || !ask->request_id ||
        !ask->request_id[0]) {
        return RL_E_INVALID_REQUEST;
    }
    struct limits_when w;
    when_make(&ask->rule, &w);
    if (l->redis && redis_up(l->redis) && !l->closing &&
        reserve_redis(l, ask, &w, cb, ctx, pending)) {
        return RL_OK;
    }
    decide_here(l, ask, &w, cb, ctx);
    return RL_OK;
}

void limits_reserve_cancel(struct limits_pending *p)
{
    p->cb = NULL;
    p->ctx = NULL;
}

/* ---------------------------------------------------------------------
 * Reconciling
 * ------------------------------------------------------------------- */

/* Keeps a Redis reconcile for when Redis is back; drops it when full. */
static void requeue(struct limits *l, struct limits_hold *h, int64_t tokens,
                    int64_t cost_nusd)
{
    if (l->closing || l->nqueue >= RETRY_QUEUE_MAX) {
        l->stats.reconciles_lost++;
        hold_free(h);
        return;
    }
    struct requeue *q = rl_malloc(sizeof(*q));
    *q = (struct requeue){h, tokens, cost_nusd, NULL};
    *l->queue_tail = q;
    l->queue_tail = &q->next;
    l->nqueue++;
}

static void reconcile_redis(struct limits *l, struct limits_hold *h,
                            int64_t tokens, int64_t cost_nusd)
{
    if (l->closing || !redis_up(l->redis)) {
        requeue(l, h, tokens, cost_nusd);
        return;
    }
    add_settle(l, h, tokens, cost_nusd);
}

void limits_reconcile(struct limits *l, struct limits_hold *hold,
                      int64_t tokens_used, int64_t cost_nusd)
{
    if (!hold) {
        return;
    }
    if (hold->kind == HOLD_LOCAL) {
        limits_local_reconcile(hold, tokens_used, cost_nusd);
    } else if (hold->kind == HOLD_REDIS && l->redis &&
               limits_redis_settles(hold, tokens_used)) {
        reconcile_redis(l, hold, tokens_used, cost_nusd);
        return;
    }
    hold_free(hold);
}

/* Sends the queued reconciles (Redis is back). */
static void flush_queue(struct limits *l)
{
    struct requeue *q = l->queue;
    l->queue = NULL;
    l->queue_tail = &l->queue;
    l->nqueue = 0;
    while (q) {
        struct requeue *next = q->next;
        reconcile_redis(l, q->hold, q->tokens, q->cost_nusd);
        free(q);
        q = next;
    }
}

/* ---------------------------------------------------------------------
 * Batches: one script call per key and iteration
 * ------------------------------------------------------------------- */

static bool same_reserve(const struct batch *b, const struct limits_pending *p)
{
    if (b->reconcile) {
        return false;
    }
    const struct limits_pending *q = b->asks[0];
    const struct limits_rule *x = &q->ask.rule;
    const struct limits_rule *y = &p->ask.rule;
    return strcmp(q->key_id, p->key_id) == 0 &&
           x->rpm == y->rpm && x->tpm == y->tpm &&
           x->max_concurrent == y->max_concurrent &&
           x->budget_nusd == y->budget_nusd &&
           q->ask.spent_seed_nusd == p->ask.spent_seed_nusd &&
           strcmp(q->when.period, p->when.period) == 0;
}

static bool same_settle(const struct batch *b, const struct limits_hold *h)
{
    if (!b->reconcile) {
        return false;
    }
    const struct limits_hold *g = b->items[0].hold;
    return strcmp(g->key_id, h->key_id) == 0 &&
           strcmp(g->when.period, h->when.period) == 0;
}

static void on_send(uv_prepare_t *h);

/* A new batch at the head of l's list; the sender runs this iteration. */
static struct batch *batch_new(struct limits *l, bool reconcile)
{
    struct batch *b = rl_malloc(sizeof(*b));
    b->reconcile = reconcile;
    b->n = 0;
    b->l = l;
    b->next = l->batches;
    l->batches = b;
    if (!uv_is_active((uv_handle_t *)l->sender)) {
        uv_prepare_start(l->sender, on_send);
    }
    return b;
}

static void add_reserve(struct limits *l, struct limits_pending *p)
{
    struct batch *b = l->batches;
    while (b && (b->n == LIMITS_BATCH_MAX || !same_reserve(b, p))) {
        b = b->next;
    }
    if (!b) {
        b = batch_new(l, false);
    }
    b->asks[b->n++] = p;
}

static void add_settle(struct limits *l, struct limits_hold *h,
                       int64_t tokens, int64_t cost_nusd)
{
    struct batch *b = l->batches;
    while (b && (b->n == LIMITS_BATCH_MAX || !same_settle(b, h))) {
        b = b->next;
    }
    if (!b) {
        b = batch_new(l, true);
    }
    b->items[b->n++] = (struct limits_settle){h, tokens, cost_nusd};
}

static void on_raws(void *ctx, const struct limits_raw *raws, int n)
{
    struct batch *b = ctx;
    for (int i = 0; i < n; i++) {
        on_raw(b->asks[i], raws ? &raws[i] : NULL);
    }
    free(b);
}

static void on_settled(void *ctx, bool ok)
{
    struct batch *b = ctx;
    for (int i = 0; i < b->n; i++) {
        struct limits_settle *it = &b->items[i];
        if (ok) {
            hold_free(it->hold);
        } else {
            b->l->stats.redis_failures++;
            requeue(b->l, it->hold, it->tokens, it->cost_nusd); /* idempotent */
        }
    }
    free(b);
}

/* Sends one batch; a batch Redis does not take fails as a whole. */
static void batch_send(struct limits *l, struct batch *b)
{
    bool up = !l->closing && redis_up(l->redis);
    if (b->reconcile) {
        if (!up || limits_redis_reconcile(l->redis, b->items, b->n,
                                          on_settled, b) != RL_OK) {
            for (int i = 0; i < b->n; i++) {
                requeue(l, b->items[i].hold, b->items[i].tokens,
                        b->items[i].cost_nusd);
            }
            free(b);
        }
        return;
    }
    const struct limits_ask *asks[LIMITS_BATCH_MAX];
    for (int i = 0; i < b->n; i++) {
        asks[i] = &b->asks[i]->ask;
    }
    if (!up || limits_redis_reserve(l->redis, asks, b->n, &b->asks[0]->when,
                                    on_raws, b) != RL_OK) {
        on_raws(b, NULL, b->n);
    }
}

/* Sends every gathered batch, oldest first, and writes them out. */
static void send_batches(struct limits *l)
{
    uv_prepare_stop(l->sender);
    struct batch *rev = NULL;
    while (l->batches) {
        struct batch *b = l->batches;
        l->batches = b->next;
        b->next = rev;
        rev = b;
    }
    while (rev) {
        struct batch *b = rev;
        rev = b->next;
        batch_send(l, b);
    }
    if (l->redis && !l->closing) {
        redis_flush(l->redis);
    }
}

static void on_send(uv_prepare_t *h)
{
    send_batches(h->data);
}

static void on_sender_closed(uv_handle_t *h)
{
    free(h);
}

/* ---------------------------------------------------------------------
 * Redis up and down, creating and freeing
 * ------------------------------------------------------------------- */

static void on_redis_state(void *ctx, bool up)
{
    struct limits *l = ctx;
    if (!up) {
        l->stats.redis_downs++;
        if (!l->down_logged) {
            l->down_logged = true;
            log_write(LOG_WARN,
                      l->policy == LIMITS_FAIL_OPEN
                          ? "redis unreachable: rate limits decided "
                            "in-process until it is back"
                          : "redis unreachable: requests with limits "
                            "refused until it is back",
                      "\"policy\":\"%s\"",
                      l->policy == LIMITS_FAIL_OPEN ? "fail-open"
                                                    : "fail-closed");
        }
        return;
    }
    if (l->down_logged) {
        l->down_logged = false;
        log_write(LOG_INFO, "redis reachable again: rate limits back on "
                            "redis",
                  "\"queued_reconciles\":%zu", l->nqueue);
    }
    flush_queue(l);
}

enum rl_err limits_new(struct uv_loop_s *loop, const struct limits_opts *opts,
                       struct limits **out)
{
    struct limits *l = rl_calloc(1, sizeof(*l));
    l->policy = opts ? opts->policy : LIMITS_FAIL_OPEN;
    l->queue_tail = &l->queue;
    if (opts && opts->redis_url && opts->redis_url[0]) {
        struct redis_opts ro = {
            .command_timeout_ms = opts->redis_timeout_ms,
            .on_state = on_redis_state,
            .state_ctx = l,
        };
        l->redis = redis_new(loop, opts->redis_url, &ro);
        if (!l->redis) {
            free(l);
            *out = NULL;
            return RL_E_CONFIG; /* redis_new logged why */
        }
        l->sender = rl_malloc(sizeof(*l->sender));
        uv_prepare_init(loop, l->sender);
        l->sender->data = l;
    }
    *out = l;
    return RL_OK;
}

void limits_free(struct limits *l)
{
    if (!l) {
        return;
    }
    l->closing = true;
    if (l->sender) {
        send_batches(l); /* closing: reserves UNAVAILABLE, holds dropped */
        uv_close((uv_handle_t *)l->sender, on_sender_closed);
    }
    redis_free(l->redis); /* pending reserves answer UNAVAILABLE */
    while (l->pendings) {
        pending_unlink_free(l->pendings); /* only if redis_free missed one */
    }
    struct requeue *q = l->queue;
    while (q) {
        struct requeue *next = q->next;
        hold_free(q->hold);
        free(q);
        q = next;
    }
    free(l);
}

bool limits_redis_up(const struct limits *l)
{
    return l->redis && redis_up(l->redis);
}

void limits_stats_get(const struct limits *l, struct limits_stats *out)
{
    *out = l->stats;
    if (l->redis) {
        struct redis_stats rs;
        redis_stats_get(l->redis, &rs);
        out->redis_moved = rs.moved;
        out->redis_asked = rs.asked;
        out->redis_tryagain = rs.tryagain;
    }
}

/* ---------------------------------------------------------------------
 * Headers
 * ------------------------------------------------------------------- */

size_t limits_duration_format(uint64_t ms, char *out, size_t n)
{
    struct fmt f;
    fmt_init(&f, out, n);
    if (ms < 1000) {
        fmt_u64(&f, ms, 0);
        fmt_str(&f, ms ? "ms" : "s");
        return f.len;
    }
    uint64_t h = ms / 3600000;
    uint64_t m = ms / 60000 % 60;
    uint64_t frac = ms % 1000;
    if (h) {
        fmt_u64(&f, h, 0);
        fmt_str(&f, "h");
    }
    if (h || m) {
        fmt_u64(&f, m, 0);
        fmt_str(&f, "m");
    }
    fmt_u64(&f, ms / 1000 % 60, 0);
    if (frac) {
        unsigned digits = 3;
        for (; frac % 10 == 0; frac /= 10) {
            digits--;
        }
        fmt_str(&f, ".");
        fmt_u64(&f, frac, digits);
    }
    fmt_str(&f, "s");
    return f.len;
}

void limits_headers(const struct limits_verdict *v, struct buf *out)
{
    bool rq = v->limit_requests > 0;
    bool tk = v->limit_tokens > 0;
    char dr[64];
    char dt[64];
    limits_duration_format(v->reset_requests_ms, dr, sizeof(dr));
    limits_duration_format(v->reset_tokens_ms, dt, sizeof(dt));
    enum rl_err err = RL_OK;
    if (rq) {
        err = buf_printf(out, "x-ratelimit-limit-requests: %lld\r\n",
                         (long long)v->limit_requests);
    }
    if (tk && err == RL_OK) {
        err = buf_printf(out, "x-ratelimit-limit-tokens: %lld\r\n",
                         (long long)v->limit_tokens);
    }
    if (rq && err == RL_OK) {
        err = buf_printf(out, "x-ratelimit-remaining-requests: %lld\r\n",
                         (long long)v->remaining_requests);
    }
    if (tk && err == RL_OK) {
        err = buf_printf(out, "x-ratelimit-remaining-tokens: %lld\r\n",
                         (long long)v->remaining_tokens);
    }
    if (rq && err == RL_OK) {
        err = buf_printf(out, "x-ratelimit-reset-requests: %s\r\n", dr);
    }
    if (tk && err == RL_OK) {
        buf_printf(out, "x-ratelimit-reset-tokens: %s\r\n", dt);
    }
}
