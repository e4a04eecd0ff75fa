/*
 * fuzz_http.c - the bytes a client sends on one connection, read by the
 * real request reader (src/server/http.c: http_parser plus Relay's limits)
 * the way conn.c drives it: bytes arrive in reads of a few bytes, kept in
 * one capped input buffer, requests taken one at a time (pipelining), and
 * each whole request looked at as the gateway does (headers by name, the
 * bearer key through auth_check).
 *
 * Contracts checked besides "no crash, no leak, no undefined behaviour":
 * the path, query, header names and values of a request all lie inside
 * its head buffer, and no header name holds a space or a tab; only
 * HTTP/1.0 and 1.1 pass; a body is never over max_body_bytes; an error is
 * one of the three a connection answers (400, 413, 431) and ends the
 * parsing.
 */
#include "auth/auth.h"
#include "fuzz.h"
#include "server/internal.h"
#include "util/arena.h"
#include "util/buf.h"

#define FUZZ_READ_CAP 65536

static const struct server_limits limits = {
    .max_body_bytes = 2048,
    .max_header_bytes = 1024,
    .read_timeout_ms = 1000,
    .idle_timeout_ms = 1000,
};

static bool inside(struct str s, const struct buf *head)
{
    if (s.len == 0) {
        return true;
    }
    return s.p >= head->p && s.p + s.len <= head->p + head->len;
}

static int continues;

static void on_continue(void *ctx)
{
    (void)ctx;
    continues++;
}

/* What the gateway reads of a request before the pipeline. */
static void look_at(const struct http_in *h)
{
    const struct http_request *r = &h->req;
    FUZZ_CHECK(inside(r->path, &h->head));
    FUZZ_CHECK(inside(r->query, &h->head));
    FUZZ_CHECK(r->nheaders <= SERVER_MAX_HEADERS);
    for (size_t i = 0; i < r->nheaders; i++) {
        struct str n = r->headers[i].name;
        FUZZ_CHECK(inside(n, &h->head));
        FUZZ_CHECK(inside(r->headers[i].value, &h->head));
        /* RFC 9112 5.1: no space between a name and its colon. */
        FUZZ_CHECK(n.len > 0 && !memchr(n.p, ' ', n.len) &&
                   !memchr(n.p, '\t', n.len));
    }
    FUZZ_CHECK(h->parser.http_major == 1 && h->parser.http_minor <= 1);
    FUZZ_CHECK(r->body.len <= limits.max_body_bytes);
    static struct config cfg; /* no static keys, no key cache */
    struct arena a;
    arena_init(&a, 4096);
    struct auth_result who;
    enum rl_err err = auth_check(&cfg, server_header(r, "authorization"), &a,
                                 &who);
    FUZZ_CHECK(err == RL_E_UNAUTHORIZED);
    char msg[512];
    auth_refusal_message(who.refusal, msg, sizeof(msg));
    server_header(r, "content-type");
    server_header(r, "x-request-id");
    arena_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    /* The first byte says how many bytes each read brings (1..64). */
    size_t step = 1 + data[0] % 64;
    data++;
    size--;
    struct http_in h;
    http_in_init(&h, &limits);
    h.on_continue = on_continue;
    struct buf in;
    buf_init(&in, limits.max_body_bytes + 2 * limits.max_header_bytes +
                      FUZZ_READ_CAP);
    size_t off = 0;
    bool failed = false;
    while (!failed && off < size) {
        size_t take = step < size - off ? step : size - off;
        if (buf_append(&in, data + off, take) != RL_OK) {
            break; /* conn.c stops reading until a response is done */
        }
        off += take;
        while (in.len > 0) {
            size_t used = 0;
            enum rl_err err = http_in_execute(&h, in.p, in.len, &used);
            if (err != RL_OK) {
                FUZZ_CHECK(err == RL_E_BAD_HTTP ||
                           err == RL_E_HEADERS_TOO_LARGE ||
                           err == RL_E_BODY_TOO_LARGE);
                FUZZ_CHECK(!h.receiving);
                failed = true;
                break;
            }
            FUZZ_CHECK(used <= in.len);
            buf_consume(&in, used);
            if (h.complete) {
                look_at(&h);
                continue;
            }
            if (used == 0) {
                break;
            }
        }
    }
    buf_free(&in);
    http_in_free(&h);
    return 0;
}
