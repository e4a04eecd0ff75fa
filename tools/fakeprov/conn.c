/*
 * conn.c - one client connection: HTTP/1.1 in, timed answers out.
 *
 * Bytes are read into c->in and parsed by http-parser; the URL and headers
 * are copied into c->head and the body into c->body, so the input buffer
 * can be compacted at any time. The parser pauses at the end of every
 * message: one request is answered at a time, in order, and pipelined
 * requests wait in c->in until the answer before them is complete.
 *
 * An answer (fakeprov.h) is timed here, whatever its wire format: the
 * time to first token and the pacing run on the connection's uv timer,
 * never blocking the loop, and the staged faults (reset, hang, stall, cut,
 * malformed, nodone, slowheaders) happen here. Writes go out with
 * uv_try_write; only what the socket does not take is copied into a
 * uv_write request.
 *
 * Read first: pump(), then dispatch() and job_start().
 */
#include "fakeprov.h"

#include <http_parser.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/alloc.h"
#include "util/log.h"

#define MAX_HEADERS 64
#define READ_CHUNK (64u << 10)
#define IN_MAX (FAKE_MAX_BODY + FAKE_MAX_HEADERS + 2 * READ_CHUNK)
#define OUT_MAX (1024u << 20) /* a full /_fake/requests dump fits */

struct hdr {
    size_t name_off; /* offset of the name in c->head */
    size_t name_len; /* bytes */
    size_t val_off;  /* offset of the value in c->head */
    size_t val_len;  /* bytes */
};

struct conn {
    uv_tcp_t tcp;             /* the client socket */
    uv_timer_t timer;         /* time to first token and pacing */
    uv_shutdown_t shutdown;   /* graceful close after the last write */
    int nopen;                /* handles not closed yet; freed at 0 */
    http_parser parser;
    struct buf in;            /* bytes read, parsed up to in_off */
    size_t in_off;            /* bytes of in already given to the parser */
    struct buf head;          /* the URL, then header names and values */
    size_t url_len;           /* bytes of URL at the start of head */
    struct hdr hdrs[MAX_HEADERS]; /* the request's headers */
    size_t nhdrs;             /* entries used in hdrs */
    bool in_value;            /* the parser is inside a header value */
    int reject;               /* status to refuse the request with, or 0 */
    struct buf body;          /* the request body, de-chunked */
    struct buf out;           /* response bytes being built */
    struct buf tmp;           /* a body or a run of events being built */
    struct answer ans;        /* the answer being sent */
    const struct fake_format *fmt; /* how ans is rendered */
    uint64_t t0_ms;           /* loop time when the answer started, ms */
    size_t next_piece;        /* first piece of ans not sent yet */
    bool req_ready;           /* a whole request waits for dispatch() */
    bool keep_alive;          /* the request allows another after it */
    bool busy;                /* an answer is under way */
    bool forever;             /* the answer never ends (hang, stall) */
    bool eof;                 /* the client sent its last byte */
    bool ending;              /* shutting down after the last write */
    bool closing;             /* handles are closing */
    bool in_pump;             /* pump() is on the stack */
};

struct wreq {
    uv_write_t req; /* must stay first: the callback gets its address */
    char data[];    /* the bytes the socket did not take at once */
};

static void pump(struct conn *c);
static void job_tick(uv_timer_t *t);

/* Connections open and connections with an answer under way, across
 * workers (GET /_fake/connections): a test sees whether its client left a
 * hung or stalled request open. */
static atomic_long nconns_open;
static atomic_long nconns_busy;

static void set_busy(struct conn *c, bool busy)
{
    if (c->busy != busy) {
        atomic_fetch_add(&nconns_busy, busy ? 1 : -1);
    }
    c->busy = busy;
}

/* ---------------------------------------------------------------------- */
/* Closing and writing                                                    */

static void on_close(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->nopen > 0) {
        return;
    }
    set_busy(c, false);
    atomic_fetch_sub(&nconns_open, 1);
    buf_free(&c->in);
    buf_free(&c->head);
    buf_free(&c->body);
    buf_free(&c->out);
    buf_free(&c->tmp);
    fake_answer_free(&c->ans);
    free(c);
}

