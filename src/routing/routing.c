/*
 * routing.c - step 3: the plan of a request (which models, in which order,
 * how long to wait for each) and the feedback that teaches it.
 *
 * routing_plan() reads the preferences and lists the candidates
 * (candidates.c), predicts each one's first-token time, total time
 * (latency.c) and cost (accounting/price.c), drops those below the
 * quality floor, those whose context cannot hold the request and those
 * behind an open circuit (health.c), and orders the rest: the cheapest
 * that meets the latency bar first, then the others that meet it by cost,
 * then those over it, fastest first, with the adjustments of
 * prefer_bargain(), prefer_safe(), maybe_explore() and long_shot().
 * routing_observe() feeds one upstream attempt back, routing_wait_*() the
 * attempts still in flight (waits.c); explain.c says it all in one
 * header. Read routing_plan() first; docs/routing.md has a worked
 * example.
 */
#include "routing/routing.h"

#include <stdio.h>
#include <string.h>

#include "accounting/accounting.h"
#include "config/config.h"
#include "providers/provider.h"
#include "routing/engine.h"
#include "util/fmt.h"

/* How far each candidate got, for its reason. */
enum verdict {
    V_EXCLUDED = 0, /* key or lists: why already says */
    V_FLOOR,        /* below the quality floor */
    V_FIT,          /* context too small */
    V_OPEN,         /* circuit open (model or provider) */
    V_OVER,         /* usable, over the latency bar */
    V_MEETS,        /* usable, meets the bar */
};

/* One plan's working state. */
struct planner {
    const struct config *cfg;
    const struct routing_request *rq;
    const struct routing_opts *o;
    struct routing_plan *plan;
    enum verdict *v;      /* per plan->cand */
    enum routing_admit *admit; /* per plan->cand */
    uint64_t now_us;
    bool named;           /* a model asked for by name */
    const struct routing_latency *lengths; /* a copy of every model's
                                              completion lengths */
};

/* ---------------------------------------------------------------------
 * Predictions
 * ------------------------------------------------------------------- */

/* Asks the breaker of entry e without taking a probe. */
static enum routing_admit ask(struct routing_entry *e,
                              const struct routing_knobs *k, uint64_t now_us)
{
    if (!e) {
        return ROUTING_ADMIT;
    }
    pthread_mutex_lock(&e->lock);
    enum routing_breaker was = e->health.state;
    enum routing_admit a = routing_health_admit(&e->health, k, now_us, false);
    enum routing_breaker is = e->health.state;
    pthread_mutex_unlock(&e->lock);
    routing_health_log_change(e->name, was, is);
    return a;
}

static bool meets_bar(const struct routing_plan *plan,
                      const struct routing_candidate *c);

/* Raises est by what the model's waits say now (waits.c): first tokens
 * overdue by first_pct make its first token that much later, and its
 * total later by as much; attempts past their predicted end by total_pct
 * make its total that much longer. Lower bounds, known before any slow
 * answer has come back. */
static void apply_waits(struct routing_estimate *est, uint32_t first_pct,
                        uint32_t total_pct)
{
    uint64_t total = est->total_us;
    if (first_pct > 100) {
        uint64_t t = est->ttft_us * first_pct / 100;
        est->total_us += t - est->ttft_us;
        est->ttft_us = t;
    }
    if (total_pct > 100) {
        uint64_t w = total * total_pct / 100;
        est->total_us = w > est->total_us ? w : est->total_us;
    }
}

/* m's estimate for this request from entry e (NULL: priors only) at
 * knobs k, raised by what its waits say (apply_waits). Takes e's lock. */
static void estimate(const struct planner *p, struct routing_entry *e,
                     const struct model_cfg *m, const struct routing_knobs *k,
                     struct routing_estimate *est)
{
    if (!e) {
        routing_latency_predict(NULL, p->lengths, m, k, p->now_us,
                                p->rq->prompt_tokens, p->rq->max_tokens,
                                est);
        return;
    }
    pthread_mutex_lock(&e->lock);
    e->lat.prior_ttft_us = m->prior_ttft_ms * 1000u;
    e->lat.gap_us = k->explore_after_ms * 1000;
    e->lat.window = (uint32_t)k->window;
    routing_latency_predict(&e->lat, p->lengths, m, k, p->now_us,
                            p->rq->prompt_tokens, p->rq->max_tokens, est);
    if (k->overdue_waits > 0 && e->waits.used) { /* waits.c */
        uint32_t first_pct;
        uint32_t total_pct;
        routing_waits_evidence(&e->waits, p->now_us, k->overdue_waits,
                               &first_pct, &total_pct);
        apply_waits(est, first_pct, total_pct);
    }
    pthread_mutex_unlock(&e->lock);
}

