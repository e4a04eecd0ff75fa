/*
 * node.c - one pipelined connection to one Redis server on a libuv loop,
 * with command timeouts and reconnection by exponential backoff. The
 * client (client.c) has one of these, or one per cluster master.
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
 * costs no allocation. The node knows nothing of clusters: MOVED is a
 * reply like any other, for client.c to read.
 *
 * hiredis parses replies only. Read on_read(), flush() and break_conn()
 * first.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "redis/internal.h"
#include "util/alloc.h"
#include "util/log.h"

#define READ_BUF 65536
#define OUT_MAX (16u << 20) /* bytes formatted and not yet written */
#define RING_MIN 64        /* first size of the pending ring */
/* Elements an aggregate reply may declare: Relay's largest (a CLUSTER
 * SLOTS map, a page of a stream, the list of cache scopes) hold thousands. */
#define REDIS_MAX_ELEMENTS (1 << 20)

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
    struct redis_node *n;
    redisReader *reader;   /* RESP parser, hiredis */
    bool closing;
};

/* What uv_try_write could not send at once: a copy, freed when done. */
struct wreq {
    uv_write_t req;
    struct rconn *c;
    char data[];           /* the unsent bytes */
};

struct redis_node {
    struct redis_node_cfg cfg; /* strings point at the copies below */
    char host[256];            /* for log lines */
    char password[256];        /* "" for none */
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
    bool refusal_logged;       /* the handshake refusal was logged */
    char rbuf[READ_BUF];
};

/* ---------------------------------------------------------------------
 * The RESP reader
 * ------------------------------------------------------------------- */

/* hiredis 0.14 allocates an aggregate's element array from the count the
 * server declares, with no bound of its own (1.0 has maxelements):
 * "*1555555555" was a 12 GB calloc (fuzz_redis). Its default functions
 * are kept, only createArray is checked first. */
static redisReplyObjectFunctions reader_fns;
static void *(*default_array)(const redisReadTask *t, int n);
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;

static void *create_array(const redisReadTask *t, int n)
{
    if (n > REDIS_MAX_ELEMENTS) {
        return NULL; /* the reader's out-of-memory error: the link breaks */
    }
    return default_array(t, n);
}

static void reader_fns_init(void)
{
    redisReader *r = redisReaderCreate();
    reader_fns = *r->fn;
    redisReaderFree(r);
    default_array = reader_fns.createArray;
    reader_fns.createArray = create_array;
}

struct redisReader *redis_reader_new(void)
{
    pthread_once(&reader_once, reader_fns_init);
    return redisReaderCreateWithFunctions(&reader_fns);
}

static void start_connect(struct redis_node *n);
static void break_conn(struct redis_node *n, enum rl_err err);

/* ---------------------------------------------------------------------
 * Handles and state reports
 * ------------------------------------------------------------------- */

