/*
 * test_http.c - unit tests of src/server/conn.c: one client connection,
 * driven through a real TCP socket and a libuv loop owned by the test.
 *
 * The test builds a struct worker (src/server/internal.h) by hand: a loop,
 * a listener on 127.0.0.1:0 whose connections go to conn_accept(), hooks
 * that record what the connection hands over, and a check handle that calls
 * conn_flush() once per iteration as loop.c does. The client is a plain
 * non-blocking socket; pump() runs the loop and reads the socket until a
 * condition holds. Timeouts are tested by calling conn_sweep() with a
 * "now" in the future. Tests marked "Regression" prove a
 * fixed defect stays fixed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/internal.h"
#include "util/clock.h"


enum mode {
    ANSWER,  /* respond at once: 200, body "got <path> <body>" */
    HOLD,    /* keep the request; the test answers it later */
    STREAM,  /* answer with a chunked SSE stream */
};

#define MAX_SEEN 8

struct seen {
    enum server_method method;
    char path[256];
    char query[256];
    char authorization[256];
    char custom[256];
    char body[4096];
    size_t nheaders;
};

struct harness {
    struct worker w;
    struct server_hooks hooks;
    struct server_limits limits;
    uv_check_t flusher;
    int port;
    int fd;              /* the client's socket */
    struct buf in;       /* what the client received */
    bool eof;            /* the server closed the connection */
    enum mode mode;
    struct seen seen[MAX_SEEN];
    int nseen;
    struct conn *held;   /* HOLD: the connection waiting for an answer */
    bool backlog[8];     /* what the backlog hook was told, in order */
    int nbacklog;
    int nrejects;
    enum rl_err reject;
    int aborts;
};

/* ---------------------------------------------------------------------
 * Hooks
 * ------------------------------------------------------------------- */

static void copy(char *dst, size_t n, struct str s)
{
    snprintf(dst, n, "%.*s", (int)s.len, s.p ? s.p : "");
}

static void on_abort(void *ctx)
{
    struct harness *h = ctx;
    h->aborts++;
    h->held = NULL;
}

static void on_request(void *wctx, struct conn *c, struct http_request *req)
{
    struct harness *h = wctx;
    assert_true(h->nseen < MAX_SEEN);
    struct seen *s = &h->seen[h->nseen++];
    s->method = req->method;
    copy(s->path, sizeof(s->path), req->path);
    copy(s->query, sizeof(s->query), req->query);
    copy(s->authorization, sizeof(s->authorization),
         server_header(req, "authorization"));
    copy(s->custom, sizeof(s->custom), server_header(req, "x-custom"));
    copy(s->body, sizeof(s->body),
         (struct str){req->body.p, req->body.len});
    s->nheaders = req->nheaders;
    if (h->mode == HOLD) {
        h->held = c;
        server_on_abort(c, on_abort, h);
        return;
    }
    if (h->mode == STREAM) {
        server_stream_begin(c, 200, STR_LIT("x-relay-model: m\r\n"));
        assert_true(server_stream_write(c, STR_LIT("data: {\"a\":1}\n\n")));
        assert_true(server_stream_write(c, STR_LIT("")));
        assert_true(server_stream_write(c, STR_LIT("data: [DONE]\n\n")));
        server_stream_end(c);
        return;
    }
    char body[4400];
    int n = snprintf(body, sizeof(body), "got %s %s", s->path, s->body);
    server_respond(c, 200, "application/json", STR_LIT("x-test: 1\r\n"),
                   (struct str){body, (size_t)n});
}

static void on_reject(void *wctx, struct conn *c, enum rl_err err)
{
    struct harness *h = wctx;
    h->nrejects++;
    h->reject = err;
    struct api_error e;
    errors_from_rl(err, NULL, NULL, &e);
    errors_respond(c, &e, STR_LIT(""));
}

static const struct server_limits *limits(void *wctx)
{
    struct harness *h = wctx;
    return &h->limits;
}

static void on_connection(uv_stream_t *server, int status)
{
    assert_int_equal(status, 0);
    conn_accept(server->data, SERVER_MAIN);
}

static void on_check(uv_check_t *check)
{
    struct harness *h = check->data;
    conn_flush(&h->w);
}