/* Closes at once; with rst, the peer gets a TCP reset (SO_LINGER 0). */
static void conn_close(struct conn *c, bool rst)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_close);
    if (!rst || uv_tcp_close_reset(&c->tcp, on_close) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    conn_close(req->handle->data, false);
}

/* Closes once every queued byte has been written. */
static void conn_end(struct conn *c)
{
    if (c->ending || c->closing) {
        return;
    }
    c->ending = true;
    uv_timer_stop(&c->timer);
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown)) {
        conn_close(c, false);
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct conn *c = req->handle->data;
    free(req);
    if (status < 0) {
        conn_close(c, false);
    }
}

/* Writes n buffers, in order after anything queued; copies only what the
 * socket does not take now. */
static void conn_writev(struct conn *c, uv_buf_t *bufs, unsigned n)
{
    if (c->closing || c->ending) {
        return;
    }
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        total += bufs[i].len;
    }
    int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (w >= 0 && (size_t)w == total) {
        return;
    }
    if (w < 0 && w != UV_EAGAIN) {
        conn_close(c, false);
        return;
    }
    size_t skip = w < 0 ? 0 : (size_t)w;
    struct wreq *r = rl_malloc(sizeof(*r) + total - skip);
    size_t len = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t drop = skip < bufs[i].len ? skip : bufs[i].len;
        skip -= drop;
        memcpy(r->data + len, bufs[i].base + drop, bufs[i].len - drop);
        len += bufs[i].len - drop;
    }
    uv_buf_t rest = uv_buf_init(r->data, (unsigned)len);
    if (uv_write(&r->req, (uv_stream_t *)&c->tcp, &rest, 1, on_write)) {
        free(r);
        conn_close(c, false);
    }
}

static void conn_write(struct conn *c, const char *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    conn_writev(c, &b, 1);
}

/* ---------------------------------------------------------------------- */
/* Responses                                                              */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 529: return "Overloaded";
    default: return status < 500 ? "Client Error" : "Server Error";
    }
}

/* Appends a status line and headers to c->out; len < 0 means chunked. */
static void put_head(struct conn *c, int status, const char *ctype,
                     long long len)
{
    struct buf *b = &c->out;
    (void)buf_printf(b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", status,
                     reason(status), ctype);
    if (len >= 0) {
        (void)buf_printf(b, "Content-Length: %lld\r\n", len);
    } else {
        (void)buf_append_cstr(b, "Cache-Control: no-cache\r\n"
                                 "Transfer-Encoding: chunked\r\n");
    }
    if (status == 429 && c->ans.retry_after_s > 0) {
        (void)buf_printf(b, "Retry-After: %lld\r\n",
                         (long long)c->ans.retry_after_s);
    }
    if (!c->keep_alive) {
        (void)buf_append_cstr(b, "Connection: close\r\n");
    }
    (void)buf_append_cstr(b, "\r\n");
}

/* Sends c->out followed by the first n bytes of c->tmp as one write. */
static void send_out_tmp(struct conn *c, size_t n)
{
    uv_buf_t b[2] = {uv_buf_init(c->out.p, (unsigned)c->out.len),
                     uv_buf_init(c->tmp.p, (unsigned)n)};
    conn_writev(c, b, n ? 2 : 1);
    buf_reset(&c->out);
    buf_reset(&c->tmp);
}

/* Sends a whole response whose body is in c->tmp. */
static void send_tmp(struct conn *c, int status, const char *ctype)
{
    put_head(c, status, ctype, (long long)c->tmp.len);
    send_out_tmp(c, c->tmp.len);
}

/* Appends c->tmp to c->out as one HTTP chunk, then the last chunk when
 * last; sends it all. */
static void send_chunk(struct conn *c, bool last)
{
    if (c->tmp.len) {
        (void)buf_printf(&c->out, "%zx\r\n", c->tmp.len);
        (void)buf_append(&c->tmp, "\r\n", 2);
    }
    if (last) {
        (void)buf_append(&c->tmp, "0\r\n\r\n", 5);
    }
    send_out_tmp(c, c->tmp.len);
}

