/*
 * request.h - one client request on its way through the pipeline.
 *
 * Everything request-scoped lives in req->arena and goes in one call,
 * req_free(), which also runs accounting_finish() if it has not run yet: so
 * every request is counted and logged exactly once, whatever path it took.
 */
#ifndef RL_REQUEST_H
#define RL_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "limits/limits.h"
#include "providers/provider.h"
#include "util/arena.h"
#include "util/buf.h"

struct gw_worker;
struct conn;
struct http_request;
struct config;
struct model_cfg;
struct auth_result;
struct routing_plan;

struct req {
    struct arena arena;          /* request-scoped memory */
    struct gw_worker *w;         /* the worker serving it */
    struct config *cfg;          /* snapshot it started with (a reference) */
    struct conn *conn;           /* NULL once the client has gone */
    struct req *next_dead;       /* in w->dead, waiting to be freed */
    char id[32];                 /* "req_" + 24 hex digits */
    struct buf brand;            /* "id":"chatcmpl-..." and "model":"..."
                                    JSON text, made once per answer */
    size_t brand_model_at;       /* where "model" starts in brand */
    const char *method;          /* "POST" */
    const char *path;            /* copied into the arena */
    uint64_t start_us;           /* the request was fully received */
    uint64_t call_start_us;      /* handed to the provider call */
    uint64_t end_us;             /* the response was complete */
    char key_prefix[16];         /* display prefix of the API key */
    char key_id[32];             /* store key id ("key_..."), "" for a
                                    static key of auth.keys */
    char key_name[64];           /* the key's name, for logs */
    const char *const *key_models; /* models the key may use, in the
                                      arena; NULL with nkey_models 0: all */
    size_t nkey_models;
    struct auth_result *who;     /* the whole result of step 1, in the
                                    arena (limits, budget, routing
                                    defaults); NULL before it */
    /* The chat request. */
    struct chat_req chat;        /* the checked body (spans into it) */
    const char *model_requested; /* "auto" or a name, in the arena */
    const struct routing_plan *route; /* step 3's whole plan (predictions,
                                    reasons, deadline), in the arena */
    const struct model_cfg *const *plan; /* route->order, in the arena */
    size_t nplan;
    struct provider_call *call;  /* in progress, or NULL */
    const char *route_text;      /* routing_explain() of route, made once
                                    (header, row, log line), in the arena */
    int64_t unused_cost_nusd;    /* prompts paid by attempts whose answer
                                    was not used (a hedge's loser) */
    struct attempt_brief briefs[PROVIDER_MAX_BRIEFS]; /* the attempts */
    size_t nbriefs;
    /* Step 2. */
    int64_t prompt_tokens_est;   /* prompt tokens estimated from the text */
    struct limits_pending *limits_pending; /* waiting on Redis, or NULL */
    struct limits_hold *hold;    /* admitted, to reconcile once, or NULL */
    struct limits_verdict verdict; /* for the x-ratelimit-* headers */
    bool has_verdict;            /* verdict is set */
    /* The outcome. */
    const struct model_cfg *model; /* the model that answered or failed */
    int status;                  /* HTTP status sent */
    const char *error_type;      /* OpenAI error type, or NULL */
    const char *error_code;      /* OpenAI error code, or NULL */
    struct usage usage;          /* tokens, as reported (or estimated) */
    int64_t output_tokens_est;   /* output tokens estimated from what was
                                    sent, for a provider without usage */
    int attempts;                /* upstream requests made */
    uint64_t upstream_us;        /* waiting on providers */
    uint64_t ttft_us;            /* to the first streamed event */
    int64_t cost_nusd;           /* priced from usage */
    bool streamed;               /* the response was SSE */
    bool client_gone;            /* the client left before the end */
    bool accounted;              /* accounting_finish ran */
    bool priced;                 /* accounting_price ran */
    bool usage_estimated;        /* usage was estimated, not reported */
    bool provider_failed;        /* the answer is a provider's failure
                                    passed on (reply_provider_error) */
    bool in_flight;              /* counted in the in-flight gauge */
    /* Step 4. */
    struct cache_key *cache_key; /* in the arena; NULL: no cache */
    struct cache_pending *cache_pending; /* waiting on Redis, or NULL */
    struct cache_collect *cache_collect; /* a stream's answer, owned */
    struct cache_sem_pending *sem_pending; /* embedding, or NULL */
    float *cache_vec;            /* the prompt's embedding, in the arena,
                                    for the semantic insert; or NULL */
    size_t cache_dim;            /* floats in cache_vec */
    const char *cache_status;    /* "exact" or "semantic" for a hit,
                                    else "miss" */
    double cache_similarity;     /* a semantic hit's cosine similarity */
    int64_t savings_nusd;        /* a hit: what the answer would cost */
    struct buf out;              /* scratch for serialising chunks */
};

/* Returns a new request for http on c (which may be NULL in tests), with
 * a reference to the worker's current config. */
struct req *req_new(struct gw_worker *w, struct conn *c,
                    const struct http_request *http);
/* Cuts the part of r's logged path after its first keep bytes (the
 * route's own) short, as str_shown does: that part is the client's choice
 * (an unknown path, a model nobody has, an unauthorized admin call) and may
 * be a key sent to the wrong place. */
void req_hide_path(struct req *r, size_t keep);
/* Returns routing_explain() of r->route, computed on the first call and
 * kept in r's arena; "" when r was not routed. */
const char *req_route_text(struct req *r);
/* Accounts the request if needed and frees it and all it owns. */
void req_free(struct req *r);
/* Frees r at the end of this loop iteration instead of now, for callers
 * that may be running inside one of r's callbacks. */
void req_free_later(struct req *r);

#endif
