/*
 * local.c - the in-process limiter: the same decisions as the Lua script
 * in redis.c, over a process-wide table shared by every worker.
 *
 * The table is split into NSTRIPES stripes, each a mutex and a list of
 * key states; a key's state is only touched under its stripe's mutex
 * (why stripes and not a mutex per entry: docs/internals/limits.md). A
 * key state holds the window (entries in admission order: sequence
 * number, time, reserved tokens), the requests in flight (sequence, start
 * time, budget hold) and the spend of the current period. Idle states
 * (nothing in the window or in flight for LOCAL_IDLE_MS) are dropped by a
 * sweep of their stripe at most once a second, so memory is bounded by
 * the keys active in the last minutes. Read decide() first.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "limits/internal.h"
#include "util/alloc.h"

#define NSTRIPES 64
#define LOCAL_IDLE_MS 120000 /* an idle key state is dropped after */
#define SWEEP_EVERY_MS 1000

struct went {
    uint64_t seq;    /* sequence number of the admission */
    uint64_t t_ms;   /* admission time */
    int64_t tokens;  /* reserved, then actual after reconcile */
};

struct fent {
    uint64_t seq;
    uint64_t t_ms;      /* start time */
    int64_t hold_nusd;  /* budget hold */
};

struct kstate {
    char *key_id;
    struct kstate *next;
    struct went *win;   /* live entries are [off, len), oldest first */
    size_t off, len, cap;
    int64_t tok_sum;    /* tokens of the live entries */
    struct fent *fly;   /* in flight, unordered */
    size_t nfly, capfly;
    int64_t held_nusd;  /* sum of the holds in fly */
    char period[16];    /* period of spent_nusd; "" when none known */
    int64_t spent_nusd;
    uint64_t used_ms;   /* last reserve or reconcile */
};

struct stripe {
    pthread_mutex_t mu;
    struct kstate *head;
    uint64_t swept_ms;
};

static struct stripe stripes[NSTRIPES];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static uint64_t next_seq = 1; /* under any stripe lock: atomically */

static void init_stripes(void)
{
    for (int i = 0; i < NSTRIPES; i++) {
        pthread_mutex_init(&stripes[i].mu, NULL);
    }
}

static struct stripe *stripe_of(const char *key_id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key_id; *p; p++) {
        h = (h ^ *p) * 1099511628211ull;
    }
    pthread_once(&once, init_stripes);
    return &stripes[h % NSTRIPES];
}

static void kstate_free(struct kstate *k)
{
    free(k->key_id);
    free(k->win);
    free(k->fly);
    free(k);
}

static bool idle(const struct kstate *k, uint64_t now_ms)
{
    return k->off == k->len && k->nfly == 0 &&
           now_ms > k->used_ms + LOCAL_IDLE_MS;
}

/* Drops the idle states of s (locked), at most once a second. */
static void sweep(struct stripe *s, uint64_t now_ms)
{
    if (now_ms < s->swept_ms + SWEEP_EVERY_MS && now_ms >= s->swept_ms) {
        return;
    }
    s->swept_ms = now_ms;
    struct kstate **pp = &s->head;
    while (*pp) {
        struct kstate *k = *pp;
        if (idle(k, now_ms)) {
            *pp = k->next;
            kstate_free(k);
        } else {
            pp = &k->next;
        }
    }
}

/* Finds (or with create, makes) the state of key_id in s (locked). */
static struct kstate *find(struct stripe *s, const char *key_id, bool create)
{
    for (struct kstate *k = s->head; k; k = k->next) {
        if (strcmp(k->key_id, key_id) == 0) {
            return k;
        }
    }
    if (!create) {
        return NULL;
    }
    struct kstate *k = rl_calloc(1, sizeof(*k));
    k->key_id = rl_strdup(key_id);
    k->next = s->head;
    s->head = k;
    return k;
}

/* ---------------------------------------------------------------------
 * The window and the requests in flight
 * ------------------------------------------------------------------- */

/* Drops window entries admitted at or before now - window, and in-flight
 * entries older than the stale bound, as the script does. */
static void expire(struct kstate *k, uint64_t now_ms)
{
    while (k->off < k->len &&
           k->win[k->off].t_ms + LIMITS_WINDOW_MS <= now_ms) {
        k->tok_sum -= k->win[k->off].tokens;
        k->off++;
    }
    if (k->off == k->len) {
        k->off = k->len = 0;
        k->tok_sum = 0;
    } else if (k->off > k->len / 2) {
        memmove(k->win, k->win + k->off, (k->len - k->off) * sizeof(*k->win));
        k->len -= k->off;
        k->off = 0;
    }
    for (size_t i = 0; i < k->nfly;) {
        if (k->fly[i].t_ms + LIMITS_STALE_MS <= now_ms) {
            k->held_nusd -= k->fly[i].hold_nusd;
            k->fly[i] = k->fly[--k->nfly];
        } else {
            i++;
        }
    }
    if (k->nfly == 0) {
        k->held_nusd = 0;
    }
}

/* Retry-After for tpm: walk oldest first until need tokens are freed. */
static uint64_t tpm_retry_ms(const struct kstate *k, int64_t need,
                             uint64_t now_ms)
{
    int64_t acc = 0;
    for (size_t i = k->off; i < k->len; i++) {
        acc += k->win[i].tokens;
        if (acc >= need) {
            return k->win[i].t_ms + LIMITS_WINDOW_MS - now_ms;
        }
    }
    return LIMITS_WINDOW_MS;
}