/* Leaves the answer unfinished for good (hang, stall, slowheaders); the
 * connection closes when the client closes its side. */
static void go_forever(struct conn *c)
{
    c->forever = true;
    if (c->eof) {
        conn_close(c, false);
    }
}

/* Ends the current answer and goes on with the next request, if any. */
static void job_done(struct conn *c)
{
    set_busy(c, false);
    if (!c->keep_alive) {
        conn_end(c);
        return;
    }
    pump(c);
}

/* Answers with an error of the answer's status in its format's shape. */
static void send_error(struct conn *c)
{
    buf_reset(&c->tmp);
    c->fmt->error_body(&c->ans, &c->tmp);
    send_tmp(c, c->ans.status, "application/json");
    job_done(c);
}

/* Answers at once with a plain error (bad HTTP, route, key). */
static void quick_error(struct conn *c, int status, const char *type,
                        const char *code, const char *msg)
{
    fake_answer_reset(&c->ans);
    fake_answer_error(&c->ans, status, type, code, msg);
    set_busy(c, true);
    send_error(c);
}

static void quick_json(struct conn *c, int status)
{
    set_busy(c, true);
    send_tmp(c, status, "application/json");
    job_done(c);
}

/* ---------------------------------------------------------------------- */
/* Timing an answer                                                       */

/* Returns when piece k is due, in ms after the answer started. */
static uint64_t due_ms(const struct answer *a, size_t k)
{
    if (a->tps <= 0) {
        return a->ttft_ms;
    }
    return a->ttft_ms + (uint64_t)((double)k * 1000.0 / a->tps);
}

/* Runs fn now when delay_ms is 0, else on the timer. */
static void after_ms(struct conn *c, uint64_t delay_ms, uv_timer_cb fn)
{
    if (delay_ms == 0) {
        fn(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, fn, delay_ms, 0);
}

static void error_cb(uv_timer_t *t)
{
    send_error(t->data);
}

static void slowheaders_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->ans.stream) {
        put_head(c, 200, c->fmt->stream_type, -1);
    } else {
        buf_reset(&c->tmp);
        c->fmt->body(&c->ans, &c->tmp);
        put_head(c, 200, "application/json", (long long)c->tmp.len);
    }
    send_out_tmp(c, 0);
    go_forever(c);
}

static void whole_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    buf_reset(&c->tmp);
    c->fmt->body(&c->ans, &c->tmp);
    size_t half = c->tmp.len / 2;
    switch (c->ans.fault) {
    case FAULT_STALL: /* headers and half the body, then silence */
        put_head(c, 200, "application/json", (long long)c->tmp.len);
        send_out_tmp(c, half);
        go_forever(c);
        return;
    case FAULT_CUT: /* headers and half the body, then close */
        put_head(c, 200, "application/json", (long long)c->tmp.len);
        send_out_tmp(c, half);
        conn_end(c);
        return;
    case FAULT_MALFORMED: /* half the body, framed as the whole */
        put_head(c, 200, "application/json", (long long)half);
        send_out_tmp(c, half);
        break;
    default:
        send_tmp(c, 200, "application/json");
        break;
    }
    job_done(c);
}

/* Sends every piece due by now; stages a mid-stream fault when its piece
 * comes; schedules itself for the next piece. */
static void job_tick(uv_timer_t *t)
{
    struct conn *c = t->data;
    struct answer *a = &c->ans;
    uint64_t now = uv_now(c->tcp.loop) - c->t0_ms;
    bool mid = a->fault == FAULT_STALL || a->fault == FAULT_CUT ||
               a->fault == FAULT_MALFORMED;
    size_t stop = mid && a->after < a->npieces ? a->after : a->npieces;
    buf_reset(&c->tmp);
    while (c->next_piece < stop && due_ms(a, c->next_piece) <= now) {
        c->fmt->stream_piece(a, c->next_piece++, &c->tmp);
    }
    if (c->next_piece < stop) {
        send_chunk(c, false);
        uv_timer_start(&c->timer, job_tick, due_ms(a, c->next_piece) - now,
                       0);
        return;
    }
    if (a->fault == FAULT_STALL) {
        send_chunk(c, false);
        go_forever(c);
    } else if (a->fault == FAULT_CUT) {
        send_chunk(c, false);
        conn_end(c);
    } else if (a->fault == FAULT_MALFORMED) {
        c->fmt->stream_malformed(a, &c->tmp);
        send_chunk(c, true);
        job_done(c);
    } else {
        c->fmt->stream_end(a, a->fault != FAULT_NODONE, &c->tmp);
        send_chunk(c, true);
        job_done(c);
    }
}

