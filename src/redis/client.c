/*
 * client.c - the public struct redis of redis.h: one connection (node.c)
 * to one server, or one per master of a Redis Cluster with each command
 * sent to the master of its key's slot (slots.c).
 *
 * One server: redis_command() formats straight into the node's buffer and
 * costs no allocation. A cluster, and every script call: the command is
 * kept (struct cmd, its RESP in one allocation) until its final reply, so
 * that a MOVED, ASK, TRYAGAIN or NOSCRIPT answer can be followed by
 * sending it again: on_cmd_reply() is the one place that decides. A
 * command that must wait (its new node is still connecting, or TRYAGAIN)
 * is parked on a list that one timer serves; it never waits past its
 * deadline (sent + command timeout), nor follows more than
 * REDIS_REDIRECTS_MAX answers. Connection errors are not resent (the
 * command may have run): they fail, and the map is refreshed.
 *
 * Modes: ?cluster=yes learns the map (CLUSTER SLOTS) from the seeds
 * first; the default (auto) connects to the first address as to a single
 * server, then asks CLUSTER SLOTS once per connection: an error means a
 * single server (served as before), a map means a cluster (the client
 * switches); ?cluster=no never asks. Read redis_new(), on_cmd_reply() and
 * on_slots() first.
 */
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "redis/internal.h"
#include "util/alloc.h"
#include "util/log.h"

#define LATER_TICK_MS 5     /* how often parked commands are looked at */
#define TRYAGAIN_MS 5       /* first TRYAGAIN delay, doubled each time */
#define REFRESH_IDLE_MS 1000 /* between refreshes while the map is partial */

/* A command kept until its final reply (see the file comment). */
struct cmd {
    struct redis *r;
    redis_reply_fn cb;
    void *ctx;
    const struct redis_script *s; /* NULL: a plain command */
    bool eval_text;     /* send EVAL with the text (after NOSCRIPT) */
    bool asking;        /* send ASKING first, to node ask_at */
    int ask_at;         /* address index for ASK */
    int slot;           /* -1: any master */
    unsigned tries;     /* answers followed so far */
    int argc;           /* arguments in all (for a script: with the head) */
    uint64_t deadline_ms; /* loop time after which nothing is resent */
    uint64_t due_ms;    /* parked: when to send again */
    struct cmd *next;   /* in r->later */
    size_t len;         /* bytes in tail */
    char tail[];        /* RESP of the arguments after the head */
};

struct redis {
    uv_loop_t *loop;
    struct redis_opts opts;    /* with the defaults filled in */
    struct redis_url url;
    struct sockaddr_storage seed_addr[REDIS_SEEDS_MAX]; /* resolved */
    bool cluster;              /* routing by slot */
    struct redis_node *single; /* one server: its connection */
    bool probing;              /* single awaits its CLUSTER SLOTS answer */
    struct redis_slotmap *map; /* cluster: slots to address indices */
    struct redis_node **nodes; /* cluster: per address index, or NULL */
    size_t capnodes;           /* entries in nodes */
    uv_timer_t refresh_timer;  /* the next CLUSTER SLOTS */
    uv_timer_t later_timer;    /* parked commands */
    struct cmd *later;         /* parked commands */
    bool refreshing;           /* CLUSTER SLOTS in flight */
    bool refresh_due;          /* another one is wanted */
    uint64_t refresh_ms;       /* loop time of the last one */
    bool not_cluster_logged;   /* cluster=yes on a single server, logged */
    bool up;                   /* redis_up() */
    int reported;              /* -1 never, 0 down, 1 up: for on_state */
    unsigned nopen;            /* timers and nodes not yet freed */
    bool freeing;
    struct redis_stats stats;
};

static void refresh_want(struct redis *r);
static void update_state(struct redis *r, bool lost);
static bool cmd_send(struct cmd *c);

