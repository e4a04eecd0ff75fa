/*
 * redis.h - a small asynchronous Redis client on a libuv loop, one per
 * worker and purpose (limits/, cache/), for one Redis server or a Redis
 * Cluster.
 *
 * hiredis is used only for its RESP reader, to parse replies; commands
 * are encoded here, and connections, pipelining (the commands of one loop
 * iteration go out in one write per server), timeouts and reconnection
 * are ours (hiredis 0.14's async API has no timeouts).
 *
 * Contract, as everywhere in Relay: if redis_command() returns an error,
 * its callback is never called; if it returns RL_OK, the callback is called
 * exactly once, later (never from inside redis_command), with a reply or an
 * error. Commands are pipelined on one connection per server and answered
 * in FIFO order per server. A command not answered within
 * opts.command_timeout_ms breaks its connection: it is closed, every
 * command pending on it fails, and a reconnect is tried after an
 * exponential backoff with jitter. While a connection is not up, commands
 * for it fail at once (RL_E_IO) so that callers fall back quickly: nothing
 * is queued while Redis is down.
 *
 * Redis Cluster (docs/deploy.md): with ?cluster=yes in the URL, or by
 * default when the server answers CLUSTER SLOTS at connect (?cluster=no
 * skips that probe), the client learns the slot map, keeps one connection
 * per master, and sends each command to the master of its key's slot
 * (the hash tag rule; EVAL/EVALSHA by their first key, commands without a
 * key to any master). MOVED updates the map and resends, ASK resends once
 * after ASKING, TRYAGAIN resends after 5, 10, 20 ... ms; at most
 * REDIS_REDIRECTS_MAX times and within the command's own timeout, after
 * which the caller gets the error reply. A connection error is never
 * resent (the command may have run) and makes the client refresh the map
 * (CLUSTER SLOTS, at most once per REDIS_REFRESH_MIN_MS). Scripts are
 * loaded on each node by the NOSCRIPT fallback of redis_eval().
 *
 * Not thread-safe: a struct redis belongs to the thread running its loop.
 * Read redis_new() and on_cmd_reply() in client.c first, then node.c.
 */
#ifndef RL_REDIS_H
#define RL_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

struct uv_loop_s;
struct redisReply;

/* Defaults used when a field of struct redis_opts is 0. */
#define REDIS_COMMAND_TIMEOUT_MS 50
#define REDIS_CONNECT_TIMEOUT_MS 500
#define REDIS_BACKOFF_MIN_MS 100
#define REDIS_BACKOFF_MAX_MS 5000
#define REDIS_SEEDS_MAX 8        /* addresses in one URL */
#define REDIS_REDIRECTS_MAX 5    /* MOVED/ASK/TRYAGAIN followed per command */
#define REDIS_REFRESH_MIN_MS 500 /* between two CLUSTER SLOTS of a client */

struct redis_opts {
    uint64_t command_timeout_ms; /* per command, from sending; 0: 50 ms */
    uint64_t connect_timeout_ms; /* TCP connect + AUTH/SELECT; 0: 500 ms */
    uint64_t backoff_min_ms;     /* first reconnect delay; 0: 100 ms */
    uint64_t backoff_max_ms;     /* largest reconnect delay; 0: 5 s */
    /* Called on each change between up and down (and once when the first
     * connection attempt fails), from the loop; may be NULL. */
    void (*on_state)(void *ctx, bool up);
    void *state_ctx;             /* passed to on_state */
};

/* The ?cluster= of a URL. */
enum redis_cluster_mode {
    REDIS_CLUSTER_AUTO, /* absent: probe with CLUSTER SLOTS at connect */
    REDIS_CLUSTER_YES,  /* a Redis Cluster: the map first, db 0 only */
    REDIS_CLUSTER_NO,   /* one server, no probe */
};

/* One host:port of a URL. */
struct redis_seed {
    char host[256];     /* host name or numeric address */
    uint16_t port;      /* 6379 when absent */
};

/* What a redis:// URL names. Strings are NUL-terminated copies. */
struct redis_url {
    char host[256];     /* the first address's host (seeds[0].host) */
    uint16_t port;      /* its port (seeds[0].port) */
    char password[256]; /* empty when absent */
    int db;             /* 0 when absent */
    enum redis_cluster_mode cluster;
    int nseeds;         /* addresses in seeds, at least 1 */
    struct redis_seed seeds[REDIS_SEEDS_MAX]; /* where to learn a
                                                 cluster's map */
};