/* Starts sending c->ans: at once, after its delays, or never. */
static void job_start(struct conn *c)
{
    struct answer *a = &c->ans;
    set_busy(c, true);
    c->forever = false;
    c->t0_ms = uv_now(c->tcp.loop);
    c->next_piece = 0;
    if (a->kind == ANSWER_ERROR) {
        after_ms(c, a->ttft_ms, error_cb);
        return;
    }
    switch (a->fault) {
    case FAULT_RESET:
        conn_close(c, true);
        return;
    case FAULT_HANG:
        go_forever(c);
        return;
    case FAULT_SLOWHEADERS:
        after_ms(c, a->ttft_ms, slowheaders_cb);
        return;
    default:
        break;
    }
    if (!a->stream) {
        uint64_t pace = a->tps > 0 ? (uint64_t)((double)a->completion_tokens
                                                * 1000.0 / a->tps)
                                   : 0;
        after_ms(c, a->ttft_ms + pace, whole_cb);
        return;
    }
    put_head(c, 200, c->fmt->stream_type, -1);
    buf_reset(&c->tmp);
    c->fmt->stream_head(a, &c->tmp);
    send_chunk(c, false);
    after_ms(c, a->ttft_ms, job_tick);
}

/* ---------------------------------------------------------------------- */
/* Routing                                                                */

static struct str hdr_name(const struct conn *c, size_t i)
{
    return (struct str){c->head.p + c->hdrs[i].name_off, c->hdrs[i].name_len};
}

static struct str hdr_value(const struct conn *c, size_t i)
{
    return (struct str){c->head.p + c->hdrs[i].val_off, c->hdrs[i].val_len};
}

/* Returns the value of header name (case-insensitive), len 0 if absent. */
static struct str header(const struct conn *c, const char *name)
{
    for (size_t i = 0; i < c->nhdrs; i++) {
        if (str_case_eq(hdr_name(c, i), name)) {
            return str_trim(hdr_value(c, i));
        }
    }
    return (struct str){"", 0};
}

/* True when the query of url (after its last '?') has key=want. */
static bool query_key_ok(struct str url, struct str want)
{
    const char *q = NULL;
    for (size_t i = url.len; i-- > 0;) {
        if (url.p[i] == '?') {
            q = url.p + i + 1;
            break;
        }
    }
    const char *end = url.p + url.len;
    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        struct str pair = {q, (size_t)((amp ? amp : end) - q)};
        if (str_starts_with(pair, "key=") &&
            str_eq((struct str){pair.p + 4, pair.len - 4}, want)) {
            return true;
        }
        q = amp ? amp + 1 : end;
    }
    return false;
}

/* True when the request carries --require-key's key the way auth says. */
static bool key_ok(const struct conn *c, enum fake_auth auth, struct str url)
{
    if (!fake_opts.require_key || auth == AUTH_NONE) {
        return true;
    }
    struct str want = str_from(fake_opts.require_key);
    if (auth == AUTH_X_API_KEY && str_eq(header(c, "x-api-key"), want)) {
        return true; /* else Bearer: recent Anthropic SDKs send that */
    }
    if (auth == AUTH_GOOGLE) {
        return str_eq(header(c, "x-goog-api-key"), want) ||
               query_key_ok(url, want);
    }
    /* AUTH_BEARER, and AUTH_X_API_KEY without a matching x-api-key */
    struct str v = header(c, "authorization");
    if (v.len < 7 || strncasecmp(v.p, "Bearer ", 7) != 0) {
        return false;
    }
    v.p += 7;
    v.len -= 7;
    return str_eq(str_trim(v), want);
}