/* ---------------------------------------------------------------------
 * Nodes: making them, which one serves a slot
 * ------------------------------------------------------------------- */

static void on_node_state(void *ctx, struct redis_node *n, bool up);

static void on_node_freed(void *ctx)
{
    struct redis *r = ctx;
    r->nopen--;
    if (r->freeing && r->nopen == 0) {
        if (r->map) {
            redis_slotmap_free(r->map);
            free(r->map);
        }
        free(r->nodes);
        free(r);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    on_node_freed(h->data);
}

/* Resolves host:port into a: a numeric address at once, a name with
 * getaddrinfo (blocking: at start, or when a cluster names a master). */
static bool resolve(const char *host, uint16_t port,
                    struct sockaddr_storage *a)
{
    memset(a, 0, sizeof(*a));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)a) == 0 ||
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)a) == 0) {
        return true;
    }
    char p[8];
    snprintf(p, sizeof(p), "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, p, &hints, &res) != 0 || !res) {
        return false;
    }
    memcpy(a, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return true;
}

static struct redis_node *node_make(struct redis *r, const char *host,
                                    uint16_t port, int db,
                                    const struct sockaddr_storage *a)
{
    struct redis_node_cfg cfg = {
        .loop = r->loop,
        .opts = &r->opts,
        .password = r->url.password,
        .db = db,
        .host = host,
        .port = port,
        .stats = &r->stats,
        .on_state = on_node_state,
        .on_freed = on_node_freed,
        .ctx = r,
    };
    r->nopen++;
    return redis_node_new(&cfg, a);
}

/* Makes r->nodes hold index at. */
static void nodes_grow(struct redis *r, int at)
{
    if ((size_t)at < r->capnodes) {
        return;
    }
    size_t cap = r->capnodes ? r->capnodes : 8;
    while (cap <= (size_t)at) {
        cap *= 2;
    }
    r->nodes = rl_realloc(r->nodes, cap * sizeof(*r->nodes));
    memset(r->nodes + r->capnodes, 0,
           (cap - r->capnodes) * sizeof(*r->nodes));
    r->capnodes = cap;
}

/* The connection for address index at, made when missing; NULL when the
 * address does not resolve. */
static struct redis_node *node_at(struct redis *r, int at)
{
    if (at < 0) {
        return NULL;
    }
    nodes_grow(r, at);
    if (!r->nodes[at] && !r->freeing) {
        const struct redis_addr *a = &r->map->addrs[at];
        struct sockaddr_storage sa;
        if (!resolve(a->host, a->port, &sa)) {
            return NULL;
        }
        r->nodes[at] = node_make(r, a->host, a->port, 0, &sa);
    }
    return r->nodes[at];
}

/* The node a command for slot goes to (any master for -1); NULL when the
 * map does not know it. */
static struct redis_node *route(struct redis *r, int slot)
{
    if (!r->cluster) {
        return r->single;
    }
    if (slot >= 0) {
        uint16_t at = r->map->owner[slot];
        return at == REDIS_NO_NODE ? NULL : node_at(r, at);
    }
    for (size_t i = 0; i < r->capnodes; i++) {
        if (r->nodes[i] && redis_node_up(r->nodes[i])) {
            return r->nodes[i];
        }
    }
    return NULL;
}

/* Every master of the map connected, every slot served. */
static bool cluster_ready(struct redis *r)
{
    bool *seen = rl_calloc(r->map->naddrs + 1, sizeof(*seen));
    bool ok = true;
    for (int s = 0; s < REDIS_SLOTS && ok; s++) {
        uint16_t at = r->map->owner[s];
        if (at == REDIS_NO_NODE) {
            ok = false;
        } else if (!seen[at]) {
            seen[at] = true;
            ok = (size_t)at < r->capnodes && r->nodes[at] &&
                 redis_node_up(r->nodes[at]);
        }
    }
    free(seen);
    return ok;
}