/* True if cand[i] meets the bar when predicted at percentile pct (for
 * the near-thing and bargain rules: a second estimate, one lock). */
static bool meets_at(const struct planner *p, size_t i, int pct)
{
    struct routing_candidate c = p->plan->cand[i];
    struct routing_knobs k = p->cfg->routing;
    k.percentile = pct;
    struct routing_estimate est;
    estimate(p, routing_table_get('m', c.model->name), c.model, &k, &est);
    c.ttft_ms = (uint32_t)((est.ttft_us + 999) / 1000);
    c.total_ms = (uint32_t)((est.total_us + 999) / 1000);
    return meets_bar(p->plan, &c);
}

static void predict(struct planner *p, size_t i)
{
    struct routing_candidate *c = &p->plan->cand[i];
    const struct model_cfg *m = c->model;
    const struct routing_knobs *k = &p->cfg->routing;
    struct routing_entry *e = routing_table_get('m', m->name);
    struct routing_estimate est;
    estimate(p, e, m, k, &est);
    p->admit[i] = ROUTING_ADMIT;
    if (e) {
        pthread_mutex_lock(&e->lock);
        enum routing_breaker was = e->health.state;
        p->admit[i] = routing_health_admit(&e->health, k, p->now_us, false);
        enum routing_breaker is = e->health.state;
        pthread_mutex_unlock(&e->lock);
        routing_health_log_change(e->name, was, is);
    }
    if (m->provider) {
        /* The worse of the model's and its provider's answers (the enum
         * goes from admit to refuse). */
        enum routing_admit pa =
            ask(routing_table_get('p', m->provider->name), k, p->now_us);
        p->admit[i] = pa > p->admit[i] ? pa : p->admit[i];
    }
    c->ttft_ms = (uint32_t)((est.ttft_us + 999) / 1000);
    c->total_ms = (uint32_t)((est.total_us + 999) / 1000);
    c->out_tokens = est.out_tokens;
    struct usage u = {.prompt_tokens = p->rq->prompt_tokens,
                      .completion_tokens = est.out_tokens};
    c->cost_nusd = price_cost_nusd(m, &u);
    c->predicted = true;
    if (e && k->safe_extra_pct > 0) {
        /* The same figures at the safe percentile, for prefer_safe(). */
        c->safe = meets_at(p, i, k->safe_percentile);
    }
}

/* The figure the bar compares: first-token time or total. */
static uint32_t metric_ms(const struct routing_plan *plan,
                          const struct routing_candidate *c)
{
    return plan->ttft_bound ? c->ttft_ms : c->total_ms;
}

static bool meets_bar(const struct routing_plan *plan,
                      const struct routing_candidate *c)
{
    bool ttft_ok = !plan->max_ttft_ms ||
                   c->ttft_ms <= (uint32_t)plan->max_ttft_ms;
    bool total_ok = plan->ttft_bound || !plan->max_latency_ms ||
                    c->total_ms <= (uint32_t)plan->max_latency_ms;
    return ttft_ok && total_ok;
}

/* ---------------------------------------------------------------------
 * Filters: floor, fit, circuits, bar
 * ------------------------------------------------------------------- */

/* The floor, relaxed to the best allowed tier when nothing reaches it. */
static int effective_floor(struct planner *p)
{
    int best = -1;
    for (size_t i = 0; i < p->plan->ncand; i++) {
        int t = p->plan->cand[i].model->tier;
        if (p->v[i] != V_EXCLUDED && t > best) {
            best = t;
        }
    }
    if (best < p->o->min_quality_tier) {
        p->plan->target_missed = true;
        return best;
    }
    return p->o->min_quality_tier;
}

/* Starts c->why with its model's name and sep. */
static void why_start(struct routing_candidate *c, struct fmt *f,
                      const char *sep)
{
    fmt_init(f, c->why, sizeof(c->why));
    fmt_str(f, c->model->name);
    fmt_str(f, sep);
}

static void apply_floor_and_fit(struct planner *p)
{
    int floor = p->named ? 0 : effective_floor(p);
    p->plan->min_quality_tier = p->o->min_quality_tier;
    size_t nfit = 0;
    for (size_t i = 0; i < p->plan->ncand; i++) {
        struct routing_candidate *c = &p->plan->cand[i];
        int64_t need = p->rq->prompt_tokens +
                       (p->rq->max_tokens ? p->rq->max_tokens
                                          : c->out_tokens);
        if (p->v[i] == V_EXCLUDED) {
            continue;
        }
        if (c->model->tier < floor) {
            p->v[i] = V_FLOOR;
            struct fmt f;
            why_start(c, &f, ": tier ");
            fmt_i64(&f, c->model->tier);
            fmt_str(&f, " < ");
            fmt_i64(&f, floor);
        } else if (need > c->model->context_tokens) {
            p->v[i] = V_FIT;
            struct fmt f;
            why_start(c, &f, ": context ");
            fmt_i64(&f, c->model->context_tokens);
            fmt_str(&f, " < ");
            fmt_i64(&f, need);
        } else {
            p->v[i] = V_MEETS; /* for now */
            nfit++;
        }
    }
    if (nfit == 0 && p->named) {
        /* By name: the estimate may be wrong, the provider decides. */
        for (size_t i = 0; i < p->plan->ncand; i++) {
            if (p->v[i] == V_FIT) {
                p->v[i] = V_MEETS;
                p->plan->cand[i].why[0] = '\0';
            }
        }
    }
}