/* Makes c->ans the refusal of a missing or wrong key, in fmt's manner. */
static void key_error(struct conn *c, const struct fake_format *fmt)
{
    if (fmt->auth == AUTH_GOOGLE) { /* Google says 400, as the real API */
        fake_answer_error(&c->ans, 400, "invalid_request_error",
                          "API_KEY_INVALID",
                          "API key not valid. Please pass a valid API key.");
    } else if (fmt->auth == AUTH_X_API_KEY) {
        fake_answer_error(&c->ans, 401, "authentication_error", NULL,
                          "invalid x-api-key");
    } else {
        fake_answer_error(&c->ans, 401, "invalid_request_error",
                          "invalid_api_key", "Incorrect API key provided.");
    }
}

static void record(const struct conn *c, struct str path, bool is_json)
{
    struct record_header h[MAX_HEADERS];
    for (size_t i = 0; i < c->nhdrs; i++) {
        h[i].name = hdr_name(c, i);
        h[i].value = hdr_value(c, i);
    }
    fake_record_add(http_method_str(c->parser.method), path, h, c->nhdrs,
                    (struct str){c->body.p ? c->body.p : "", c->body.len},
                    is_json);
}

static void log_request(const struct conn *c, struct str path)
{
    const struct answer *a = &c->ans;
    struct buf esc;
    buf_init(&esc, 4096);
    (void)buf_append_json_escaped(&esc, path.p, path.len);
    log_write(LOG_INFO, "request",
              "\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,"
              "\"fault\":\"%s\",\"stream\":%s",
              http_method_str(c->parser.method), esc.p ? esc.p : "",
              a->kind == ANSWER_ERROR ? a->status : 200,
              fake_script_fault_name(a->fault), a->stream ? "true" : "false");
    buf_free(&esc);
}

/* A chat call in any format: record, check, build the answer, start it. */
static void chat(struct conn *c, const struct fake_format *fmt,
                 struct str path, struct str url)
{
    fake_answer_reset(&c->ans);
    c->fmt = fmt;
    json_t *req = c->body.len
                      ? json_loadb(c->body.p, c->body.len, 0, NULL)
                      : NULL;
    record(c, path, req != NULL);
    if (fmt->from_url) {
        fmt->from_url(url, &c->ans);
    }
    if (!key_ok(c, fmt->auth, url)) {
        key_error(c, fmt);
    } else if (fmt->need_header && header(c, fmt->need_header).len == 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s: header is required",
                 fmt->need_header);
        fake_answer_error(&c->ans, 400, "invalid_request_error", NULL, msg);
    } else if (c->ans.kind == ANSWER_ERROR) {
        /* from_url refused the URL */
    } else if (!req) {
        fake_answer_error(&c->ans, 400, "invalid_request_error", NULL,
                          "We could not parse the JSON body of your request.");
    } else {
        fmt->build(req, &fake_opts, &c->ans);
    }
    json_decref(req);
    if (fake_opts.verbose) {
        log_request(c, path);
    }
    job_start(c);
}

static void models(struct conn *c, struct str path)
{
    buf_reset(&c->tmp);
    if (!key_ok(c, AUTH_BEARER, path)) {
        quick_error(c, 401, "invalid_request_error", "invalid_api_key",
                    "Incorrect API key provided.");
        return;
    }
    if (str_eq_lit(path, "/v1/models")) {
        fake_openai_models(&c->tmp);
    } else {
        struct str id = {path.p + 11, path.len - 11};
        (void)buf_append_cstr(&c->tmp, "{\"id\":\"");
        (void)buf_append_json_escaped(&c->tmp, id.p, id.len);
        (void)buf_append_cstr(&c->tmp, "\",\"object\":\"model\","
                                       "\"created\":1700000000,"
                                       "\"owned_by\":\"relay-fake\"}");
    }
    quick_json(c, 200);
}

/* uv_walk callback: closes every connection but arg's (POST /_fake/drop). */
static void drop_other(uv_handle_t *h, void *arg)
{
    if (h->type == UV_TCP && h->data && h->data != arg) {
        conn_close(h->data, false);
    }
}