/* Recomputes redis_up() and reports a change to opts.on_state; a "down"
 * only when lost says a connection was (a probe or a map in the making
 * is no outage). */
static void update_state(struct redis *r, bool lost)
{
    if (r->freeing) {
        return;
    }
    if (r->cluster) {
        r->up = cluster_ready(r);
    } else {
        r->up = r->single && redis_node_up(r->single) && !r->probing;
    }
    if (r->reported == (int)r->up || (!r->up && !lost)) {
        return;
    }
    r->reported = r->up;
    if (r->opts.on_state) {
        r->opts.on_state(r->opts.state_ctx, r->up);
    }
}

/* ---------------------------------------------------------------------
 * The slot map: CLUSTER SLOTS, the probe, the switch to cluster mode
 * ------------------------------------------------------------------- */

/* After a new map: a connection for each master, none for an address
 * that serves nothing (unless commands still wait on it). */
static void sync_nodes(struct redis *r)
{
    bool *serves = rl_calloc(r->map->naddrs + 1, sizeof(*serves));
    for (int s = 0; s < REDIS_SLOTS; s++) {
        if (r->map->owner[s] != REDIS_NO_NODE) {
            serves[r->map->owner[s]] = true;
        }
    }
    for (size_t i = 0; i < r->map->naddrs; i++) {
        if (serves[i]) {
            node_at(r, (int)i);
        } else if (i < r->capnodes && r->nodes[i] &&
                   redis_node_pending(r->nodes[i]) == 0) {
            struct redis_node *n = r->nodes[i];
            r->nodes[i] = NULL;
            redis_node_free(n, RL_E_IO);
        }
    }
    free(serves);
}

/* Becomes a cluster client; the single connection serves on under the
 * address it was given. */
static void become_cluster(struct redis *r)
{
    r->cluster = true;
    r->map = rl_malloc(sizeof(*r->map));
    redis_slotmap_init(r->map);
    int at = redis_slotmap_addr(r->map, r->url.seeds[0].host,
                                r->url.seeds[0].port);
    nodes_grow(r, at);
    r->nodes[at] = r->single;
    r->single = NULL;
}

static void on_slots(void *ctx, struct redisReply *reply, enum rl_err err);

/* Sends CLUSTER SLOTS to n (cb on_slots with n as context). */
static bool ask_slots(struct redis *r, struct redis_node *n)
{
    const char *argv[] = {"CLUSTER", "SLOTS"};
    if (!redis_node_send(n, 2, argv, NULL, on_slots, n)) {
        return false;
    }
    r->stats.refreshes++;
    r->refresh_ms = uv_now(r->loop);
    return true;
}

static void on_slots(void *ctx, struct redisReply *reply, enum rl_err err)
{
    struct redis_node *n = ctx;
    struct redis *r = redis_node_ctx(n); /* n waits on no other command */
    if (r->freeing) {
        return;
    }
    if (!r->cluster) { /* the probe of a single server */
        r->probing = false;
        if (err == RL_OK && reply->type == REDIS_REPLY_ARRAY) {
            become_cluster(r);
        } else {
            update_state(r, false);
            return;
        }
    } else {
        r->refreshing = false;
    }
    bool ok = err == RL_OK &&
              redis_slotmap_from_reply(r->map, reply, redis_node_host(n));
    if (ok) {
        sync_nodes(r);
    } else if (err == RL_OK && reply->type == REDIS_REPLY_ERROR &&
               !r->not_cluster_logged) {
        r->not_cluster_logged = true;
        log_write(LOG_ERROR, "redis URL says cluster=yes, but the server "
                             "does not serve a cluster map",
                  "\"host\":\"%s\",\"port\":%u", redis_node_host(n),
                  (unsigned)redis_node_port(n));
    }
    if (!ok || redis_slotmap_uncovered(r->map) > 0) {
        r->refresh_due = true; /* again, REFRESH_IDLE_MS from now */
    }
    update_state(r, false);
    refresh_want(r);
}