static void apply_circuits_and_bar(struct planner *p)
{
    size_t nclosed = 0;
    for (size_t i = 0; i < p->plan->ncand; i++) {
        if (p->v[i] == V_MEETS) {
            nclosed += p->admit[i] == ROUTING_ADMIT ||
                       p->admit[i] == ROUTING_ADMIT_PROBE;
        }
    }
    for (size_t i = 0; i < p->plan->ncand; i++) {
        struct routing_candidate *c = &p->plan->cand[i];
        if (p->v[i] != V_MEETS) {
            continue;
        }
        bool refused = p->admit[i] == ROUTING_REFUSE_OPEN ||
                       p->admit[i] == ROUTING_REFUSE_PROBING;
        if (refused && nclosed > 0) {
            /* All open: try them anyway rather than answer nothing. */
            p->v[i] = V_OPEN;
            struct fmt f;
            why_start(c, &f, p->admit[i] == ROUTING_REFUSE_OPEN
                                 ? ": circuit open"
                                 : ": circuit half-open");
            continue;
        }
        c->probe = p->admit[i] == ROUTING_ADMIT_PROBE;
        p->v[i] = meets_bar(p->plan, c) ? V_MEETS : V_OVER;
    }
}

/* ---------------------------------------------------------------------
 * Order
 * ------------------------------------------------------------------- */

/* True if a goes before b: by cost among those meeting the bar, by speed
 * among the others; ties to the better tier, then the faster. */
static bool before(const struct routing_plan *plan,
                   const struct routing_candidate *a, enum verdict va,
                   const struct routing_candidate *b, enum verdict vb)
{
    if (va != vb) {
        return va == V_MEETS;
    }
    if (va == V_MEETS && a->cost_nusd != b->cost_nusd) {
        return a->cost_nusd < b->cost_nusd;
    }
    if (metric_ms(plan, a) != metric_ms(plan, b)) {
        return metric_ms(plan, a) < metric_ms(plan, b);
    }
    return a->model->tier > b->model->tier;
}

/* Sorts the usable candidates to the front (stable insertion sort: a
 * handful of models). For a named model only the usable ones move, in
 * their configured order. Returns how many are usable. */
static size_t sort_usable(struct planner *p)
{
    struct routing_candidate *cand = p->plan->cand;
    size_t n = p->plan->ncand;
    for (size_t i = 1; i < n; i++) {
        struct routing_candidate c = cand[i];
        enum verdict v = p->v[i];
        enum routing_admit ad = p->admit[i];
        size_t j = i;
        while (j > 0) {
            enum verdict pv = p->v[j - 1];
            bool usable = v == V_MEETS || v == V_OVER;
            bool prev_usable = pv == V_MEETS || pv == V_OVER;
            bool move = usable && (!prev_usable ||
                                   (!p->named &&
                                    before(p->plan, &c, v, &cand[j - 1], pv)));
            if (!move) {
                break;
            }
            cand[j] = cand[j - 1];
            p->v[j] = pv;
            p->admit[j] = p->admit[j - 1];
            j--;
        }
        cand[j] = c;
        p->v[j] = v;
        p->admit[j] = ad;
    }
    size_t nusable = 0;
    while (nusable < n &&
           (p->v[nusable] == V_MEETS || p->v[nusable] == V_OVER)) {
        nusable++;
    }
    return nusable;
}

/* Writes why an over-target candidate c was passed over: the bar it
 * failed, first-token or total. */
static void explain_over(const struct routing_plan *plan,
                         struct routing_candidate *c)
{
    bool ttft = plan->max_ttft_ms &&
                (plan->ttft_bound ||
                 c->ttft_ms > (uint32_t)plan->max_ttft_ms);
    struct fmt f;
    why_start(c, &f, ttft ? ": ttft " : ": ");
    fmt_u64(&f, ttft ? c->ttft_ms : c->total_ms, 0);
    fmt_str(&f, "ms > ");
    fmt_i64(&f, ttft ? plan->max_ttft_ms : plan->max_latency_ms);
    fmt_str(&f, "ms");
}

