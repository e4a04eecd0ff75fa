/*
 * latency.c - time to first token and decode rate, learned live per model
 * from every answer, and predicted at a high percentile.
 *
 * Each model keeps rings of its most recent observations: time to first
 * token per prompt-size class (prefill grows with the prompt), time per
 * output token, and completion lengths of requests without max_tokens per
 * prompt-size class. Expected output tokens are the percentile of those
 * lengths, bounded by the request's max_tokens (which alone is a bound,
 * not a prediction: most answers stop well before it). A prediction is
 * the nearest-rank percentile (p90 by default) over the fresh part of a
 * ring: the last `window` observations no older than `max_age_ms`, and
 * the total combines the parts as routing_latency_predict() says. A high
 * percentile rather than the mean, so that most requests meet a target;
 * a short window, so that a provider that slows down is seen within a few
 * requests (a tenth of a 32-long window is 4 answers) and one that
 * recovers within tens of requests; an age limit, so that a model nobody
 * chooses any more because it was slow goes back to its prior and is
 * tried, and measured, again.
 *
 * First-token times are moved to the request's prompt size along the
 * model's prefill rate, a least-squares fit over every first token
 * (ttft_spread()): a long prompt is not predicted from short ones. A
 * stream's first token is recorded when it comes
 * (routing_latency_first_token()), not when the stream ends.
 *
 * Cold start: with fewer than ROUTING_MIN_OBS fresh values the configured
 * prior counts as one more value, so the first answers move the estimate
 * only when they are slower than the prior (a p90 of a few values is
 * their maximum).
 *
 * Non-stream answers give only a total. It is split with the model's
 * current median time to first token: what remains is decode time, spread
 * over the completion tokens. Only decode is recorded from them; the
 * first-token rings learn from streams alone (docs/routing.md).
 *
 * Plain functions over struct routing_latency: no lock, no clock (the
 * caller holds the entry's lock and passes the time). Read
 * routing_latency_predict() first.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "routing/engine.h"

/* The prefill fit's memory, in first tokens: each older one weighs
 * 1/PREFILL_MEMORY less. The rate is the model's, it changes slowly; the
 * fresh rings give the level. */
#define PREFILL_MEMORY 256.0



#ifndef ABANDONED_PCT
#define ABANDONED_PCT 110 /* an abandoned wait counts a tenth more */
#endif

/* Upper bounds (exclusive) of the prompt-size classes, in tokens. */
static const int64_t class_limits[ROUTING_SIZE_CLASSES - 1] = {
    256, 1024, 4096, 16384,
};

int routing_size_class(int64_t prompt_tokens)
{
    int c = 0;
    while (c < ROUTING_SIZE_CLASSES - 1 && prompt_tokens >= class_limits[c]) {
        c++;
    }
    return c;
}

static int clamp_window(int window)
{
    return window < 1 ? 1 : window > ROUTING_RING_MAX ? ROUTING_RING_MAX
                                                      : window;
}

/* Inserts v into the ascending a[0..n), which has room for one more. */
static void sorted_insert(uint32_t *a, uint32_t n, uint32_t v)
{
    uint32_t i = n;
    while (i > 0 && a[i - 1] > v) {
        a[i] = a[i - 1];
        i--;
    }
    a[i] = v;
}

/* Removes one v from the ascending a[0..n). */
static void sorted_remove(uint32_t *a, uint32_t n, uint32_t v)
{
    uint32_t i = 0;
    while (i < n && a[i] != v) {
        i++;
    }
    if (i < n) {
        memmove(a + i, a + i + 1, (n - i - 1) * sizeof(*a));
    }
}

void routing_ring_push(struct routing_ring *r, uint64_t now_us, uint32_t v,
                       int window)
{
    uint32_t w = (uint32_t)clamp_window(window);
    uint32_t in_window = r->n < w ? r->n : w;
    bool keep = r->sorted_w == w;
    if (keep && in_window == w) {
        /* The oldest of the window leaves it. */
        sorted_remove(r->sorted, in_window,
                      r->v[(r->next + ROUTING_RING_MAX - w) %
                           ROUTING_RING_MAX]);
        in_window--;
    }
    r->at_us[r->next] = now_us;
    r->v[r->next] = v;
    r->next = (r->next + 1) % ROUTING_RING_MAX;
    if (r->n < ROUTING_RING_MAX) {
        r->n++;
    }
    if (keep) {
        sorted_insert(r->sorted, in_window, v);
        return;
    }
    /* A new window (the first push, or a reload changed it): rebuilt. */
    r->sorted_w = w;
    uint32_t take = r->n < w ? r->n : w;
    for (uint32_t i = 0; i < take; i++) {
        sorted_insert(r->sorted, i,
                      r->v[(r->next + ROUTING_RING_MAX - 1 - i) %
                           ROUTING_RING_MAX]);
    }
}

