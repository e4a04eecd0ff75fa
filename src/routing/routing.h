/*
 * routing.h - step 3 of a request: which models to try, in which order,
 * and how long to wait for each; and the feedback that teaches it.
 *
 * routing_plan() is pure computation over the configuration and the live
 * statistics (time to first token, decode rate, completion lengths and a
 * circuit breaker per model and per provider, process-wide, keyed by
 * name). routing_observe() feeds those statistics once per upstream
 * attempt. docs/routing.md explains the decision.
 */
#ifndef RL_ROUTING_H
#define RL_ROUTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/arena.h"
#include "util/err.h"
#include "util/str.h"

struct config;
struct model_cfg;

/* What the API key says about routing: its allow list and its defaults,
 * which apply when the request's routing object does not say. */
struct routing_key {
    const char *const *allow; /* model names the key may use */
    size_t nallow;            /* 0: every model */
    int min_quality_tier;     /* the key's floor; -1: none */
    int max_latency_ms;       /* the key's target; 0: none */
    int max_ttft_ms;          /* the key's first-token target; 0: none */
    int hedge;                /* -1: unset, 0: off, 1: on */
};

/* The request, as routing needs it. */
struct routing_request {
    const char *model;     /* "auto" or a configured name */
    struct str routing;    /* the body's "routing" object text, or empty */
    int64_t prompt_tokens; /* estimated prompt tokens */
    int64_t max_tokens;    /* the client's output cap; 0: unset */
    bool stream;           /* the client asked for SSE */
};

/* One model considered, with its predictions for this request. */
struct routing_candidate {
    const struct model_cfg *model;
    uint32_t ttft_ms;      /* predicted time to first token */
    uint32_t total_ms;     /* predicted time to the last token */
    bool safe;             /* also meets the bar at latency.safe_percentile */
    int64_t out_tokens;    /* expected output tokens */
    int64_t cost_nusd;     /* predicted cost, nano-dollars */
    bool predicted;        /* the figures above are set */
    bool in_order;         /* it is in routing_plan.order */
    bool probe;            /* it goes as its breaker's half-open probe */
    bool explore;          /* primary to re-measure it: cheaper, its slow
                              figures stale, predicted from its prior */
    bool bargain;          /* primary just over the bar, much cheaper
                              than the one that meets it */
    bool long_shot;        /* primary behind an open circuit, as its
                              probe, because the plan misses anyway */
    char why[96];          /* why it was passed over as primary, always
                              "<its name>: <reason>" ("tiny: tier 0 <
                              2"); "" for the primary */
};

/* What routing_plan() decided. */
struct routing_plan {
    const struct model_cfg *const *order; /* primary first, then the
                                             fallbacks, in the arena */
    size_t norder;
    struct routing_candidate *cand; /* every model considered: the order
                                       first, then the ones passed over */
    size_t ncand;
    bool target_missed;     /* the primary is not predicted to meet the
                               latency target (or the floor) */
    int max_latency_ms;     /* the target that applied; 0: none */
    int max_ttft_ms;        /* the first-token target that applied; 0 */
    int min_quality_tier;   /* the floor that applied */
    bool ttft_bound;        /* the bar is first-token time (a stream with
                               a first-token target), else the total */
    uint64_t first_token_deadline_ms; /* give up on the primary when it has
                               not sent its first token (for a non-stream
                               request: its answer) this long after its
                               attempt began; 0: no deadline */
    uint64_t hedge_after_ms; /* start order[1] beside the primary when it
                               has sent nothing this long after its
                               attempt began; first token wins; 0: off */
    char message[256];      /* with RL_E_INVALID_REQUEST: for the client */
    char param[48];         /* with RL_E_INVALID_REQUEST: "routing.deny" */
};

/* True if key (NULL: no restriction) may use the model called name. */
bool routing_key_allows(const struct routing_key *key, const char *name);

/*
 * Plans rq. For "auto": every configured model the key and the request's
 * allow/deny lists permit, at or above the quality floor, whose context
 * holds the prompt and the output, not behind an open circuit, predicted
 * for latency and cost; the cheapest that meets the latency target is the
 * primary, the others that meet it follow by cost, then those over target
 * by speed. When none meets it, all go fastest first and target_missed is
 * set. For a configured name: that model, then its fallbacks, in that
 * order, still predicted and without open circuits (unless all are
 * open). Sets the primary's first-token deadline and, when hedging is
 * on, the hedge time (docs/routing.md). key may be NULL. Fills out,
 * whose arrays come from a.
 * Returns RL_E_MODEL_NOT_FOUND for an unknown name, RL_E_FORBIDDEN when
 * nothing at all may be used, RL_E_INVALID_REQUEST (out->message and
 * out->param say what) for a bad routing object. Whether key may use a
 * model asked for by name is the caller's check (routing_key_allows). A
 * half-open circuit's probe slot is taken for the plan that includes it.
 */
enum rl_err routing_plan(const struct config *cfg,
                         const struct routing_request *rq,
                         const struct routing_key *key, struct arena *a,
                         struct routing_plan *out);

/*
 * The bar the plan set for an attempt of a stream (stream true) or
 * non-stream request, in microseconds: the first-token target of a
 * first-token-bound stream, the latency target of a non-stream request,
 * else 0. An attempt abandoned at the plan's deadline was waited for
 * against it (routing_obs.bar_us).
 */