static void explain_usable(struct planner *p, size_t nusable)
{
    struct routing_plan *plan = p->plan;
    for (size_t i = 0; i < nusable; i++) {
        struct routing_candidate *c = &plan->cand[i];
        c->in_order = true;
        struct fmt f;
        if (i == 0) {
            c->why[0] = '\0';
        } else if (p->v[i] == V_OVER) {
            explain_over(plan, c);
        } else if (p->named) {
            why_start(c, &f, ": fallback");
        } else {
            why_start(c, &f, ": dearer");
        }
    }
}

static void to_front(struct planner *p, size_t j);

/*
 * The cheapest candidate that meets the bar at the percentile may be a
 * near thing: its figures at latency.safe_percentile (p97) miss it. When
 * another that meets the bar costs at most latency.safe_extra_pct (50%)
 * more and is safe, it goes first instead: safety is bought where it is
 * cheap. Most requests pay nothing (their cheapest is safe, or nothing
 * safe is near its price); bench-routing measured +0.4 points within
 * target for +0.002 of the oracle's cost (docs/routing.md).
 */
static void prefer_safe(struct planner *p, size_t n)
{
    struct routing_plan *plan = p->plan;
    const struct routing_knobs *k = &p->cfg->routing;
    if (k->safe_extra_pct <= 0 || p->named || n < 2 || p->v[0] != V_MEETS ||
        plan->cand[0].safe) {
        return;
    }
    int64_t limit = plan->cand[0].cost_nusd * (100 + k->safe_extra_pct) / 100;
    for (size_t j = 1; j < n && p->v[j] == V_MEETS; j++) {
        if (plan->cand[j].safe && plan->cand[j].cost_nusd <= limit) {
            to_front(p, j);
            struct fmt f;
            why_start(&plan->cand[1], &f, ": near the target");
            plan->cand[0].why[0] = '\0';
            return;
        }
    }
}

/*
 * The other side of a near thing: the cheapest candidate that meets the
 * bar may cost several times one that is just over it. When a cheaper one
 * over the bar meets it at latency.bargain_percentile (p80), and the
 * cheapest that meets it costs at least latency.bargain_ratio_pct (300%)
 * of it, the cheaper goes first (`x: $0.0012 dearer` for the one it
 * displaces): a few points of confidence are not worth paying three times
 * over (bench-routing: llama-3.3-70b, ten times gemini-flash-lite's price
 * for a 25k-token prompt, chosen because gemini-flash-lite was predicted
 * 2550 ms for a 2500 ms target, true P(within) 0.90-0.95). The dearer one
 * stays next, so the deadline and a hedge still rescue to it. Returns
 * true if it moved one.
 */
static bool prefer_bargain(struct planner *p, size_t n)
{
    struct routing_plan *plan = p->plan;
    const struct routing_knobs *k = &p->cfg->routing;
    if (k->bargain_ratio_pct <= 0 || p->named || n < 2 ||
        p->v[0] != V_MEETS) {
        return false;
    }
    const struct routing_candidate *c0 = &plan->cand[0];
    size_t best = n;
    for (size_t j = 1; j < n; j++) {
        const struct routing_candidate *c = &plan->cand[j];
        if (p->v[j] == V_OVER && c->cost_nusd * k->bargain_ratio_pct <=
                                     c0->cost_nusd * 100 &&
            (best == n || c->cost_nusd < plan->cand[best].cost_nusd) &&
            meets_at(p, j, k->bargain_percentile)) {
            best = j;
        }
    }
    if (best == n) {
        return false;
    }
    to_front(p, best);
    p->v[0] = V_MEETS;
    plan->cand[0].why[0] = '\0';
    plan->cand[0].bargain = true;
    struct fmt f;
    why_start(&plan->cand[1], &f, ": dearer");
    return true;
}

/* ---------------------------------------------------------------------
 * Exploration
 * ------------------------------------------------------------------- */

/* True if c's figures are stale (nothing observed for explore_after_ms)
 * and nobody explored it since; if so, marks it explored now. */
static bool stale_once(struct planner *p, const struct routing_candidate *c)
{
    struct routing_entry *e = routing_table_get('m', c->model->name);
    uint64_t gap_us = p->cfg->routing.explore_after_ms * 1000;
    if (!e || !gap_us) {
        return false;
    }
    pthread_mutex_lock(&e->lock);
    const struct routing_latency *l = &e->lat;
    bool stale = l->newest_us && p->now_us > l->newest_us + gap_us &&
                 p->now_us > l->explored_us + gap_us;
    if (stale) {
        e->lat.explored_us = p->now_us;
    }
    pthread_mutex_unlock(&e->lock);
    return stale;
}

