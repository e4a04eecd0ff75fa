/*
 * engine.h - inside the routing folder only: the process-wide table of live
 * statistics (table.c), the latency estimator (latency.c) and the circuit
 * breaker (health.c). Other folders use routing.h; the unit tests and
 * bench/routing.c include this to drive the pieces with their own clock.
 *
 * The estimator and the breaker are plain functions over plain structs,
 * given the time: they take no lock and read no clock. table.c owns the
 * entries, their mutexes and the clock.
 */
#ifndef RL_ROUTING_ENGINE_H
#define RL_ROUTING_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "routing/routing.h"

#define ROUTING_RING_MAX 64     /* observations kept; the window uses <= */
#define ROUTING_SIZE_CLASSES 5  /* prompt-size classes (latency.c) */
#define ROUTING_MIN_OBS 4       /* fewer fresh ones: the prior joins them */

/* The most recent observations of one quantity, oldest overwritten, and
 * the last window of them kept in order too, so that a percentile is
 * read, not computed, while they are all fresh (the common case: a plan
 * reads several per candidate, an answer adds one). */
struct routing_ring {
    uint64_t at_us[ROUTING_RING_MAX]; /* when each was observed */
    uint32_t v[ROUTING_RING_MAX];     /* the values (unit: the ring's) */
    uint32_t next;                    /* slot the next one goes to */
    uint32_t n;                       /* slots in use */
    uint32_t sorted[ROUTING_RING_MAX]; /* the last min(n, sorted_w) values,
                                          ascending */
    uint32_t sorted_w;                /* the window sorted is for; 0: none */
};

/* What one model's answers have shown lately. */
struct routing_latency {
    struct routing_ring ttft_us[ROUTING_SIZE_CLASSES]; /* per prompt size */
    uint32_t ttft_prompt[ROUTING_SIZE_CLASSES][ROUTING_RING_MAX]; /* the
                                         prompt tokens of each ttft_us
                                         value, by its slot */
    double prefill[5];                /* first token on prompt size, the
                                         sums of a least-squares fit over
                                         every first token, each older one
                                         weighing 1/256 less: weight, x,
                                         y, xx, xy (x tokens, y us) */
    struct routing_ring decode_ns;    /* per output token, nanoseconds */
    struct routing_ring out_tokens[ROUTING_SIZE_CLASSES]; /* completion
                                         lengths of uncapped requests */
    uint32_t prior_ttft_us;           /* the configured prior, noted by
                                         each plan (observations lack it) */
    uint64_t gap_us;                  /* latency.explore_after_ms, noted by
                                         each plan: an observation after a
                                         longer silence forgets the rest */
    uint32_t window;                  /* latency.window, noted by each plan
                                         (0: none yet, the default) */
    uint64_t newest_us;               /* when the last one came; 0: never */
    uint64_t explored_us;             /* when a plan last explored it */
};

/* A prediction for one request on one model. */
struct routing_estimate {
    uint64_t ttft_us;      /* time to first token, at the percentile */
    uint64_t per_token_ns; /* decode time per token, at the percentile */
    int64_t out_tokens;    /* expected output tokens */
    uint64_t total_us;     /* ttft_us + out_tokens * per_token_ns */
    uint32_t nfresh;       /* fresh TTFT observations behind ttft_us */
};

enum routing_breaker {
    ROUTING_CLOSED = 0, /* traffic flows */
    ROUTING_OPEN,       /* skipped until open_until_us */
    ROUTING_HALF_OPEN,  /* one probe at a time decides */
};

/* What a breaker says to one more attempt. */
enum routing_admit {
    ROUTING_ADMIT = 0,     /* closed: go */
    ROUTING_ADMIT_PROBE,   /* half-open: go, as the probe */
    ROUTING_REFUSE_OPEN,   /* open */
    ROUTING_REFUSE_PROBING /* half-open and a probe is out */
};