/* The k-th smallest of v[0..n) (k < n), reordering v: Hoare's selection,
 * linear on average. This runs for every candidate of every plan, where a
 * full sort showed in the gateway's profile. */
static uint32_t select_kth(uint32_t *v, size_t n, size_t k)
{
    size_t lo = 0;
    size_t hi = n - 1;
    while (lo < hi) {
        uint32_t pivot = v[lo + (hi - lo) / 2];
        size_t i = lo;
        size_t j = hi;
        while (i <= j) {
            while (v[i] < pivot) {
                i++;
            }
            while (v[j] > pivot) {
                j--;
            }
            if (i <= j) {
                uint32_t t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                if (j == 0) {
                    break;
                }
                j--;
            }
        }
        if (k <= j) {
            hi = j;
        } else if (k >= i) {
            lo = i;
        } else {
            return v[k];
        }
    }
    return v[k];
}

/* Appends to vals the fresh values of r: its window most recent, no older
 * than max_age_us. Returns how many. */
static size_t fresh_values(const struct routing_ring *r, int window,
                           uint64_t now_us, uint64_t max_age_us,
                           uint32_t *vals)
{
    size_t n = 0;
    uint32_t take = r->n < (uint32_t)window ? r->n : (uint32_t)window;
    for (uint32_t i = 0; i < take; i++) {
        uint32_t at = (r->next + ROUTING_RING_MAX - 1 - i) % ROUTING_RING_MAX;
        uint64_t t = r->at_us[at];
        if (t <= now_us && now_us - t > max_age_us) {
            break; /* older ones are older still */
        }
        vals[n++] = r->v[at];
    }
    return n;
}

/* How many fresh values r's window holds (as fresh_values counts them). */
static uint32_t fresh_count(const struct routing_ring *r, int window,
                            uint64_t now_us, uint64_t max_age_us)
{
    uint32_t take = r->n < (uint32_t)window ? r->n : (uint32_t)window;
    uint32_t n = 0;
    for (; n < take; n++) {
        uint64_t t = r->at_us[(r->next + ROUTING_RING_MAX - 1 - n) %
                              ROUTING_RING_MAX];
        if (t <= now_us && now_us - t > max_age_us) {
            break;
        }
    }
    return n;
}

/* True if r's window holds at least need values and they are fresh: the
 * need-th newest is, as pushes come in time order (fresh_values stops at
 * the first stale one, the same test). */
static bool fresh_at_least(const struct routing_ring *r, int window,
                           uint32_t need, uint64_t now_us,
                           uint64_t max_age_us)
{
    uint32_t in_window = r->n < (uint32_t)window ? r->n : (uint32_t)window;
    if (need == 0 || in_window < need) {
        return need == 0;
    }
    uint64_t t = r->at_us[(r->next + ROUTING_RING_MAX - need) %
                          ROUTING_RING_MAX];
    return t > now_us || now_us - t <= max_age_us;
}

/* The median and the percentile of a quantity, and the fresh values. */
struct spread {
    uint32_t mid;    /* median */
    uint32_t high;   /* at the percentile asked */
    uint32_t nfresh; /* fresh values behind them */
};

/* Zero-based nearest rank of percentile pct among n values. */
static size_t rank_of(int pct, size_t n)
{
    size_t rank = ((size_t)pct * n + 99) / 100;
    return rank ? rank - 1 : 0;
}

/* The spread of vals[0..n) (reordered; room for one more), the prior
 * joining them while they are few. One selection for the percentile; the
 * median is looked for only among the values below it, which the first
 * selection left in front (pct >= 50). */