/* Moves cand[j] (and its verdict) to the front. */
static void to_front(struct planner *p, size_t j)
{
    struct routing_candidate c = p->plan->cand[j];
    enum verdict v = p->v[j];
    enum routing_admit ad = p->admit[j];
    for (size_t i = j; i > 0; i--) {
        p->plan->cand[i] = p->plan->cand[i - 1];
        p->v[i] = p->v[i - 1];
        p->admit[i] = p->admit[i - 1];
    }
    p->plan->cand[0] = c;
    p->v[0] = v;
    p->admit[0] = ad;
}

/*
 * A model passed over as slow is not chosen, so it is not measured, and
 * would stay "slow" until its figures age out. When one that is cheaper
 * than the primary has gone unmeasured for explore_after_ms, and its prior
 * would meet the bar soon enough for the primary to still make the target
 * if it does not (the rescue time), it goes first, once per that period:
 * its deadline is the rescue time, so the request still meets its target
 * either way, at the price of a cheap prompt at most.
 */
static void maybe_explore(struct planner *p, size_t n)
{
    struct routing_plan *plan = p->plan;
    uint64_t target = plan->ttft_bound ? (uint64_t)plan->max_ttft_ms
                                       : (uint64_t)plan->max_latency_ms;
    const struct routing_candidate *c0 = &plan->cand[0];
    uint64_t need = plan->ttft_bound ? c0->ttft_ms : c0->total_ms;
    if (p->named || n < 2 || p->v[0] != V_MEETS || target <= need) {
        return;
    }
    for (size_t j = 1; j < n; j++) {
        struct routing_candidate *c = &plan->cand[j];
        if (p->v[j] != V_OVER || c->cost_nusd >= c0->cost_nusd) {
            continue;
        }
        struct routing_estimate est;
        routing_latency_predict(NULL, p->lengths, c->model,
                                &p->cfg->routing, p->now_us,
                                p->rq->prompt_tokens, p->rq->max_tokens,
                                &est);
        struct routing_candidate bet = *c;
        bet.ttft_ms = (uint32_t)((est.ttft_us + 999) / 1000);
        bet.total_ms = (uint32_t)((est.total_us + 999) / 1000);
        uint64_t first = p->rq->stream ? bet.ttft_ms : bet.total_ms;
        if (!meets_bar(plan, &bet) || first > target - need ||
            !stale_once(p, c)) {
            continue;
        }
        bet.explore = true;
        bet.why[0] = '\0';
        *c = bet;
        struct fmt f;
        why_start(&plan->cand[0], &f, ": rescue while exploring ");
        fmt_str(&f, c->model->name);
        to_front(p, j);
        p->v[0] = V_MEETS;
        return;
    }
}

/* ---------------------------------------------------------------------
 * Long shots
 * ------------------------------------------------------------------- */

/* Takes the early probe of entry e (NULL: no breaker, nothing to take). */
static bool probe_early(struct routing_entry *e, const struct routing_knobs *k,
                        uint64_t now_us)
{
    if (!e) {
        return true;
    }
    pthread_mutex_lock(&e->lock);
    enum routing_breaker was = e->health.state;
    bool ok = routing_health_probe_early(&e->health, k, now_us);
    enum routing_breaker is = e->health.state;
    pthread_mutex_unlock(&e->lock);
    routing_health_log_change(e->name, was, is);
    return ok;
}

/*
 * A plan that misses its target anyway (nothing usable meets the bar)
 * loses little by first trying a model behind an open circuit that would
 * meet it, had it recovered: a failure moves on to the plan's fastest,
 * after a failure's time (or the usual deadline). The long shot goes as
 * its breaker's probe: one at a time per model, as in half-open, never
 * against an upstream Retry-After, and its outcome decides the breaker.
 * Without it a model that has recovered stays out for its whole open
 * period, doubled by each failed probe: in bench-routing llama-3.3-70b,
 * the one tier-3 model fast enough for 2.5 s, stayed out 14 s after its
 * outage, and 15 of the 17 misses of those 20 s were planned as missed.
 * Returns the new count of usable candidates.
 */
static size_t long_shot(struct planner *p, size_t n)
{
    struct routing_plan *plan = p->plan;
    const struct routing_knobs *k = &p->cfg->routing;
    if (p->named || (n > 0 && p->v[0] == V_MEETS)) {
        return n;
    }
    size_t best = plan->ncand;
    for (size_t j = n; j < plan->ncand; j++) {
        const struct routing_candidate *c = &plan->cand[j];
        if (p->v[j] == V_OPEN && p->admit[j] == ROUTING_REFUSE_OPEN &&
            meets_bar(plan, c) &&
            (best == plan->ncand ||
             c->cost_nusd < plan->cand[best].cost_nusd)) {
            best = j;
        }
    }
    if (best == plan->ncand) {
        return n;
    }
    const struct model_cfg *m = plan->cand[best].model;
    if (m->provider &&
        !probe_early(routing_table_get('p', m->provider->name), k,
                     p->now_us)) {
        return n;
    }
    if (!probe_early(routing_table_get('m', m->name), k, p->now_us)) {
        return n; /* the provider's slot, if taken, frees itself */
    }
    struct routing_candidate *c = &plan->cand[best];
    c->why[0] = '\0';
    c->probe = true;
    c->long_shot = true;
    c->in_order = true;
    if (n > 0) {
        explain_over(plan, &plan->cand[0]);
    }
    to_front(p, best);
    p->v[0] = V_MEETS;
    p->admit[0] = ROUTING_ADMIT_PROBE;
    return n + 1;
}