/* GET /_fake/connections: counts across workers; this one is not busy. */
static void connections(struct conn *c)
{
    (void)buf_printf(&c->tmp, "{\"open\":%ld,\"busy\":%ld}",
                     atomic_load(&nconns_open), atomic_load(&nconns_busy));
    quick_json(c, 200);
}

/* Answers the complete request in c->head and c->body. */
static void dispatch(struct conn *c)
{
    struct str url = {c->head.p ? c->head.p : "", c->url_len};
    const char *q = memchr(url.p, '?', url.len);
    struct str path = {url.p, q ? (size_t)(q - url.p) : url.len};
    bool get = c->parser.method == HTTP_GET;
    bool post = c->parser.method == HTTP_POST;
    buf_reset(&c->tmp);
    c->fmt = &fake_openai_format; /* errors outside a chat call */
    if (c->reject) {
        quick_error(c, c->reject, "invalid_request_error", NULL,
                    c->reject == 413 ? "Request body too large."
                                     : "Request headers too large.");
    } else if (str_eq_lit(path, "/v1/chat/completions") ||
               str_eq_lit(path, "/chat/completions")) {
        if (post) {
            chat(c, &fake_openai_format, path, url);
        } else {
            quick_error(c, 405, "invalid_request_error", NULL,
                        "Use POST for chat completions.");
        }
    } else if (str_eq_lit(path, "/v1/messages")) {
        c->fmt = &fake_anthropic_format;
        if (post) {
            chat(c, &fake_anthropic_format, path, url);
        } else {
            quick_error(c, 405, "invalid_request_error", NULL,
                        "Use POST for messages.");
        }
    } else if (post && fake_gemini_route(url)) {
        chat(c, &fake_gemini_format, path, url);
    } else if (str_eq_lit(path, "/api/chat")) {
        c->fmt = &fake_ollama_format;
        if (post) {
            chat(c, &fake_ollama_format, path, url);
        } else {
            quick_error(c, 405, "invalid_request_error", NULL,
                        "method not allowed");
        }
    } else if (get && str_eq_lit(path, "/api/tags")) {
        fake_ollama_tags(&c->tmp);
        quick_json(c, 200);
    } else if (get && str_eq_lit(path, "/api/version")) {
        fake_ollama_version(&c->tmp);
        quick_json(c, 200);
    } else if (get && (str_eq_lit(path, "/v1/models") ||
                       (str_starts_with(path, "/v1/models/") &&
                        path.len > 11))) {
        models(c, path);
    } else if (get && str_eq_lit(path, "/healthz")) {
        (void)buf_append_cstr(&c->tmp, "{\"status\":\"ok\"}");
        quick_json(c, 200);
    } else if (get && str_eq_lit(path, "/_fake/requests")) {
        fake_record_dump(&c->tmp);
        quick_json(c, 200);
    } else if (get && str_eq_lit(path, "/_fake/connections")) {
        connections(c);
    } else if (post && str_eq_lit(path, "/_fake/drop")) {
        uv_walk(c->tcp.loop, drop_other, c);
        (void)buf_append_cstr(&c->tmp, "{\"ok\":true}");
        quick_json(c, 200);
    } else if (post && str_eq_lit(path, "/_fake/reset")) {
        fake_record_clear();
        fake_script_reset(fake_opts.seed);
        (void)buf_append_cstr(&c->tmp, "{\"ok\":true}");
        quick_json(c, 200);
    } else {
        quick_error(c, 404, "invalid_request_error", "unknown_url",
                    "Unknown request URL.");
    }
}

/* ---------------------------------------------------------------------- */
/* HTTP parsing                                                           */

static int on_message_begin(http_parser *p)
{
    struct conn *c = p->data;
    buf_reset(&c->head);
    buf_reset(&c->body);
    c->url_len = 0;
    c->nhdrs = 0;
    c->in_value = false;
    c->reject = 0;
    return 0;
}

