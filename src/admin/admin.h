/*
 * admin.h - managing API keys: `relay keys` (cli.c), the admin API
 * GET/POST /admin/keys and DELETE /admin/keys/{id} behind the master key
 * (keys.c), and what both read from the operator (spec.c: pure parsing,
 * unit-tested).
 *
 * Both write through store/keys.c. The HTTP side never blocks its event
 * loop: each operation runs on libuv's thread pool with its own store
 * connection and answers from the after-work callback.
 */
#ifndef RL_ADMIN_H
#define RL_ADMIN_H

#include <jansson.h>
#include <uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"
#include "util/str.h"

struct config;
struct gw_worker;
struct conn;
struct http_request;
struct req;
struct store_analytics;

#define ADMIN_TOP_KEYS 10 /* keys listed in "top keys by spend" */

/* ---------------------------------------------------------------------
 * What a new key is to be (spec.c)
 * ------------------------------------------------------------------- */

/* Sets spec->routing from "max_latency_ms=600,min_quality_tier=2" (also
 * max_ttft_ms, hedge=true|false). On a bad pair writes what is wrong into
 * err and returns false. */
bool admin_spec_routing_pairs(struct store_key *spec, const char *pairs,
                              char *err, size_t n);
/* Sets spec->models from "a,b" (empty: every model). */
bool admin_spec_models_csv(struct store_key *spec, const char *csv,
                           char *err, size_t n);
/* Sets spec->cache to {"threshold": T} from "0.95" (above 0, at most 1):
 * the key's least similarity of a semantic cache hit. */
/* Sets (yes) or clears the key's opt-in to the cache above
 * cache.max_temperature ({"any_temperature": true} in its cache JSON). */
bool admin_spec_cache_any_temperature(struct store_key *spec, bool yes);
bool admin_spec_cache_threshold(struct store_key *spec, const char *text,
                                char *err, size_t n);
/* Parses "50" or "0.25" USD into spec->budget_nusd, exactly. */
bool admin_spec_budget_usd(struct store_key *spec, const char *usd,
                           char *err, size_t n);
/* Checks the whole spec (a name; a budget with a period and the other way
 * round). */
bool admin_spec_check(const struct store_key *spec, char *err, size_t n);

/*
 * Parses the JSON body of POST /admin/keys: {"name", "rpm", "tpm",
 * "max_concurrent", "budget_usd", "period", "models": [..], "routing":
 * {..}} into spec. On a bad body writes the message into err, points
 * *param at the field's name (static) and returns false.
 */
bool admin_body_parse(struct str body, struct store_key *spec, char *err,
                      size_t n, const char **param);

/* Returns a new JSON object for k as the admin API and `relay keys list
 * --json` show it: never its hash. The caller owns the reference. */
json_t *admin_key_json(const struct store_key *k);

/* What `relay keys ...` was asked to do. */
enum admin_cmd {
    ADMIN_CREATE,
    ADMIN_LIST,
    ADMIN_REVOKE,
    ADMIN_CHECK,
};

struct admin_cli {
    enum admin_cmd cmd;
    const char *config;    /* --config, or NULL */
    bool help;             /* --help */
    bool json;             /* list --json */
    bool all;              /* list --all */
    const char *target;    /* revoke's ID|PREFIX */
    struct store_key spec; /* create's key */
};

/*
 * Parses argv (argv[0] is "keys") into out. Returns 0, or 2 with the
 * message in err for a usage mistake. Pure: for the tests.
 */
int admin_cli_parse(int argc, char **argv, struct admin_cli *out, char *err,
                    size_t n);

/* ---------------------------------------------------------------------
 * The commands and the routes
 * ------------------------------------------------------------------- */

/* Runs `relay keys ...` (argv[0] is "keys"); returns the exit status:
 * 0 done, 1 failed, 2 usage. */
int admin_keys_main(int argc, char **argv);

/* Whether argv[*i] is --opt VALUE or --opt=VALUE; sets *v to VALUE (and
 * moves *i past VALUE). Shared by the commands' argument parsers. */
bool admin_opt_value(int argc, char **argv, int *i, const char *opt,
                     const char **v);

/* Loads the configuration at path (NULL or empty: $RELAY_CONFIG, else
 * ./relay.yaml) for `relay cmd`; on failure prints every mistake and what
 * to do, and returns NULL. The caller owns the result: config_unref(). */
struct config *admin_config_load(const char *path, const char *cmd);

/* Runs `relay cache compare ...` (argv[0] is "cache", cache_cli.c);
 * returns the exit status: 0 every line compared, 1 the configuration or
 * the model could not be loaded, 2 usage, 3 some input lines were bad. */
int admin_cache_main(int argc, char **argv);

/* The master key, compared as SHA-256s in constant time: answers r with
 * 401 (no or a wrong key) or 403 (no admin_key configured) and returns
 * false when the caller is not the operator. Borrows r and http. */
bool admin_authorized(struct req *r, const struct http_request *http);

/* Serves /admin/keys[/{id}] on c (the caller matched the path). */
void admin_serve(struct gw_worker *w, struct conn *c,
                 struct http_request *http);

/* Reads range=1h|24h|7d|30d from a query string (none: 24h) into the
 * range's static name and length; false for any other value. Pure. */
bool admin_range_parse(struct str query, const char **name,
                       int64_t *span_us);
/* Returns a new JSON object, the body of GET /admin/analytics, for a
 * (borrowed) and the range's name; the caller owns the reference. Pure. */
json_t *admin_analytics_json(const struct store_analytics *a,
                             const char *range);
/* Serves GET /admin/analytics on c (the caller matched the path): the
 * admin key is checked unless trusted (the dashboard's local listener). */
void admin_analytics_serve(struct gw_worker *w, struct conn *c,
                           struct http_request *http, bool trusted);

/* ---------------------------------------------------------------------
 * One admin operation off the event loop (job.c)
 * ------------------------------------------------------------------- */

struct gw_worker;
struct conn;
struct req;

/* An operation's state. Embed it as the FIRST member of the operation's
 * own struct, allocated with rl_calloc: the job frees that allocation. */
struct admin_job {
    uv_work_t work;           /* the thread pool's handle */
    struct req *r;            /* answered and freed by the job */
    bool gone;                /* the client left: do not answer */
    /* On the pool thread, with a store connection: sets err, and on
     * success body (JSON text, malloc) and status (0: 200). */
    void (*run)(struct admin_job *j, struct store_db *db);
    const char *failure;      /* "The key store failed": a 503's start */
    const char *param;        /* param of a 400 or 404 */
    const char *not_found_code; /* RL_E_NOT_FOUND is a 404 with this code;
                                   NULL: a 503 like any failure */
    const char *invalid_code; /* RL_E_INVALID_REQUEST likewise, a 400 */
    enum rl_err err;
    int status;
    char message[512];        /* what went wrong, for the answer */
    char *body;
};

/* Runs j->run on w's thread pool and answers j->r from the outcome, then
 * frees j (the whole allocation it heads) and j->r. Takes ownership of
 * both, whatever happens. */
void admin_job_start(struct gw_worker *w, struct conn *c,
                     struct admin_job *j);

#endif