/* The circuit breaker of one model or one provider. */
struct routing_health {
    enum routing_breaker state; /* see enum */
    int consecutive;            /* failures in a row */
    uint64_t outcomes;          /* last 64 attempts, bit 0 newest, 1: failed */
    int noutcomes;              /* bits of outcomes in use, up to 64 */
    uint64_t open_until_us;     /* OPEN until then, then HALF_OPEN; 0:
                                   to be set by the next admit */
    uint64_t retry_until_us;    /* upstream Retry-After: closed to all
                                   until then */
    uint64_t last_failure_us;   /* when the last failure was observed */
    int nopens;                 /* opens since it last closed (backoff) */
    uint64_t probe_since_us;    /* a probe is out since then; 0: none */
};

#define ROUTING_WAITS_MAX 64 /* waits tracked per model (a bit each) */

/* The attempts of one model in flight (waits.c). */
struct routing_waits {
    uint64_t used;                          /* bit i: slot i is a wait */
    uint64_t since_us[ROUTING_WAITS_MAX];   /* when each began */
    uint64_t first_due_us[ROUTING_WAITS_MAX]; /* when its first token was
                                               predicted; 0: none (not a
                                               stream) or it came */
    uint64_t end_due_us[ROUTING_WAITS_MAX]; /* when its end was */
    uint64_t due_us[ROUTING_WAITS_MAX];     /* the sooner of the two that
                                               has not passed or come */
    uint16_t gen[ROUTING_WAITS_MAX];        /* bumped per use: a token
                                               names one wait */
    uint64_t quiet_until_us;                /* no wait is overdue before
                                               then (0: look): most plans
                                               read the evidence in one
                                               comparison */
};

/* One model's (or one provider's) live state, keyed by name. */
struct routing_entry {
    char *name;             /* "m:<model>" or "p:<provider>", never freed
                               before routing_table_reset() */
    pthread_mutex_t lock;   /* guards lat, health and waits */
    struct routing_latency lat;
    struct routing_health health;
    struct routing_waits waits; /* models only */
};

/* The routing preferences that apply to one request: its routing object,
 * else the key's defaults, else routing.defaults (candidates.c). */
struct routing_opts {
    int max_latency_ms;    /* 0: none */
    int max_ttft_ms;       /* 0: none */
    int min_quality_tier;  /* the floor */
    bool hedge;            /* start the next candidate when slow */
    const char **allow;    /* the request's allow list, in the arena */
    size_t nallow;
    bool has_allow;        /* an allow list was given (maybe empty) */
    const char **deny;     /* the request's deny list, in the arena */
    size_t ndeny;
};

/* ---- candidates.c ---- */

/* Reads rq's routing object over key's and cfg's defaults into o. Returns
 * RL_E_INVALID_REQUEST with plan->message and plan->param for a bad value.
 * The lists are copied into a. */
enum rl_err routing_opts_read(const struct config *cfg,
                              const struct routing_request *rq,
                              const struct routing_key *key, struct arena *a,
                              struct routing_opts *o,
                              struct routing_plan *plan);

/* Lists the candidates of rq into plan->cand (from a): for "auto" every
 * configured model, for a name that model then its fallbacks; those the
 * key or the lists do not allow carry their reason already. Returns
 * RL_E_MODEL_NOT_FOUND for an unknown name. */
enum rl_err routing_candidates_list(const struct config *cfg,
                                    const struct routing_request *rq,
                                    const struct routing_key *key,
                                    const struct routing_opts *o,
                                    struct arena *a,
                                    struct routing_plan *plan);

/* ---- table.c ---- */

/* Returns the entry of the model (kind 'm') or provider (kind 'p') called
 * name, creating it on first use; NULL when the table is full (the caller
 * then uses priors and no breaker). The entry lives until
 * routing_table_reset(). Thread-safe; lock-free when the entry exists. */
struct routing_entry *routing_table_get(char kind, const char *name);

/* The routing clock: monotonic microseconds, or the injected clock. */
uint64_t routing_now_us(void);

/* ---- latency.c ---- */

/* The prompt-size class of a prompt of that many tokens. */
int routing_size_class(int64_t prompt_tokens);

/* Records one attempt's timings in l at now_us (see struct routing_obs).
 * After a silence longer than l->gap_us the older observations are
 * forgotten first: they describe a past nobody re-checked. */
void routing_latency_observe(struct routing_latency *l, uint64_t now_us,
                             const struct routing_obs *o);

/* Records a stream's first token, ttft_us after its attempt began, for a
 * prompt of prompt_tokens, in l at now_us (as it comes: the attempt's
 * observation says ttft_learned and does not count it again). */
