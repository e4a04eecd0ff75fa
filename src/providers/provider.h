/*
 * provider.h - the one header the core includes to talk to providers.
 *
 * An adapter turns Relay's view of a chat request (OpenAI's shape) into one
 * upstream HTTP request, and the provider's answer, whole or as framed stream
 * events, back into OpenAI objects. Adapters are pure: no I/O, no clocks, no
 * globals; the transport (upstream.c) and the framing (framing.c) are shared.
 * Read struct provider_ops first.
 */
#ifndef RL_PROVIDER_H
#define RL_PROVIDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/jscan.h"
#include "util/str.h"

struct provider_cfg;
struct model_cfg;

/* Token usage of one call, in OpenAI's convention: cached_tokens are a part
 * of prompt_tokens, reasoning_tokens a part of completion_tokens. */
struct usage {
    int64_t prompt_tokens;      /* all input tokens */
    int64_t completion_tokens;  /* all output tokens */
    int64_t cached_tokens;      /* input tokens read from a prompt cache */
    int64_t cache_write_tokens; /* input tokens written to a prompt cache */
    int64_t reasoning_tokens;   /* output tokens spent reasoning */
    bool present;               /* the provider reported usage */
};

/* A validated client request, as the adapters see it. */
struct chat_req {
    struct str raw;     /* the client's JSON object, as it sent it */
    char model[256];    /* the model asked for, decoded */
    struct str routing; /* the "routing" object's text, or empty */
    bool stream;        /* the client asked for SSE */
    bool include_usage; /* stream_options.include_usage */
    int64_t max_tokens; /* max_completion_tokens or max_tokens; 0: unset */
};

/* The upstream HTTP request an adapter builds. */
struct upstream_req {
    struct buf url;     /* absolute URL */
    struct buf headers; /* "Name: value\n" lines, without Content-Type */
    struct buf body;    /* JSON body */
};

/* What went wrong upstream, in OpenAI's terms. */
struct provider_error {
    int status;         /* HTTP status to give the client */
    const char *type;   /* OpenAI error type (static string) */
    const char *code;   /* OpenAI error code (static string) or NULL */
    char message[512];  /* the provider's message, or ours */
    bool retryable;     /* another attempt (or model) may succeed */
    uint32_t retry_after_s; /* upstream Retry-After, 0 when absent */
};

/* A chunk's top-level members as spans (see util/jscan.h). */
struct chunk_members {
    const struct jscan_item *items;
    size_t n;
};

/* The top-level members of a whole answer, as spans of its OpenAI-shaped
 * text, when the adapter found them on the way (the caller zeroes it; n
 * stays 0 when not known, and the reply scans the text itself). */
#define PROVIDER_ANSWER_MEMBERS 16
struct answer_members {
    struct jscan_item items[PROVIDER_ANSWER_MEMBERS];
    size_t n;
};

/* Where an adapter's stream parser puts what it found. */
struct chunk_sink {
    /* Hands on one OpenAI chat.completion.chunk, as JSON text that must be
     * a well-formed object; valid during the call only. The core replaces
     * id and model and drops what the client did not ask for. members are
     * the chunk's top-level members if the adapter scanned them already
     * (saves the core a scan), else NULL. */
    void (*emit)(struct chunk_sink *sink, struct str chunk,
                 const struct chunk_members *members);
    void *ctx;                   /* the core's */
    struct usage usage;          /* the adapter updates it as usage comes */
    bool finished;               /* the provider's final event was seen */
    struct provider_error error; /* filled when on_event fails */
};

/* How a stream is cut into events before on_event sees them. */
enum framing_kind {
    FRAMING_SSE,    /* text/event-stream */
    FRAMING_NDJSON, /* one JSON value per line */
};

struct provider_ops {
    const char *kind;        /* the `kind:` in relay.yaml */
    enum framing_kind framing;
    size_t stream_state_size; /* bytes the core zeroes for on_event */
    bool prefill;            /* continues a final assistant message (the
                                rescue of a cut stream sends the text
                                already streamed as one) */
    /* Builds the upstream request for model. Pure. Returns
     * RL_E_INVALID_REQUEST (with msg filled) for a request the provider
     * cannot honour. */
    enum rl_err (*build_request)(const struct chat_req *req,
                                 const struct model_cfg *model,
                                 struct upstream_req *out,
                                 struct provider_error *err);
    /* Turns a whole 2xx answer into an OpenAI chat.completion object,
     * appended to out as JSON text (members: its top-level members, if
     * found on the way), and its usage. */
    enum rl_err (*parse_response)(struct str body, struct buf *out,
                                  struct answer_members *members,
                                  struct usage *usage,
                                  struct provider_error *err);
    /* One framed event in, zero or more chunks out through sink. */
    enum rl_err (*on_event)(void *state, struct str event, struct str data,
                            struct chunk_sink *sink);
    /* Maps a non-2xx answer to an OpenAI error, keeping the provider's
     * message. retry_after_s is what the upstream's header said. */
    void (*map_error)(long status, struct str body, uint32_t retry_after_s,
                      struct provider_error *out);
};

