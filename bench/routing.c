/*
 * routing.c - make bench-routing: the real routing engine (routing_plan,
 * routing_observe, linked from the library objects) against a simulated
 * workload over fake models whose latencies drift, on a virtual clock.
 *
 * Each request is planned, then "executed" as the gateway would: the
 * primary with its true sampled latency; a failure, or no first byte by
 * the plan's deadline, moves to the next candidate; with hedging the next
 * candidate starts at the plan's hedge time and the first to answer wins
 * (the loser is cancelled and billed for its prompt). Every attempt is
 * observed back at the virtual time it ended, so the engine learns late,
 * as it would live. The oracle of the last line knows every model's true
 * latency distributions at that moment (drift, prefill, jitter law,
 * failure rate, the law of answer lengths) but not the request's draws,
 * and sends each request to the cheapest model that meets its target
 * with a confidence chosen to keep 99% within target (the comment above
 * SERVICE_LEVEL; docs/routing.md says why). Other yardsticks, the clairvoyant
 * one that knows each request's realised latency among them, are
 * printed above it.
 *
 * Prints a table per model and, last, one line for scripts:
 *   routing: requests=N within_target=0.993 cost_vs_oracle=1.031
 * Deterministic: a seeded PRNG, no wall clock. Read main() first.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounting/accounting.h"
#include "config/config.h"
#include "providers/provider.h"
#include "routing/engine.h"
#include "routing/routing.h"

#define NREQ 12000
#define ARRIVAL_US 40000 /* 25 requests a second */
#define NMODELS 7
#define MAX_PENDING 4096

/* ---------------------------------------------------------------------
 * PRNG and the virtual clock
 * ------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t sim_now_us;

static uint64_t sim_clock(void)
{
    return sim_now_us;
}

static uint64_t mc_state = 12345; /* the distribution oracle's draws */
static uint64_t mc_len_state = 54321; /* the length-knowing oracle's */
static uint64_t *rng = &rng_state;  /* the stream in use */

static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (*rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(void)
{
    return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
    return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform());
}

static double lognormal(double median, double sigma)
{
    return median * exp(sigma * normal());
}

/* ---------------------------------------------------------------------
 * The fake models: prices, tiers, priors, and their true behaviour
 * ------------------------------------------------------------------- */

struct truth {
    const char *name;
    const char *provider;
    int tier;
    const char *in_usd;   /* per million tokens */
    const char *out_usd;
    int64_t context;
    double ttft_ms;       /* true median, before drift */
    double tps;           /* true median decode rate */
    double prefill_us;    /* extra first-token time per prompt token */
    double fail_p;        /* background failure probability */
};

static const struct truth truths[NMODELS] = {
    {"llama-3.1-8b", "groq", 1, "0.05", "0.08", 131072, 150, 750, 10, .002},
    {"gemini-flash-lite", "gemini", 2, "0.075", "0.30", 1048576, 350, 250,
     15, .002},
    {"gemini-flash", "gemini", 2, "0.10", "0.40", 1048576, 400, 200, 15,
     .002},
    {"mistral-small", "mistral", 2, "0.10", "0.30", 32768, 300, 150, 20,
     .002},
    {"llama-3.3-70b", "groq", 3, "0.59", "0.79", 131072, 250, 280, 10,
     .002},
    {"gpt-4o-mini", "openai", 3, "0.15", "0.60", 128000, 500, 90, 20, .002},
    {"claude-haiku", "anthropic", 3, "0.80", "4.00", 200000, 600, 65, 25,
     .002},
};

/* Drift: the factor on first-token time and on time per token of model m
 * for request i. */
static int no_events; /* BENCH_NO_EVENTS: no drift, no outage */
static double len_sigma = 0.6;  /* spread of natural answer lengths */
static double ttft_sigma = 0.25; /* spread of first-token times */
static double hedge_share = 0.3; /* requests with routing.hedge */
static bool dist_on = true;       /* BENCH_NO_DIST: skip it (faster) */

static double slowdown(int m, int i)
{
    if (no_events) {
        return 1.0;
    }
    if (m == 1 && i >= 3000 && i < 4500) {
        return 3.0; /* flash-lite: three times slower, then recovers */
    }
    if (m == 3) {
        return 1.0 + 1.5 * i / NREQ; /* mistral: slowly worse */
    }
    if (m == 5 && i >= 8000 && i < 8400) {
        return 2.0; /* gpt-4o-mini: a bad patch */
    }
    return 1.0;
}

/* Failure probability of model m for request i. */
static double fail_p(int m, int i)
{
    if (no_events) {
        return truths[m].fail_p;
    }
    if (m == 4 && i >= 6000 && i < 6600) {
        return 0.7; /* llama-70b: an outage of 5xx */
    }
    if (m == 0 && i >= 9500 && i < 9700) {
        return 0.3; /* llama-8b: rate limited (429, Retry-After) */
    }
    return truths[m].fail_p;
}

/* One model's realised behaviour for one request. */
struct sample {
    enum routing_outcome fail; /* OK: it answers */
    double ttft_ms;            /* to its first token */
    double total_ms;           /* to its last token */
    double fail_ms;            /* when a failure shows */
};

static void sample_all(int i, int64_t prompt, int64_t out,
                       struct sample *s)
{
    for (int m = 0; m < NMODELS; m++) {
        const struct truth *t = &truths[m];
        double f = slowdown(m, i);
        s[m].ttft_ms = lognormal(t->ttft_ms * f, ttft_sigma) +
                       prompt * t->prefill_us / 1000.0 * f;
        double ms_per_tok = 1000.0 / lognormal(t->tps, 0.10) * f;
        s[m].total_ms = s[m].ttft_ms + out * ms_per_tok;
        s[m].fail = ROUTING_OBS_OK;
        if (uniform() < fail_p(m, i)) {
            s[m].fail = m == 0 ? ROUTING_OBS_429 : ROUTING_OBS_5XX;
            s[m].fail_ms = 0.3 * s[m].ttft_ms;
        }
    }
}

/* ---------------------------------------------------------------------
 * Observations delivered at the virtual time they happen (a heap)
 * ------------------------------------------------------------------- */

/* What a pending event tells the router. */
enum pending_kind {
    P_OBS = 0,   /* an attempt ended: routing_observe */
    P_BEGIN,     /* an attempt was sent: routing_wait_begin */
    P_FIRST,     /* a stream's first token came: routing_wait_first */
    P_END,       /* an attempt ended unobserved: routing_wait_end */
};

struct pending {
    uint64_t at_us;
    int model;
    struct routing_obs obs;
    enum pending_kind kind;
    int wait;           /* the attempt's entry in waits[]; -1: none */
};

/* The waits of attempts in flight, as the gateway's transport reports
 * them (routing_wait_begin, routing_wait_first, routing_obs.wait): the
 * router's token and the plan's predictions of each. */
#define MAX_WAITS 8192
static struct {
    uint32_t token;
    uint32_t first_ms;  /* a stream's predicted first token; 0: none */
    uint32_t total_ms;  /* its predicted end */
    uint64_t ttft_us;   /* its first token, when it comes */
    int64_t prompt;
} waits[MAX_WAITS];
static int nwaits;
static bool waits_on = true; /* BENCH_NO_WAITS: the router is not told */