static struct spread spread_vals(uint32_t *vals, size_t n, int pct,
                                 uint32_t prior)
{
    struct spread s = {.mid = prior, .high = prior, .nfresh = (uint32_t)n};
    if (n < ROUTING_MIN_OBS && prior) {
        vals[n++] = prior;
    }
    if (n == 0) {
        return s;
    }
    size_t kh = rank_of(pct, n);
    size_t km = rank_of(50, n);
    s.high = select_kth(vals, n, kh);
    s.mid = km < kh ? select_kth(vals, kh, km)
                    : km == kh ? s.high : select_kth(vals, n, km);
    return s;
}

/* The spread of the fresh values of rings[0..nrings), the prior joining
 * them while they are few. One copy and two selections: the median is
 * looked for only among the values below the percentile's, which the
 * first selection left in front (pct >= 50). */
static struct spread spread_of(const struct routing_ring *const *rings,
                               int nrings, int window, uint64_t now_us,
                               uint64_t max_age_us, int pct, uint32_t prior)
{
    window = clamp_window(window);
    const struct routing_ring *r = rings[0];
    uint32_t in_window = r->n < (uint32_t)window ? r->n : (uint32_t)window;
    if (nrings == 1 && r->sorted_w == (uint32_t)window &&
        in_window >= ROUTING_MIN_OBS &&
        fresh_at_least(r, window, in_window, now_us, max_age_us)) {
        /* All the window is fresh: its order is kept by the pushes. */
        return (struct spread){
            .mid = r->sorted[rank_of(50, in_window)],
            .high = r->sorted[rank_of(pct, in_window)],
            .nfresh = in_window,
        };
    }
    uint32_t vals[ROUTING_RING_MAX * ROUTING_SIZE_CLASSES + 1];
    size_t n = 0;
    for (int i = 0; i < nrings && i < ROUTING_SIZE_CLASSES; i++) {
        n += fresh_values(rings[i], window, now_us, max_age_us, vals + n);
    }
    return spread_vals(vals, n, pct, prior);
}

uint32_t routing_ring_percentile(const struct routing_ring *const *rings,
                                 int nrings, int window, uint64_t now_us,
                                 uint64_t max_age_us, int pct,
                                 uint32_t prior, uint32_t *nfresh)
{
    struct spread s = spread_of(rings, nrings, window, now_us, max_age_us,
                                pct, prior);
    if (nfresh) {
        *nfresh = s.nfresh;
    }
    return s.high;
}

/* The spread of class cls's ring when it has enough fresh values, else of
 * all classes together (with the prior while they are few). nrings 1:
 * rings is one ring, without classes. */
static struct spread class_or_pool(const struct routing_ring *rings,
                                   int nrings, int cls,
                                   const struct routing_knobs *k,
                                   uint64_t now_us, uint32_t prior)
{
    const struct routing_ring *all[ROUTING_SIZE_CLASSES];
    for (int i = 0; i < nrings; i++) {
        all[i] = &rings[i];
    }
    const struct routing_ring *const *use = all;
    int nuse = nrings;
    uint64_t age_us = k->max_age_ms * 1000;
    if (nrings > 1 && fresh_at_least(&rings[cls], clamp_window(k->window),
                                     ROUTING_MIN_OBS, now_us, age_us)) {
        use = all + cls;
        nuse = 1;
    }
    return spread_of(use, nuse, k->window, now_us, age_us, k->percentile,
                     prior);
}

static uint32_t clamp_u32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Appends the fresh values of r (as fresh_values) to vals and their
 * prompt sizes (prompt, by slot) to toks. Returns how many. */
static size_t fresh_pairs(const struct routing_ring *r, const uint32_t *prompt,
                          int window, uint64_t now_us, uint64_t max_age_us,
                          uint32_t *vals, uint32_t *toks)
{
    size_t n = fresh_values(r, window, now_us, max_age_us, vals);
    for (size_t i = 0; i < n; i++) {
        toks[i] = prompt[(r->next + ROUTING_RING_MAX - 1 - i) %
                         ROUTING_RING_MAX];
    }
    return n;
}

/* The prefill rate of l's fit (microseconds per prompt token), never
 * below 0; 0 when the sizes seen do not differ. */