static void maybe_free(struct redis_node *n)
{
    if (n->freeing && n->nopen == 0) {
        void (*on_freed)(void *) = n->cfg.on_freed;
        void *ctx = n->cfg.ctx;
        free(n->ring);
        free(n->out);
        free(n);
        if (on_freed) {
            on_freed(ctx);
        }
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct redis_node *n = h->data;
    n->nopen--;
    maybe_free(n);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct rconn *c = h->data;
    struct redis_node *n = c->n;
    redisReaderFree(c->reader);
    free(c);
    n->nopen--;
    maybe_free(n);
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

static void report(struct redis_node *n, bool up)
{
    if (n->reported == (int)up || n->freeing) {
        return;
    }
    n->reported = up;
    if (n->cfg.on_state) {
        n->cfg.on_state(n->cfg.ctx, n, up);
    }
}

/* ---------------------------------------------------------------------
 * The pending FIFO (a ring) and its one timer
 * ------------------------------------------------------------------- */

static void on_deadline(uv_timer_t *t);

static struct pending *ring_first(struct redis_node *n)
{
    return n->ring_len ? &n->ring[n->ring_head] : NULL;
}

/* Arms the deadline timer for the oldest command, or stops it. The timer
 * may fire early (the command it was armed for was answered): it then
 * re-arms for the new oldest, so replies never touch the timer. */
static void arm_deadline(struct redis_node *n)
{
    struct pending *p = ring_first(n);
    if (!p) {
        uv_timer_stop(&n->deadline);
        return;
    }
    uint64_t now = uv_now(n->cfg.loop);
    uint64_t wait = p->deadline_ms > now ? p->deadline_ms - now : 0;
    uv_timer_start(&n->deadline, on_deadline, wait, 0);
}

static void on_deadline(uv_timer_t *t)
{
    struct redis_node *n = t->data;
    struct pending *p = ring_first(n);
    if (!p) {
        return;
    }
    if (p->deadline_ms <= uv_now(n->cfg.loop)) {
        n->cfg.stats->timeouts++;
        break_conn(n, RL_E_UPSTREAM_TIMEOUT);
        return;
    }
    arm_deadline(n);
}

/* Appends a pending command; the ring doubles when full. */
static void push(struct redis_node *n, redis_reply_fn cb, void *ctx)
{
    if (n->ring_len == n->ring_cap) {
        size_t cap = n->ring_cap ? n->ring_cap * 2 : RING_MIN;
        struct pending *ring = rl_malloc(cap * sizeof(*ring));
        for (size_t i = 0; i < n->ring_len; i++) {
            ring[i] = n->ring[(n->ring_head + i) & (n->ring_cap - 1)];
        }
        free(n->ring);
        n->ring = ring;
        n->ring_cap = cap;
        n->ring_head = 0;
    }
    size_t at = (n->ring_head + n->ring_len) & (n->ring_cap - 1);
    n->ring[at] = (struct pending){
        cb, ctx, uv_now(n->cfg.loop) + n->cfg.opts->command_timeout_ms};
    n->ring_len++;
    if (n->ring_len == 1 && !uv_is_active((uv_handle_t *)&n->deadline)) {
        arm_deadline(n);
    }
}

/* Takes the oldest pending command into *out; false when there is none. */
static bool pop(struct redis_node *n, struct pending *out)
{
    if (!n->ring_len) {
        return false;
    }
    *out = n->ring[n->ring_head];
    n->ring_head = (n->ring_head + 1) & (n->ring_cap - 1);
    n->ring_len--;
    return true;
}

/* Calls every pending callback with err; new commands fail meanwhile
 * because the state is no longer UP. */
static void fail_all(struct redis_node *n, enum rl_err err)
{
    uv_timer_stop(&n->deadline);
    struct pending p;
    while (pop(n, &p)) {
        n->cfg.stats->failures++;
        p.cb(p.ctx, NULL, err);
    }
}

size_t redis_node_pending(const struct redis_node *n)
{
    return n->ring_len;
}

/* ---------------------------------------------------------------------
 * Writing commands: RESP into one buffer, one write per loop iteration
 * ------------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct rconn *c = w->c;
    free(w);
    if (status < 0 && !c->closing && c->n->conn == c) {
        break_conn(c->n, RL_E_IO);
    }
}

/* Writes out what the iteration formatted: uv_try_write, and a copy of
 * the rest through uv_write when the socket takes only part of it (libuv
 * keeps the order: try_write refuses while a uv_write is queued). */
static void flush(struct redis_node *n)
{
    uv_prepare_stop(&n->flusher);
    size_t len = n->out_len;
    n->out_len = 0;
    if (!len || !n->conn) {
        return;
    }
    uv_stream_t *s = (uv_stream_t *)&n->conn->tcp;
    uv_buf_t b = uv_buf_init(n->out, (unsigned)len);
    int wrote = uv_try_write(s, &b, 1);
    if (wrote == UV_EAGAIN) {
        wrote = 0;
    }
    n->cfg.stats->writes++;
    if (wrote < 0) {
        break_conn(n, RL_E_IO);
        return;
    }
    if ((size_t)wrote == len) {
        return;
    }
    struct wreq *w = rl_malloc(sizeof(*w) + len - (size_t)wrote);
    w->c = n->conn;
    memcpy(w->data, n->out + wrote, len - (size_t)wrote);
    b = uv_buf_init(w->data, (unsigned)(len - (size_t)wrote));
    if (uv_write(&w->req, s, &b, 1, on_written) != 0) {
        free(w);
        break_conn(n, RL_E_IO);
    }
}

static void on_flush(uv_prepare_t *h)
{
    flush(h->data);
}

void redis_node_flush(struct redis_node *n)
{
    flush(n);
}

char *redis_resp_len(char *p, char prefix, size_t len)
{
    char digits[24];
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + len % 10);
        len /= 10;
    } while (len);
    *p++ = prefix;
    while (nd) {
        *p++ = digits[--nd];
    }
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Makes room for more bytes in out; false past OUT_MAX. */
static bool out_room(struct redis_node *n, size_t more)
{
    if (n->out_len + more > OUT_MAX) {
        return false;
    }
    if (n->out_len + more > n->out_cap) {
        size_t cap = n->out_cap ? n->out_cap : 4096;
        while (cap < n->out_len + more) {
            cap *= 2;
        }
        n->out = rl_realloc(n->out, cap);
        n->out_cap = cap;
    }
    return true;
}

size_t redis_resp_room(int count, const char **v, const size_t *lens)
{
    size_t need = 0;
    for (int i = 0; i < count; i++) {
        need += 16 + (lens ? lens[i] : strlen(v[i]));
    }
    return need;
}

char *redis_resp_put(char *p, int count, const char **v, const size_t *lens)
{
    for (int i = 0; i < count; i++) {
        size_t len = lens ? lens[i] : strlen(v[i]);
        p = redis_resp_len(p, '$', len);
        memcpy(p, v[i], len);
        p += len;
        *p++ = '\r';
        *p++ = '\n';
    }
    return p;
}

/* Appends the command and queues cb; used for the handshake too, so it
 * checks only that a connection exists. */
static bool send_parts(struct redis_node *n, int ntotal, int nfirst,
                       const char **argv, const size_t *lens,
                       const char *tail, size_t tail_len, redis_reply_fn cb,
                       void *ctx)
{
    size_t need = 16 + redis_resp_room(nfirst, argv, lens) + tail_len;
    if (!n->conn || ntotal <= 0 || !out_room(n, need)) {
        return false;
    }
    char *p = redis_resp_len(n->out + n->out_len, '*', (size_t)ntotal);
    p = redis_resp_put(p, nfirst, argv, lens);
    if (tail_len) {
        memcpy(p, tail, tail_len);
        p += tail_len;
    }
    n->out_len = (size_t)(p - n->out);
    push(n, cb, ctx);
    if (!uv_is_active((uv_handle_t *)&n->flusher)) {
        uv_prepare_start(&n->flusher, on_flush);
    }
    return true;
}

bool redis_node_send_tail(struct redis_node *n, int ntotal, int nfirst,
                          const char **argv, const size_t *lens,
                          const char *tail, size_t tail_len,
                          redis_reply_fn cb, void *ctx)
{
    if (n->state != ST_UP || n->freeing) {
        return false;
    }
    return send_parts(n, ntotal, nfirst, argv, lens, tail, tail_len, cb,
                      ctx);
}

bool redis_node_send(struct redis_node *n, int argc, const char **argv,
                     const size_t *lens, redis_reply_fn cb, void *ctx)
{
    return redis_node_send_tail(n, argc, argc, argv, lens, NULL, 0, cb, ctx);
}

/* ---------------------------------------------------------------------
 * Reading replies
 * ------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    (void)suggested;
    struct rconn *c = h->data;
    *out = uv_buf_init(c->n->rbuf, READ_BUF);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct rconn *c = s->data;
    struct redis_node *n = c->n;
    if (nread == 0 || c->closing) {
        return;
    }
    if (nread < 0 || redisReaderFeed(c->reader, b->base, (size_t)nread) !=
                         REDIS_OK) {
        break_conn(n, RL_E_IO);
        return;
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            break_conn(n, RL_E_IO); /* malformed RESP */
            return;
        }
        if (!reply) {
            return;
        }
        struct pending p;
        if (!pop(n, &p)) {
            freeReplyObject(reply);
            break_conn(n, RL_E_IO); /* a reply nobody asked for */
            return;
        }
        p.cb(p.ctx, reply, RL_OK);
        freeReplyObject(reply);
        if (c->closing) {
            return; /* the callback broke or freed the node */
        }
        if (!n->ring_len) {
            uv_timer_stop(&n->deadline);
        }
    }
}