/* ---------------------------------------------------------------------
 * Deadline and hedge
 * ------------------------------------------------------------------- */

/* The bar of the plan for the primary's first byte: the latest time at
 * which it still meets the target (0: no target), and the latest time
 * at which giving up on it still lets order[1], as predicted, meet it. */
static void latest_times(const struct planner *p, uint64_t *cap,
                         uint64_t *rescue)
{
    const struct routing_plan *plan = p->plan;
    const struct routing_candidate *c = &plan->cand[0];
    const struct routing_candidate *next = &plan->cand[1];
    uint64_t target = plan->ttft_bound ? (uint64_t)plan->max_ttft_ms
                                       : (uint64_t)plan->max_latency_ms;
    uint64_t need = plan->ttft_bound ? next->ttft_ms : next->total_ms;
    uint64_t after = 0; /* what the primary still needs after its first
                           byte: a total-bound stream's decoding */
    if (p->rq->stream && !plan->ttft_bound) {
        after = c->total_ms - c->ttft_ms;
    }
    *cap = target > after ? target - after : 0;
    *rescue = target > need ? target - need : 0;
}

/* Sets the primary's first-token deadline and the hedge time, from its
 * predicted first byte (a stream's first token, a non-stream answer).
 * Without a target (or once it is missed): the prediction plus a margin.
 * With one: the rescue time, the latest at which order[1] (as predicted)
 * can still make the target, when that leaves the primary its margin;
 * else the later of the target and the prediction plus the margin: once
 * the rescue time has passed the request has missed anyway, and a primary
 * that is merely late (past its p90, within its margin) answers sooner
 * than a fallback started from nothing, and cheaper (bench-routing: the
 * misses' median lateness 1118 -> 731 ms, cost -0.017 of the oracle's).
 * The hedge is the prediction plus the hedge margin (the primary keeps
 * running), and only when the next candidate, started then, can still
 * make the target: a later hedge pays a second prompt for an answer that
 * misses either way (bench-routing: 96 such hedges, 1 target saved, +0.03
 * of the oracle's cost). */
static void set_times(struct planner *p)
{
    struct routing_plan *plan = p->plan;
    const struct routing_knobs *k = &p->cfg->routing;
    const struct routing_candidate *c = &plan->cand[0];
    if (plan->norder < 2) {
        return; /* nothing to move to: the transport's timeouts apply */
    }
    uint64_t metric = p->rq->stream ? c->ttft_ms : c->total_ms;
    uint64_t cap;
    uint64_t rescue;
    latest_times(p, &cap, &rescue);
    uint64_t d = metric * (uint64_t)(100 + k->first_token_margin_pct) / 100 +
                 k->first_token_margin_ms;
    if (cap && metric <= cap && !c->long_shot) {
        d = (rescue >= d || c->explore) && rescue <= cap ? rescue
                                                        : d > cap ? d : cap;
    }
    plan->first_token_deadline_ms = d > 0 ? d : 1;
    if (p->o->hedge) {
        /* The next candidate starts beside the primary when it has not
         * sent its first byte by its prediction plus the hedge margin
         * (not sooner: hedging before the primary is late doubles the
         * cost of requests that were fine, bench-routing measured 1.44x),
         * if it can still make the target from then. The primary is not
         * given up before the target itself: whichever answers first
         * wins. */
        uint64_t h = metric * (uint64_t)(100 + k->hedge_margin_pct) / 100 +
                     k->hedge_margin_ms;
        plan->hedge_after_ms = h > 0 ? h : 1;
        if (cap && h > rescue) {
            plan->hedge_after_ms = 0; /* too late for the next to help */
        }
        if (plan->hedge_after_ms && cap && metric <= cap &&
            plan->first_token_deadline_ms < cap) {
            plan->first_token_deadline_ms = cap;
        }
    }
}

