/*
 * test_h1.c - the response half of the plain HTTP/1.1 client
 * (providers/h1.c, struct h1_resp) and Retry-After's reading
 * (transport_retry_after, shared with the curl path). The cases are what
 * fuzz_h1 found: an interim 1xx head taken for the answer, a Retry-After
 * value cut by a read, an HTTP-date read as seconds, bytes after an answer
 * on a connection kept for the next request.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "providers/transport.h"

struct seen {
    int nheads;
    long status;
    uint32_t retry_after_s;
    char body[256];
    size_t body_len;
};

static void on_headers(void *ctx, long status, uint32_t retry_after_s)
{
    struct seen *s = ctx;
    s->nheads++;
    s->status = status;
    s->retry_after_s = retry_after_s;
}

static bool on_data(void *ctx, const char *p, size_t n)
{
    struct seen *s = ctx;
    assert_true(s->body_len + n < sizeof(s->body));
    memcpy(s->body + s->body_len, p, n);
    s->body_len += n;
    return true;
}

static void on_done(void *ctx, enum xfer_result res, const char *detail)
{
    (void)ctx;
    (void)res;
    (void)detail;
    fail_msg("h1_resp never ends a transfer");
}

static const struct xfer_cbs cbs = {on_headers, on_data, on_done};

/* Feeds text in reads of step bytes (0: whole), then EOF unless done;
 * returns whether the connection could be kept. */
static bool feed(const char *text, size_t step, struct seen *s,
                 enum http_errno *err)
{
    memset(s, 0, sizeof(*s));
    struct h1_resp r;
    h1_resp_init(&r, &cbs, s);
    size_t len = strlen(text);
    *err = HPE_OK;
    for (size_t off = 0; *err == HPE_OK && off < len;) {
        size_t take = step && step < len - off ? step : len - off;
        *err = h1_resp_feed(&r, text + off, take);
        off += take;
    }
    if (*err == HPE_OK && !r.done) {
        *err = h1_resp_feed(&r, NULL, 0);
    }
    bool keep = h1_resp_keep(&r);
    h1_resp_free(&r);
    return keep;
}

static void test_an_interim_head_is_not_the_answer(void **state)
{
    (void)state;
    struct seen s;
    enum http_errno err;
    /* A 1xx has no body whatever its head says (RFC 9110 15.2). */
    assert_true(feed("HTTP/1.1 100 Continue\r\nContent-Length: 2\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
                     0, &s, &err));
    assert_int_equal(err, HPE_OK);
    assert_int_equal(s.nheads, 1);
    assert_int_equal(s.status, 200);
    assert_int_equal(s.body_len, 2);
    assert_memory_equal(s.body, "{}", 2);
    feed("HTTP/1.1 103 Early Hints\r\nRetry-After: 9\r\n\r\n"
         "HTTP/1.1 429 Slow down\r\nContent-Length: 0\r\n\r\n", 5, &s, &err);
    assert_int_equal(s.nheads, 1);
    assert_int_equal(s.status, 429);
    assert_int_equal(s.retry_after_s, 0); /* the 103's is not the 429's */
}

static void test_retry_after_does_not_depend_on_the_reads(void **state)
{
    (void)state;
    const char *text = "HTTP/1.1 429 Slow down\r\nRetry-After: 120\r\n"
                       "Content-Length: 0\r\n\r\n";
    for (size_t step = 0; step <= 7; step++) {
        struct seen s;
        enum http_errno err;
        feed(text, step, &s, &err);
        assert_int_equal(err, HPE_OK);
        assert_int_equal(s.retry_after_s, 120);
    }
}

static void test_retry_after_is_delta_seconds_only(void **state)
{
    (void)state;
    assert_int_equal(transport_retry_after(" 7\r\n", 4), 7);
    assert_int_equal(transport_retry_after("0", 1), 0);
    assert_int_equal(transport_retry_after("99999999999", 11), 86400);
    /* An HTTP-date read as digits was 2 days and a half. */
    const char *date = "Wed, 21 Oct 2015 07:28:00 GMT";
    assert_int_equal(transport_retry_after(date, strlen(date)), 0);
    assert_int_equal(transport_retry_after("5, 6", 4), 0);
    assert_int_equal(transport_retry_after("", 0), 0);
}

static void test_bytes_after_the_answer_close_the_connection(void **state)
{
    (void)state;
    struct seen s;
    enum http_errno err;
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                          "\r\n2\r\n{}\r\n0\r\n\r\n";
    for (size_t step = 0; step <= 3; step++) {
        assert_true(feed(ok, step, &s, &err));
        assert_true(feed(chunked, step, &s, &err));
        assert_int_equal(s.body_len, 2);
    }
    assert_false(feed("HTTP/1.1 200 OK\r\nConnection: close\r\n"
                      "Content-Length: 2\r\n\r\n{}", 0, &s, &err));
    const char *more = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
                       "HTTP/1.1 200 OK\r\n";
    for (size_t step = 0; step <= 3; step++) {
        assert_false(feed(more, step, &s, &err));
        assert_int_equal(err, HPE_OK);
        assert_int_equal(s.body_len, 2);
    }
}

static void test_no_status_and_upgrades_are_errors(void **state)
{
    (void)state;
    struct seen s;
    enum http_errno err;
    feed("HTTP/1.1 000 None\r\nContent-Length: 0\r\n\r\n", 0, &s, &err);
    assert_int_not_equal(err, HPE_OK);
    assert_int_equal(s.nheads, 0);
    feed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
         "Connection: Upgrade\r\n\r\n", 0, &s, &err);
    assert_int_not_equal(err, HPE_OK);
    assert_int_equal(s.nheads, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_an_interim_head_is_not_the_answer),
        cmocka_unit_test(test_retry_after_does_not_depend_on_the_reads),
        cmocka_unit_test(test_retry_after_is_delta_seconds_only),
        cmocka_unit_test(test_bytes_after_the_answer_close_the_connection),
        cmocka_unit_test(test_no_status_and_upgrades_are_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