/* ---------------------------------------------------------------------
 * Connecting, the handshake, backoff
 * ------------------------------------------------------------------- */

static void became_up(struct redis_node *n)
{
    uv_timer_stop(&n->retry);
    n->state = ST_UP;
    n->attempts = 0;
    report(n, true);
}

/* Logs a refused handshake once per node: a database other than 0 on a
 * cluster gets its own sentence, the rest the server's words. */
static void log_refusal(struct redis_node *n, const struct redisReply *reply)
{
    if (n->refusal_logged) {
        return;
    }
    n->refusal_logged = true;
    if (strstr(reply->str, "cluster mode")) {
        log_write(LOG_ERROR,
                  "redis URL: the server is a Redis Cluster, which has only "
                  "database 0: remove the /db from the URL",
                  "\"host\":\"%s\",\"port\":%u", n->host,
                  (unsigned)n->cfg.port);
        return;
    }
    log_write(LOG_WARN, "redis refused the handshake",
              "\"host\":\"%s\",\"port\":%u", n->host, (unsigned)n->cfg.port);
}

static void on_handshake(void *ctx, struct redisReply *reply,
                         enum rl_err err)
{
    struct redis_node *n = ctx;
    if (err != RL_OK) {
        return; /* the connection broke; break_conn has run */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        log_refusal(n, reply);
        break_conn(n, RL_E_IO);
        return;
    }
    if (--n->handshake_left == 0) {
        became_up(n);
    }
}

