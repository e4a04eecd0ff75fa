/*
 * call.h - a call and its attempts, shared by upstream.c (the call: plan,
 * hedges, retries, rescue) and attempt.c (one upstream request: transfer,
 * framing, deadlines, verdict).
 *
 * Internal to src/providers/. A call has at most two live attempts (the
 * current one and its hedge). attempt.c reports to upstream.c through
 * upstream_attempt_chunk() and upstream_attempt_end(), never deciding what
 * happens next itself.
 */
#ifndef RL_CALL_H
#define RL_CALL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "providers/framing.h"
#include "providers/provider.h"
#include "util/buf.h"

#define CALL_MAX_LIVE 2 /* an attempt and its hedge */

struct upstream {
    uv_loop_t *loop;             /* the worker's loop */
    struct transport *transport; /* upstream HTTP on that loop */
    uv_timer_t sweep;            /* checks the deadlines of calls */
    uv_timer_t kick;             /* wakes hedges, retries, cancels early */
    uint64_t kick_at_us;         /* when kick fires, 0: not armed */
    int nclosing;                /* handles still to close on free */
    uint64_t rnd;                /* xorshift state for retry jitter */
    struct provider_call *calls; /* active calls, newest first */
    size_t ncalls;
};

/* One upstream request of a call. */
struct attempt {
    struct provider_call *call;
    size_t idx;                  /* its candidate: call->plan[idx] */
    const struct model_cfg *model;
    struct xfer *xfer;           /* the transfer, NULL once ended */
    struct upstream_req ureq;
    long status;                 /* upstream HTTP status, 0 before it */
    uint32_t retry_after_s;      /* upstream Retry-After */
    struct buf body;             /* whole answer or error body */
    struct buf answer;           /* the answer in OpenAI's shape */
    struct answer_members answer_members; /* its members, if known */
    struct buf held;             /* stream chunks before the first content
                                    event, NUL-separated */
    struct framer framer;        /* stream events */
    void *state;                 /* the adapter's stream state */
    struct chunk_sink sink;
    enum rl_err abort_err;       /* why we stopped the transfer ourselves */
    uint64_t start_us;           /* request started */
    uint64_t byte_us;            /* first byte, 0 before */
    uint64_t token_us;           /* first content event, 0 before */
    uint64_t last_byte_us;       /* the idle deadline runs from here */
    uint64_t token_ms;           /* first-token deadline after start */
    int64_t events;              /* content events seen */
    size_t matched;              /* rescue: bytes of call->sent matched (a
                                    prefill: of the whitespace it left
                                    out) */
    int round;                   /* the plan pass it belongs to */
    bool sent;                   /* the request went out (billable) */
    bool hedge;                  /* started as a hedge */
    bool rescue;                 /* started to rescue a cut stream */
    bool caught_up;              /* rescue: the sent text is matched (a
                                    prefill: its whitespace dropped) */
    bool prefill;                /* rescue: asked to continue the sent
                                    text (call->cont), not to repeat it */
    bool doomed;                 /* lost: cancel at the next sweep */
    bool paused;                 /* its client is behind: not read */
    uint64_t paused_at_us;       /* when the pause began */
    uint64_t paused_us;          /* time paused, in pauses that ended */
    uint32_t wait;               /* on_attempt_start's token */
    bool first_reported;         /* on_attempt_first was called */
};

struct provider_call {
    struct upstream *up;
    struct provider_call *prev;  /* in up->calls */
    struct provider_call *next;
    const struct chat_req *req;  /* the caller's, valid until the end */
    const struct model_cfg *const *plan; /* candidates, in order */
    size_t nplan;
    struct call_limits limits;
    struct provider_call_cbs cbs;
    void *ctx;                   /* the caller's */
    struct attempt *live[CALL_MAX_LIVE];
    size_t nlive;
    struct attempt *winner;      /* its output goes to the client */
    size_t answer_idx;           /* the candidate that committed first */
    size_t next_idx;             /* the next candidate of this round */
    int round;                   /* 0, then one per retry of the plan */
    bool *skip;                  /* candidates not to ask again */
    int64_t ctx_floor;           /* a context_length_exceeded came from a
                                    window this large: skip those <= it */
    uint32_t wait_s;             /* longest Retry-After to wait out */
    bool fatal;                  /* a failure no retry can fix */
    struct provider_error last_error; /* of the last failed attempt */
    enum rl_err last_err;
    const struct model_cfg *last_model;
    uint64_t start_us;
    uint64_t deadline_us;        /* the whole call's, UINT64_MAX: none */
    uint64_t hedge_at_us;        /* start a hedge then, 0: none */
    uint64_t wake_us;            /* start the next round then, 0: none */
    struct buf sent;             /* stream text the client has (rescue) */
    bool rescuable;              /* a cut could still be rescued: the
                                    sent text is kept */
    bool deterministic;          /* the request asks for a reproducible
                                    answer (a rescue may repeat it) */
    struct chat_req cont;        /* the request with the sent text as a
                                    final assistant message (prefill) */
    struct buf cont_raw;         /* cont.raw's bytes */
    size_t trimmed;              /* trailing whitespace of sent that the
                                    prefill leaves out ... */
    size_t trim_at;              /* ... found at this offset of sent */
    size_t nrescues;             /* rescue attempts made */
    bool rescued;                /* a rescue took over the stream */
    uint64_t ttft_us;
    int attempts;                /* requests sent */
    struct attempt_brief briefs[PROVIDER_MAX_BRIEFS];
    size_t nbriefs;
    bool started;                /* on_first was called */
    bool in_cb;                  /* inside a transfer's data callback */
    bool cancelled;              /* the caller gave up: no more callbacks */
    bool paused;                 /* provider_call_pause: the client is
                                    behind; the winner is not read */
};

/* Starts an attempt at call->plan[idx], with token_ms to its first content
 * event; with prefill, of call->cont (a rescue's continuation). Returns it, owned by the call, with *err RL_OK when the request is
 * on its way; else *err and a->sink.error say why, and no transfer runs. */
struct attempt *attempt_start(struct provider_call *call, size_t idx,
                              uint64_t token_ms, bool prefill,
                              enum rl_err *err);
/* Stops a's transfer if it runs and frees a. Not from inside a transfer's
 * data callbacks. */
void attempt_free(struct attempt *a);
/* Stops a's transfer with err (a deadline); upstream_attempt_end follows
 * before this returns. */
void attempt_abort(struct attempt *a, enum rl_err err);
/* Pauses or resumes reading a's answer (provider_call_pause); the time
 * paused counts against none of its deadlines. Resuming may deliver
 * chunks before it returns. */
void attempt_pause(struct attempt *a, bool pause);
/* Fills r from a, ended with err. */
void attempt_report_fill(const struct attempt *a, enum rl_err err,
                         struct attempt_report *r);

/* Called by attempt.c: a chunk of a's stream (see chunk_sink.emit). */
void upstream_attempt_chunk(struct attempt *a, struct str chunk,
                            const struct chunk_members *members);
/* Called by attempt.c: a's transfer ended, judged err (RL_OK: a whole
 * answer). Not from inside a data callback. */
void upstream_attempt_end(struct attempt *a, enum rl_err err);

#endif