uint64_t routing_plan_bar_us(const struct routing_plan *plan, bool stream);

/*
 * Writes the x-relay-route header value of plan into out (at most len
 * bytes with the NUL; cut at a whole item with "..." when longer), e.g.
 * "chosen=mid-cheap 320ms $0.000012; gemini-flash-lite 480ms $0.0000090:
 * 480ms > 400ms; big 900ms $0.0021: dearer": every candidate with its
 * predicted latency and cost, and why the others were passed over
 * (explain.c, docs/routing.md "The header"). The same text goes in the
 * request log. Returns the length written.
 */
size_t routing_explain(const struct routing_plan *plan, char *out,
                       size_t len);

/* How one upstream attempt ended. */
enum routing_outcome {
    ROUTING_OBS_OK = 0,     /* answered (streams: to the end) */
    ROUTING_OBS_TIMEOUT,    /* no answer within the transport's timeout */
    ROUTING_OBS_429,        /* rate limited by the provider */
    ROUTING_OBS_5XX,        /* server error */
    ROUTING_OBS_CONNECT,    /* could not connect */
    ROUTING_OBS_CUT,        /* the stream ended before its end */
    ROUTING_OBS_ABANDONED,  /* the caller gave up on it: its first-token
                               deadline passed or a hedge answered first;
                               ttft_us (total_us) is how long it waited */
};

/* One upstream attempt, as the caller saw it. */
struct routing_obs {
    enum routing_outcome kind; /* how it ended */
    int http_status;           /* upstream status; 0: none */
    uint32_t retry_after_s;    /* upstream Retry-After; 0: absent */
    uint64_t ttft_us;          /* attempt start to first token (streams);
                                  0: unknown */
    bool ttft_learned;         /* ttft_us was given to routing_wait_first()
                                  already: not to be counted twice */
    uint32_t wait;             /* the attempt's routing_wait_begin()
                                  token, ended by this; 0: none */
    uint64_t total_us;         /* attempt start to its end */
    int64_t completion_tokens; /* output tokens (abandoned: the plan's
                                  out_tokens for it) */
    int64_t prompt_tokens;     /* the prompt's estimated tokens */
    bool max_tokens_set;       /* the request capped its output */
    bool stream;               /* the attempt was streamed */
    const char *provider;      /* the model's provider (config name), for
                                  its breaker; NULL: none */
    uint64_t bar_us;           /* abandoned: what the plan allowed it
                                  (routing_plan_bar_us); its wait counts as
                                  at least this; 0: none */
};

/*
 * Feeds one upstream attempt of the model called model_name (its
 * configured name) to the live latency statistics and to the model's and
 * its provider's (o->provider) circuit breakers. Needs no knobs: the
 * breakers weigh what it records when the next plan asks them. Called by
 * the transport once per attempt, from any worker thread. Copies what it
 * keeps.
 */
void routing_observe(const char *model_name, const struct routing_obs *o);

/*
 * Notes that an attempt of the model called model_name was sent now: the
 * plan predicted its first token after first_ms (a stream's cand[i].
 * ttft_ms; 0 for a non-stream request, whose first byte is its end) and
 * its end after total_ms (cand[i].total_ms). While it waits past those
 * times, the next plans predict the model at least that much slower,
 * before any slow answer has come back (docs/routing.md, "Waits").
 * Returns a token for routing_wait_first() and routing_obs.wait; 0 when
 * not tracked. Thread-safe: one lock of the model's entry, a few
 * instructions under it.
 */
uint32_t routing_wait_begin(const char *model_name, uint32_t first_ms,
                            uint32_t total_ms);

/* The stream of token's attempt had its first token ttft_us after it
 * began, for a prompt of prompt_tokens: learned now, not when the stream
 * ends seconds later (its routing_obs then says ttft_learned). Its wait
 * for the end goes on. */
void routing_wait_first(const char *model_name, uint32_t token,
                        uint64_t ttft_us, int64_t prompt_tokens);

/* Ends the wait of token of model_name without an observation (twice, or
 * token 0: nothing); routing_observe() with o->wait does the same. */
void routing_wait_end(const char *model_name, uint32_t token);

/* One circuit breaker's state, as routing_breakers_list() reports it. */
struct routing_breaker_info {
    bool provider;    /* a provider's breaker, else a model's */
    const char *name; /* the model's or provider's configured name; lives
                         until routing_table_reset() */
    int state;        /* 0 closed, 1 open, 2 half-open */
};

/*
 * Writes the state of up to cap breakers (every model and provider seen
 * since the start) into out and returns how many. Read-only: it asks no
 * breaker to move (an open one whose period is over still says open until
 * a plan asks it). Takes each entry's lock for a moment: for scrapes, not
 * for the request path. Thread-safe.
 */
size_t routing_breakers_list(struct routing_breaker_info *out, size_t cap);

/* Replaces the routing clock (monotonic microseconds) with now_us, or
 * restores it with NULL. For tests and bench/routing.c. */
void routing_clock_set(uint64_t (*now_us)(void));

/* Forgets every statistic and breaker. For tests and the bench; not
 * thread-safe: no plan or observation may run meanwhile. */
void routing_table_reset(void);

#endif
