/*
 * client.c - one pipelined Redis connection on a libuv loop, with command
 * timeouts and reconnection by exponential backoff (see redis.h).
 *
 * States: DOWN (waiting for the backoff timer), CONNECTING (TCP connect,
 * then AUTH and SELECT written as ordinary pipelined commands, all under
 * the connect timeout), UP. Commands are accepted only when UP. Pending
 * commands wait in a FIFO; since every command gets the same timeout, the
 * head always has the earliest deadline and one timer serves all of them.
 * Any failure (read error, EOF, protocol error, timeout, refused
 * handshake) goes through break_conn(): close, fail everything pending,
 * schedule a reconnect. Nothing here logs per command.
 *
 * hiredis is used for RESP only. Read on_read() and break_conn() first.
 */
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "redis/redis.h"
#include "util/alloc.h"
#include "util/log.h"

#define READ_BUF 16384

enum state { ST_DOWN, ST_CONNECTING, ST_UP };

/* One command waiting for its reply. */
struct pending {
    redis_reply_fn cb;
    void *ctx;
    uint64_t deadline_ms; /* loop time (uv_now) after which it failed */
    struct pending *next;
};

/* One TCP connection; freed in its close callback. */
struct rconn {
    uv_tcp_t tcp;          /* must be first */
    uv_connect_t connect;
    struct redis *r;
    redisReader *reader;   /* RESP parser, hiredis */
    bool closing;
};

/* One write in flight: the formatted command is freed when it is done. */
struct wreq {
    uv_write_t req;
    struct rconn *c;
    char *cmd;             /* from redisFormatCommandArgv */
};

struct redis {
    uv_loop_t *loop;
    struct redis_opts opts;    /* with the defaults filled in */
    struct redis_url url;
    struct sockaddr_storage addr;
    uv_timer_t deadline;       /* the head command's timeout */
    uv_timer_t retry;          /* connect timeout, or backoff when DOWN */
    struct rconn *conn;        /* the current connection, or NULL */
    enum state state;
    int reported;              /* -1 never, 0 down, 1 up: for on_state */
    struct pending *head;      /* oldest pending command */
    struct pending *tail;
    unsigned attempts;         /* failed attempts in a row, for backoff */
    unsigned handshake_left;   /* handshake replies still awaited */
    unsigned nopen;            /* handles not yet closed */
    unsigned seed;             /* rand_r state for the jitter */
    bool freeing;
    char rbuf[READ_BUF];
    struct redis_stats stats;
};

static void start_connect(struct redis *r);
static void break_conn(struct redis *r, enum rl_err err);

/* ---------------------------------------------------------------------
 * Handles and state reports
 * ------------------------------------------------------------------- */