/* Writes AUTH and SELECT as needed; up at once when neither is. */
static void handshake(struct redis_node *n)
{
    n->handshake_left = 0;
    if (n->password[0]) {
        const char *argv[] = {"AUTH", n->password};
        if (send_parts(n, 2, 2, argv, NULL, NULL, 0, on_handshake, n)) {
            n->handshake_left++;
        }
    }
    if (n->cfg.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", n->cfg.db);
        const char *argv[] = {"SELECT", db};
        if (send_parts(n, 2, 2, argv, NULL, NULL, 0, on_handshake, n)) {
            n->handshake_left++;
        }
    }
    if (n->handshake_left == 0) {
        became_up(n);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct rconn *c = req->data;
    struct redis_node *n = c->n;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        break_conn(n, RL_E_IO);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        break_conn(n, RL_E_IO);
        return;
    }
    handshake(n);
}

/* Backoff for the n-th failure in a row: min * 2^n capped at max, then a
 * uniform pick in [d/2, d] so that workers do not reconnect in step. */
static uint64_t backoff_ms(struct redis_node *n)
{
    const struct redis_opts *o = n->cfg.opts;
    uint64_t d = o->backoff_min_ms;
    for (unsigned i = 0; i < n->attempts && d < o->backoff_max_ms; i++) {
        d *= 2;
    }
    if (d > o->backoff_max_ms) {
        d = o->backoff_max_ms;
    }
    uint64_t half = d / 2;
    return half + (uint64_t)rand_r(&n->seed) % (d - half + 1);
}

