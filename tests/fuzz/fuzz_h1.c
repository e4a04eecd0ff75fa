/*
 * fuzz_h1.c - what a provider answers on a plain http:// connection, read
 * by the gateway's own HTTP/1.1 client (src/providers/h1.c, struct
 * h1_resp: http_parser, Retry-After, 1xx heads, chunked and until-close
 * bodies) the way on_read drives it: the bytes in reads of a few bytes,
 * then the end of the connection.
 *
 * Contracts checked besides "no crash, no leak, no undefined behaviour":
 * the head is reported at most once, before any body byte, with a final
 * status (200..999) and a Retry-After of at most 86400 s; the body is
 * never longer than the input; a complete answer had its head; once the
 * body handler says stop, nothing more comes and the answer fails; and
 * the outcome does not depend on the split: the input fed whole and fed
 * in reads of 1..64 bytes gives the same status, Retry-After, body (its
 * start, when stopped),
 * completion, failure and whether the connection may be reused.
 */
#include "fuzz.h"
#include "providers/transport.h"

#define FUZZ_BODY_STOP 4096 /* the body handler stops past this */

struct outcome {
    int nheads;
    long status;
    uint32_t retry_after_s;
    struct buf body;
    bool stopped;  /* on_data said stop */
    bool late;     /* a callback came after stop */
    bool done;
    bool failed;   /* a parser error */
    bool keep;
};

static void on_headers(void *ctx, long status, uint32_t retry_after_s)
{
    struct outcome *o = ctx;
    o->late = o->late || o->stopped;
    o->nheads++;
    o->status = status;
    o->retry_after_s = retry_after_s;
}

static bool on_data(void *ctx, const char *p, size_t n)
{
    struct outcome *o = ctx;
    FUZZ_CHECK(o->nheads == 1);
    o->late = o->late || o->stopped;
    buf_append(&o->body, p, n);
    if (o->body.len > FUZZ_BODY_STOP) {
        o->stopped = true;
        return false;
    }
    return true;
}

static void on_done(void *ctx, enum xfer_result res, const char *detail)
{
    (void)ctx;
    (void)res;
    (void)detail;
    FUZZ_CHECK(!"h1_resp never ends a transfer");
}

static const struct xfer_cbs cbs = {on_headers, on_data, on_done};

/* Feeds data in reads of step bytes (0: whole), then the end, stopping
 * at the first error as on_read does. */
static void run(const char *data, size_t size, size_t step,
                struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    buf_init(&o->body, 1 << 20);
    struct h1_resp r;
    h1_resp_init(&r, &cbs, o);
    size_t off = 0;
    enum http_errno err = HPE_OK;
    while (err == HPE_OK && off < size) {
        size_t take = step && step < size - off ? step : size - off;
        err = h1_resp_feed(&r, data + off, take);
        off += take;
    }
    if (err == HPE_OK && !r.done) {
        err = h1_resp_feed(&r, NULL, 0);
    }
    FUZZ_CHECK(r.stop == o->stopped);
    FUZZ_CHECK(!r.stop || err != HPE_OK);
    o->done = r.done;
    o->failed = err != HPE_OK;
    o->keep = h1_resp_keep(&r);
    FUZZ_CHECK(!o->done || !o->failed);
    h1_resp_free(&r);
}

static void outcome_check(const struct outcome *o, size_t size)
{
    FUZZ_CHECK(o->nheads <= 1);
    FUZZ_CHECK(!o->late);
    if (o->nheads) {
        FUZZ_CHECK(o->status >= 200 && o->status <= 999);
        FUZZ_CHECK(o->retry_after_s <= 86400);
    }
    FUZZ_CHECK(o->body.len <= size);
    FUZZ_CHECK(!o->done || o->nheads == 1);
    FUZZ_CHECK(!o->keep || o->done);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in;
    size_t step = fuzz_split(data, &size, &in);
    if (!step) {
        return 0;
    }
    struct outcome whole, split;
    run(in, size, 0, &whole);
    run(in, size, step, &split);
    outcome_check(&whole, size);
    outcome_check(&split, size);
    /* A stopped body ends where its read ended: its start must agree. */
    size_t blen = whole.body.len < split.body.len ? whole.body.len
                                                  : split.body.len;
    bool same = whole.nheads == split.nheads &&
                whole.status == split.status &&
                whole.retry_after_s == split.retry_after_s &&
                whole.stopped == split.stopped &&
                (whole.stopped || whole.body.len == split.body.len) &&
                (blen == 0 || memcmp(whole.body.p, split.body.p, blen) == 0) &&
                whole.done == split.done && whole.failed == split.failed &&
                whole.keep == split.keep;
    if (!same) {
        fuzz_show("response", in, size);
        fprintf(stderr, "whole: heads %d status %ld retry %u body %zu done %d "
                "failed %d keep %d\nsplit: heads %d status %ld retry %u body "
                "%zu done %d failed %d keep %d (reads of %zu)\n",
                whole.nheads, whole.status, whole.retry_after_s,
                whole.body.len, whole.done, whole.failed, whole.keep,
                split.nheads, split.status, split.retry_after_s,
                split.body.len, split.done, split.failed, split.keep, step);
    }
    FUZZ_CHECK(same);
    buf_free(&whole.body);
    buf_free(&split.body);
    free(in);
    return 0;
}