static double prefill_slope(const struct routing_latency *l)
{
    const double *f = l->prefill;
    double var = f[0] * f[3] - f[1] * f[1];
    if (f[0] < 2 || var <= 1e-9 * f[0] * f[3]) {
        return 0;
    }
    double slope = (f[0] * f[4] - f[1] * f[2]) / var;
    return slope > 0 ? slope : 0;
}

/* Moves v, seen for a prompt of from tokens, to a prompt of to tokens
 * along slope (microseconds per token). */
static uint32_t move_to(uint32_t v, double slope, double from, double to)
{
    double m = v + slope * (to - from);
    return m < 1 ? 1 : m > UINT32_MAX ? UINT32_MAX : (uint32_t)m;
}

/*
 * The spread of the first-token time of a prompt of prompt_tokens in
 * class cls, moved to this prompt's size along the model's prefill rate
 * (its least-squares fit over every first token, prefill_slope()): the
 * class's own values when it has ROUTING_MIN_OBS fresh ones, moved by
 * the distance from their mean size (so the order the pushes keep still
 * serves); else every class's, each moved from its own size. Long
 * prompts are rare, so their class is often empty, and borrowing short
 * prompts' times as they were predicted a 25k-token prompt as fast as a
 * 200-token one (bench-routing: 22 of 129 misses, streams of more than
 * 16k tokens with a first-token target). Cost: one pass over the class's
 * window for its mean size; the borrowing path copies the values anyway.
 */
static struct spread ttft_spread(const struct routing_latency *l, int cls,
                                 int64_t prompt_tokens,
                                 const struct routing_knobs *k,
                                 uint64_t now_us, uint32_t prior)
{
    uint64_t age_us = k->max_age_ms * 1000;
    int w = clamp_window(k->window);
    double slope = prefill_slope(l);
    double p = prompt_tokens > 0 ? (double)prompt_tokens : 0;
    const struct routing_ring *own = &l->ttft_us[cls];
    if (fresh_at_least(own, w, ROUTING_MIN_OBS, now_us, age_us)) {
        struct spread s = spread_of(&own, 1, w, now_us, age_us,
                                    k->percentile, prior);
        if (slope > 0 && s.nfresh > 0) {
            double sum = 0;
            for (uint32_t i = 0; i < s.nfresh; i++) {
                sum += l->ttft_prompt[cls][(own->next + ROUTING_RING_MAX - 1 -
                                            i) % ROUTING_RING_MAX];
            }
            double mean = sum / s.nfresh;
            s.mid = move_to(s.mid, slope, mean, p);
            s.high = move_to(s.high, slope, mean, p);
        }
        return s;
    }
    uint32_t vals[ROUTING_RING_MAX * ROUTING_SIZE_CLASSES + 1];
    uint32_t toks[ROUTING_RING_MAX * ROUTING_SIZE_CLASSES];
    size_t n = 0;
    for (int c = 0; c < ROUTING_SIZE_CLASSES; c++) {
        n += fresh_pairs(&l->ttft_us[c], l->ttft_prompt[c], w, now_us,
                         age_us, vals + n, toks + n);
    }
    for (size_t i = 0; slope > 0 && i < n; i++) {
        vals[i] = move_to(vals[i], slope, toks[i], p);
    }
    return spread_vals(vals, n, k->percentile, prior);
}

static uint32_t prior_ttft_us(const struct model_cfg *m)
{
    return clamp_u32((uint64_t)(m->prior_ttft_ms ? m->prior_ttft_ms : 1) *
                     1000);
}

static uint32_t prior_decode_ns(const struct model_cfg *m)
{
    uint32_t tps = m->prior_tokens_per_s ? m->prior_tokens_per_s : 1;
    return 1000000000u / tps;
}

/* The spread of the expected output length of a request in class cls:
 * the model's own similar answers when it has half a window of them,
 * else those of every model (pool, may be NULL) when it has a few, else
 * the model's own with the prior. Length is mostly the request's, not
 * the model's: a model chosen seldom would otherwise predict from two or
 * three answers (their maximum, at p90) or from its prior, and look
 * dearer and slower than it is. */