static void on_retry(uv_timer_t *t)
{
    struct redis_node *n = t->data;
    if (n->state == ST_CONNECTING) {
        break_conn(n, RL_E_IO); /* connect timeout */
        return;
    }
    n->cfg.stats->reconnects++;
    start_connect(n);
}

static void schedule_retry(struct redis_node *n)
{
    uint64_t d = backoff_ms(n);
    n->attempts++;
    uv_timer_start(&n->retry, on_retry, d, 0);
}

static void start_connect(struct redis_node *n)
{
    struct rconn *c = rl_calloc(1, sizeof(*c));
    c->n = n;
    c->reader = redis_reader_new();
    uv_tcp_init(n->cfg.loop, &c->tcp);
    c->tcp.data = c;
    c->connect.data = c;
    n->nopen++;
    n->conn = c;
    n->state = ST_CONNECTING;
    int rc = uv_tcp_connect(&c->connect, &c->tcp,
                            (const struct sockaddr *)&n->addr, on_connect);
    if (rc != 0) {
        break_conn(n, RL_E_IO);
        return;
    }
    uv_timer_start(&n->retry, on_retry, n->cfg.opts->connect_timeout_ms, 0);
}

/* The one way down: close, fail what is pending, plan a reconnect. */
static void break_conn(struct redis_node *n, enum rl_err err)
{
    if (n->conn) {
        conn_close(n->conn);
        n->conn = NULL;
    }
    n->state = ST_DOWN;
    n->out_len = 0; /* unsent commands fail with the rest */
    uv_prepare_stop(&n->flusher);
    uv_timer_stop(&n->retry);
    report(n, false);
    fail_all(n, err);
    if (!n->freeing) {
        schedule_retry(n);
    }
}

/* ---------------------------------------------------------------------
 * Creating and freeing
 * ------------------------------------------------------------------- */

struct redis_node *redis_node_new(const struct redis_node_cfg *cfg,
                                  const struct sockaddr_storage *addr)
{
    struct redis_node *n = rl_calloc(1, sizeof(*n));
    n->cfg = *cfg;
    snprintf(n->host, sizeof(n->host), "%s", cfg->host);
    snprintf(n->password, sizeof(n->password), "%s", cfg->password);
    n->cfg.host = n->host;
    n->cfg.password = n->password;
    n->addr = *addr;
    n->reported = -1;
    n->seed = (unsigned)(uintptr_t)n ^ (unsigned)time(NULL);
    uv_timer_init(cfg->loop, &n->deadline);
    uv_timer_init(cfg->loop, &n->retry);
    uv_prepare_init(cfg->loop, &n->flusher);
    n->deadline.data = n;
    n->retry.data = n;
    n->flusher.data = n;
    n->nopen = 3;
    start_connect(n);
    return n;
}

void redis_node_free(struct redis_node *n, enum rl_err err)
{
    n->freeing = true;
    if (n->conn) {
        conn_close(n->conn);
        n->conn = NULL;
    }
    n->state = ST_DOWN;
    n->out_len = 0;
    fail_all(n, err);
    uv_close((uv_handle_t *)&n->flusher, on_handle_closed);
    uv_close((uv_handle_t *)&n->deadline, on_handle_closed);
    uv_close((uv_handle_t *)&n->retry, on_handle_closed);
}

bool redis_node_up(const struct redis_node *n)
{
    return n->state == ST_UP && !n->freeing;
}

void *redis_node_ctx(const struct redis_node *n)
{
    return n->cfg.ctx;
}

const char *redis_node_host(const struct redis_node *n)
{
    return n->host;
}

uint16_t redis_node_port(const struct redis_node *n)
{
    return n->cfg.port;
}