/* Connects the seeds that have no connection (nothing else is up). */
static void connect_seeds(struct redis *r)
{
    for (int i = 0; i < r->url.nseeds; i++) {
        const struct redis_seed *s = &r->url.seeds[i];
        int at = redis_slotmap_addr(r->map, s->host, s->port);
        if (at < 0) {
            continue;
        }
        nodes_grow(r, at);
        if (!r->nodes[at]) { /* the address resolved at start */
            r->nodes[at] = node_make(r, s->host, s->port, 0,
                                     &r->seed_addr[i]);
        }
    }
}

static void on_refresh(uv_timer_t *t)
{
    struct redis *r = t->data;
    if (r->refreshing || !r->cluster || r->freeing) {
        return; /* on_slots asks again when it is due */
    }
    for (size_t i = 0; i < r->capnodes; i++) { /* from another each time */
        struct redis_node *n = r->nodes[(i + r->stats.refreshes) %
                                        r->capnodes];
        if (n && redis_node_up(n) && ask_slots(r, n)) {
            r->refreshing = true;
            r->refresh_due = false;
            return;
        }
    }
    connect_seeds(r); /* their coming up asks for the map */
}

/* Asks for a refresh: at once when none was sent lately, else when
 * REDIS_REFRESH_MIN_MS (REFRESH_IDLE_MS for a partial map) have passed
 * since the last; never two at a time. */
static void refresh_want(struct redis *r)
{
    if (!r->cluster || r->freeing) {
        return;
    }
    if (!r->refresh_due && r->up) {
        return;
    }
    r->refresh_due = true;
    if (r->refreshing || uv_is_active((uv_handle_t *)&r->refresh_timer)) {
        return;
    }
    uint64_t gap = r->up ? REDIS_REFRESH_MIN_MS : REFRESH_IDLE_MS;
    uint64_t now = uv_now(r->loop);
    uint64_t next = r->stats.refreshes ? r->refresh_ms + gap : now;
    uv_timer_start(&r->refresh_timer, on_refresh, next > now ? next - now : 0,
                   0);
}

static void on_node_state(void *ctx, struct redis_node *n, bool up)
{
    struct redis *r = ctx;
    if (r->freeing) {
        return;
    }
    if (!r->cluster) {
        if (up && r->url.cluster == REDIS_CLUSTER_AUTO) {
            r->probing = ask_slots(r, n);
        }
        update_state(r, !up);
        return;
    }
    if (!up || !r->stats.refreshes) {
        r->refresh_due = true;
    }
    update_state(r, !up);
    refresh_want(r);
}

/* ---------------------------------------------------------------------
 * Commands kept until their final reply
 * ------------------------------------------------------------------- */

static void finish(struct cmd *c, struct redisReply *reply, enum rl_err err)
{
    c->cb(c->ctx, reply, err);
    free(c);
}

static void on_later(uv_timer_t *t);

/* Parks c until due (loop time); it fails when its deadline passes. */
static void park(struct cmd *c, uint64_t due_ms)
{
    struct redis *r = c->r;
    c->due_ms = due_ms;
    c->next = r->later;
    r->later = c;
    if (!uv_is_active((uv_handle_t *)&r->later_timer)) {
        uv_timer_start(&r->later_timer, on_later, LATER_TICK_MS,
                       LATER_TICK_MS);
    }
}

static void on_later(uv_timer_t *t)
{
    struct redis *r = t->data;
    struct cmd *list = r->later;
    r->later = NULL;
    uint64_t now = uv_now(r->loop);
    while (list) {
        struct cmd *c = list;
        list = c->next;
        if (c->due_ms > now) {
            park(c, c->due_ms);
        } else if (cmd_send(c)) {
            continue; /* the node's now */
        } else if (now < c->deadline_ms) {
            park(c, now);
        } else {
            r->stats.failures++;
            finish(c, NULL, RL_E_IO);
        }
    }
    if (!r->later) {
        uv_timer_stop(&r->later_timer);
    }
}