/* Takes a half-open breaker's probe slot, if it is one. */
static void take_probe(struct routing_entry *e, const struct routing_knobs *k,
                       uint64_t now_us)
{
    if (e) {
        pthread_mutex_lock(&e->lock);
        enum routing_breaker was = e->health.state;
        routing_health_admit(&e->health, k, now_us, true);
        enum routing_breaker is = e->health.state;
        pthread_mutex_unlock(&e->lock);
        routing_health_log_change(e->name, was, is);
    }
}

/* Takes the probe slots (the model's, its provider's) of the primary
 * when it goes as a probe. Only the primary is sure to be attempted: a
 * fallback holding the slot would, most of the time, never be tried, and
 * keep the model half-open and refused to every other plan until the
 * slot expires (after an outage, llama-3.3-70b of bench-routing stayed
 * out for minutes that way). A half-open fallback stays in the order
 * without the slot; if it is tried, its outcome still decides. */
static void take_probes(struct planner *p)
{
    for (size_t i = 1; i < p->plan->norder; i++) {
        p->plan->cand[i].probe = false;
    }
    struct routing_candidate *c = &p->plan->cand[0];
    if (p->plan->norder == 0 || !c->probe) {
        return;
    }
    take_probe(routing_table_get('m', c->model->name), &p->cfg->routing,
               p->now_us);
    if (c->model->provider) {
        take_probe(routing_table_get('p', c->model->provider->name),
                   &p->cfg->routing, p->now_us);
    }
}

/* ---------------------------------------------------------------------
 * Entry points
 * ------------------------------------------------------------------- */

/* RL_OK when some candidate is allowed at all, else why not. */
static enum rl_err check_allowed(struct planner *p)
{
    size_t by_key = 0;
    size_t usable = 0;
    for (size_t i = 0; i < p->plan->ncand; i++) {
        const struct routing_candidate *c = &p->plan->cand[i];
        by_key += strstr(c->why, ": not allowed") == NULL;
        usable += c->why[0] == '\0';
    }
    if (by_key == 0) {
        return RL_E_FORBIDDEN;
    }
    if (usable == 0) {
        snprintf(p->plan->param, sizeof(p->plan->param), "routing.%s",
                 p->o->has_allow ? "allow" : "deny");
        snprintf(p->plan->message, sizeof(p->plan->message),
                 "routing.allow and routing.deny leave no model this key "
                 "may use.");
        return RL_E_INVALID_REQUEST;
    }
    return RL_OK;
}

/* For "auto", refuses a request whose context fits no usable model. */
static enum rl_err check_fit(struct planner *p)
{
    int64_t largest = 0;
    for (size_t i = 0; i < p->plan->ncand; i++) {
        if (p->v[i] == V_MEETS) {
            return RL_OK;
        }
        if (p->v[i] == V_FIT &&
            p->plan->cand[i].model->context_tokens > largest) {
            largest = p->plan->cand[i].model->context_tokens;
        }
    }
    snprintf(p->plan->param, sizeof(p->plan->param), "messages");
    snprintf(p->plan->message, sizeof(p->plan->message),
             "The prompt (about %lld tokens) and its output fit no "
             "available model's context window (the largest holds %lld).",
             (long long)p->rq->prompt_tokens, (long long)largest);
    return RL_E_INVALID_REQUEST;
}

/* The process-wide entry of every model's completion lengths. */
static struct routing_entry *lengths_entry(void)
{
    return routing_table_get('o', "all");
}

/* Copies the lengths of every model into *out (only its out_tokens
 * rings). Returns out, or NULL without an entry. */
static const struct routing_latency *copy_lengths(struct routing_latency *out)
{
    struct routing_entry *e = lengths_entry();
    if (!e) {
        return NULL;
    }
    pthread_mutex_lock(&e->lock);
    memcpy(out->out_tokens, e->lat.out_tokens, sizeof(out->out_tokens));
    pthread_mutex_unlock(&e->lock);
    return out;
}