static int head_append(struct conn *c, const char *at, size_t n)
{
    if (buf_append(&c->head, at, n) != RL_OK) {
        c->reject = 431;
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    c->url_len += n;
    return head_append(c, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (c->in_value || c->nhdrs == 0) {
        if (c->nhdrs == MAX_HEADERS) {
            c->reject = 431;
            return -1;
        }
        c->hdrs[c->nhdrs++] = (struct hdr){c->head.len, 0, c->head.len, 0};
        c->in_value = false;
    }
    c->hdrs[c->nhdrs - 1].name_len += n;
    return head_append(c, at, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (c->nhdrs == 0) {
        return -1;
    }
    struct hdr *h = &c->hdrs[c->nhdrs - 1];
    if (!c->in_value) {
        h->val_off = c->head.len;
        h->val_len = 0;
        c->in_value = true;
    }
    h->val_len += n;
    return head_append(c, at, n);
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    if (str_case_eq(header(c, "expect"), "100-continue")) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(c, cont, sizeof(cont) - 1);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (buf_append(&c->body, at, n) != RL_OK) {
        c->reject = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->req_ready = true;
    c->keep_alive = http_should_keep_alive(p) != 0;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Refuses bytes that are not HTTP (or too large) and closes. */
static void bad_http(struct conn *c)
{
    c->keep_alive = false;
    if (c->reject) {
        dispatch(c);
        return;
    }
    quick_error(c, 400, "invalid_request_error", NULL,
                "Malformed HTTP request.");
}

/* Parses and answers requests from c->in while no answer is under way. */
static void pump(struct conn *c)
{
    if (c->in_pump) {
        return;
    }
    c->in_pump = true;
    while (!c->closing && !c->ending && !c->busy) {
        if (c->req_ready) {
            c->req_ready = false;
            dispatch(c);
            continue;
        }
        size_t avail = c->in.len - c->in_off;
        if (avail == 0) {
            if (c->eof) {
                conn_end(c);
            }
            break;
        }
        http_parser_pause(&c->parser, 0);
        size_t n = http_parser_execute(&c->parser, &settings,
                                       c->in.p + c->in_off, avail);
        c->in_off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e != HPE_OK && e != HPE_PAUSED) {
            bad_http(c);
            break;
        }
        if (!c->req_ready && c->eof) {
            conn_end(c); /* a partial request and no more bytes coming */
        }
    }
    c->in_pump = false;
}

/* ---------------------------------------------------------------------- */
/* Reading                                                                */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *out)
{
    (void)hint;
    struct conn *c = h->data;
    if (c->in_off == c->in.len) {
        buf_reset(&c->in);
        c->in_off = 0;
    } else if (c->in_off >= READ_CHUNK) {
        buf_consume(&c->in, c->in_off);
        c->in_off = 0;
    }
    if (buf_reserve(&c->in, READ_CHUNK) != RL_OK) {
        *out = uv_buf_init(NULL, 0); /* the read fails with UV_ENOBUFS */
        return;
    }
    *out = uv_buf_init(c->in.p + c->in.len,
                       (unsigned)(c->in.cap - c->in.len - 1));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct conn *c = s->data;
    if (n > 0) {
        c->in.len += (size_t)n;
        pump(c);
    } else if (n == UV_EOF) {
        c->eof = true;
        if (c->forever || c->busy) {
            /* The client left before its answer: nobody reads the rest
             * (a hang, a stall, a first token or pacing still due). */
            conn_close(c, false);
        } else {
            pump(c);
        }
    } else if (n < 0) {
        conn_close(c, false);
    }
}

void fake_conn_accept(uv_stream_t *server)
{
    struct conn *c = rl_calloc(1, sizeof(*c));
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->nopen = 2;
    atomic_fetch_add(&nconns_open, 1);
    buf_init(&c->in, IN_MAX);
    buf_init(&c->head, FAKE_MAX_HEADERS);
    buf_init(&c->body, FAKE_MAX_BODY);
    buf_init(&c->out, OUT_MAX);
    buf_init(&c->tmp, OUT_MAX);
    fake_answer_init(&c->ans);
    c->fmt = &fake_openai_format;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->keep_alive = true;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c, false);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c, false);
    }
}

void fake_conn_close_all(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (uv_is_closing(h)) {
        return;
    }
    if (h->data) {
        conn_close(h->data, false);
    } else {
        uv_close(h, NULL);
    }
}