static void on_cmd_reply(void *ctx, struct redisReply *reply,
                         enum rl_err err);

static void on_asking(void *ctx, struct redisReply *reply, enum rl_err err)
{
    (void)ctx;
    (void)reply;
    (void)err; /* the command after it answers for both */
}

/* Sends c to the node its slot (or ASK) names; false when that node is
 * not up (c is still the caller's). */
static bool cmd_send(struct cmd *c)
{
    struct redis *r = c->r;
    if (r->freeing) {
        return false;
    }
    struct redis_node *n = c->asking ? node_at(r, c->ask_at)
                                     : route(r, c->slot);
    if (!n || !redis_node_up(n)) {
        return false;
    }
    if (c->asking) {
        const char *argv[] = {"ASKING"};
        if (!redis_node_send(n, 1, argv, NULL, on_asking, NULL)) {
            return false;
        }
    }
    const char *head[2] = {NULL, NULL};
    size_t lens[2] = {0, 0};
    int nhead = 0;
    if (c->s) {
        head[0] = c->eval_text ? "EVAL" : "EVALSHA";
        head[1] = c->eval_text ? c->s->text : c->s->sha1_hex;
        lens[0] = strlen(head[0]);
        lens[1] = strlen(head[1]);
        nhead = 2;
    }
    return redis_node_send_tail(n, c->argc, nhead, head, lens, c->tail,
                                c->len, on_cmd_reply, c);
}

/* Follows one redirection or retry answer of a cluster: true when c was
 * sent again or parked (the reply is then not the caller's). */
static bool follow(struct cmd *c, const struct redisReply *reply)
{
    struct redis *r = c->r;
    uint64_t now = uv_now(r->loop);
    if (c->tries >= REDIS_REDIRECTS_MAX || now >= c->deadline_ms) {
        return false;
    }
    struct redis_redirect rd;
    bool tryagain = reply->len >= 8 && memcmp(reply->str, "TRYAGAIN", 8) == 0;
    if (!tryagain && !redis_redirect_parse(reply->str, reply->len, &rd)) {
        return false;
    }
    c->tries++;
    if (tryagain) {
        r->stats.tryagain++;
        c->asking = false;
        park(c, now + ((uint64_t)TRYAGAIN_MS << (c->tries - 1)));
        return true;
    }
    struct redis_node *from = route(r, rd.slot);
    const char *self = from ? redis_node_host(from) : r->url.seeds[0].host;
    if (rd.kind == REDIS_REDIRECT_MOVED) {
        r->stats.moved++;
        c->asking = false;
        if (redis_slotmap_moved(r->map, &rd, self) < 0) {
            return false;
        }
        r->refresh_due = true;
        refresh_want(r);
    } else {
        r->stats.asked++;
        c->asking = true;
        c->ask_at = redis_slotmap_addr(r->map, rd.host[0] ? rd.host : self,
                                       rd.port);
        if (c->ask_at < 0) {
            return false;
        }
    }
    if (!cmd_send(c)) {
        park(c, now); /* a new node still connecting */
    }
    return true;
}

static void on_cmd_reply(void *ctx, struct redisReply *reply,
                         enum rl_err err)
{
    struct cmd *c = ctx;
    struct redis *r = c->r;
    if (err != RL_OK || r->freeing) {
        if (r->cluster && err == RL_E_IO) {
            r->refresh_due = true;
            refresh_want(r);
        }
        finish(c, reply, err);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (c->s && !c->eval_text && reply->len >= 8 &&
            memcmp(reply->str, "NOSCRIPT", 8) == 0) {
            c->eval_text = true; /* this node lacks it: load it there */
            if (cmd_send(c)) {
                return;
            }
            r->stats.failures++;
            finish(c, NULL, RL_E_IO);
            return;
        }
        if (r->cluster && follow(c, reply)) {
            return;
        }
    }
    finish(c, reply, RL_OK);
}