enum rl_err routing_plan(const struct config *cfg,
                         const struct routing_request *rq,
                         const struct routing_key *key, struct arena *a,
                         struct routing_plan *out)
{
    memset(out, 0, sizeof(*out));
    struct routing_opts o;
    enum rl_err err = routing_opts_read(cfg, rq, key, a, &o, out);
    if (err == RL_OK) {
        err = routing_candidates_list(cfg, rq, key, &o, a, out);
    }
    if (err != RL_OK) {
        return err;
    }
    struct routing_latency lengths;
    struct planner p = {.cfg = cfg, .rq = rq, .o = &o, .plan = out,
                        .now_us = routing_now_us(),
                        .named = strcmp(rq->model, "auto") != 0,
                        .lengths = copy_lengths(&lengths)};
    p.v = arena_alloc(a, (out->ncand + 1) * sizeof(*p.v));
    p.admit = arena_alloc(a, (out->ncand + 1) * sizeof(*p.admit));
    out->max_latency_ms = o.max_latency_ms;
    out->max_ttft_ms = o.max_ttft_ms;
    out->ttft_bound = rq->stream && o.max_ttft_ms > 0;
    err = p.named ? RL_OK : check_allowed(&p);
    if (err != RL_OK) {
        return err;
    }
    for (size_t i = 0; i < out->ncand; i++) {
        p.v[i] = out->cand[i].why[0] ? V_EXCLUDED : V_MEETS;
        if (p.v[i] != V_EXCLUDED) {
            predict(&p, i);
        }
    }
    apply_floor_and_fit(&p);
    err = p.named ? RL_OK : check_fit(&p);
    if (err != RL_OK) {
        return err;
    }
    apply_circuits_and_bar(&p);
    size_t n = sort_usable(&p);
    explain_usable(&p, n);
    if (!prefer_bargain(&p, n)) {
        prefer_safe(&p, n);
    }
    maybe_explore(&p, n);
    n = long_shot(&p, n);
    const struct model_cfg **order = arena_alloc(a, (n + 1) * sizeof(*order));
    for (size_t i = 0; i < n; i++) {
        order[i] = out->cand[i].model;
    }
    out->order = order;
    out->norder = n;
    out->target_missed = out->target_missed || n == 0 || p.v[0] != V_MEETS;
    set_times(&p);
    take_probes(&p);
    return RL_OK;
}

uint64_t routing_plan_bar_us(const struct routing_plan *plan, bool stream)
{
    int ms = stream ? (plan->ttft_bound ? plan->max_ttft_ms : 0)
                    : plan->max_latency_ms;
    return ms > 0 ? (uint64_t)ms * 1000 : 0;
}

uint32_t routing_wait_begin(const char *model_name, uint32_t first_ms,
                            uint32_t total_ms)
{
    struct routing_entry *e = routing_table_get('m', model_name);
    if (!e) {
        return 0;
    }
    uint64_t now_us = routing_now_us();
    pthread_mutex_lock(&e->lock);
    uint32_t token = routing_waits_begin(&e->waits, now_us,
                                         (uint64_t)first_ms * 1000,
                                         (uint64_t)total_ms * 1000);
    pthread_mutex_unlock(&e->lock);
    return token;
}

void routing_wait_first(const char *model_name, uint32_t token,
                        uint64_t ttft_us, int64_t prompt_tokens)
{
    struct routing_entry *e = routing_table_get('m', model_name);
    if (!e) {
        return;
    }
    uint64_t now_us = routing_now_us();
    pthread_mutex_lock(&e->lock);
    routing_waits_first(&e->waits, token);
    if (ttft_us) {
        routing_latency_first_token(&e->lat, now_us, ttft_us, prompt_tokens);
    }
    pthread_mutex_unlock(&e->lock);
}

void routing_wait_end(const char *model_name, uint32_t token)
{
    struct routing_entry *e = token ? routing_table_get('m', model_name)
                                    : NULL;
    if (e) {
        pthread_mutex_lock(&e->lock);
        routing_waits_end(&e->waits, token);
        pthread_mutex_unlock(&e->lock);
    }
}

void routing_observe(const char *model_name, const struct routing_obs *o)
{
    uint64_t now_us = routing_now_us();
    struct routing_entry *e = routing_table_get('m', model_name);
    if (e) {
        pthread_mutex_lock(&e->lock);
        enum routing_breaker was = e->health.state;
        routing_latency_observe(&e->lat, now_us, o);
        routing_health_observe(&e->health, now_us, o);
        routing_waits_end(&e->waits, o->wait);
        enum routing_breaker is = e->health.state;
        pthread_mutex_unlock(&e->lock);
        routing_health_log_change(e->name, was, is);
    }
    struct routing_entry *le = lengths_entry();
    if (le) {
        pthread_mutex_lock(&le->lock);
        /* The pool is read over its whole ring (latency.c): its pushes
         * keep that window in order, so the read is a lookup. */
        le->lat.window = ROUTING_RING_MAX;
        routing_latency_observe_length(&le->lat, now_us, o);
        pthread_mutex_unlock(&le->lock);
    }
    if (!o->provider) {
        return;
    }
    struct routing_entry *pe = routing_table_get('p', o->provider);
    if (pe && (o->kind == ROUTING_OBS_OK ||
               routing_outcome_is_provider_fault(o->kind))) {
        struct routing_obs po = *o;
        po.retry_after_s = 0; /* a model's Retry-After is its own */
        pthread_mutex_lock(&pe->lock);
        enum routing_breaker was = pe->health.state;
        routing_health_observe(&pe->health, now_us, &po);
        enum routing_breaker is = pe->health.state;
        pthread_mutex_unlock(&pe->lock);
        routing_health_log_change(pe->name, was, is);
    }
}