/* The decision, in the same order as the script's. */
static void decide(const struct kstate *k, const struct limits_ask *a,
                   uint64_t now_ms, struct limits_raw *out)
{
    const struct limits_rule *r = &a->rule;
    int64_t nreq = (int64_t)(k->len - k->off);
    out->outcome = LIMITS_ADMITTED;
    out->retry_after_ms = 0;
    if (r->tpm > 0 && a->tokens > r->tpm) {
        out->outcome = LIMITS_TOO_LARGE;
    } else if (r->rpm > 0 && nreq + 1 > r->rpm) {
        out->outcome = LIMITS_OVER_RPM;
        size_t kth = k->off + (size_t)(nreq + 1 - r->rpm) - 1;
        out->retry_after_ms = k->win[kth].t_ms + LIMITS_WINDOW_MS - now_ms;
    } else if (r->tpm > 0 && k->tok_sum + a->tokens > r->tpm) {
        out->outcome = LIMITS_OVER_TPM;
        out->retry_after_ms = tpm_retry_ms(k, k->tok_sum + a->tokens - r->tpm,
                                           now_ms);
    } else if (r->max_concurrent > 0 &&
               (int64_t)k->nfly >= r->max_concurrent) {
        out->outcome = LIMITS_OVER_CONCURRENCY;
        out->retry_after_ms = LIMITS_CONCURRENCY_RETRY_MS;
    } else if (r->budget_nusd > 0 &&
               k->spent_nusd + k->held_nusd + a->cost_nusd > r->budget_nusd) {
        out->outcome = LIMITS_OVER_BUDGET;
    }
}

static void admit(struct kstate *k, const struct limits_ask *a,
                  uint64_t now_ms, uint64_t seq)
{
    if (k->len == k->cap) {
        k->cap = k->cap ? k->cap * 2 : 16;
        k->win = rl_realloc(k->win, k->cap * sizeof(*k->win));
    }
    k->win[k->len++] = (struct went){seq, now_ms, a->tokens};
    k->tok_sum += a->tokens;
    if (k->nfly == k->capfly) {
        k->capfly = k->capfly ? k->capfly * 2 : 8;
        k->fly = rl_realloc(k->fly, k->capfly * sizeof(*k->fly));
    }
    int64_t hold = a->rule.budget_nusd > 0 && a->cost_nusd > 0 ? a->cost_nusd
                                                               : 0;
    k->fly[k->nfly++] = (struct fent){seq, now_ms, hold};
    k->held_nusd += hold;
}

void limits_local_reserve(const struct limits_ask *ask,
                          const struct limits_when *when,
                          struct limits_raw *out, uint64_t *seq)
{
    uint64_t now = when->now_ms;
    struct stripe *s = stripe_of(ask->rule.key_id);
    pthread_mutex_lock(&s->mu);
    sweep(s, now);
    struct kstate *k = find(s, ask->rule.key_id, true);
    k->used_ms = now;
    expire(k, now);
    if (ask->rule.budget_nusd > 0 && strcmp(k->period, when->period) != 0) {
        /* No counter for this period yet: start from the request log's. */
        memcpy(k->period, when->period, sizeof(k->period));
        k->spent_nusd = ask->spent_seed_nusd;
    }
    decide(k, ask, now, out);
    if (out->outcome == LIMITS_ADMITTED) {
        *seq = __atomic_fetch_add(&next_seq, 1, __ATOMIC_RELAXED);
        admit(k, ask, now, *seq);
    }
    out->nreq = (int64_t)(k->len - k->off);
    out->ntok = k->tok_sum;
    out->oldest_age_ms = k->off < k->len
                             ? (int64_t)(now - k->win[k->off].t_ms)
                             : -1;
    out->spent_nusd = ask->rule.budget_nusd > 0 ? k->spent_nusd : 0;
    out->held_nusd = k->held_nusd;
    pthread_mutex_unlock(&s->mu);
}

/* Finds the window entry with sequence seq (entries are in seq order). */
static struct went *find_went(struct kstate *k, uint64_t seq)
{
    size_t lo = k->off;
    size_t hi = k->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (k->win[mid].seq < seq) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < k->len && k->win[lo].seq == seq ? &k->win[lo] : NULL;
}

void limits_local_reconcile(const struct limits_hold *h, int64_t tokens,
                            int64_t cost_nusd)
{
    uint64_t now = limits_now_ms();
    struct stripe *s = stripe_of(h->key_id);
    pthread_mutex_lock(&s->mu);
    struct kstate *k = find(s, h->key_id, false);
    if (!k) {
        goto out; /* dropped: nothing of this request is left */
    }
    k->used_ms = now;
    struct went *w = find_went(k, h->seq);
    if (w) {
        k->tok_sum += tokens - w->tokens;
        w->tokens = tokens;
    }
    for (size_t i = 0; i < k->nfly; i++) {
        if (k->fly[i].seq != h->seq) {
            continue;
        }
        k->held_nusd -= k->fly[i].hold_nusd;
        k->fly[i] = k->fly[--k->nfly];
        if (h->budget && cost_nusd > 0 &&
            strcmp(k->period, h->when.period) == 0) {
            k->spent_nusd += cost_nusd;
        }
        break;
    }
out:
    pthread_mutex_unlock(&s->mu);
}
