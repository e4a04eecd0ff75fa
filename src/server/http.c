/*
 * http.c - reading one HTTP/1.1 request at a time out of received bytes:
 * http_parser (the library) plus Relay's own checks: at most
 * SERVER_MAX_HEADERS headers, a request head within its cap (431), a body
 * within max_body_bytes whether declared or chunked (413).
 *
 * It does no I/O and knows no sockets: conn.c hands it the bytes it has and
 * acts on the verdict, and tests/fuzz/fuzz_http.c feeds it arbitrary bytes.
 * Views in the parsed request (path, query, header names and values) point
 * into h->head, which stops growing once the head is complete. Read
 * http_in_execute() first.
 */
#include <string.h>

#include "server/internal.h"
#include "util/clock.h"

/* ---------------------------------------------------------------------
 * Parser callbacks
 * ------------------------------------------------------------------- */

static int on_message_begin(http_parser *p)
{
    struct http_in *h = p->data;
    h->receiving = true;
    h->req.nheaders = 0;
    h->req.start_us = clock_now_us();
    h->url_len = 0;
    h->in_value = false;
    h->head_done = false;
    buf_reset(&h->head);
    buf_free(&h->req.body);
    buf_init(&h->req.body, h->limits->max_body_bytes);
    return 0;
}

static int head_append(struct http_in *h, const char *at, size_t len)
{
    if (buf_append(&h->head, at, len) != RL_OK) {
        h->reject = RL_E_HEADERS_TOO_LARGE;
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_in *h = p->data;
    h->url_len += len;
    return head_append(h, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_in *h = p->data;
    if (h->head_done) {
        return 0; /* a trailer: ignored (see on_headers_complete) */
    }
    if (h->in_value || h->req.nheaders == 0) {
        if (h->req.nheaders == SERVER_MAX_HEADERS) {
            h->reject = RL_E_HEADERS_TOO_LARGE;
            return -1;
        }
        size_t *o = h->hdr_off[h->req.nheaders++];
        o[0] = h->head.len;
        o[1] = 0;
        o[2] = h->head.len;
        o[3] = 0;
        h->in_value = false;
    }
    h->hdr_off[h->req.nheaders - 1][1] += len;
    h->hdr_off[h->req.nheaders - 1][2] += len;
    return head_append(h, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_in *h = p->data;
    if (h->head_done) {
        return 0;
    }
    h->in_value = true;
    h->hdr_off[h->req.nheaders - 1][3] += len;
    return head_append(h, at, len);
}

static void split_url(struct http_in *h)
{
    struct str url = {h->head.p ? h->head.p : "", h->url_len};
    const char *q = memchr(url.p, '?', url.len);
    h->req.path = url;
    h->req.query = (struct str){"", 0};
    if (q) {
        h->req.path.len = (size_t)(q - url.p);
        h->req.query = (struct str){q + 1, url.len - h->req.path.len - 1};
    }
}

static int on_headers_complete(http_parser *p)
{
    struct http_in *h = p->data;
    /* HTTP/1.0 and 1.1 only: http-parser also takes a line without a
     * version (0.9) and any digits. */
    bool bad = p->http_major != 1 || p->http_minor > 1;
    /* The head buffer no longer grows: views into it are stable now.
     * http-parser hands a chunked body's trailers to the same header
     * callbacks after this; they are ignored (Relay reads none), since
     * appending them to head could move it under the views, and counting
     * them would add headers without a view (issue 9: a use after free
     * before any authentication, found by fuzz_http). */
    h->head_done = true;
    for (size_t i = 0; i < h->req.nheaders; i++) {
        size_t *o = h->hdr_off[i];
        h->req.headers[i].name = (struct str){h->head.p + o[0], o[1]};
        h->req.headers[i].value =
            str_trim((struct str){h->head.p + o[2], o[3]});
        /* http-parser lets "Name : value" through with the space in the
         * name; RFC 9112 (5.1) says refuse it, lest a proxy in front read
         * the header (say Content-Length) as we do not. */
        struct str n = h->req.headers[i].name;
        bad = bad || memchr(n.p, ' ', n.len) || memchr(n.p, '\t', n.len);
    }
    if (bad) {
        h->reject = RL_E_BAD_HTTP;
        return -1;
    }
    split_url(h);
    switch (p->method) {
    case HTTP_GET: h->req.method = SERVER_GET; break;
    case HTTP_HEAD: h->req.method = SERVER_HEAD; break;
    case HTTP_POST: h->req.method = SERVER_POST; break;
    case HTTP_DELETE: h->req.method = SERVER_DELETE; break;
    default: h->req.method = SERVER_OTHER; break;
    }
    h->keep_alive = http_should_keep_alive(p);
    h->http10 = p->http_major == 1 && p->http_minor == 0;
    size_t max = h->limits->max_body_bytes;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > max) {
        h->reject = RL_E_BODY_TOO_LARGE;
        return -1;
    }
    struct str expect = server_header(&h->req, "expect");
    if (str_case_eq(expect, "100-continue") && h->on_continue) {
        h->on_continue(h->ctx);
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_in *h = p->data;
    if (buf_append(&h->req.body, at, len) != RL_OK) {
        h->reject = RL_E_BODY_TOO_LARGE;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_in *h = p->data;
    h->receiving = false;
    h->complete = true;
    h->req.complete_us = clock_now_us();
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

/* ---------------------------------------------------------------------
 * Entry points
 * ------------------------------------------------------------------- */

void http_in_init(struct http_in *h, const struct server_limits *limits)
{
    memset(h, 0, sizeof(*h));
    h->limits = limits;
    buf_init(&h->head, limits->max_header_bytes);
    buf_init(&h->req.body, limits->max_body_bytes);
    http_parser_init(&h->parser, HTTP_REQUEST);
    h->parser.data = h;
}

void http_in_free(struct http_in *h)
{
    buf_free(&h->head);
    buf_free(&h->req.body);
}

enum rl_err http_in_execute(struct http_in *h, const char *p, size_t n,
                            size_t *used)
{
    if (h->complete) {
        /* The request before was served: go on with the next one. */
        h->complete = false;
        http_parser_pause(&h->parser, 0);
    }
    *used = http_parser_execute(&h->parser, &settings, p, n);
    enum http_errno herr = HTTP_PARSER_ERRNO(&h->parser);
    if (herr == HPE_OK || herr == HPE_PAUSED) {
        return RL_OK;
    }
    h->receiving = false;
    if (h->reject != RL_OK) {
        return h->reject;
    }
    return herr == HPE_HEADER_OVERFLOW ? RL_E_HEADERS_TOO_LARGE
                                       : RL_E_BAD_HTTP;
}