/* ---------------------------------------------------------------------
 * Setup, pumping, teardown
 * ------------------------------------------------------------------- */

static int setup(void **state)
{
    struct harness *h = calloc(1, sizeof(*h));
    h->limits = (struct server_limits){
        .max_body_bytes = 8192,
        .max_header_bytes = 2048,
        .read_timeout_ms = 1000,
        .idle_timeout_ms = 5000,
        .shutdown_grace_ms = 1000,
        .output_high_water_bytes = 65536,
        .write_timeout_ms = 2000,
    };
    h->hooks.on_request = on_request;
    h->hooks.on_reject = on_reject;
    h->hooks.limits = limits;
    struct worker *w = &h->w;
    w->hooks = &h->hooks;
    w->wctx = h;
    assert_int_equal(uv_loop_init(&w->loop), 0);
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_bind(&w->listener, (struct sockaddr *)&addr, 0),
                     0);
    assert_int_equal(uv_listen((uv_stream_t *)&w->listener, 16,
                               on_connection),
                     0);
    struct sockaddr_in bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&w->listener, (struct sockaddr *)&bound, &len);
    h->port = ntohs(bound.sin_port);
    uv_check_init(&w->loop, &h->flusher);
    h->flusher.data = h;
    uv_check_start(&h->flusher, on_check);
    buf_init(&h->in, 1 << 20);
    buf_append(&h->in, "", 0);
    /* The client connects; the listener's backlog completes it. */
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(h->fd >= 0);
    assert_int_equal(connect(h->fd, (struct sockaddr *)&bound,
                             sizeof(bound)),
                     0);
    fcntl(h->fd, F_SETFL, fcntl(h->fd, F_GETFL) | O_NONBLOCK);
    *state = h;
    return 0;
}