/* Counters since redis_new(); plain integers read on the loop's thread. */
struct redis_stats {
    uint64_t commands;   /* commands accepted by redis_command() */
    uint64_t failures;   /* commands that ended in an error (not a reply) */
    uint64_t timeouts;   /* connections broken by a command timeout */
    uint64_t reconnects; /* connection attempts after the first */
    uint64_t writes;     /* socket writes (many commands per write) */
    uint64_t moved;      /* MOVED replies followed */
    uint64_t asked;      /* ASK replies followed */
    uint64_t tryagain;   /* TRYAGAIN replies retried */
    uint64_t refreshes;  /* CLUSTER SLOTS sent (the probe included) */
};

/*
 * Called once per accepted command. On success err is RL_OK and reply is
 * the parsed reply (possibly a Redis error reply, type REDIS_REPLY_ERROR),
 * owned by the client and freed after the callback returns. On failure
 * reply is NULL and err is RL_E_IO (connection down or broken),
 * RL_E_UPSTREAM_TIMEOUT (no answer in time) or RL_E_SHUTTING_DOWN
 * (redis_free). The callback may issue new commands.
 */
typedef void (*redis_reply_fn)(void *ctx, struct redisReply *reply,
                               enum rl_err err);

/* A Lua script with its SHA-1, for redis_eval(). */
struct redis_script {
    const char *text; /* the script; static or outliving the struct */
    char sha1_hex[41]; /* lowercase hex SHA-1 of text, NUL-terminated */
};

/*
 * Parses redis://[[user]:password@]host[:port][,host[:port]...][/db]
 * [?cluster=yes|no|auto] (the user is ignored; [v6]:port works; several
 * addresses are the seeds of a cluster's map and imply cluster=yes)
 * into out. Pure. Returns RL_E_CONFIG with a sentence in msg (msg_len
 * bytes) on anything else, among which cluster=yes with a db other than 0
 * (Redis Cluster has only database 0).
 */
enum rl_err redis_url_parse(const char *url, struct redis_url *out,
                            char *msg, size_t msg_len);

/*
 * Creates a client for url on loop and starts connecting at once; the
 * host names are resolved here, synchronously (call it at worker start;
 * a cluster that announces masters by name, rather than by address, has
 * them resolved on the loop when they are learnt).
 * opts may be NULL. Returns NULL, logging why, when the URL is invalid or
 * the host does not resolve. The caller owns the result: redis_free().
 */
struct redis *redis_new(struct uv_loop_s *loop, const char *url,
                        const struct redis_opts *opts);

/*
 * Fails every pending command (RL_E_SHUTTING_DOWN, each callback exactly
 * once, from inside this call), closes the connection and frees r once
 * libuv has closed its handles: run the loop afterwards. NULL is a no-op.
 */
void redis_free(struct redis *r);

/*
 * Sends one command (argc arguments; argvlen may be NULL for C strings).
 * The arguments are copied. RL_E_IO when the connection is not up (cb is
 * not called); otherwise RL_OK and cb is called exactly once, later.
 */
enum rl_err redis_command(struct redis *r, int argc, const char **argv,
                          const size_t *argvlen, redis_reply_fn cb,
                          void *ctx);

/* Fills s->sha1_hex for text (OpenSSL SHA1); s keeps the text pointer. */
void redis_script_init(struct redis_script *s, const char *text);

/*
 * Runs script s with nkeys keys and nargs arguments (keys and args may be
 * NULL when their count is 0; lens NULL for C strings): sends EVALSHA and,
 * on a NOSCRIPT error, EVAL with the text, transparently. Same contract as
 * redis_command(); the arguments are copied.
 */
enum rl_err redis_eval(struct redis *r, const struct redis_script *s,
                       int nkeys, const char **keys, const size_t *keylens,
                       int nargs, const char **args, const size_t *arglens,
                       redis_reply_fn cb, void *ctx);

/*
 * Writes the commands sent so far now, instead of just before the loop
 * next polls. For callers that send from a prepare callback of their own
 * (libuv runs a prepare handle started meanwhile only on the next
 * iteration). Errors break the connection as usual.
 */
void redis_flush(struct redis *r);

/*
 * True while commands can be served: one server: its connection is
 * established and its handshake done; a cluster: the map covers every
 * slot and the connection to every master is up (as Redis Cluster itself,
 * which by default refuses every command while a slot is not covered).
 * opts.on_state reports the changes of this value.
 */
bool redis_up(const struct redis *r);

/* True when r routes by slot (the URL or the server said cluster). */
bool redis_is_cluster(const struct redis *r);

/* Copies the counters of r into out. */
void redis_stats_get(const struct redis *r, struct redis_stats *out);

#endif
