/*
 * internal.h - what the files of src/redis/ share, and what the unit
 * tests reach: one connection to one server (node.c) and the pure parts
 * of Redis Cluster support (slots.c: CRC16 slots, MOVED/ASK replies, the
 * slot map). client.c builds the public struct redis of redis.h on them.
 */
#ifndef RL_REDIS_INTERNAL_H
#define RL_REDIS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "redis/redis.h"

struct redisReply;
struct sockaddr_storage;

/* ---------------------------------------------------------------------
 * Slots (slots.c, pure)
 * ------------------------------------------------------------------- */

#define REDIS_SLOTS 16384
#define REDIS_NO_NODE 0xffffu  /* a slot nobody is known to serve */
#define REDIS_ADDRS_MAX 1024   /* addresses one client ever learns */

/* CRC16-CCITT (XModem: polynomial 0x1021, initial value 0), the one of
 * the Redis Cluster specification. */
uint16_t redis_crc16(const char *p, size_t len);

/* The cluster slot of a key: CRC16 of the key, or of the part between
 * its first '{' and the first '}' after it when that part is not empty,
 * modulo 16384. */
int redis_key_slot(const char *key, size_t len);

/*
 * Where a command's key is, for routing: sets *key and *len to the first
 * key of argv and returns true; false for a command without a key (PING,
 * TIME, SCRIPT, CLUSTER ..., an EVAL with no keys), which may go to any
 * node. The rule: EVAL/EVALSHA/FCALL take their first key after numkeys,
 * a short list of commands take none, every other command has its key in
 * argv[1] (true of every command Relay sends).
 */
bool redis_command_key(int argc, const char **argv, const size_t *lens,
                       const char **key, size_t *len);

enum redis_redirect_kind { REDIS_REDIRECT_MOVED, REDIS_REDIRECT_ASK };

/* A -MOVED or -ASK error reply, parsed. */
struct redis_redirect {
    enum redis_redirect_kind kind;
    int slot;           /* 0..16383 */
    char host[256];     /* empty: the node that answered (Redis 7 may
                           leave its endpoint out) */
    uint16_t port;
};

/* Parses "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" (the
 * host may be empty, a name, an IPv4 or an IPv6 address, the port is
 * after the last ':'). Pure. False for any other text. */
bool redis_redirect_parse(const char *s, size_t len,
                          struct redis_redirect *out);

/* One server address of a cluster. */
struct redis_addr {
    char host[256]; /* as the cluster names it, NUL-terminated */
    uint16_t port;
};

/* Which address serves each slot. Addresses are only ever appended, so
 * an index stays valid for the life of the map (client.c keeps one
 * connection per index). */
struct redis_slotmap {
    uint16_t owner[REDIS_SLOTS]; /* index into addrs, or REDIS_NO_NODE */
    struct redis_addr *addrs;    /* every address learnt */
    size_t naddrs;               /* addresses in addrs */
    size_t capaddrs;             /* allocated */
};

/* Empties m: no slot served, no address. */
void redis_slotmap_init(struct redis_slotmap *m);

/* Frees m's addresses. */
void redis_slotmap_free(struct redis_slotmap *m);

/* The index of host:port in m, appended when new; -1 when m already holds
 * REDIS_ADDRS_MAX addresses or host is too long. */
int redis_slotmap_addr(struct redis_slotmap *m, const char *host,
                       uint16_t port);

/*
 * Applies a redirection: slot r->slot is now served by r's address (the
 * empty host replaced by self_host). Returns the address index, or -1 as
 * redis_slotmap_addr().
 */
int redis_slotmap_moved(struct redis_slotmap *m,
                        const struct redis_redirect *r,
                        const char *self_host);

/*
 * Replaces the whole map by a CLUSTER SLOTS reply (an array of [start,
 * end, [host, port, id, ...], replicas ...]; a host that is empty or "?"
 * is self_host, the node that answered). Checked whole before anything
 * changes: false, and m unchanged, for any other shape or a slot out of
 * range. Slots the reply leaves out are served by nobody afterwards.
 */
bool redis_slotmap_from_reply(struct redis_slotmap *m,
                              const struct redisReply *reply,
                              const char *self_host);

/* Slots of m that nobody serves. */
int redis_slotmap_uncovered(const struct redis_slotmap *m);

/* ---------------------------------------------------------------------
 * One connection (node.c)
 * ------------------------------------------------------------------- */

struct redis_node;

/* What a node needs from its client; the strings are copied. */
struct redis_node_cfg {
    struct uv_loop_s *loop;
    const struct redis_opts *opts; /* timeouts and backoff, filled in */
    const char *password;          /* "" for none */
    int db;                        /* SELECT at connect when not 0 */
    const char *host;              /* for log lines */
    uint16_t port;
    struct redis_stats *stats;     /* counters to add to (the client's) */
    /* Called on each change between up and down, from the loop. */
    void (*on_state)(void *ctx, struct redis_node *n, bool up);
    /* Called once the node's handles are closed after redis_node_free. */
    void (*on_freed)(void *ctx);
    void *ctx;
};

/* Starts connecting to addr at once (no name resolution here). */
struct redis_node *redis_node_new(const struct redis_node_cfg *cfg,
                                  const struct sockaddr_storage *addr);

/* Fails every pending command with err (each callback once, from inside
 * this call), closes the connection; cfg->on_freed runs once libuv has
 * closed the handles. */
void redis_node_free(struct redis_node *n, enum rl_err err);

/* True while the connection is established and its handshake done. */
bool redis_node_up(const struct redis_node *n);

/* The cfg->ctx the node was made with. */
void *redis_node_ctx(const struct redis_node *n);

/* The host and port the node was made for. */
const char *redis_node_host(const struct redis_node *n);
uint16_t redis_node_port(const struct redis_node *n);

/* Commands on the node's connection: while up, the arguments are
 * appended to the output buffer (RESP) and cb queued for the reply; false
 * (nothing appended) when not up or the buffer is over its cap. */
bool redis_node_send(struct redis_node *n, int argc, const char **argv,
                     const size_t *lens, redis_reply_fn cb, void *ctx);

/* The same with the first nfirst of ntotal arguments from argv and the
 * rest already in RESP form in tail (tail_len bytes). */
bool redis_node_send_tail(struct redis_node *n, int ntotal, int nfirst,
                          const char **argv, const size_t *lens,
                          const char *tail, size_t tail_len,
                          redis_reply_fn cb, void *ctx);

/* Writes what was appended now (see redis_flush). */
void redis_node_flush(struct redis_node *n);

/* Commands waiting for their reply. */
size_t redis_node_pending(const struct redis_node *n);

/* A RESP reader (hiredis) that refuses an aggregate of more than 2^20
 * elements as malformed instead of allocating what it declares. */
struct redisReader;
struct redisReader *redis_reader_new(void);

/* Parses a decimal of at most 9 digits in [lo, hi] from the n bytes at p
 * (url.c). */
bool redis_parse_num(const char *p, size_t n, long lo, long hi, long *out);

/* RESP helpers shared by node.c and client.c: the bytes n arguments take
 * (an upper bound), and writing them at p (returns the end). */
size_t redis_resp_room(int n, const char **v, const size_t *lens);
char *redis_resp_put(char *p, int n, const char **v, const size_t *lens);
char *redis_resp_len(char *p, char prefix, size_t n);

#endif