void routing_latency_first_token(struct routing_latency *l, uint64_t now_us,
                                 uint64_t ttft_us, int64_t prompt_tokens);

/* Records only the completion length of o (an uncapped answer) in l:
 * for the pool of every model's lengths. */
void routing_latency_observe_length(struct routing_latency *l,
                                    uint64_t now_us,
                                    const struct routing_obs *o);

/* Predicts m's latency for a request of prompt_tokens, max_tokens (0:
 * unset) from l (NULL: priors only) at now_us into out. pool (may be
 * NULL) holds every model's completion lengths: the expected output of a
 * model with few answers of its own comes from there. */
void routing_latency_predict(const struct routing_latency *l,
                             const struct routing_latency *pool,
                             const struct model_cfg *m,
                             const struct routing_knobs *k, uint64_t now_us,
                             int64_t prompt_tokens, int64_t max_tokens,
                             struct routing_estimate *out);

/* The nearest-rank percentile pct of ring r's values no older than
 * max_age_us and among its window most recent, with prior (when not 0)
 * as one more value while fewer than ROUTING_MIN_OBS are fresh. Returns
 * prior when nothing is fresh; *nfresh (may be NULL) gets the count. */
uint32_t routing_ring_percentile(const struct routing_ring *const *rings,
                                 int nrings, int window, uint64_t now_us,
                                 uint64_t max_age_us, int pct,
                                 uint32_t prior, uint32_t *nfresh);

/* Appends v observed at now_us to r, keeping the last window values in
 * order. */
void routing_ring_push(struct routing_ring *r, uint64_t now_us, uint32_t v,
                       int window);

/* ---- waits.c ---- */

/* Notes in w an attempt that began at now_us, predicted to send its first
 * token after first_us (0: not a stream) and to end after total_us.
 * Returns its token; 0 when every slot is in use. */
uint32_t routing_waits_begin(struct routing_waits *w, uint64_t now_us,
                             uint64_t first_us, uint64_t total_us);

/* The attempt of token had its first token: it waits only for its end. */
void routing_waits_first(struct routing_waits *w, uint32_t token);

/* The attempt of token ended (0, or one ended already: nothing). */
void routing_waits_end(struct routing_waits *w, uint32_t token);

/* The factor, in percent, by which the k-th most overdue wait of each
 * kind (first tokens, ends) has passed its prediction at now_us; 100
 * when fewer than k are overdue. */
void routing_waits_evidence(struct routing_waits *w, uint64_t now_us, int k,
                            uint32_t *first_pct, uint32_t *total_pct);

/* ---- health.c ---- */

/* Asks h whether one more attempt may go at now_us. With take_probe, a
 * half-open breaker's answer ROUTING_ADMIT_PROBE reserves its one probe
 * (released by the next observation, or after breaker_open_ms). */
enum routing_admit routing_health_admit(struct routing_health *h,
                                        const struct routing_knobs *k,
                                        uint64_t now_us, bool take_probe);

/* Takes h's one probe slot now even when h is open, for a plan that
 * misses its target anyway (routing.c, long_shot()): h goes half-open,
 * the probe's outcome decides as any probe's. True if the attempt may go
 * (h closed or half-open with its slot free count too); false while a
 * probe is out or an upstream Retry-After runs. */
bool routing_health_probe_early(struct routing_health *h,
                                const struct routing_knobs *k,
                                uint64_t now_us);

/* Records one attempt's outcome in h at now_us; the thresholds are
 * weighed by the next routing_health_admit(). */
void routing_health_observe(struct routing_health *h, uint64_t now_us,
                            const struct routing_obs *o);

/* Logs one change of the breaker of entry name ("m:<model>" or
 * "p:<provider>") from one state to another, once per change: the caller
 * saw both under the entry's lock. Opening is a warning, half-open and
 * closing are info. */
void routing_health_log_change(const char *name, enum routing_breaker from,
                               enum routing_breaker to);

/* True if kind (for a provider breaker) counts against the provider:
 * connection failures, timeouts, 5xx and cut streams, not 429s. */
bool routing_outcome_is_provider_fault(enum routing_outcome kind);

#endif