/* A kept command: argc arguments, the first nhead of which cmd_send
 * writes itself, the rest given in RESP (tail, tail_len bytes). */
static struct cmd *cmd_new(struct redis *r, int argc, int slot,
                           size_t tail_len, redis_reply_fn cb, void *ctx)
{
    struct cmd *c = rl_malloc(sizeof(*c) + tail_len);
    *c = (struct cmd){.r = r, .cb = cb, .ctx = ctx, .slot = slot,
                      .argc = argc, .len = tail_len,
                      .deadline_ms = uv_now(r->loop) +
                                     r->opts.command_timeout_ms};
    return c;
}

/* The first send of a kept command: RL_E_IO (and c freed) when its node
 * is not up, as redis_command() promises. */
static enum rl_err cmd_start(struct cmd *c)
{
    struct redis *r = c->r;
    if (!cmd_send(c)) {
        r->stats.failures++;
        free(c);
        return RL_E_IO;
    }
    r->stats.commands++;
    return RL_OK;
}

/* The slot of argv's key, -1 for none. */
static int slot_of(int argc, const char **argv, const size_t *lens)
{
    const char *key;
    size_t len;
    if (!redis_command_key(argc, argv, lens, &key, &len)) {
        return -1;
    }
    return redis_key_slot(key, len);
}

enum rl_err redis_command(struct redis *r, int argc, const char **argv,
                          const size_t *argvlen, redis_reply_fn cb,
                          void *ctx)
{
    if (r->freeing || argc <= 0 || (!r->cluster && r->probing)) {
        r->stats.failures++;
        return RL_E_IO;
    }
    if (!r->cluster) {
        if (!r->single ||
            !redis_node_send(r->single, argc, argv, argvlen, cb, ctx)) {
            r->stats.failures++;
            return RL_E_IO;
        }
        r->stats.commands++;
        return RL_OK;
    }
    size_t room = redis_resp_room(argc, argv, argvlen);
    struct cmd *c = cmd_new(r, argc, slot_of(argc, argv, argvlen), room, cb,
                            ctx);
    c->len = (size_t)(redis_resp_put(c->tail, argc, argv, argvlen) - c->tail);
    return cmd_start(c);
}

/* ---------------------------------------------------------------------
 * Scripts: EVALSHA, then EVAL on NOSCRIPT (per node)
 * ------------------------------------------------------------------- */

void redis_script_init(struct redis_script *s, const char *text)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)text, strlen(text), md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++) {
        snprintf(s->sha1_hex + 2 * i, 3, "%02x", md[i]);
    }
    s->text = text;
}

enum rl_err redis_eval(struct redis *r, const struct redis_script *s,
                       int nkeys, const char **keys, const size_t *keylens,
                       int nargs, const char **args, const size_t *arglens,
                       redis_reply_fn cb, void *ctx)
{
    if (r->freeing || (!r->cluster && r->probing)) {
        r->stats.failures++;
        return RL_E_IO;
    }
    char nk[16];
    const char *nkv[1] = {nk};
    snprintf(nk, sizeof(nk), "%d", nkeys);
    size_t room = redis_resp_room(1, nkv, NULL) +
                  redis_resp_room(nkeys, keys, keylens) +
                  redis_resp_room(nargs, args, arglens);
    int slot = -1;
    if (nkeys > 0) {
        slot = redis_key_slot(keys[0],
                              keylens ? keylens[0] : strlen(keys[0]));
    }
    struct cmd *c = cmd_new(r, 3 + nkeys + nargs, slot, room, cb, ctx);
    c->s = s;
    char *p = redis_resp_put(c->tail, 1, nkv, NULL);
    p = redis_resp_put(p, nkeys, keys, keylens);
    p = redis_resp_put(p, nargs, args, arglens);
    c->len = (size_t)(p - c->tail);
    return cmd_start(c);
}