static void maybe_free(struct redis *r)
{
    if (r->freeing && r->nopen == 0) {
        free(r);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct redis *r = h->data;
    r->nopen--;
    maybe_free(r);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct rconn *c = h->data;
    struct redis *r = c->r;
    redisReaderFree(c->reader);
    free(c);
    r->nopen--;
    maybe_free(r);
}

static void conn_close(struct rconn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void report(struct redis *r, bool up)
{
    if (r->reported == (int)up || r->freeing) {
        return;
    }
    r->reported = up;
    if (r->opts.on_state) {
        r->opts.on_state(r->opts.state_ctx, up);
    }
}

/* ---------------------------------------------------------------------
 * The pending FIFO and its one timer
 * ------------------------------------------------------------------- */

static void on_deadline(uv_timer_t *t);

/* Arms the deadline timer for the head command, or stops it. */
static void arm_deadline(struct redis *r)
{
    if (!r->head) {
        uv_timer_stop(&r->deadline);
        return;
    }
    uint64_t now = uv_now(r->loop);
    uint64_t wait = r->head->deadline_ms > now ? r->head->deadline_ms - now
                                               : 0;
    uv_timer_start(&r->deadline, on_deadline, wait, 0);
}

static void on_deadline(uv_timer_t *t)
{
    struct redis *r = t->data;
    if (!r->head) {
        return;
    }
    if (r->head->deadline_ms <= uv_now(r->loop)) {
        r->stats.timeouts++;
        break_conn(r, RL_E_UPSTREAM_TIMEOUT);
        return;
    }
    arm_deadline(r);
}

static struct pending *pop(struct redis *r)
{
    struct pending *p = r->head;
    if (p) {
        r->head = p->next;
        if (!r->head) {
            r->tail = NULL;
        }
    }
    return p;
}

/* Calls every pending callback with err; new commands fail meanwhile
 * because the state is no longer UP. */
static void fail_all(struct redis *r, enum rl_err err)
{
    struct pending *p = r->head;
    r->head = NULL;
    r->tail = NULL;
    uv_timer_stop(&r->deadline);
    while (p) {
        struct pending *next = p->next;
        r->stats.failures++;
        p->cb(p->ctx, NULL, err);
        free(p);
        p = next;
    }
}

/* ---------------------------------------------------------------------
 * Writing commands
 * ------------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct rconn *c = w->c;
    redisFreeCommand(w->cmd);
    free(w);
    if (status < 0 && !c->closing && c->r->conn == c) {
        break_conn(c->r, RL_E_IO);
    }
}

/* Formats and writes one command on the current connection and queues
 * its callback; used for the handshake too, so it does not check UP. */
static enum rl_err send_cmd(struct redis *r, int argc, const char **argv,
                            const size_t *argvlen, redis_reply_fn cb,
                            void *ctx)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0 || !r->conn) {
        redisFreeCommand(cmd);
        return RL_E_IO;
    }
    struct wreq *w = rl_malloc(sizeof(*w));
    w->c = r->conn;
    w->cmd = cmd;
    uv_buf_t b = uv_buf_init(cmd, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&r->conn->tcp, &b, 1,
                 on_written) != 0) {
        redisFreeCommand(cmd);
        free(w);
        return RL_E_IO;
    }
    struct pending *p = rl_malloc(sizeof(*p));
    p->cb = cb;
    p->ctx = ctx;
    p->deadline_ms = uv_now(r->loop) + r->opts.command_timeout_ms;
    p->next = NULL;
    if (r->tail) {
        r->tail->next = p;
    } else {
        r->head = p;
        arm_deadline(r);
    }
    r->tail = p;
    return RL_OK;
}

enum rl_err redis_command(struct redis *r, int argc, const char **argv,
                          const size_t *argvlen, redis_reply_fn cb,
                          void *ctx)
{
    if (r->state != ST_UP || r->freeing) {
        r->stats.failures++;
        return RL_E_IO;
    }
    enum rl_err err = send_cmd(r, argc, argv, argvlen, cb, ctx);
    if (err == RL_OK) {
        r->stats.commands++;
    } else {
        r->stats.failures++;
    }
    return err;
}

/* ---------------------------------------------------------------------
 * Reading replies
 * ------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    struct rconn *c = h->data;
    *out = uv_buf_init(c->r->rbuf, READ_BUF);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct rconn *c = s->data;
    struct redis *r = c->r;
    if (n == 0 || c->closing) {
        return;
    }
    if (n < 0 || redisReaderFeed(c->reader, b->base, (size_t)n) !=
                     REDIS_OK) {
        break_conn(r, RL_E_IO);
        return;
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            break_conn(r, RL_E_IO); /* malformed RESP */
            return;
        }
        if (!reply) {
            return;
        }
        struct pending *p = pop(r);
        if (!p) {
            freeReplyObject(reply);
            break_conn(r, RL_E_IO); /* a reply nobody asked for */
            return;
        }
        arm_deadline(r);
        p->cb(p->ctx, reply, RL_OK);
        freeReplyObject(reply);
        free(p);
        if (c->closing) {
            return; /* the callback broke or freed the client */
        }
    }
}

/* ---------------------------------------------------------------------
 * Connecting, the handshake, backoff
 * ------------------------------------------------------------------- */

static void became_up(struct redis *r)
{
    uv_timer_stop(&r->retry);
    r->state = ST_UP;
    r->attempts = 0;
    report(r, true);
}