/* Returns the adapter for a `kind:` name, or NULL. */
const struct provider_ops *provider_ops_find(const char *kind);
/* Returns "openai, anthropic, ..." for messages. */
const char *provider_kinds(void);

/* Fills err with an OpenAI error; message is printf-formatted. */
void provider_error_set(struct provider_error *err, int status,
                        const char *type, const char *code, bool retryable,
                        const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Reads usage from an OpenAI-shaped "usage" object into *out. */
void provider_usage_from_openai(json_t *usage, struct usage *out);
/* The same, from the object's JSON text; false if it is not an object. */
bool provider_usage_from_openai_text(struct str usage, struct usage *out);

/* ---------------------------------------------------------------------
 * Calls: one client request answered by the first candidate that works
 * ------------------------------------------------------------------- */

struct uv_loop_s;
struct upstream;      /* one per worker: transport, deadlines */
struct provider_call; /* one per client request */

/* How one upstream attempt ended. */
enum attempt_outcome {
    ATTEMPT_OK,             /* it answered (or its answer was used) */
    ATTEMPT_TIMEOUT,        /* a first-token, idle or total deadline */
    ATTEMPT_RATE_LIMITED,   /* 429 */
    ATTEMPT_SERVER_ERROR,   /* 5xx, overload, an error event mid-stream */
    ATTEMPT_CONNECT,        /* no connection, or it failed before a byte */
    ATTEMPT_CUT,            /* the answer broke off, or was malformed */
    ATTEMPT_CLIENT_ERROR,   /* another 4xx, or a request the adapter
                               refused: no other try on this model */
    ATTEMPT_CONTENT_POLICY, /* refused by the provider's content policy */
    ATTEMPT_CONTEXT_LENGTH, /* the prompt is over the model's window */
    ATTEMPT_CANCELLED,      /* lost a hedge, or the client went away */
};

/* Returns "ok", "timeout", ... (static), for logs and the request log. */
const char *provider_outcome_name(enum attempt_outcome o);

/* One upstream attempt, reported by on_attempt when it ends. */
struct attempt_report {
    enum attempt_outcome outcome;
    enum rl_err err;          /* RL_OK for ATTEMPT_OK */
    int status;               /* upstream HTTP status, 0 if none came */
    uint32_t retry_after_s;   /* upstream Retry-After, 0 when absent */
    uint64_t ttfb_us;         /* attempt start to its first byte, 0: none */
    uint64_t ttft_us;         /* attempt start to its first content event
                                 (non-stream: the whole answer), 0: none */
    uint64_t total_us;        /* attempt start to its end, less the time
                                 it was paused for a slow client */
    struct usage usage;       /* as the provider reported it (present is
                                 false when it did not: estimate it) */
    int64_t completion_events; /* content events received (a token count
                                  estimate when usage is absent) */
    int index;                /* position in the plan */
    int round;                /* 0, then 1.. for each retry of the plan */
    bool streamed;            /* it was a streamed request */
    bool hedge;               /* started as a hedge of another attempt */
    bool rescue;              /* started to rescue a cut stream */
    bool won;                 /* its answer reached the client */
    bool billable_prompt;     /* the request reached the provider, so its
                                 prompt is paid even if cancelled */
    uint32_t wait;            /* what on_attempt_start returned for it */
    bool first_reported;      /* on_attempt_first was called for it */
};

/* A compact line of the attempts summary, for the request log. */
struct attempt_brief {
    const struct model_cfg *model; /* the candidate asked */
    enum attempt_outcome outcome;
    int status;                    /* upstream HTTP status, 0: none */
    uint32_t ms;                   /* the attempt's duration */
    bool hedge;                    /* started as a hedge */
};

#define PROVIDER_MAX_BRIEFS 8 /* attempts kept in call_result.briefs */

/* The outcome of a call, valid during on_done only. */
struct call_result {
    enum rl_err err;              /* RL_OK when an answer came */
    struct provider_error error;  /* when err != RL_OK */
    const struct model_cfg *model; /* the model that answered, or the last
                                      one tried */
    struct str completion; /* non-stream answer (JSON text), valid during
                              on_done */
    struct chunk_members members; /* its members if known (n 0: not) */
    struct usage usage;   /* as the answering attempt's provider reported
                             it; failed attempts are never in it */
    bool started;         /* on_first was called: the client has output */
    int attempts;         /* upstream requests made (hedges included) */
    uint64_t upstream_us; /* call start to its end, waiting on upstreams */
    uint64_t ttft_us;     /* call start to the first event, 0 if none */
    struct attempt_brief briefs[PROVIDER_MAX_BRIEFS]; /* the first attempts,
                                                         in end order */
    size_t nbriefs;
    bool rescued;         /* a cut stream was continued by a new attempt */
};

struct provider_call_cbs {
    /* The first content event of model's answer arrived (a role-only
     * chunk does not count); nothing was sent to the client before this,
     * so a failure before it could still fall back. */
    void (*on_first)(void *ctx, const struct model_cfg *model, int attempts);
    /* A streamed chunk, JSON text valid during the call; members as in
     * chunk_sink.emit (may be NULL). */
    void (*on_chunk)(void *ctx, struct str chunk,
                     const struct chunk_members *members);
    /* Called exactly once when the call ends, unless it was cancelled. */
    void (*on_done)(void *ctx, struct call_result *res);
    /* Optional (may be NULL): one upstream attempt ended, however it did;
     * called once per attempt, before on_done, and for a cancelled call
     * from inside provider_call_cancel(). model is the candidate asked; r
     * is valid during the call. Must not cancel the call. */
    void (*on_attempt)(void *ctx, const struct model_cfg *model,
                       const struct attempt_report *r);
    /* Optional: an attempt at plan[index] was sent; what it returns comes
     * back in the attempt's attempt_report.wait (the router's token of
     * its wait, opaque here). Must not cancel the call. */
    uint32_t (*on_attempt_start)(void *ctx, const struct model_cfg *model,
                                 int index);
    /* Optional: a streamed attempt's first content event came, ttft_us
     * after it was sent (a loser's too: the router learns from every
     * attempt at once, not when the stream ends). Must not cancel. */
    void (*on_attempt_first)(void *ctx, const struct model_cfg *model,
                             uint32_t wait, uint64_t ttft_us);
};

/* Deadlines and retries of a call. Times are in milliseconds. */
struct call_limits {
    uint64_t connect_ms;    /* TCP and TLS connect */
    uint64_t first_byte_ms; /* request sent to the first token (a stream's
                               first content event, a whole answer's
                               first byte), for each candidate */
    uint64_t idle_ms;       /* between two reads of an answer */
    uint64_t primary_first_token_ms; /* the same for plan[0], from the
                                        routing plan; 0: first_byte_ms */
    uint64_t hedge_ms;      /* start plan's next candidate too when the
                               current one has no token after this; 0: no
                               hedging */
    uint64_t total_ms;      /* the whole call; 0: none */
    int retries;            /* passes over the plan after the first */
    uint64_t backoff_ms;    /* first retry's delay, x1..x2 jitter */
    uint64_t backoff_max_ms; /* the doubling delay's cap */
    uint64_t retry_max_wait_ms; /* longest Retry-After waited out */
    size_t rescue_max_bytes; /* text kept to rescue a cut deterministic
                                stream; 0: never rescue */
};

/* Returns the upstream state of one worker's loop. */
struct upstream *upstream_new(struct uv_loop_s *loop);
/* Frees it; every call must have ended or been cancelled. */
void upstream_free(struct upstream *up);
/* Number of calls in progress. */
size_t upstream_active(const struct upstream *up);

/*
 * Starts answering req from plan[0], falling back along plan[1..] when an
 * attempt fails before anything reached the client. plan must stay valid
 * until on_done (the caller's config reference keeps it). Returns RL_OK and
 * *out; then on_done is called exactly once, later, unless
 * provider_call_cancel() is called first. Otherwise returns the error, with
 * *err_out filled, and no callback is called.
 */
enum rl_err provider_call_start(struct upstream *up,
                                const struct chat_req *req,
                                const struct model_cfg *const *plan,
                                size_t nplan,
                                const struct call_limits *limits,
                                const struct provider_call_cbs *cbs,
                                void *ctx, struct provider_call **out,
                                struct provider_error *err_out);
/* Stops a call: no callback is called after this returns. Safe to call
 * from inside on_first and on_chunk; never from on_done. */
void provider_call_cancel(struct provider_call *call);
/*
 * The client reads more slowly than the provider sends (pause true), or
 * has caught up (false): stops or resumes reading the answer of the
 * attempt whose output reaches the client (a hedge's loser is never
 * paused; a rescue started meanwhile starts paused). The time paused
 * counts against none of the call's deadlines (first token, idle, total).
 * Safe from inside on_first and on_chunk; resuming may call on_chunk
 * before it returns.
 */
void provider_call_pause(struct provider_call *call, bool pause);

#endif