/* ---------------------------------------------------------------------
 * Creating and freeing
 * ------------------------------------------------------------------- */

static uint64_t or_default(uint64_t v, uint64_t d)
{
    return v ? v : d;
}

struct redis *redis_new(struct uv_loop_s *loop, const char *url,
                        const struct redis_opts *opts)
{
    char msg[160];
    struct redis_url u;
    if (redis_url_parse(url, &u, msg, sizeof(msg)) != RL_OK) {
        log_write(LOG_ERROR, "cannot use the redis URL", "\"error\":\"%s\"",
                  msg);
        return NULL;
    }
    struct redis *r = rl_calloc(1, sizeof(*r));
    for (int i = 0; i < u.nseeds; i++) {
        if (!resolve(u.seeds[i].host, u.seeds[i].port, &r->seed_addr[i])) {
            log_write(LOG_ERROR, "cannot resolve the redis host",
                      "\"port\":%u", (unsigned)u.seeds[i].port);
            free(r);
            return NULL;
        }
    }
    r->loop = loop;
    r->url = u;
    if (opts) {
        r->opts = *opts;
    }
    struct redis_opts *o = &r->opts;
    o->command_timeout_ms = or_default(o->command_timeout_ms,
                                       REDIS_COMMAND_TIMEOUT_MS);
    o->connect_timeout_ms = or_default(o->connect_timeout_ms,
                                       REDIS_CONNECT_TIMEOUT_MS);
    o->backoff_min_ms = or_default(o->backoff_min_ms, REDIS_BACKOFF_MIN_MS);
    o->backoff_max_ms = or_default(o->backoff_max_ms, REDIS_BACKOFF_MAX_MS);
    r->reported = -1;
    uv_timer_init(loop, &r->refresh_timer);
    uv_timer_init(loop, &r->later_timer);
    r->refresh_timer.data = r;
    r->later_timer.data = r;
    r->nopen = 2;
    if (u.cluster == REDIS_CLUSTER_YES) {
        r->cluster = true;
        r->map = rl_malloc(sizeof(*r->map));
        redis_slotmap_init(r->map);
        connect_seeds(r);
    } else {
        r->single = node_make(r, u.seeds[0].host, u.seeds[0].port, u.db,
                              &r->seed_addr[0]);
    }
    return r;
}

void redis_free(struct redis *r)
{
    if (!r) {
        return;
    }
    r->freeing = true;
    struct cmd *list = r->later;
    r->later = NULL;
    while (list) {
        struct cmd *c = list;
        list = c->next;
        r->stats.failures++;
        finish(c, NULL, RL_E_SHUTTING_DOWN);
    }
    if (r->single) {
        redis_node_free(r->single, RL_E_SHUTTING_DOWN);
        r->single = NULL;
    }
    for (size_t i = 0; i < r->capnodes; i++) {
        if (r->nodes[i]) {
            struct redis_node *n = r->nodes[i];
            r->nodes[i] = NULL;
            redis_node_free(n, RL_E_SHUTTING_DOWN);
        }
    }
    uv_close((uv_handle_t *)&r->refresh_timer, on_handle_closed);
    uv_close((uv_handle_t *)&r->later_timer, on_handle_closed);
}

void redis_flush(struct redis *r)
{
    if (r->single) {
        redis_node_flush(r->single);
    }
    for (size_t i = 0; i < r->capnodes; i++) {
        if (r->nodes[i]) {
            redis_node_flush(r->nodes[i]);
        }
    }
}

bool redis_up(const struct redis *r)
{
    return r && r->up && !r->freeing;
}

bool redis_is_cluster(const struct redis *r)
{
    return r->cluster;
}

void redis_stats_get(const struct redis *r, struct redis_stats *out)
{
    *out = r->stats;
}