static void on_handshake(void *ctx, struct redisReply *reply,
                         enum rl_err err)
{
    struct redis *r = ctx;
    if (err != RL_OK) {
        return; /* the connection broke; break_conn has run */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (r->attempts == 0) {
            log_write(LOG_WARN, "redis refused the handshake",
                      "\"host\":\"%s\",\"port\":%u", r->url.host,
                      (unsigned)r->url.port);
        }
        break_conn(r, RL_E_IO);
        return;
    }
    if (--r->handshake_left == 0) {
        became_up(r);
    }
}

/* Writes AUTH and SELECT as needed; up at once when neither is. */
static void handshake(struct redis *r)
{
    r->handshake_left = 0;
    if (r->url.password[0]) {
        const char *argv[] = {"AUTH", r->url.password};
        if (send_cmd(r, 2, argv, NULL, on_handshake, r) == RL_OK) {
            r->handshake_left++;
        }
    }
    if (r->url.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", r->url.db);
        const char *argv[] = {"SELECT", db};
        if (send_cmd(r, 2, argv, NULL, on_handshake, r) == RL_OK) {
            r->handshake_left++;
        }
    }
    if (r->handshake_left == 0) {
        became_up(r);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct rconn *c = req->data;
    struct redis *r = c->r;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        break_conn(r, RL_E_IO);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        break_conn(r, RL_E_IO);
        return;
    }
    handshake(r);
}

/* Backoff for the n-th failure in a row: min * 2^n capped at max, then a
 * uniform pick in [d/2, d] so that workers do not reconnect in step. */
static uint64_t backoff_ms(struct redis *r)
{
    uint64_t d = r->opts.backoff_min_ms;
    for (unsigned i = 0; i < r->attempts && d < r->opts.backoff_max_ms;
         i++) {
        d *= 2;
    }
    if (d > r->opts.backoff_max_ms) {
        d = r->opts.backoff_max_ms;
    }
    uint64_t half = d / 2;
    return half + (uint64_t)rand_r(&r->seed) % (d - half + 1);
}

static void on_retry(uv_timer_t *t)
{
    struct redis *r = t->data;
    if (r->state == ST_CONNECTING) {
        break_conn(r, RL_E_IO); /* connect timeout */
        return;
    }
    r->stats.reconnects++;
    start_connect(r);
}

static void schedule_retry(struct redis *r)
{
    uint64_t d = backoff_ms(r);
    r->attempts++;
    uv_timer_start(&r->retry, on_retry, d, 0);
}

static void start_connect(struct redis *r)
{
    struct rconn *c = rl_calloc(1, sizeof(*c));
    c->r = r;
    c->reader = redisReaderCreate();
    uv_tcp_init(r->loop, &c->tcp);
    c->tcp.data = c;
    c->connect.data = c;
    r->nopen++;
    r->conn = c;
    r->state = ST_CONNECTING;
    int rc = uv_tcp_connect(&c->connect, &c->tcp,
                            (const struct sockaddr *)&r->addr, on_connect);
    if (rc != 0) {
        break_conn(r, RL_E_IO);
        return;
    }
    uv_timer_start(&r->retry, on_retry, r->opts.connect_timeout_ms, 0);
}

/* The one way down: close, fail what is pending, plan a reconnect. */
static void break_conn(struct redis *r, enum rl_err err)
{
    if (r->conn) {
        conn_close(r->conn);
        r->conn = NULL;
    }
    r->state = ST_DOWN;
    uv_timer_stop(&r->retry);
    report(r, false);
    fail_all(r, err);
    if (!r->freeing) {
        schedule_retry(r);
    }
}

/* ---------------------------------------------------------------------
 * Creating and freeing
 * ------------------------------------------------------------------- */

/* Resolves host:port into addr (blocking; at worker start only). */
static bool resolve(const struct redis_url *u, struct sockaddr_storage *a)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)u->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(u->host, port, &hints, &res) != 0 || !res) {
        return false;
    }
    memcpy(a, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return true;
}

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
    if (!resolve(&u, &r->addr)) {
        log_write(LOG_ERROR, "cannot resolve the redis host",
                  "\"port\":%u", (unsigned)u.port);
        free(r);
        return NULL;
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
    r->seed = (unsigned)(uintptr_t)r ^ (unsigned)time(NULL);
    uv_timer_init(loop, &r->deadline);
    uv_timer_init(loop, &r->retry);
    r->deadline.data = r;
    r->retry.data = r;
    r->nopen = 2;
    start_connect(r);
    return r;
}