/* Runs the loop and reads the client socket until done(h) or 3 s. */
static bool pump(struct harness *h, bool (*done)(struct harness *))
{
    uint64_t deadline = clock_now_us() + 3000000;
    while (clock_now_us() < deadline) {
        uv_run(&h->w.loop, UV_RUN_NOWAIT);
        char tmp[65536];
        ssize_t n = -1;
        while (h->fd >= 0 && (n = recv(h->fd, tmp, sizeof(tmp), 0)) > 0) {
            buf_append(&h->in, tmp, (size_t)n);
        }
        if (h->fd >= 0 && n == 0) {
            h->eof = true;
        }
        if (done && done(h)) {
            return true;
        }
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* Pumps for a short while with no condition (to see nothing happens). */
static int briefly_left;

static bool briefly(struct harness *h)
{
    (void)h;
    return --briefly_left <= 0;
}

static void pump_briefly(struct harness *h)
{
    briefly_left = 100; /* iterations of about 0.2 ms */
    pump(h, briefly);
}

static void send_all(struct harness *h, const char *s, size_t n)
{
    while (n) {
        ssize_t k = send(h->fd, s, n, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            uv_run(&h->w.loop, UV_RUN_NOWAIT);
            continue;
        }
        assert_true(k > 0);
        s += k;
        n -= (size_t)k;
    }
}

static void send_str(struct harness *h, const char *s)
{
    send_all(h, s, strlen(s));
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

static bool got_eof(struct harness *h)
{
    return h->eof;
}

static bool one_response(struct harness *h)
{
    return count(h->in.p, "HTTP/1.1 ") >= 1 &&
           strstr(h->in.p, "\r\n\r\n") != NULL &&
           (h->nseen == 0 || strstr(h->in.p, "got ") != NULL ||
            h->nrejects > 0);
}

static bool two_gots(struct harness *h)
{
    return count(h->in.p, "got ") >= 2;
}

static bool three_gots(struct harness *h)
{
    return count(h->in.p, "got ") >= 3;
}

static bool no_connections(struct harness *h)
{
    return h->w.nconns == 0;
}

static int teardown(void **state)
{
    struct harness *h = *state;
    if (h->fd >= 0) {
        close(h->fd);
        h->fd = -1;
    }
    /* The server sees EOF and closes its side. */
    pump(h, no_connections);
    assert_int_equal(h->w.nconns, 0);
    uv_close((uv_handle_t *)&h->w.listener, NULL);
    uv_close((uv_handle_t *)&h->flusher, NULL);
    uv_run(&h->w.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&h->w.loop), 0);
    buf_free(&h->in);
    free(h);
    return 0;
}

/* ---------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------- */

static void test_a_get_request_is_parsed_and_answered(void **state)
{
    struct harness *h = *state;
    send_str(h, "GET /v1/models?x=1&y=2 HTTP/1.1\r\n"
                "Host: relay\r\n"
                "X-Custom:   padded value  \r\n"
                "AUTHORIZATION: Bearer k-123\r\n"
                "\r\n");
    assert_true(pump(h, one_response));
    assert_int_equal(h->nseen, 1);
    assert_int_equal(h->seen[0].method, SERVER_GET);
    assert_string_equal(h->seen[0].path, "/v1/models");
    assert_string_equal(h->seen[0].query, "x=1&y=2");
    assert_string_equal(h->seen[0].authorization, "Bearer k-123");
    assert_string_equal(h->seen[0].custom, "padded value");
    assert_int_equal(h->seen[0].nheaders, 3);
    assert_string_equal(h->in.p, "HTTP/1.1 200 OK\r\n"
                                 "Content-Type: application/json\r\n"
                                 "x-test: 1\r\n"
                                 "Content-Length: 15\r\n"
                                 "\r\n"
                                 "got /v1/models ");
    assert_false(h->eof); /* keep-alive */
}

static void test_a_post_body_is_read_by_content_length(void **state)
{
    struct harness *h = *state;
    send_str(h, "POST /v1/chat/completions HTTP/1.1\r\n"
                "Content-Length: 11\r\n\r\nhello");
    pump_briefly(h);
    assert_int_equal(h->nseen, 0); /* not complete yet */
    send_str(h, " world");
    assert_true(pump(h, one_response));
    assert_int_equal(h->seen[0].method, SERVER_POST);
    assert_string_equal(h->seen[0].body, "hello world");
    assert_non_null(strstr(h->in.p, "got /v1/chat/completions hello world"));
}

static void test_a_chunked_body_is_decoded(void **state)
{
    struct harness *h = *state;
    send_str(h, "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n");
    assert_true(pump(h, one_response));
    assert_string_equal(h->seen[0].body, "hello world");
}

/* Regression (issue 9, found by tests/fuzz/fuzz_http): a chunked body's
 * trailers went through the header callbacks after the head was complete:
 * appended to the head buffer they could move it under the header views
 * (a use after free, before any authentication, under ASan), and each was
 * counted as a header without a view. They are ignored now. */
static void test_trailers_do_not_touch_the_request_s_headers_issue_9(
    void **state)
{
    struct harness *h = *state;
    char req[4096];
    char pad[3001];
    memset(pad, 'a', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    snprintf(req, sizeof(req),
             "POST /p HTTP/1.1\r\nAuthorization: Bearer k-123\r\n"
             "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
             "X-Trailer: %s\r\nX-Other: 1\r\n\r\n", pad);
    send_str(h, req);
    assert_true(pump(h, one_response));
    assert_int_equal(h->nseen, 1);
    assert_string_equal(h->seen[0].body, "hello");
    assert_string_equal(h->seen[0].authorization, "Bearer k-123");
    assert_int_equal(h->seen[0].nheaders, 2);
}

static void test_pipelined_requests_are_served_one_at_a_time_in_order(
    void **state)
{
    struct harness *h = *state;
    h->mode = HOLD;
    send_str(h, "GET /a HTTP/1.1\r\n\r\n"
                "POST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nbb"
                "GET /c HTTP/1.1\r\n\r\n");
    pump_briefly(h);
    /* The second request waits until the first one is answered. */
    assert_int_equal(h->nseen, 1);
    assert_string_equal(h->seen[0].path, "/a");
    assert_non_null(h->held);
    h->mode = ANSWER;
    server_respond(h->held, 200, "text/plain", STR_LIT(""),
                   STR_LIT("got /a "));
    assert_true(pump(h, three_gots));
    assert_int_equal(h->nseen, 3);
    assert_string_equal(h->seen[1].path, "/b");
    assert_string_equal(h->seen[1].body, "bb");
    assert_string_equal(h->seen[2].path, "/c");
    const char *a = strstr(h->in.p, "got /a");
    const char *b = strstr(h->in.p, "got /b bb");
    const char *c = strstr(h->in.p, "got /c");
    assert_true(a && b && c && a < b && b < c);
}

static void test_keep_alive_serves_a_second_request(void **state)
{
    struct harness *h = *state;
    send_str(h, "GET /one HTTP/1.1\r\n\r\n");
    assert_true(pump(h, one_response));
    send_str(h, "GET /two HTTP/1.1\r\n\r\n");
    assert_true(pump(h, two_gots));
    assert_int_equal(h->nseen, 2);
    assert_false(h->eof);
    assert_int_equal(h->w.nconns, 1);
}

static void test_connection_close_is_honoured(void **state)
{
    struct harness *h = *state;
    send_str(h, "GET /bye HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_true(pump(h, got_eof));
    assert_non_null(strstr(h->in.p, "Connection: close\r\n"));
    assert_non_null(strstr(h->in.p, "got /bye"));
}

static void test_http_1_0_without_keep_alive_closes(void **state)
{
    struct harness *h = *state;
    send_str(h, "GET /old HTTP/1.0\r\n\r\n");
    assert_true(pump(h, got_eof));
    assert_non_null(strstr(h->in.p, "Connection: close\r\n"));
}

static void test_a_declared_body_over_the_limit_is_413(void **state)
{
    struct harness *h = *state;
    send_str(h, "POST /p HTTP/1.1\r\nContent-Length: 9000\r\n\r\n");
    assert_true(pump(h, got_eof));
    assert_int_equal(h->nseen, 0);
    assert_int_equal(h->reject, RL_E_BODY_TOO_LARGE);
    assert_true(strncmp(h->in.p, "HTTP/1.1 413 ", 13) == 0);
    assert_non_null(strstr(h->in.p, "\"code\":\"request_too_large\""));
    assert_non_null(strstr(h->in.p, "Connection: close\r\n"));
}

static void test_a_chunked_body_over_the_limit_is_413(void **state)
{
    struct harness *h = *state;
    send_str(h, "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[1100];
    memset(chunk, 'z', sizeof(chunk));
    memcpy(chunk, "400\r\n", 5);
    memcpy(chunk + 5 + 1024, "\r\n", 2);
    for (int i = 0; i < 9 && !h->eof; i++) {
        send_all(h, chunk, 5 + 1024 + 2);
        pump_briefly(h);
    }
    assert_true(pump(h, got_eof));
    assert_int_equal(h->reject, RL_E_BODY_TOO_LARGE);
    assert_true(strncmp(h->in.p, "HTTP/1.1 413 ", 13) == 0);
}

static void test_headers_over_the_limit_are_431(void **state)
{
    struct harness *h = *state;
    char big[3000];
    memset(big, 'h', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    send_str(h, "GET / HTTP/1.1\r\nX-Big: ");
    send_str(h, big);
    send_str(h, "\r\n\r\n");
    assert_true(pump(h, got_eof));
    assert_int_equal(h->reject, RL_E_HEADERS_TOO_LARGE);
    assert_true(strncmp(h->in.p, "HTTP/1.1 431 ", 13) == 0);
}

static void test_more_than_the_maximum_number_of_headers_is_431(
    void **state)
{
    struct harness *h = *state;
    h->limits.max_header_bytes = 65536;
    send_str(h, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= SERVER_MAX_HEADERS; i++) {
        char line[32];
        snprintf(line, sizeof(line), "H%d: v\r\n", i);
        send_str(h, line);
    }
    send_str(h, "\r\n");
    assert_true(pump(h, got_eof));
    assert_int_equal(h->reject, RL_E_HEADERS_TOO_LARGE);
}

static void test_bytes_that_are_not_http_are_400(void **state)
{
    struct harness *h = *state;
    send_str(h, "HELLO THERE\r\n\r\n");
    assert_true(pump(h, got_eof));
    assert_int_equal(h->reject, RL_E_BAD_HTTP);
    assert_true(strncmp(h->in.p, "HTTP/1.1 400 ", 13) == 0);
    assert_non_null(strstr(h->in.p, "\"type\":\"invalid_request_error\""));
}

static bool got_continue(struct harness *h)
{
    return strstr(h->in.p, "HTTP/1.1 100 Continue\r\n\r\n") != NULL;
}

static void test_expect_100_continue_is_answered_before_the_body(
    void **state)
{
    struct harness *h = *state;
    send_str(h, "POST /p HTTP/1.1\r\nExpect: 100-continue\r\n"
                "Content-Length: 4\r\n\r\n");
    assert_true(pump(h, got_continue));
    assert_int_equal(h->nseen, 0);
    send_str(h, "body");
    assert_true(pump(h, one_response));
    assert_string_equal(h->seen[0].body, "body");
    assert_non_null(strstr(h->in.p, "\r\n\r\nHTTP/1.1 200 OK\r\n"));
}

static void test_a_request_that_arrives_too_slowly_gets_408(void **state)
{
    struct harness *h = *state;
    send_str(h, "GET /slow HTTP/1.1\r\nHost: sl");
    pump_briefly(h);
    conn_sweep(&h->w, clock_now_us() + 500 * 1000); /* not yet */
    pump_briefly(h);
    assert_false(h->eof);
    assert_int_equal(h->nrejects, 0);
    conn_sweep(&h->w, clock_now_us() + 1500 * 1000);
    assert_true(pump(h, got_eof));
    assert_int_equal(h->reject, RL_E_TIMEOUT);
    assert_true(strncmp(h->in.p, "HTTP/1.1 408 ", 13) == 0);
}

static void test_an_idle_keep_alive_connection_is_closed(void **state)
{
    struct harness *h = *state;
    send_str(h, "GET /x HTTP/1.1\r\n\r\n");
    assert_true(pump(h, one_response));
    conn_sweep(&h->w, clock_now_us() + 1000 * 1000); /* not yet idle */
    pump_briefly(h);
    assert_false(h->eof);
    conn_sweep(&h->w, clock_now_us() + 6000 * 1000);
    assert_true(pump(h, got_eof));
    assert_int_equal(h->nrejects, 0); /* closed quietly */
}

static bool got_late(struct harness *h)
{
    return strstr(h->in.p, "late") != NULL;
}

static void test_a_busy_connection_is_not_timed_out(void **state)
{
    struct harness *h = *state;
    h->mode = HOLD;
    send_str(h, "GET /long HTTP/1.1\r\n\r\n");
    pump_briefly(h);
    assert_non_null(h->held);
    conn_sweep(&h->w, clock_now_us() + 60 * 1000 * 1000);
    pump_briefly(h);
    assert_false(h->eof);
    assert_int_equal(h->aborts, 0);
    server_respond(h->held, 200, "text/plain", STR_LIT(""), STR_LIT("late"));
    assert_true(pump(h, got_late));
    assert_non_null(strstr(h->in.p, "\r\n\r\nlate"));
}

static bool stream_ended(struct harness *h)
{
    return strstr(h->in.p, "\r\n0\r\n\r\n") != NULL;
}

static bool got_after(struct harness *h)
{
    return strstr(h->in.p, "got /after") != NULL;
}

static void test_a_streamed_response_is_chunked(void **state)
{
    struct harness *h = *state;
    h->mode = STREAM;
    send_str(h, "POST /v1/chat/completions HTTP/1.1\r\n"
                "Content-Length: 2\r\n\r\n{}");
    assert_true(pump(h, stream_ended));
    assert_string_equal(h->in.p,
                        "HTTP/1.1 200 OK\r\n"
                        "Content-Type: text/event-stream\r\n"
                        "x-relay-model: m\r\n"
                        "Cache-Control: no-cache\r\n"
                        "Transfer-Encoding: chunked\r\n"
                        "\r\n"
                        "f\r\ndata: {\"a\":1}\n\n\r\n"
                        "e\r\ndata: [DONE]\n\n\r\n"
                        "0\r\n\r\n");
    /* The connection serves the next request after the stream. */
    h->mode = ANSWER;
    send_str(h, "GET /after HTTP/1.1\r\n\r\n");
    assert_true(pump(h, got_after));
}

static void test_a_client_leaving_mid_request_fires_the_abort_hook_once(
    void **state)
{
    struct harness *h = *state;
    h->mode = HOLD;
    send_str(h, "GET /gone HTTP/1.1\r\n\r\n");
    pump_briefly(h);
    assert_non_null(h->held);
    close(h->fd);
    h->fd = -1;
    assert_true(pump(h, no_connections));
    assert_int_equal(h->aborts, 1);
}

static void test_a_draining_worker_closes_after_the_response(void **state)
{
    struct harness *h = *state;
    h->w.draining = true;
    send_str(h, "GET /last HTTP/1.1\r\n\r\n");
    assert_true(pump(h, got_eof));
    assert_non_null(strstr(h->in.p, "Connection: close\r\n"));
    assert_non_null(strstr(h->in.p, "got /last"));
}

/* ----- backpressure ------------------------------------------------- */

static void on_backlog(void *ctx, bool behind)
{
    struct harness *h = ctx;
    assert_true(h->nbacklog < 8);
    h->backlog[h->nbacklog++] = behind;
}

/* Starts a held stream and writes to it, the client reading nothing,
 * until the connection says the client is behind (at most 64 MiB). */
static size_t stream_until_behind(struct harness *h)
{
    h->mode = HOLD;
    send_str(h, "POST /v1/chat/completions HTTP/1.1\r\n"
                "Content-Length: 2\r\n\r\n{}");
    for (int i = 0; i < 200 && !h->held; i++) {
        uv_run(&h->w.loop, UV_RUN_NOWAIT);
    }
    assert_non_null(h->held);
    /* A small send buffer, so that the kernel holds little of the stream
     * and what the client reads lets the connection write more. Its
     * handle is the first member of struct conn. */
    int small = 16384;
    uv_send_buffer_size((uv_handle_t *)h->held, &small);
    server_on_backlog(h->held, on_backlog, h);
    server_stream_begin(h->held, 200, STR_LIT(""));
    static char chunk[16384];
    memset(chunk, 'x', sizeof(chunk));
    size_t sent = 0;
    while (h->nbacklog == 0 && sent < 64u << 20) {
        assert_true(server_stream_write(h->held, (struct str){chunk,
                                                              sizeof(chunk)}));
        sent += sizeof(chunk);
        uv_run(&h->w.loop, UV_RUN_NOWAIT); /* the flush */
    }
    return sent;
}

static bool caught_up(struct harness *h)
{
    return h->nbacklog >= 2;
}

static void test_a_client_behind_a_stream_is_told_once_then_caught_up(
    void **state)
{
    struct harness *h = *state;
    size_t sent = stream_until_behind(h);
    assert_int_equal(h->nbacklog, 1);
    assert_true(h->backlog[0]);
    /* The producer goes on a little (the rest of one read): no second
     * "behind" while it is still behind. */
    static char more[1024];
    for (int i = 0; i < 16; i++) {
        assert_true(server_stream_write(h->held, (struct str){more,
                                                              sizeof(more)}));
        uv_run(&h->w.loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(h->nbacklog, 1);
    assert_true(sent < 64u << 20);
    /* The client reads: the connection says it caught up, once. */
    assert_true(pump(h, caught_up));
    assert_int_equal(h->nbacklog, 2);
    assert_false(h->backlog[1]);
    assert_int_equal(h->aborts, 0);
    server_stream_end(h->held);
    pump_briefly(h);
    assert_int_equal(h->nbacklog, 2);
}

static void test_a_client_that_takes_nothing_is_dropped_after_the_write_timeout(
    void **state)
{
    struct harness *h = *state;
    stream_until_behind(h);
    uint64_t now = clock_now_us();
    conn_sweep(&h->w, now); /* output waits, none taken since */
    conn_sweep(&h->w, now + 1900 * 1000);
    assert_int_equal(h->aborts, 0);
    assert_int_equal(h->w.nconns, 1);
    conn_sweep(&h->w, now + 2100 * 1000);
    assert_int_equal(h->aborts, 1);
    assert_true(pump(h, got_eof));
    assert_int_equal(h->nbacklog, 1); /* no "caught up" for a dropped one */
}

static void test_a_slow_client_that_takes_output_is_not_dropped(void **state)
{
    struct harness *h = *state;
    stream_until_behind(h);
    uint64_t now = clock_now_us();
    /* For 5 s of sweeps (100 ms apart) the stream goes on faster than the
     * client reads, which reads a little each time: output waits all
     * along, but moves, so the write timeout (2 s) never runs out. */
    static char chunk[16384];
    char tmp[65536];
    for (int i = 1; i <= 50; i++) {
        for (int k = 0; k < 8; k++) {
            assert_true(server_stream_write(h->held,
                                            (struct str){chunk,
                                                         sizeof(chunk)}));
        }
        for (int k = 0; k < 3; k++) {
            (void)recv(h->fd, tmp, sizeof(tmp), 0);
            uv_run(&h->w.loop, UV_RUN_NOWAIT);
            struct timespec ts = {0, 5000000}; /* TCP's own timers run */
            nanosleep(&ts, NULL);
        }
        conn_sweep(&h->w, now + (uint64_t)i * 100 * 1000);
        assert_int_equal(h->aborts, 0);
    }
    assert_int_equal(h->w.nconns, 1);
}

static void test_header_lookup_is_case_insensitive(void **state)
{
    (void)state;
    struct http_request req;
    memset(&req, 0, sizeof(req));
    req.headers[0] = (struct http_header){STR_LIT("Content-Type"),
                                          STR_LIT("application/json")};
    req.headers[1] = (struct http_header){STR_LIT("authorization"),
                                          STR_LIT("Bearer x")};
    req.nheaders = 2;
    assert_true(str_eq_lit(server_header(&req, "content-type"),
                           "application/json"));
    assert_true(str_eq_lit(server_header(&req, "AUTHORIZATION"),
                           "Bearer x"));
    assert_int_equal(server_header(&req, "authorizatio").len, 0);
    assert_int_equal(server_header(&req, "x-missing").len, 0);
    assert_non_null(server_header(&req, "x-missing").p);
}

/*
 * Regression (fixed; src/server/conn.c, server_respond): the response to a HEAD
 * request carries its body. RFC 9110 9.3.2: a HEAD response has no content;
 * a keep-alive client reads the body bytes as the start of the next
 * response. Reached through the gateway by HEAD /healthz, /readyz and
 * /v1/models (gateway.c treats HEAD as GET). Expected: headers (with the
 * Content-Length a GET would have) and no body; actual: the body follows.
 */
static bool head_complete(struct harness *h)
{
    return strstr(h->in.p, "\r\n\r\n") != NULL;
}

static void test_a_head_response_has_no_body(void **state)
{
    struct harness *h = *state;
    send_str(h, "HEAD /healthz HTTP/1.1\r\n\r\n");
    assert_true(pump(h, head_complete));
    pump_briefly(h);
    const char *end = strstr(h->in.p, "\r\n\r\n");
    assert_non_null(end);
    assert_string_equal(end + 4, "");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_get_request_is_parsed_and_answered),
        T(test_a_post_body_is_read_by_content_length),
        T(test_a_chunked_body_is_decoded),
        T(test_trailers_do_not_touch_the_request_s_headers_issue_9),
        T(test_pipelined_requests_are_served_one_at_a_time_in_order),
        T(test_keep_alive_serves_a_second_request),
        T(test_connection_close_is_honoured),
        T(test_http_1_0_without_keep_alive_closes),
        T(test_a_declared_body_over_the_limit_is_413),
        T(test_a_chunked_body_over_the_limit_is_413),
        T(test_headers_over_the_limit_are_431),
        T(test_more_than_the_maximum_number_of_headers_is_431),
        T(test_bytes_that_are_not_http_are_400),
        T(test_expect_100_continue_is_answered_before_the_body),
        T(test_a_request_that_arrives_too_slowly_gets_408),
        T(test_an_idle_keep_alive_connection_is_closed),
        T(test_a_busy_connection_is_not_timed_out),
        T(test_a_streamed_response_is_chunked),
        T(test_a_client_leaving_mid_request_fires_the_abort_hook_once),
        T(test_a_draining_worker_closes_after_the_response),
        T(test_a_client_behind_a_stream_is_told_once_then_caught_up),
        T(test_a_client_that_takes_nothing_is_dropped_after_the_write_timeout),
        T(test_a_slow_client_that_takes_output_is_not_dropped),
        cmocka_unit_test(test_header_lookup_is_case_insensitive),
        T(test_a_head_response_has_no_body),
    };
#undef T
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