static struct spread length_spread(const struct routing_latency *l,
                                   const struct routing_latency *pool,
                                   int cls, const struct routing_knobs *k,
                                   uint64_t now_us)
{
    uint32_t prior = clamp_u32((uint64_t)k->output_tokens_prior);
    uint64_t age_us = k->max_age_ms * 1000;
    uint32_t nown = 0;
    uint32_t npool = 0;
    int w = clamp_window(k->window);
    nown = fresh_count(&l->out_tokens[cls], w, now_us, age_us);
    if (pool && nown < (uint32_t)k->window) {
        npool = fresh_count(&pool->out_tokens[cls], w, now_us, age_us);
    }
    if (npool >= ROUTING_MIN_OBS && npool > nown) {
        struct routing_knobs pk = *k;
        pk.window = ROUTING_RING_MAX;
        return class_or_pool(pool->out_tokens, ROUTING_SIZE_CLASSES, cls, &pk,
                             now_us, prior);
    }
    return class_or_pool(l->out_tokens, ROUTING_SIZE_CLASSES, cls, k, now_us,
                         prior);
}

/*
 * The total at the percentile is not the sum of the parts' percentiles
 * (all three slow at once is much rarer than one): it is the sum of the
 * medians plus the parts' deviations (percentile - median) added in
 * quadrature, as for independent noise.
 */
void routing_latency_predict(const struct routing_latency *l,
                             const struct routing_latency *pool,
                             const struct model_cfg *m,
                             const struct routing_knobs *k, uint64_t now_us,
                             int64_t prompt_tokens, int64_t max_tokens,
                             struct routing_estimate *out)
{
    static const struct routing_latency empty;
    l = l ? l : &empty;
    int cls = routing_size_class(prompt_tokens);
    memset(out, 0, sizeof(*out));
    struct spread t = ttft_spread(l, cls, prompt_tokens, k, now_us,
                                  prior_ttft_us(m));
    struct spread d = class_or_pool(&l->decode_ns, 1, 0, k, now_us,
                                    prior_decode_ns(m));
    /* max_tokens bounds the answer; the lengths of recent similar
     * answers predict it. */
    struct spread n = length_spread(l, pool, cls, k, now_us);
    if (max_tokens > 0 && (n.nfresh < ROUTING_MIN_OBS ||
                           (int64_t)n.high > max_tokens)) {
        uint32_t cap = clamp_u32((uint64_t)max_tokens);
        n.high = cap;
        n.mid = n.nfresh < ROUTING_MIN_OBS || n.mid > cap ? cap : n.mid;
    }
    out->nfresh = t.nfresh;
    out->ttft_us = t.high;
    out->per_token_ns = d.high;
    out->out_tokens = n.high;
    double dt = (double)t.high - t.mid;
    double dn = ((double)n.high - n.mid) * d.mid / 1000.0;
    double dd = (double)n.mid * ((double)d.high - d.mid) / 1000.0;
    out->total_us = t.mid + (uint64_t)n.mid * d.mid / 1000 +
                    (uint64_t)sqrt(dt * dt + dn * dn + dd * dd);
}

/* The model's median time to first token over its recent streams (any
 * age), to split a non-stream total; the prior when it has none. */
static uint32_t median_ttft_us(const struct routing_latency *l)
{
    const struct routing_ring *all[ROUTING_SIZE_CLASSES];
    for (int i = 0; i < ROUTING_SIZE_CLASSES; i++) {
        all[i] = &l->ttft_us[i];
    }
    return routing_ring_percentile(all, ROUTING_SIZE_CLASSES, 16, 0,
                                   UINT64_MAX, 50, l->prior_ttft_us, NULL);
}

/* The window the rings keep in order: the one the last plan used, else
 * latency.window's default (a plan with another one rebuilds them). */
static int window_of(const struct routing_latency *l)
{
    return l->window ? (int)l->window : ROUTING_RING_MAX / 2;
}

/* Records decode time per token from an attempt that took total_us, of
 * which ttft_us went before the first token. */
static void push_decode(struct routing_latency *l, uint64_t now_us,
                        uint64_t ttft_us, uint64_t total_us, int64_t tokens)
{
    if (tokens < 4) {
        return; /* too few tokens: the split is mostly noise */
    }
    uint64_t decode_us = total_us > ttft_us ? total_us - ttft_us : 0;
    routing_ring_push(&l->decode_ns, now_us,
                      clamp_u32(decode_us * 1000 / (uint64_t)tokens),
                      window_of(l));
}