void redis_free(struct redis *r)
{
    if (!r) {
        return;
    }
    r->freeing = true;
    if (r->conn) {
        conn_close(r->conn);
        r->conn = NULL;
    }
    r->state = ST_DOWN;
    fail_all(r, RL_E_SHUTTING_DOWN);
    uv_close((uv_handle_t *)&r->deadline, on_handle_closed);
    uv_close((uv_handle_t *)&r->retry, on_handle_closed);
}

bool redis_up(const struct redis *r)
{
    return r && r->state == ST_UP && !r->freeing;
}

void redis_stats_get(const struct redis *r, struct redis_stats *out)
{
    *out = r->stats;
}

/* ---------------------------------------------------------------------
 * Scripts: EVALSHA, then EVAL on NOSCRIPT
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

/* A script call in flight, with a copy of its arguments for the resend. */
struct eval {
    struct redis *r;
    const struct redis_script *s;
    redis_reply_fn cb;
    void *ctx;
    int argc;
    const char **argv;  /* EVALSHA sha nkeys keys... args... */
    size_t *lens;
    bool retried;       /* EVAL was sent after NOSCRIPT */
    char nkeys[16];
};

static void eval_free(struct eval *e)
{
    for (int i = 3; i < e->argc; i++) {
        free((void *)e->argv[i]);
    }
    free(e->argv);
    free(e->lens);
    free(e);
}

static void on_eval_reply(void *ctx, struct redisReply *reply,
                          enum rl_err err)
{
    struct eval *e = ctx;
    if (err == RL_OK && !e->retried && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        e->retried = true;
        e->argv[0] = "EVAL";
        e->argv[1] = e->s->text;
        e->lens[0] = 4;
        e->lens[1] = strlen(e->s->text);
        err = redis_command(e->r, e->argc, e->argv, e->lens, on_eval_reply,
                            e);
        if (err == RL_OK) {
            return;
        }
        reply = NULL;
    }
    e->cb(e->ctx, reply, err);
    eval_free(e);
}

/* Copies n arguments into e->argv from index at. */
static void copy_args(struct eval *e, int at, int n, const char **v,
                      const size_t *lens)
{
    for (int i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(v[i]);
        e->argv[at + i] = rl_strndup(v[i], len);
        e->lens[at + i] = len;
    }
}

enum rl_err redis_eval(struct redis *r, const struct redis_script *s,
                       int nkeys, const char **keys, const size_t *keylens,
                       int nargs, const char **args, const size_t *arglens,
                       redis_reply_fn cb, void *ctx)
{
    if (!redis_up(r)) {
        r->stats.failures++;
        return RL_E_IO;
    }
    struct eval *e = rl_calloc(1, sizeof(*e));
    e->r = r;
    e->s = s;
    e->cb = cb;
    e->ctx = ctx;
    e->argc = 3 + nkeys + nargs;
    e->argv = rl_calloc((size_t)e->argc, sizeof(*e->argv));
    e->lens = rl_calloc((size_t)e->argc, sizeof(*e->lens));
    snprintf(e->nkeys, sizeof(e->nkeys), "%d", nkeys);
    e->argv[0] = "EVALSHA";
    e->lens[0] = 7;
    e->argv[1] = s->sha1_hex;
    e->lens[1] = 40;
    e->argv[2] = e->nkeys;
    e->lens[2] = strlen(e->nkeys);
    copy_args(e, 3, nkeys, keys, keylens);
    copy_args(e, 3 + nkeys, nargs, args, arglens);
    enum rl_err err = redis_command(r, e->argc, e->argv, e->lens,
                                    on_eval_reply, e);
    if (err != RL_OK) {
        eval_free(e);
    }
    return err;
}
