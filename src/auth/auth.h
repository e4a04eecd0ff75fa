/*
 * auth.h - step 1 of a request: who is calling, and what that key may do.
 *
 * auth_check() accepts the static keys of relay.yaml's auth.keys (no
 * limits: bootstrap and tests) and the keys kept in the store, through the
 * process's key cache (keycache_start() before the workers serve,
 * keycache_stop() after). The key itself is never kept: only its SHA-256
 * and display prefix. Key generation (`relay keys create`, POST
 * /admin/keys) is here too, so that one file says what a key looks like.
 */
#ifndef RL_AUTH_H
#define RL_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/arena.h"
#include "util/err.h"
#include "util/str.h"

struct config;

/* Why a key was refused, for the 401 message. */
enum auth_refusal {
    AUTH_ACCEPTED = 0,  /* not refused */
    AUTH_MISSING,       /* no Authorization header */
    AUTH_NOT_BEARER,    /* a header without "Bearer " */
    AUTH_MALFORMED,     /* empty, too long, or not a key's characters */
    AUTH_UNKNOWN,       /* no such key */
    AUTH_REVOKED,       /* a store key that was revoked */
};

/* The period a budget is counted over (as enum store_period). */
enum auth_period {
    AUTH_PERIOD_NONE = 0, /* no budget */
    AUTH_PERIOD_DAY,      /* since 00:00 UTC */
    AUTH_PERIOD_WEEK,     /* since Monday 00:00 UTC */
    AUTH_PERIOD_MONTH,    /* since the 1st, 00:00 UTC */
    AUTH_PERIOD_TOTAL,    /* ever */
};

/* A key's routing defaults; a request's own routing fields win. */
struct auth_routing {
    int max_latency_ms;   /* 0: unset */
    int min_quality_tier; /* 0: unset */
    int max_ttft_ms;      /* 0: unset */
    int hedge;            /* -1: unset, 0: off, 1: on */
};

/* Who a request comes from and what the key allows. Plain copies (fixed
 * size), except models, which points into the arena given to auth_check:
 * all of it may be kept for the whole request. */
struct auth_result {
    enum auth_refusal refusal;   /* AUTH_ACCEPTED on success */
    bool from_store;             /* a store key (else a static one) */
    char key_id[32];             /* "key_" + 16 hex; "" for a static key */
    char name[64];               /* the key's name; "auth.keys" if static */
    char key_prefix[16];         /* display prefix ("glw_7Qk2") */
    int64_t rpm;                 /* requests per minute; 0: no limit */
    int64_t tpm;                 /* tokens per minute; 0: no limit */
    int64_t max_concurrent;      /* requests at once; 0: no limit */
    int64_t budget_nusd;         /* per period, nano-dollars; 0: none */
    enum auth_period budget_period; /* NONE when there is no budget */
    int64_t spent_nusd;          /* spent this period when the cache last
                                    looked (every 5 s): a budget's seed */
    const char *const *models;   /* allowed model names, in the arena */
    size_t nmodels;              /* 0: every model */
    struct auth_routing routing; /* the key's routing defaults */
    double cache_threshold;      /* the key's semantic cache threshold;
                                    0: cache.threshold */
    bool cache_any_temperature;  /* the key opts in to the cache above
                                    cache.max_temperature */
};

/*
 * Checks the Authorization header value: a static key of cfg, or a live
 * key of the key cache, each found by its SHA-256 and confirmed with a
 * constant-time compare. Returns RL_OK and fills out (models copied into
 * arena), or RL_E_UNAUTHORIZED with out->refusal saying why. Never logs
 * the key.
 */
enum rl_err auth_check(const struct config *cfg, struct str authorization,
                       struct arena *arena, struct auth_result *out);

/* Writes the 401 message for refusal into out (size n); it never holds
 * the key. */
void auth_refusal_message(enum auth_refusal refusal, char *out, size_t n);

/* Whether the key may use the model called model_name (true when it has
 * no list). "auto" is the routing step's business: it is allowed here. */
bool auth_model_allowed(const struct auth_result *who,
                        const char *model_name);

/* ---------------------------------------------------------------------
 * Keys (keygen.c)
 * ------------------------------------------------------------------- */

#define AUTH_KEY_PREFIX "glw_"
#define AUTH_KEY_RANDOM_CHARS 40                /* after "glw_" */
#define AUTH_KEY_LEN (4 + AUTH_KEY_RANDOM_CHARS) /* 44 characters */
#define AUTH_BASE62_LIMIT 248 /* 4 * 62: bytes at or over it are dropped */

/* A new key and what is stored of it. */
struct auth_new_key {
    char key[AUTH_KEY_LEN + 1]; /* shown once, never stored */
    char prefix[16];            /* "glw_" + its first 4 characters */
    char sha256_hex[65];        /* SHA-256 of key, lower-case hex */
    char id[32];                /* "key_" + 16 hex digits */
};

/*
 * Maps random bytes to base62 characters without modulo bias: a byte b is
 * used only when b < AUTH_BASE62_LIMIT (then b % 62, each character from
 * exactly four byte values), else skipped. Writes up to nout characters
 * and returns how many it wrote. Pure: the tests feed it chosen bytes.
 */
size_t auth_base62_take(const unsigned char *bytes, size_t nbytes, char *out,
                        size_t nout);
/* Makes a new key from the OS CSPRNG (getrandom). RL_E_IO if the OS gives
 * no randomness. */
enum rl_err auth_key_generate(struct auth_new_key *out);
/* Writes SHA-256(p, len) as 64 lower-case hex digits and a NUL. */
void auth_sha256_hex(const char *p, size_t len, char out[65]);
/* Whether s (len bytes) has a key's form: "glw_" and 40 base62. */
bool auth_key_well_formed(const char *s, size_t len);

/* ---------------------------------------------------------------------
 * The key cache (keycache.c): live and revoked store keys, in memory
 * ------------------------------------------------------------------- */

/* Options of keycache_start; zero values take the defaults. */
struct keycache_opts {
    uint64_t poll_ms;  /* changes are read this often (default 250) */
    uint64_t spend_ms; /* spends are read this often (default 5000) */
};

/*
 * Loads every key of the store at url (NULL/empty: SQLite at
 * .relay/relay.db; "none": no store keys) and starts the one thread that
 * polls it for changes. A store that cannot be reached is logged and
 * retried; the keys stay unknown until it answers. Returns RL_E_CONFIG for
 * a URL it cannot use. Call before the workers serve.
 */
enum rl_err keycache_start(const char *url, const struct keycache_opts *o);
/* Reads the store's changes now, on the calling thread (tests, and the
 * admin API after a change, so this process sees it at once). */
void keycache_refresh(void);
/* Stops the thread and frees the cache. Safe when not started. */
void keycache_stop(void);
/* Drops the calling thread's reference to the cache's snapshot; call when
 * a thread that used auth_check ends (worker_stop). */
void keycache_thread_exit(void);
/* The highest key version the cache has applied (tests, logs). */
int64_t keycache_version(void);

#endif
