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
 * Commands are formatted (RESP, by hand) into one output buffer and
 * written once per loop iteration, by a prepare handle that runs just
 * before the loop polls: the reserves of a batch of HTTP reads cost one
 * write(2), not one each. Pending callbacks live in a ring, so a command
 * costs no allocation (an EVALSHA one, for its NOSCRIPT copy).
 *
 * hiredis parses replies only. Read on_read(), flush() and break_conn()
 * first.
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

#define READ_BUF 65536
#define OUT_MAX (16u << 20) /* bytes formatted and not yet written */
#define RING_MIN 64        /* first size of the pending ring */

enum state { ST_DOWN, ST_CONNECTING, ST_UP };

/* One command waiting for its reply (a slot of the ring). */
struct pending {
    redis_reply_fn cb;
    void *ctx;
    uint64_t deadline_ms; /* loop time (uv_now) after which it failed */
};

/* One TCP connection; freed in its close callback. */
struct rconn {
    uv_tcp_t tcp;          /* must be first */
    uv_connect_t connect;
    struct redis *r;
    redisReader *reader;   /* RESP parser, hiredis */
    bool closing;
};

/* What uv_try_write could not send at once: a copy, freed when done. */
struct wreq {
    uv_write_t req;
    struct rconn *c;
    char data[];           /* the unsent bytes */
};