/* Records a first-token time with its prompt's size; a real one (not an
 * abandoned wait, a bound) joins the prefill fit too. */
static void push_ttft(struct routing_latency *l, uint64_t now_us,
                      int64_t prompt_tokens, uint64_t ttft_us, bool real)
{
    int cls = routing_size_class(prompt_tokens);
    struct routing_ring *r = &l->ttft_us[cls];
    uint32_t x = clamp_u32(prompt_tokens > 0 ? (uint64_t)prompt_tokens : 0);
    l->ttft_prompt[cls][r->next] = x;
    routing_ring_push(r, now_us, clamp_u32(ttft_us), window_of(l));
    if (real) {
        double *f = l->prefill;
        double y = (double)ttft_us;
        double keep = 1.0 - 1.0 / PREFILL_MEMORY;
        f[0] = f[0] * keep + 1;
        f[1] = f[1] * keep + x;
        f[2] = f[2] * keep + y;
        f[3] = f[3] * keep + (double)x * x;
        f[4] = f[4] * keep + (double)x * y;
    }
}

/* Forgets l's observations, keeping what plans noted. */
static void forget(struct routing_latency *l)
{
    struct routing_latency keep = {.prior_ttft_us = l->prior_ttft_us,
                                   .gap_us = l->gap_us,
                                   .window = l->window,
                                   .explored_us = l->explored_us};
    *l = keep;
}

void routing_latency_observe(struct routing_latency *l, uint64_t now_us,
                             const struct routing_obs *o)
{
    if (l->gap_us && l->newest_us && now_us > l->newest_us + l->gap_us) {
        forget(l);
    }
    l->newest_us = now_us > l->newest_us ? now_us : l->newest_us;
    bool ok = o->kind == ROUTING_OBS_OK;
    if (o->kind == ROUTING_OBS_ABANDONED) {
        /* Gave up waiting: what it waited is only a lower bound. Kept
         * (so that a model too slow to ever answer does not look fast),
         * but counted a little over (ABANDONED_PCT) the target it was
         * waited for against, at least: a deadline before the target
         * (leaving a fallback its time) would otherwise let the model
         * look just fast enough, be chosen, and be abandoned again. */
        uint64_t w = o->stream && o->ttft_us ? o->ttft_us : o->total_us;
        w = (w > o->bar_us ? w : o->bar_us) * ABANDONED_PCT / 100;
        if (o->stream) {
            push_ttft(l, now_us, o->prompt_tokens, w, false);
        } else {
            push_decode(l, now_us, median_ttft_us(l), w,
                        o->completion_tokens);
        }
        return;
    }
    if (o->stream && o->ttft_us > 0 && !o->ttft_learned) {
        /* A first token came, even if the stream failed later. */
        push_ttft(l, now_us, o->prompt_tokens, o->ttft_us, true);
    }
    if (!ok) {
        return; /* failures are the breaker's business */
    }
    if (o->stream && o->ttft_us > 0) {
        push_decode(l, now_us, o->ttft_us, o->total_us, o->completion_tokens);
    } else if (!o->stream) {
        push_decode(l, now_us, median_ttft_us(l), o->total_us,
                    o->completion_tokens);
    }
    routing_latency_observe_length(l, now_us, o);
}

void routing_latency_first_token(struct routing_latency *l, uint64_t now_us,
                                 uint64_t ttft_us, int64_t prompt_tokens)
{
    if (l->gap_us && l->newest_us && now_us > l->newest_us + l->gap_us) {
        forget(l);
    }
    l->newest_us = now_us > l->newest_us ? now_us : l->newest_us;
    push_ttft(l, now_us, prompt_tokens, ttft_us, true);
}

void routing_latency_observe_length(struct routing_latency *l,
                                    uint64_t now_us,
                                    const struct routing_obs *o)
{
    if (o->kind == ROUTING_OBS_OK && !o->max_tokens_set &&
        o->completion_tokens > 0) {
        routing_ring_push(&l->out_tokens[routing_size_class(o->prompt_tokens)],
                          now_us, clamp_u32((uint64_t)o->completion_tokens),
                          window_of(l));
    }
}