static struct pending heap[MAX_PENDING];
static size_t nheap;

static void heap_swap(size_t a, size_t b)
{
    struct pending t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
}

static void event_push(const struct pending *e)
{
    if (nheap == MAX_PENDING) {
        return;
    }
    size_t i = nheap++;
    heap[i] = *e;
    while (i && heap[(i - 1) / 2].at_us > heap[i].at_us) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void pending_push(uint64_t at_us, int model,
                         const struct routing_obs *o, int wait)
{
    event_push(&(struct pending){.at_us = at_us, .model = model, .obs = *o,
                                 .kind = P_OBS, .wait = wait});
}

/* Tells the router now about event e (at its time). */
static void event_run(struct pending *e)
{
    const char *name = truths[e->model].name;
    int w = e->wait;
    switch (e->kind) {
    case P_OBS:
        e->obs.wait = w >= 0 ? waits[w].token : 0;
        e->obs.ttft_learned = w >= 0 && waits[w].ttft_us != 0;
        routing_observe(name, &e->obs);
        break;
    case P_BEGIN:
        waits[w].token = routing_wait_begin(name, waits[w].first_ms,
                                            waits[w].total_ms);
        break;
    case P_FIRST:
        routing_wait_first(name, waits[w].token, waits[w].ttft_us,
                           waits[w].prompt);
        break;
    case P_END:
        routing_wait_end(name, waits[w].token);
        break;
    }
}

/* Feeds routing_observe() every observation due by now_us. */
static void deliver(uint64_t now_us)
{
    while (nheap && heap[0].at_us <= now_us) {
        sim_now_us = heap[0].at_us;
        event_run(&heap[0]);
        heap[0] = heap[--nheap];
        size_t i = 0;
        for (;;) {
            size_t l = 2 * i + 1;
            size_t r = l + 1;
            size_t m = i;
            m = l < nheap && heap[l].at_us < heap[m].at_us ? l : m;
            m = r < nheap && heap[r].at_us < heap[m].at_us ? r : m;
            if (m == i) {
                break;
            }
            heap_swap(i, m);
            i = m;
        }
    }
    sim_now_us = now_us;
}

/* ---------------------------------------------------------------------
 * The workload
 * ------------------------------------------------------------------- */

struct request {
    int64_t prompt;      /* tokens */
    int64_t max_tokens;  /* 0: unset */
    int64_t out;         /* tokens it really produces */
    bool stream;
    int tier;            /* min_quality_tier */
    int max_latency_ms;  /* 0: none */
    int max_ttft_ms;     /* 0: none */
    bool hedge;
    char routing[160];   /* the routing object text */
};

static void make_request(struct request *q)
{
    double u = uniform();
    q->prompt = u < 0.6 ? 50 + (int64_t)(uniform() * 450)
              : u < 0.9 ? 500 + (int64_t)(uniform() * 3500)
                        : 4000 + (int64_t)(uniform() * 26000);
    int64_t natural = (int64_t)lognormal(180, len_sigma) + 5;
    q->max_tokens = uniform() < 0.5 ? 50 + (int64_t)(uniform() * 750) : 0;
    q->out = q->max_tokens && natural > q->max_tokens ? q->max_tokens
                                                      : natural;
    q->stream = uniform() < 0.6;
    u = uniform();
    q->tier = u < 0.4 ? 1 : u < 0.8 ? 2 : 3;
    static const int totals[] = {2500, 4000, 6000, 10000};
    static const int ttfts[] = {800, 1200, 2000};
    q->max_ttft_ms = 0;
    q->max_latency_ms = totals[rnd() % 4];
    if (q->stream && uniform() < 0.5) {
        q->max_ttft_ms = ttfts[rnd() % 3];
    }
    q->hedge = uniform() < hedge_share;
    int n = snprintf(q->routing, sizeof(q->routing),
                     "{\"min_quality_tier\":%d,\"max_latency_ms\":%d",
                     q->tier, q->max_latency_ms);
    if (q->max_ttft_ms) {
        n += snprintf(q->routing + n, sizeof(q->routing) - (size_t)n,
                      ",\"max_ttft_ms\":%d", q->max_ttft_ms);
    }
    snprintf(q->routing + n, sizeof(q->routing) - (size_t)n, "%s}",
             q->hedge ? ",\"hedge\":true" : "");
}

/* True if a realised first token at ttft and end at total meet q's bar
 * (the plan's rule: a stream with a first-token target is bound by it). */
static bool within(const struct request *q, double ttft, double total)
{
    if (q->stream && q->max_ttft_ms) {
        return ttft <= q->max_ttft_ms;
    }
    return total <= q->max_latency_ms &&
           (!q->max_ttft_ms || ttft <= q->max_ttft_ms);
}

/* How long after its target a realised first token at ttft and end at
 * total came (0: within). */
static double late_by(const struct request *q, double ttft, double total)
{
    double late = 0;
    if (q->stream && q->max_ttft_ms) {
        return ttft > q->max_ttft_ms ? ttft - q->max_ttft_ms : 0;
    }
    if (total > q->max_latency_ms) {
        late = total - q->max_latency_ms;
    }
    if (q->max_ttft_ms && ttft - q->max_ttft_ms > late) {
        late = ttft - q->max_ttft_ms;
    }
    return late;
}

static int by_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------------
 * Executing a plan as the gateway would
 * ------------------------------------------------------------------- */

struct stats {
    long chosen[NMODELS];   /* as primary */
    long answered[NMODELS]; /* its answer reached the client */
    double latency_ms[NMODELS]; /* sum of realised latency when it did */
    long oracle[NMODELS];   /* the oracle's choice */
    long within;
    long oracle_within;
    long hedged;
    long moved;             /* answered by another than the primary */
    int64_t cost_nusd;
    int64_t oracle_nusd;
    long dist_within[2];    /* the distribution oracle's, p >= .90, .99 */
    int64_t dist_nusd[2];
    long true_within;       /* the true-latency oracle's */
    int64_t true_nusd;
    long len_within[2];     /* the noise-law-and-length oracle's */
    int64_t len_nusd[2];
};

static struct model_cfg models[NMODELS];
static struct stats st;

/* How a request's plan was executed (the breakdown's causes). */
enum path {
    PATH_PRIMARY = 0, /* the primary answered alone */
    PATH_FAILED,      /* the primary failed (5xx/429), a fallback answered */
    PATH_DEADLINE,    /* given up at its deadline, a fallback answered */
    PATH_HEDGE_WON,   /* hedged, the primary still answered first */
    PATH_HEDGE_LOST,  /* hedged, the fallback answered first */
    PATH_NONE,        /* nobody answered */
    NPATHS
};

static const char *const path_names[NPATHS] = {
    "primary alone", "primary failed", "deadline", "hedge, primary won",
    "hedge, fallback won", "no answer",
};

/* One request as the router served it, for the breakdown against the
 * oracle's pick (known only at the end, once its confidence is). */
struct trace {
    int primary;           /* the plan's order[0] */
    int answered;          /* -1: none */
    enum path path;
    bool planned_miss;     /* the plan said target missed */
    bool within;
    int kind;              /* 0 non-stream, 1 total-bound stream, 2
                              first-token-bound; +3 with max_tokens */
    int64_t answer_nusd;   /* the answer's cost */
    int64_t loser_nusd;    /* prompts of abandoned attempts */
    double late_ms;        /* a miss: how long after its target */
    uint32_t pred_ms[NMODELS]; /* the plan's figure for the bar, per model
                                  (BENCH_DEBUG) */
    int target_ms;         /* the bar's target */
    int64_t prompt;
};

static struct trace tr[NREQ];

static enum path cur_path;
static int64_t cur_loser_nusd;

static int index_of(const struct model_cfg *m)
{
    return (int)(m - models);
}

static int64_t cost_of(int m, int64_t prompt, int64_t out)
{
    struct usage u = {.prompt_tokens = prompt, .completion_tokens = out};
    return price_cost_nusd(&models[m], &u);
}

/* The attempt of model m (the plan's candidate k) that the current
 * request sends at start_ms after arrival_us: its wait begins then
 * (routing_wait_begin, as the transport does); its first token, if it
 * comes, is told at once (first_token_at), its end with its observation.
 * Returns its entry in waits[], -1 when waits are off. */
static int attempt_at(uint64_t arrival_us, double start_ms, int m,
                      const struct routing_plan *p, size_t k,
                      const struct request *q)
{
    if (!waits_on) {
        return -1;
    }
    int w = nwaits++ % MAX_WAITS;
    waits[w].first_ms = q->stream ? p->cand[k].ttft_ms : 0;
    waits[w].total_ms = p->cand[k].total_ms;
    waits[w].token = 0;
    waits[w].ttft_us = 0;
    waits[w].prompt = q->prompt;
    struct pending e = {.at_us = arrival_us + (uint64_t)(start_ms * 1000),
                        .model = m, .kind = P_BEGIN, .wait = w};
    if (start_ms <= 0) {
        event_run(&e); /* now */
    } else {
        event_push(&e);
    }
    return w;
}

/* The stream of attempt w (of model m, sent at start_ms) had its first
 * token ttft_ms later. */
static void first_token_at(uint64_t arrival_us, double start_ms,
                           double ttft_ms, int m, int w,
                           const struct request *q)
{
    if (w < 0 || !q->stream) {
        return;
    }
    waits[w].ttft_us = (uint64_t)(ttft_ms * 1000);
    event_push(&(struct pending){
        .at_us = arrival_us + (uint64_t)((start_ms + ttft_ms) * 1000),
        .model = m, .kind = P_FIRST, .wait = w});
}

/* Attempt w ended without an observation at end_ms. */
static void ended_at(uint64_t arrival_us, double end_ms, int m, int w)
{
    if (w >= 0) {
        event_push(&(struct pending){
            .at_us = arrival_us + (uint64_t)(end_ms * 1000), .model = m,
            .kind = P_END, .wait = w});
    }
}

/* Observes one attempt of model m that began at start_ms (relative to
 * arrival0_us) and ended as o says after dur_ms; w: its wait. */
static void observe_at(uint64_t arrival_us, double start_ms, double dur_ms,
                       int m, const struct request *q,
                       struct routing_obs o, int w)
{
    o.prompt_tokens = q->prompt;
    o.max_tokens_set = q->max_tokens > 0;
    o.stream = q->stream;
    o.provider = truths[m].provider;
    pending_push(arrival_us + (uint64_t)((start_ms + dur_ms) * 1000), m, &o,
                 w);
}

/* When model m's first byte reaches the gateway: a stream's first token,
 * a non-stream answer's end. */
static double first_byte(const struct request *q, const struct sample *s)
{
    return q->stream ? s->ttft_ms : s->total_ms;
}

/* Runs attempt k of the plan from start_ms, sequentially through the
 * fallbacks on failure. Returns the index in order that answered (or -1)
 * and its start time in *start. */
static int cur_wait; /* the wait of the attempt run_from() answered by */

static int run_from(const struct routing_plan *p, size_t k, double *start,
                    const struct request *q, const struct sample *s,
                    uint64_t arrival_us)
{
    for (; k < p->norder; k++) {
        int m = index_of(p->order[k]);
        int w = attempt_at(arrival_us, *start, m, p, k, q);
        if (s[m].fail != ROUTING_OBS_OK) {
            observe_at(arrival_us, *start, s[m].fail_ms, m, q,
                       (struct routing_obs){.kind = s[m].fail,
                                            .retry_after_s =
                                                s[m].fail ==
                                                        ROUTING_OBS_429
                                                    ? 5
                                                    : 0,
                                            .total_us = (uint64_t)(
                                                s[m].fail_ms * 1000)},
                       w);
            *start += s[m].fail_ms;
            continue;
        }
        cur_wait = w;
        return (int)k;
    }
    return -1;
}

/* Model m's answer, from its attempt w sent at start. */
static void observe_ok(uint64_t arrival_us, double start, int m,
                       const struct request *q, const struct sample *s,
                       int w)
{
    first_token_at(arrival_us, start, s[m].ttft_ms, m, w, q);
    observe_at(arrival_us, start, s[m].total_ms, m, q,
               (struct routing_obs){
                   .kind = ROUTING_OBS_OK,
                   .ttft_us = q->stream ? (uint64_t)(s[m].ttft_ms * 1000)
                                        : 0,
                   .total_us = (uint64_t)(s[m].total_ms * 1000),
                   .completion_tokens = q->out},
               w);
}

static void observe_abandoned(uint64_t arrival_us, double start,
                              double waited, int m, const struct request *q,
                              const struct routing_plan *p, size_t k, int wt)
{
    uint64_t w = (uint64_t)(waited * 1000);
    observe_at(arrival_us, start, waited, m, q,
               (struct routing_obs){.kind = ROUTING_OBS_ABANDONED,
                                    .ttft_us = q->stream ? w : 0,
                                    .total_us = w,
                                    .bar_us = routing_plan_bar_us(
                                        p, q->stream),
                                    .completion_tokens =
                                        p->cand[k].out_tokens},
               wt);
}

/* The primary with the plan's deadline and hedge; returns the answering
 * model (or -1) and its start time. Adds the losers' costs. */
static int execute(const struct routing_plan *p, const struct request *q,
                   const struct sample *s, uint64_t arrival_us,
                   double *start)
{
    int m0 = index_of(p->order[0]);
    double fb0 = first_byte(q, &s[m0]);
    double d = p->first_token_deadline_ms ? (double)p->first_token_deadline_ms
                                          : 1e12;
    double h = p->hedge_after_ms ? (double)p->hedge_after_ms : 1e12;
    *start = 0;
    cur_wait = -1;
    if (s[m0].fail != ROUTING_OBS_OK || p->norder < 2 ||
        (fb0 <= d && fb0 <= h)) {
        int k = run_from(p, 0, start, q, s, arrival_us);
        cur_path = k < 0 ? PATH_NONE : k == 0 ? PATH_PRIMARY : PATH_FAILED;
        return k < 0 ? -1 : index_of(p->order[k]);
    }
    int w0 = attempt_at(arrival_us, 0, m0, p, 0, q);
    if (h < d) {
        /* Hedge: order[1] starts at h; the first byte first wins. */
        st.hedged++;
        int m1 = index_of(p->order[1]);
        double fb1 = s[m1].fail == ROUTING_OBS_OK ? h + first_byte(q, &s[m1])
                                                  : 1e12;
        double end0 = fb0 <= d ? fb0 : 1e12;
        if (end0 <= fb1) {
            observe_ok(arrival_us, 0, m0, q, s, w0);
            int w1 = attempt_at(arrival_us, h, m1, p, 1, q);
            if (s[m1].fail == ROUTING_OBS_OK) {
                observe_abandoned(arrival_us, h, end0 - h, m1, q, p, 1, w1);
            } else {
                ended_at(arrival_us, h + s[m1].fail_ms, m1, w1);
            }
            st.cost_nusd += cost_of(m1, q->prompt, 0);
            cur_loser_nusd += cost_of(m1, q->prompt, 0);
            cur_path = PATH_HEDGE_WON;
            return m0;
        }
        double give_up = fb1 < d ? fb1 : d;
        observe_abandoned(arrival_us, 0, give_up, m0, q, p, 0, w0);
        st.cost_nusd += cost_of(m0, q->prompt, 0);
        cur_loser_nusd += cost_of(m0, q->prompt, 0);
        *start = h;
        int k = run_from(p, 1, start, q, s, arrival_us);
        cur_path = k < 0 ? PATH_NONE : PATH_HEDGE_LOST;
        return k < 0 ? -1 : index_of(p->order[k]);
    }
    /* The deadline: give up on the primary, start the next. */
    observe_abandoned(arrival_us, 0, d, m0, q, p, 0, w0);
    st.cost_nusd += cost_of(m0, q->prompt, 0);
    cur_loser_nusd += cost_of(m0, q->prompt, 0);
    *start = d;
    int k = run_from(p, 1, start, q, s, arrival_us);
    cur_path = k < 0 ? PATH_NONE : PATH_DEADLINE;
    return k < 0 ? -1 : index_of(p->order[k]);
}

/* ---------------------------------------------------------------------
 * The oracle
 * ------------------------------------------------------------------- */

static int oracle_pick;

static void oracle(const struct request *q, const struct sample *s)
{
    int best = -1;
    int fastest = -1;
    for (int m = 0; m < NMODELS; m++) {
        if (models[m].tier < q->tier || s[m].fail != ROUTING_OBS_OK ||
            q->prompt + q->out > models[m].context_tokens) {
            continue;
        }
        if (fastest < 0 || s[m].total_ms < s[fastest].total_ms) {
            fastest = m;
        }
        if (within(q, s[m].ttft_ms, s[m].total_ms) &&
            (best < 0 || cost_of(m, q->prompt, q->out) <
                             cost_of(best, q->prompt, q->out))) {
            best = m;
        }
    }
    st.oracle_within += best >= 0;
    best = best >= 0 ? best : fastest;
    oracle_pick = best;
    if (best >= 0) {
        st.oracle[best]++;
        st.oracle_nusd += cost_of(best, q->prompt, q->out);
    }
}

/* Model m's true latency for request i, without this attempt's jitter:
 * its median first-token time now (drift and prefill included) and its
 * median decode rate now, over q's true answer length. */
static void true_latency(int m, int i, const struct request *q,
                         double *ttft, double *total)
{
    const struct truth *t = &truths[m];
    double f = slowdown(m, i);
    *ttft = t->ttft_ms * f + q->prompt * t->prefill_us / 1000.0 * f;
    *total = *ttft + q->out * 1000.0 / t->tps * f;
}

/* True if model m is usable for q and not in an outage at request i (the
 * true-latency oracle knows the failure rate now, not this draw). */
static bool usable(int m, int i, const struct request *q)
{
    return models[m].tier >= q->tier &&
           q->prompt + q->out <= models[m].context_tokens &&
           fail_p(m, i) < 0.1;
}

/* THE ORACLE: knows each model's true latency now for this request (the
 * noise-free process: median first token and decode rate, drift
 * included, and the request's true answer length), not this attempt's
 * jitter draw: the cheapest model whose true latency meets the target,
 * else the one with the lowest. Scored on the realised draw. */
static void true_oracle(int i, const struct request *q,
                        const struct sample *s)
{
    int best = -1;
    int fastest = -1;
    double fast_ms = 0;
    for (int m = 0; m < NMODELS; m++) {
        double ttft;
        double total;
        if (!usable(m, i, q)) {
            continue;
        }
        true_latency(m, i, q, &ttft, &total);
        double metric = q->stream && q->max_ttft_ms ? ttft : total;
        if (fastest < 0 || metric < fast_ms) {
            fastest = m;
            fast_ms = metric;
        }
        if (within(q, ttft, total) &&
            (best < 0 || cost_of(m, q->prompt, q->out) <
                             cost_of(best, q->prompt, q->out))) {
            best = m;
        }
    }
    best = best >= 0 ? best : fastest;
    st.true_within += s[best].fail == ROUTING_OBS_OK &&
                      within(q, s[best].ttft_ms, s[best].total_ms);
    st.true_nusd += cost_of(best, q->prompt, q->out);
}

/* A router that knows each model's true latency distribution right now
 * (drift included) but not this request's draw: the cheapest model that
 * meets the target with probability >= 0.90 (and 0.99), by Monte Carlo on a
 * stream of its own: what a router that learns perfectly but cannot see
 * this request's draw would do, for comparison. */
#define DIST_DRAWS 128

/* The probability that model m meets q's target at request i, over the
 * jitter (first token, decode rate) and, unless known_len, the answer's
 * length; by Monte Carlo on the stream in use. */
static double p_within(int m, int i, const struct request *q, bool known_len)
{
    const struct truth *t = &truths[m];
    double f = slowdown(m, i);
    int ok = 0;
    for (int d = 0; d < DIST_DRAWS; d++) {
        double ttft = lognormal(t->ttft_ms * f, ttft_sigma) +
                      q->prompt * t->prefill_us / 1000.0 * f;
        int64_t out = q->out;
        if (!known_len) {
            out = (int64_t)lognormal(180, len_sigma) + 5;
            out = q->max_tokens && out > q->max_tokens ? q->max_tokens : out;
        }
        double total = ttft + out * 1000.0 / lognormal(t->tps, 0.10) * f;
        ok += within(q, ttft, total);
    }
    return (double)ok / DIST_DRAWS;
}

/* The cheapest model with pw >= p among the usable ones, else the one
 * most likely to make it. */
static int dist_pick(const double *pw, const struct request *q, double p)
{
    int best = -1;
    for (int m = 0; m < NMODELS; m++) {
        if (pw[m] < 0) {
            continue;
        }
        bool ok = pw[m] >= p;
        bool best_ok = best >= 0 && pw[best] >= p;
        if (best < 0 || (ok && !best_ok) ||
            (ok && cost_of(m, q->prompt, q->out) <
                       cost_of(best, q->prompt, q->out)) ||
            (!ok && !best_ok && pw[m] > pw[best])) {
            best = m;
        }
    }
    return best;
}

/* Per request and model, for the service-level oracle (solved at the
 * end, over the whole run). */
static double lg_p[NREQ][NMODELS];    /* P(answers within); -1: unusable */
static int64_t lg_cost[NREQ][NMODELS]; /* cost of its answer */
static bool lg_ok[NREQ][NMODELS];     /* this request's draw was within */

/* With price lambda (nano-dollars) on a miss, each request goes to the
 * model with the least cost + lambda * P(miss). Returns the expected
 * share within; *nusd, *real: the cost and the realised share. */
static double lg_run(double lambda, int64_t *nusd, double *real)
{
    double pin = 0;
    long ok = 0;
    *nusd = 0;
    for (int i = 0; i < NREQ; i++) {
        int best = -1;
        double best_v = 0;
        for (int m = 0; m < NMODELS; m++) {
            if (lg_p[i][m] < 0) {
                continue;
            }
            double v = (double)lg_cost[i][m] + lambda * (1.0 - lg_p[i][m]);
            if (best < 0 || v < best_v) {
                best = m;
                best_v = v;
            }
        }
        pin += lg_p[i][best];
        ok += lg_ok[i][best];
        *nusd += lg_cost[i][best];
    }
    *real = (double)ok / NREQ;
    return pin / NREQ;
}

/* The per-request rule at confidence p over the stored figures: the
 * cheapest model with P(within) >= p, else the most likely. */
static int lg_pick(int i, double p)
{
    int best = -1;
    for (int m = 0; m < NMODELS; m++) {
        double pm = lg_p[i][m];
        if (pm < 0) {
            continue;
        }
        bool ok = pm >= p;
        bool best_ok = best >= 0 && lg_p[i][best] >= p;
        if (best < 0 || (ok && !best_ok) ||
            (ok && lg_cost[i][m] < lg_cost[i][best]) ||
            (!ok && !best_ok && pm > lg_p[i][best])) {
            best = m;
        }
    }
    return best;
}

/* The per-request rule at p over the run: the expected share within;
 * *nusd, *real: its cost and realised share. */
static double lg_rule(double p, int64_t *nusd, double *real)
{
    double pin = 0;
    long ok = 0;
    *nusd = 0;
    for (int i = 0; i < NREQ; i++) {
        int m = lg_pick(i, p);
        pin += lg_p[i][m];
        ok += lg_ok[i][m];
        *nusd += lg_cost[i][m];
    }
    *real = (double)ok / NREQ;
    return pin / NREQ;
}

/*
 * THE ORACLE of the last line (docs/routing.md says why): a router that
 * knows the true latencies -- every model's true first-token and decode
 * distributions at that moment (drift, prefill, jitter law), its failure
 * rate now, and the law of the request's answer length -- but not this
 * request's draws, which exist only once a model answers. Like the
 * router, it routes each request on its own: the cheapest model that
 * meets that request's target with probability >= p, else the most
 * likely one. p is the least confidence at which the expected share
 * within target reaches SERVICE_LEVEL, the 99%: the oracle pays
 * for that service and no more: p = least_for_level(lg_rule).
 */
#define SERVICE_LEVEL 0.99

/* The least x in [0, hi] at which rule(x) keeps SERVICE_LEVEL within
 * (rule grows with x), by bisection; *nusd, *within: the rule's cost and
 * realised share there. */
static double least_for_level(double (*rule)(double, int64_t *, double *),
                              double hi, int64_t *nusd, double *within)
{
    double lo = 0;
    for (int it = 0; it < 80; it++) {
        double mid = (lo + hi) / 2;
        if (rule(mid, nusd, within) >= SERVICE_LEVEL) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    rule(hi, nusd, within);
    return hi;
}

/* The cheapest routing of all at SERVICE_LEVEL, for comparison, is
 * least_for_level(lg_run): a price on a miss, raised until the level is
 * met. It meets it by giving up on purpose the requests dearest to
 * serve, which a gateway owes its clients not to do. */

static void dist_oracle(int i, const struct request *q,
                        const struct sample *s)
{
    static const double levels[2] = {0.90, 0.99};
    double pw[NMODELS];
    rng = &mc_state;
    for (int m = 0; m < NMODELS; m++) {
        bool usable = models[m].tier >= q->tier &&
                      q->prompt + q->out <= models[m].context_tokens;
        pw[m] = usable ? p_within(m, i, q, false) : -1;
    }
    rng = &mc_len_state;
    double pl[NMODELS];
    for (int m = 0; m < NMODELS; m++) {
        pl[m] = pw[m] < 0 || !dist_on
                    ? -1
                    : p_within(m, i, q, true) * (1.0 - fail_p(m, i));
    }
    rng = &rng_state;
    for (int m = 0; m < NMODELS; m++) {
        /* For the service-level oracle: the chance it answers in time
         * (an outage known), its cost, and whether this draw did. */
        lg_p[i][m] = pw[m] < 0 ? -1 : pw[m] * (1.0 - fail_p(m, i));
        lg_cost[i][m] = cost_of(m, q->prompt, q->out);
        lg_ok[i][m] = s[m].fail == ROUTING_OBS_OK &&
                      within(q, s[m].ttft_ms, s[m].total_ms);
    }
    for (int l = 0; l < 2; l++) {
        int best = dist_pick(pw, q, levels[l]);
        st.dist_within[l] += within(q, s[best].ttft_ms, s[best].total_ms);
        st.dist_nusd[l] += cost_of(best, q->prompt, q->out);
        best = dist_on ? dist_pick(pl, q, levels[l]) : best;
        st.len_within[l] += s[best].fail == ROUTING_OBS_OK &&
                            within(q, s[best].ttft_ms, s[best].total_ms);
        st.len_nusd[l] += cost_of(best, q->prompt, q->out);
    }
}

/* ---------------------------------------------------------------------
 * Setup, the loop, the report
 * ------------------------------------------------------------------- */

static void setup(struct config *cfg, struct provider_cfg *provs)
{
    memset(cfg, 0, sizeof(*cfg));
    for (int m = 0; m < NMODELS; m++) {
        const struct truth *t = &truths[m];
        provs[m].name = (char *)t->provider;
        struct model_cfg *mc = &models[m];
        mc->name = (char *)t->name;
        mc->provider = &provs[m];
        mc->tier = t->tier;
        config_parse_price(t->in_usd, &mc->input_nusd_per_mtok);
        config_parse_price(t->out_usd, &mc->output_nusd_per_mtok);
        mc->context_tokens = t->context;
        /* Priors as configured: the vendors' figures, not the truth. */
        mc->prior_ttft_ms = (uint32_t)t->ttft_ms;
        mc->prior_tokens_per_s = (uint32_t)t->tps;
    }
    cfg->models = models;
    cfg->nmodels = NMODELS;
    cfg->default_max_latency_ms = 2000;
    cfg->default_min_quality_tier = 1;
    config_routing_knobs_default(&cfg->routing);
    /* For tuning: BENCH_PERCENTILE=95 make bench-routing, etc. */
    const struct {
        const char *env;
        int *ip;
        uint64_t *up;
    } knobs[] = {
        {"BENCH_PERCENTILE", &cfg->routing.percentile, NULL},
        {"BENCH_WINDOW", &cfg->routing.window, NULL},
        {"BENCH_MAX_AGE_MS", NULL, &cfg->routing.max_age_ms},
        {"BENCH_EXPLORE_AFTER_MS", NULL, &cfg->routing.explore_after_ms},
        {"BENCH_DEADLINE_PCT", &cfg->routing.first_token_margin_pct, NULL},
        {"BENCH_DEADLINE_MS", NULL, &cfg->routing.first_token_margin_ms},
        {"BENCH_HEDGE_PCT", &cfg->routing.hedge_margin_pct, NULL},
        {"BENCH_HEDGE_MS", NULL, &cfg->routing.hedge_margin_ms},
        {"BENCH_BREAKER_FAILURES", &cfg->routing.breaker_failures, NULL},
        {"BENCH_BREAKER_MIN_REQUESTS", &cfg->routing.breaker_min_requests,
         NULL},
        {"BENCH_BREAKER_OPEN_MS", NULL, &cfg->routing.breaker_open_ms},
        {"BENCH_OVERDUE_WAITS", &cfg->routing.overdue_waits, NULL},
        {"BENCH_BARGAIN_PCT", &cfg->routing.bargain_percentile, NULL},
        {"BENCH_BARGAIN_RATIO", &cfg->routing.bargain_ratio_pct, NULL},
        {"BENCH_SAFE_PCT", &cfg->routing.safe_percentile, NULL},
        {"BENCH_SAFE_EXTRA_PCT", &cfg->routing.safe_extra_pct, NULL},
    };
    for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
        const char *v = getenv(knobs[i].env);
        if (v && knobs[i].ip) {
            *knobs[i].ip = (int)strtol(v, NULL, 10);
        } else if (v) {
            *knobs[i].up = strtoull(v, NULL, 10);
        }
    }
}

static void one(const struct config *cfg, int i)
{
    struct request q;
    make_request(&q);
    struct sample s[NMODELS];
    sample_all(i, q.prompt, q.out, s);
    uint64_t arrival_us = (uint64_t)i * ARRIVAL_US + 1000000;
    deliver(arrival_us);
    struct arena a;
    arena_init(&a, 8192);
    struct routing_request rq = {.model = "auto",
                                 .routing = str_from(q.routing),
                                 .prompt_tokens = q.prompt,
                                 .max_tokens = q.max_tokens,
                                 .stream = q.stream};
    struct routing_plan p;
    if (routing_plan(cfg, &rq, NULL, &a, &p) != RL_OK) {
        fprintf(stderr, "bench-routing: plan refused: %s\n", p.message);
        exit(1);
    }
    st.chosen[index_of(p.order[0])]++;
    if (getenv("BENCH_EXPLAIN")) {
        char why[512]; /* as the gateway's header: its cost, measured */
        routing_explain(&p, why, sizeof(why));
    }
    if (getenv("BENCH_TRACE") && atoi(getenv("BENCH_TRACE")) == i) {
        char why[1024];
        routing_explain(&p, why, sizeof(why));
        fprintf(stderr, "trace %d: %s\n", i, why);
        for (size_t c = 0; c < p.ncand; c++) {
            fprintf(stderr, "  %s ttft=%u total=%u out=%lld cost=%lld\n",
                    p.cand[c].model->name, p.cand[c].ttft_ms,
                    p.cand[c].total_ms, (long long)p.cand[c].out_tokens,
                    (long long)p.cand[c].cost_nusd);
            struct routing_entry *e =
                routing_table_get('m', p.cand[c].model->name);
            int cls = routing_size_class(q.prompt);
            const struct routing_ring *r = &e->lat.ttft_us[cls];
            fprintf(stderr, "    ttft[%d] n=%u:", cls, r->n);
            for (uint32_t j = 0; j < r->n && j < 32; j++) {
                uint32_t at = (r->next + 63 - j) % 64;
                fprintf(stderr, " %u@%.0f", r->v[at] / 1000,
                        (sim_now_us - r->at_us[at]) / 1e6);
            }
            r = &e->lat.decode_ns;
            fprintf(stderr, "\n    decode n=%u:", r->n);
            for (uint32_t j = 0; j < r->n && j < 32; j++) {
                uint32_t at = (r->next + 63 - j) % 64;
                fprintf(stderr, " %u", r->v[at] / 1000);
            }
            fprintf(stderr, "\n");
        }
    }
    if (getenv("BENCH_DEBUG")) {
        int m0 = index_of(p.order[0]);
        fprintf(stderr, "calib %s %d %d %.0f %.0f %d\n", models[m0].name,
                p.cand[0].ttft_ms, p.cand[0].total_ms, s[m0].ttft_ms,
                s[m0].total_ms, q.max_tokens > 0);
    }
    double start = 0;
    cur_loser_nusd = 0;
    int m = execute(&p, &q, s, arrival_us, &start);
    tr[i] = (struct trace){.primary = index_of(p.order[0]), .answered = m,
                           .path = cur_path,
                           .planned_miss = p.target_missed,
                           .kind = (q.stream ? (q.max_ttft_ms ? 2 : 1) : 0) +
                                   (q.max_tokens ? 3 : 0),
                           .loser_nusd = cur_loser_nusd,
                           .prompt = q.prompt,
                           .target_ms = p.ttft_bound ? q.max_ttft_ms
                                                     : q.max_latency_ms};
    for (size_t c = 0; c < p.ncand; c++) {
        if (p.cand[c].predicted) {
            tr[i].pred_ms[index_of(p.cand[c].model)] =
                p.ttft_bound ? p.cand[c].ttft_ms : p.cand[c].total_ms;
        }
    }
    if (m >= 0) {
        if (cur_path != PATH_HEDGE_WON || getenv("BENCH_OBSERVE_TWICE")) {
            /* (execute() observed a hedge's winning primary already; the
             * bench before decision 29 observed it twice) */
            observe_ok(arrival_us, start, m, &q, s, cur_wait);
        }
        st.answered[m]++;
        st.moved += m != index_of(p.order[0]);
        double ttft = start + s[m].ttft_ms;
        double total = start + s[m].total_ms;
        st.latency_ms[m] += q.stream && q.max_ttft_ms ? ttft : total;
        st.within += within(&q, ttft, total);
        tr[i].within = within(&q, ttft, total);
        tr[i].late_ms = late_by(&q, ttft, total);
        tr[i].answer_nusd = cost_of(m, q.prompt, q.out);
        if (getenv("BENCH_DEBUG") && !within(&q, ttft, total)) {
            fprintf(stderr, "miss i=%d tier=%d stream=%d ttftT=%d totT=%d "
                    "hedge=%d prompt=%lld out=%lld max=%lld chosen=%s "
                    "pred=%u/%u real=%.0f/%.0f by=%s missed=%d d=%llu "
                    "h=%llu\n", i, q.tier,
                    q.stream, q.max_ttft_ms, q.max_latency_ms, q.hedge,
                    (long long)q.prompt, (long long)q.out,
                    (long long)q.max_tokens, p.order[0]->name,
                    p.cand[0].ttft_ms, p.cand[0].total_ms, ttft, total,
                    models[m].name, p.target_missed,
                    (unsigned long long)p.first_token_deadline_ms,
                    (unsigned long long)p.hedge_after_ms);
            char why[512];
            routing_explain(&p, why, sizeof(why));
            fprintf(stderr, "  route %s\n", why);
        }
        st.cost_nusd += cost_of(m, q.prompt, q.out);
    }
    oracle(&q, s);
    true_oracle(i, &q, s);
    dist_oracle(i, &q, s);
    if (getenv("BENCH_DEBUG") && m >= 0 && oracle_pick >= 0) {
        fprintf(stderr, "pair %s %s %lld tier=%d stream=%d ttft=%d tot=%d\n",
                models[m].name, models[oracle_pick].name,
                (long long)(cost_of(m, q.prompt, q.out) -
                            cost_of(oracle_pick, q.prompt, q.out)),
                q.tier, q.stream, q.max_ttft_ms, q.max_latency_ms);
    }
    arena_free(&a);
}

/* The scripted events of slowdown() and fail_p(), for the breakdown
 * only (they do not drive the workload; keep them in step with those two
 * functions). */
static const struct event {
    const char *what;
    int from;
    int to;
} events[] = {
    {"gemini-flash-lite 3x", 3000, 4500},
    {"llama-3.3-70b 5xx 70%", 6000, 6600},
    {"gpt-4o-mini 2x", 8000, 8400},
    {"llama-3.1-8b 429 30%", 9500, 9700},
};
#define NEVENTS (sizeof(events) / sizeof(events[0]))
#define ONSET_REQS 125  /* 5 s at 25 a second */
#define AFTER_REQS 500  /* 20 s */

/* The situation of request i: 3 * event + 0 onset (its first 5 s), 1
 * during, 2 the 20 s after it; NEVENTS * 3: none of these. */
static int situation(int i)
{
    for (size_t e = 0; e < NEVENTS; e++) {
        if (i >= events[e].from && i < events[e].from + ONSET_REQS) {
            return (int)e * 3;
        }
        if (i >= events[e].from && i < events[e].to) {
            return (int)e * 3 + 1;
        }
        if (i >= events[e].to && i < events[e].to + AFTER_REQS) {
            return (int)e * 3 + 2;
        }
    }
    return (int)NEVENTS * 3;
}

/* Prints the misses by situation (onset, during and after each scripted
 * event, the rest) and by the primary's true P(within): what a miss had
 * to do with learning (a stale estimate: P < 0.8) or with chance (the
 * tail of a calibrated choice: P >= 0.9). */
static void breakdown_situations(void)
{
    enum { NS = NEVENTS * 3 + 1, NB = 5 };
    static const double edges[NB] = {0.5, 0.8, 0.9, 0.95, 1.01};
    long n[NS] = {0};
    long miss[NS][NB + 1] = {{0}}; /* by P bucket, then planned */
    for (int i = 0; i < NREQ; i++) {
        int si = situation(i);
        n[si]++;
        if (tr[i].within) {
            continue;
        }
        double pp = lg_p[i][tr[i].primary];
        int b = 0;
        while (b < NB - 1 && pp >= edges[b]) {
            b++;
        }
        miss[si][b]++;
        miss[si][NB] += tr[i].planned_miss;
    }
    printf("breakdown: misses by situation and by the primary's true "
           "P(within)\n");
    printf("  %-34s %5s %6s %5s %5s %5s %5s %5s %7s\n", "situation",
           "miss", "of", "<.5", "<.8", "<.9", "<.95", ">=.95", "planned");
    static const char *const phase[3] = {"onset 5 s", "during", "20 s after"};
    for (int si = 0; si < NS; si++) {
        char name[64];
        if (si < (int)NEVENTS * 3) {
            snprintf(name, sizeof(name), "%s, %s", events[si / 3].what,
                     phase[si % 3]);
        } else {
            snprintf(name, sizeof(name), "no event (mistral drifting)");
        }
        long m = 0;
        for (int b = 0; b < NB; b++) {
            m += miss[si][b];
        }
        printf("  %-34s %5ld %6ld %5ld %5ld %5ld %5ld %5ld %7ld\n", name, m,
               n[si], miss[si][0], miss[si][1], miss[si][2], miss[si][3],
               miss[si][4], miss[si][NB]);
    }
}

/* Prints where the misses and the cost above the oracle's come from:
 * misses by how the plan went, and the router's cost minus the oracle's
 * by cause: the primary chosen (dearer or cheaper than the oracle's
 * pick), answers moved to a fallback, abandoned attempts' prompts. */
static void breakdown(double o_p, int64_t o_nusd)
{
    long miss[NPATHS] = {0};
    long n[NPATHS] = {0};
    long planned = 0;
    long miss_cheaper = 0; /* primary answered alone, cheaper than the
                              oracle's pick: an estimate too low */
    double risk = 0;       /* sum of the primaries' true P(miss) */
    int64_t dearer = 0;
    int64_t cheaper = 0;
    int64_t moved = 0;
    int64_t losers = 0;
    long ndearer = 0;
    long ncheaper = 0;
    int64_t extra[NPATHS] = {0}; /* moved + losers, per path */
    for (int i = 0; i < NREQ; i++) {
        const struct trace *t = &tr[i];
        int o = lg_pick(i, o_p);
        int64_t prim = lg_cost[i][t->primary];
        n[t->path]++;
        miss[t->path] += !t->within;
        planned += !t->within && t->planned_miss;
        risk += lg_p[i][t->primary] < 0 ? 1 : 1 - lg_p[i][t->primary];
        miss_cheaper += !t->within && t->path == PATH_PRIMARY &&
                        prim < lg_cost[i][o];
        if (getenv("BENCH_DEBUG") && prim != lg_cost[i][o]) {
            fprintf(stderr, "vs i=%d kind=%d prim=%s p=%.2f oracle=%s "
                    "p=%.2f dnusd=%lld pred=%u/%u T=%d prompt=%lld\n", i,
                    tr[i].kind, truths[t->primary].name,
                    lg_p[i][t->primary], truths[o].name, lg_p[i][o],
                    (long long)(prim - lg_cost[i][o]), t->pred_ms[t->primary],
                    t->pred_ms[o], t->target_ms, (long long)t->prompt);
        }
        if (prim > lg_cost[i][o]) {
            dearer += prim - lg_cost[i][o];
            ndearer++;
        } else if (prim < lg_cost[i][o]) {
            cheaper += prim - lg_cost[i][o];
            ncheaper++;
        }
        moved += t->answered >= 0 ? t->answer_nusd - prim : -prim;
        losers += t->loser_nusd;
        extra[t->path] += t->loser_nusd +
                          (t->answered >= 0 ? t->answer_nusd - prim : -prim);
    }
    printf("breakdown: misses by path (misses / requests; the cost of "
           "the attempts beyond the primary's answer, share of the "
           "oracle's cost)\n");
    for (int k = 0; k < NPATHS; k++) {
        printf("  %-22s %5ld / %5ld  %+.3f\n", path_names[k], miss[k], n[k],
               extra[k] / (double)o_nusd);
    }
    printf("  of the misses: planned as missed %ld; primary alone and "
           "cheaper than the oracle's pick %ld\n", planned, miss_cheaper);
    printf("  expected misses of the primaries chosen (true P): %.1f\n",
           risk);
    if (getenv("BENCH_DEBUG")) {
        static const double edges[] = {0.5, 0.8, 0.9, 0.95, 1.01};
        for (int b = 0; b < 5; b++) {
            double lo = b ? edges[b - 1] : -1;
            double e = 0;
            long nb = 0;
            long mb = 0;
            for (int i = 0; i < NREQ; i++) {
                double pp = lg_p[i][tr[i].primary];
                if (pp >= lo && pp < edges[b]) {
                    nb++;
                    e += 1 - pp;
                    mb += !tr[i].within;
                }
            }
            for (int i = 0; b == 0 && i < NREQ; i++) {
                if (lg_p[i][tr[i].primary] < 0.5) {
                    fprintf(stderr, "gross i=%d %s kind=%d path=%d "
                            "within=%d\n", i, truths[tr[i].primary].name,
                            tr[i].kind, tr[i].path, tr[i].within);
                }
            }
            fprintf(stderr, "P<%.2f: %ld primaries, expected misses %.1f, "
                    "misses %ld\n", edges[b], nb, e, mb);
        }
    }
    static double late[NREQ];
    size_t nlate = 0;
    for (int i = 0; i < NREQ; i++) {
        if (!tr[i].within && tr[i].answered >= 0) {
            late[nlate++] = tr[i].late_ms;
        }
    }
    qsort(late, nlate, sizeof(late[0]), by_double);
    if (nlate) {
        printf("  how late the misses were: median %.0f ms, p90 %.0f ms\n",
               late[nlate / 2], late[nlate * 9 / 10]);
    }
    double o = (double)o_nusd;
    printf("breakdown: cost above the oracle's, as a share of its cost\n");
    printf("  primary dearer than the oracle's pick  %+.3f (%ld requests)\n",
           dearer / o, ndearer);
    printf("  primary cheaper than the oracle's pick %+.3f (%ld requests)\n",
           cheaper / o, ncheaper);
    printf("  answered by another model than the primary %+.3f\n",
           moved / o);
    printf("  prompts of abandoned attempts (hedges, deadlines) %+.3f\n",
           losers / o);
    breakdown_situations();
}

int main(void)
{
    struct config cfg;
    struct provider_cfg provs[NMODELS];
    setup(&cfg, provs);
    no_events = getenv("BENCH_NO_EVENTS") != NULL;
    dist_on = getenv("BENCH_NO_DIST") == NULL;
    waits_on = getenv("BENCH_NO_WAITS") == NULL;
    if (getenv("BENCH_SEED")) {
        rng_state = strtoull(getenv("BENCH_SEED"), NULL, 10);
    }
    if (getenv("BENCH_LEN_SIGMA")) {
        len_sigma = strtod(getenv("BENCH_LEN_SIGMA"), NULL);
    }
    if (getenv("BENCH_HEDGE_SHARE")) {
        hedge_share = strtod(getenv("BENCH_HEDGE_SHARE"), NULL);
    }
    if (getenv("BENCH_TTFT_SIGMA")) {
        ttft_sigma = strtod(getenv("BENCH_TTFT_SIGMA"), NULL);
    }
    routing_table_reset();
    routing_clock_set(sim_clock);
    for (int i = 0; i < NREQ; i++) {
        one(&cfg, i);
    }
    printf("%-18s %7s %8s %7s %12s\n", "model", "chosen", "answered",
           "oracle", "mean_ms");
    for (int m = 0; m < NMODELS; m++) {
        printf("%-18s %6.1f%% %7.1f%% %6.1f%% %12.0f\n", truths[m].name,
               100.0 * st.chosen[m] / NREQ, 100.0 * st.answered[m] / NREQ,
               100.0 * st.oracle[m] / NREQ,
               st.answered[m] ? st.latency_ms[m] / st.answered[m] : 0.0);
    }
    printf("hedged %.1f%%, answered by a fallback %.1f%% (column oracle: "
           "the clairvoyant's picks; it is within target %.3f)\n", 100.0 * st.hedged / NREQ,
           100.0 * st.moved / NREQ, (double)st.oracle_within / NREQ);
    int64_t o_nusd;
    double o_within;
    double o_p = least_for_level(lg_rule, 1.0, &o_nusd, &o_within);
    double o = (double)o_nusd;
    int64_t r_nusd;
    double r_within;
    least_for_level(lg_run, 1e13, &r_nusd, &r_within);
    double r = (double)r_nusd;
    printf("cost $%.4f; the oracle's $%.4f (within %.3f): knows every "
           "model's true latency\n  distributions now, not the draws; "
           "each request to the cheapest model with\n  P(within) >= %.3f, "
           "the least confidence that keeps %.0f%% within target\n",
           st.cost_nusd / 1e9, o / 1e9, o_within, o_p,
           100 * SERVICE_LEVEL);
    printf("other yardsticks (within, cost / the oracle's):\n");
    printf("  clairvoyant: each request's realised latency on every "
           "model            %.3f %.3f\n",
           (double)st.oracle_within / NREQ, st.oracle_nusd / o);
    printf("  noise-free: true median latency now and the answer's "
           "true length      %.3f %.3f\n",
           (double)st.true_within / NREQ, st.true_nusd / o);
    for (int l = 0; dist_on && l < 2; l++) {
        printf("  true distributions and the answer's true length, "
               "P(within) >= %s %.3f %.3f\n", l ? "0.99" : "0.90",
               (double)st.len_within[l] / NREQ, st.len_nusd[l] / o);
    }
    for (int l = 0; l < 2; l++) {
        printf("  true distributions, cheapest with P(within) >= %s"
               "                 %.3f %.3f\n", l ? "0.99" : "0.90",
               (double)st.dist_within[l] / NREQ, st.dist_nusd[l] / o);
    }
    printf("  true distributions, cheapest of all at %.0f%% (misses the "
           "dearest on purpose) %.3f %.3f\n", 100 * SERVICE_LEVEL,
           r_within, r / o);
    printf("  the router vs the clairvoyant: cost_vs_oracle=%.3f\n",
           st.cost_nusd / (double)st.oracle_nusd);
    breakdown(o_p, o_nusd);
    printf("routing: requests=%d within_target=%.3f cost_vs_oracle=%.3f\n",
           NREQ, (double)st.within / NREQ, st.cost_nusd / o);
    routing_clock_set(NULL);
    return 0;
}