struct redis {
    uv_loop_t *loop;
    struct redis_opts opts;    /* with the defaults filled in */
    struct redis_url url;
    struct sockaddr_storage addr;
    uv_timer_t deadline;       /* the head command's timeout */
    uv_timer_t retry;          /* connect timeout, or backoff when DOWN */
    uv_prepare_t flusher;      /* active while out holds bytes */
    struct rconn *conn;        /* the current connection, or NULL */
    enum state state;
    int reported;              /* -1 never, 0 down, 1 up: for on_state */
    struct pending *ring;      /* pending commands, oldest at ring_head */
    size_t ring_cap;           /* slots (a power of two), 0 before use */
    size_t ring_head;          /* index of the oldest */
    size_t ring_len;           /* slots in use */
    char *out;                 /* formatted commands not yet written */
    size_t out_len;            /* bytes in out */
    size_t out_cap;            /* bytes allocated for out */
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
        free(r->ring);
        free(r->out);
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
 * The pending FIFO (a ring) and its one timer
 * ------------------------------------------------------------------- */

static void on_deadline(uv_timer_t *t);

static struct pending *ring_first(struct redis *r)
{
    return r->ring_len ? &r->ring[r->ring_head] : NULL;
}

/* Arms the deadline timer for the oldest command, or stops it. The timer
 * may fire early (the command it was armed for was answered): it then
 * re-arms for the new oldest, so replies never touch the timer. */
static void arm_deadline(struct redis *r)
{
    struct pending *p = ring_first(r);
    if (!p) {
        uv_timer_stop(&r->deadline);
        return;
    }
    uint64_t now = uv_now(r->loop);
    uint64_t wait = p->deadline_ms > now ? p->deadline_ms - now : 0;
    uv_timer_start(&r->deadline, on_deadline, wait, 0);
}

static void on_deadline(uv_timer_t *t)
{
    struct redis *r = t->data;
    struct pending *p = ring_first(r);
    if (!p) {
        return;
    }
    if (p->deadline_ms <= uv_now(r->loop)) {
        r->stats.timeouts++;
        break_conn(r, RL_E_UPSTREAM_TIMEOUT);
        return;
    }
    arm_deadline(r);
}

/* Appends a pending command; the ring doubles when full. */
static void push(struct redis *r, redis_reply_fn cb, void *ctx)
{
    if (r->ring_len == r->ring_cap) {
        size_t cap = r->ring_cap ? r->ring_cap * 2 : RING_MIN;
        struct pending *ring = rl_malloc(cap * sizeof(*ring));
        for (size_t i = 0; i < r->ring_len; i++) {
            ring[i] = r->ring[(r->ring_head + i) & (r->ring_cap - 1)];
        }
        free(r->ring);
        r->ring = ring;
        r->ring_cap = cap;
        r->ring_head = 0;
    }
    size_t at = (r->ring_head + r->ring_len) & (r->ring_cap - 1);
    r->ring[at] = (struct pending){
        cb, ctx, uv_now(r->loop) + r->opts.command_timeout_ms};
    r->ring_len++;
    if (r->ring_len == 1 && !uv_is_active((uv_handle_t *)&r->deadline)) {
        arm_deadline(r);
    }
}

/* Takes the oldest pending command into *out; false when there is none. */
static bool pop(struct redis *r, struct pending *out)
{
    if (!r->ring_len) {
        return false;
    }
    *out = r->ring[r->ring_head];
    r->ring_head = (r->ring_head + 1) & (r->ring_cap - 1);
    r->ring_len--;
    return true;
}

/* Calls every pending callback with err; new commands fail meanwhile
 * because the state is no longer UP. */
static void fail_all(struct redis *r, enum rl_err err)
{
    uv_timer_stop(&r->deadline);
    struct pending p;
    while (pop(r, &p)) {
        r->stats.failures++;
        p.cb(p.ctx, NULL, err);
    }
}

/* ---------------------------------------------------------------------
 * Writing commands: RESP into one buffer, one write per loop iteration
 * ------------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct rconn *c = w->c;
    free(w);
    if (status < 0 && !c->closing && c->r->conn == c) {
        break_conn(c->r, RL_E_IO);
    }
}

/* Writes out what the iteration formatted: uv_try_write, and a copy of
 * the rest through uv_write when the socket takes only part of it (libuv
 * keeps the order: try_write refuses while a uv_write is queued). */
static void flush(struct redis *r)
{
    uv_prepare_stop(&r->flusher);
    size_t len = r->out_len;
    r->out_len = 0;
    if (!len || !r->conn) {
        return;
    }
    uv_stream_t *s = (uv_stream_t *)&r->conn->tcp;
    uv_buf_t b = uv_buf_init(r->out, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    if (n == UV_EAGAIN) {
        n = 0;
    }
    r->stats.writes++;
    if (n < 0) {
        break_conn(r, RL_E_IO);
        return;
    }
    if ((size_t)n == len) {
        return;
    }
    struct wreq *w = rl_malloc(sizeof(*w) + len - (size_t)n);
    w->c = r->conn;
    memcpy(w->data, r->out + n, len - (size_t)n);
    b = uv_buf_init(w->data, (unsigned)(len - (size_t)n));
    if (uv_write(&w->req, s, &b, 1, on_written) != 0) {
        free(w);
        break_conn(r, RL_E_IO);
    }
}

static void on_flush(uv_prepare_t *h)
{
    flush(h->data);
}

void redis_flush(struct redis *r)
{
    flush(r);
}

/* Writes "<prefix><n>\r\n" at p; returns the end. */
static char *put_len(char *p, char prefix, size_t n)
{
    char digits[24];
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    *p++ = prefix;
    while (nd) {
        *p++ = digits[--nd];
    }
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Makes room for more bytes in out; false past OUT_MAX. */
static bool out_room(struct redis *r, size_t more)
{
    if (r->out_len + more > OUT_MAX) {
        return false;
    }
    if (r->out_len + more > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 4096;
        while (cap < r->out_len + more) {
            cap *= 2;
        }
        r->out = rl_realloc(r->out, cap);
        r->out_cap = cap;
    }
    return true;
}

/* Bytes of n arguments in RESP, with room for their length lines. */
static size_t resp_room(int n, const char **v, const size_t *lens)
{
    size_t need = 0;
    for (int i = 0; i < n; i++) {
        need += 16 + (lens ? lens[i] : strlen(v[i]));
    }
    return need;
}

/* Writes n arguments in RESP at p; returns the end. */
static char *resp_put(char *p, int n, const char **v, const size_t *lens)
{
    for (int i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(v[i]);
        p = put_len(p, '$', len);
        memcpy(p, v[i], len);
        p += len;
        *p++ = '\r';
        *p++ = '\n';
    }
    return p;
}

/* Appends a RESP array header for ntotal elements and the first nfirst of
 * them, from argv (a caller may append the others after). */
static bool put_args(struct redis *r, int ntotal, int nfirst,
                     const char **argv, const size_t *lens)
{
    if (!out_room(r, 16 + resp_room(nfirst, argv, lens))) {
        return false;
    }
    char *p = put_len(r->out + r->out_len, '*', (size_t)ntotal);
    p = resp_put(p, nfirst, argv, lens);
    r->out_len = (size_t)(p - r->out);
    return true;
}

/* Appends bytes already in RESP form. */
static bool put_raw(struct redis *r, const char *data, size_t len)
{
    if (!out_room(r, len)) {
        return false;
    }
    memcpy(r->out + r->out_len, data, len);
    r->out_len += len;
    return true;
}

/* Queues cb for the command just appended and schedules the flush. */
static void sent(struct redis *r, redis_reply_fn cb, void *ctx)
{
    push(r, cb, ctx);
    if (!uv_is_active((uv_handle_t *)&r->flusher)) {
        uv_prepare_start(&r->flusher, on_flush);
    }
}

/* Formats one command into the output buffer and queues its callback;
 * used for the handshake too, so it does not check UP. */
static enum rl_err send_cmd(struct redis *r, int argc, const char **argv,
                            const size_t *argvlen, redis_reply_fn cb,
                            void *ctx)
{
    size_t mark = r->out_len;
    if (!r->conn || argc <= 0 ||
        !put_args(r, argc, argc, argv, argvlen)) {
        r->out_len = mark;
        return RL_E_IO;
    }
    sent(r, cb, ctx);
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
        struct pending p;
        if (!pop(r, &p)) {
            freeReplyObject(reply);
            break_conn(r, RL_E_IO); /* a reply nobody asked for */
            return;
        }
        p.cb(p.ctx, reply, RL_OK);
        freeReplyObject(reply);
        if (c->closing) {
            return; /* the callback broke or freed the client */
        }
        if (!r->ring_len) {
            uv_timer_stop(&r->deadline);
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
    r->out_len = 0; /* unsent commands fail with the rest */
    uv_prepare_stop(&r->flusher);
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
    uv_prepare_init(loop, &r->flusher);
    r->deadline.data = r;
    r->retry.data = r;
    r->flusher.data = r;
    r->nopen = 3;
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
    r->out_len = 0;
    fail_all(r, RL_E_SHUTTING_DOWN);
    uv_close((uv_handle_t *)&r->flusher, on_handle_closed);
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

/* A script call in flight, with its keys and arguments in RESP (one
 * allocation) for the EVAL resend after NOSCRIPT. */
struct eval {
    struct redis *r;
    const struct redis_script *s;
    redis_reply_fn cb;
    void *ctx;
    int argc;           /* 3 + nkeys + nargs */
    bool retried;       /* EVAL was sent after NOSCRIPT */
    size_t tail_len;    /* bytes in tail */
    char tail[];        /* RESP of nkeys, the keys and the arguments */
};

/* Appends "EVALSHA sha" (or "EVAL text" when eval) and e's tail. */
static enum rl_err eval_send(struct eval *e, bool eval)
{
    struct redis *r = e->r;
    if (r->state != ST_UP || r->freeing || !r->conn) {
        r->stats.failures++;
        return RL_E_IO;
    }
    const char *argv[2] = {"EVALSHA", e->s->sha1_hex};
    size_t lens[2] = {7, 40};
    if (eval) {
        argv[0] = "EVAL";
        argv[1] = e->s->text;
        lens[0] = 4;
        lens[1] = strlen(e->s->text);
    }
    size_t mark = r->out_len;
    if (!put_args(r, e->argc, 2, argv, lens) ||
        !put_raw(r, e->tail, e->tail_len)) {
        r->out_len = mark;
        r->stats.failures++;
        return RL_E_IO;
    }
    r->stats.commands++;
    return RL_OK;
}

static void on_eval_reply(void *ctx, struct redisReply *reply,
                          enum rl_err err)
{
    struct eval *e = ctx;
    if (err == RL_OK && !e->retried && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        e->retried = true;
        err = eval_send(e, true);
        if (err == RL_OK) {
            sent(e->r, on_eval_reply, e);
            return;
        }
        reply = NULL;
    }
    e->cb(e->ctx, reply, err);
    free(e);
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
    char nk[16];
    const char *nkv[1] = {nk};
    snprintf(nk, sizeof(nk), "%d", nkeys);
    size_t room = resp_room(1, nkv, NULL) +
                  resp_room(nkeys, keys, keylens) +
                  resp_room(nargs, args, arglens);
    struct eval *e = rl_malloc(sizeof(*e) + room);
    *e = (struct eval){.r = r, .s = s, .cb = cb, .ctx = ctx,
                       .argc = 3 + nkeys + nargs};
    char *p = resp_put(e->tail, 1, nkv, NULL);
    p = resp_put(p, nkeys, keys, keylens);
    p = resp_put(p, nargs, args, arglens);
    e->tail_len = (size_t)(p - e->tail);
    enum rl_err err = eval_send(e, false);
    if (err != RL_OK) {
        free(e);
        return err;
    }
    sent(r, on_eval_reply, e);
    return RL_OK;
}
