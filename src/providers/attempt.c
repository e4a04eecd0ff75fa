/*
 * attempt.c - one upstream request of a call: build it with the model's
 * adapter, run it on the worker's transport, cut a streamed answer into
 * events (framing.c), turn them into OpenAI chunks (the adapter's on_event),
 * and judge how it ended.
 *
 * It decides nothing about the call: every chunk goes to
 * upstream_attempt_chunk() and the verdict to upstream_attempt_end(), where
 * upstream.c chooses between committing, hedging, falling back, retrying and
 * rescuing. Read attempt_start() and judge() first.
 */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "providers/call.h"
#include "providers/retry.h"
#include "providers/transport.h"
#include "util/alloc.h"
#include "util/clock.h"

#define ATTEMPT_MAX_BODY (64u * 1024 * 1024) /* a whole non-stream answer */
#define ATTEMPT_MAX_ERROR_BODY (64u * 1024)  /* an error answer we keep */
#define ATTEMPT_MAX_EVENT (8u * 1024 * 1024) /* one stream event */
#define ATTEMPT_MAX_REQUEST (64u * 1024 * 1024)

/* ---------------------------------------------------------------------
 * Transfer callbacks: bytes of one attempt
 * ------------------------------------------------------------------- */

static void emit(struct chunk_sink *sink, struct str chunk,
                 const struct chunk_members *members)
{
    struct attempt *a = sink->ctx;
    if (a->call->cancelled || a->doomed || a->abort_err != RL_OK) {
        return;
    }
    upstream_attempt_chunk(a, chunk, members);
}

static enum rl_err on_frame(void *ctx, struct str event, struct str data)
{
    struct attempt *a = ctx;
    const struct provider_ops *ops = a->model->provider->ops;
    enum rl_err err = ops->on_event(a->state, event, data, &a->sink);
    if (a->call->cancelled || a->doomed) {
        return RL_E_SHUTTING_DOWN; /* stop feeding; nobody listens */
    }
    return a->abort_err != RL_OK ? a->abort_err : err;
}

static void on_headers(void *ctx, long status, uint32_t retry_after_s)
{
    struct attempt *a = ctx;
    a->status = status;
    a->retry_after_s = retry_after_s;
    uint64_t now = clock_now_us();
    if (!a->byte_us) {
        a->byte_us = now;
    }
    a->last_byte_us = now;
    bool ok = status >= 200 && status < 300;
    if (!ok || !a->call->req->stream) {
        /* An error body, or a whole answer: nothing is streamed, so the
         * first byte stands for the first token. */
        a->token_us = a->token_us ? a->token_us : now;
    }
}

static bool feed_stream(struct attempt *a, const char *p, size_t len)
{
    struct provider_call *call = a->call;
    call->in_cb = true;
    enum rl_err err = framer_feed(&a->framer, p, len, on_frame, a);
    call->in_cb = false;
    if (call->cancelled || a->doomed) {
        return false;
    }
    if (err != RL_OK) {
        if (err == RL_E_UPSTREAM_PROTOCOL && !a->sink.error.status) {
            provider_error_set(&a->sink.error, 502, "api_error",
                               "upstream_protocol_error", true,
                               "the provider sent a malformed stream");
        }
        a->abort_err = err;
        return false;
    }
    return true;
}

static bool on_data(void *ctx, const char *p, size_t len)
{
    struct attempt *a = ctx;
    if (a->call->cancelled || a->doomed) {
        return false;
    }
    uint64_t now = clock_now_us();
    a->byte_us = a->byte_us ? a->byte_us : now;
    a->last_byte_us = now;
    bool ok_status = a->status >= 200 && a->status < 300;
    if (ok_status && a->call->req->stream) {
        return feed_stream(a, p, len);
    }
    if (buf_append(&a->body, p, len) != RL_OK) {
        provider_error_set(&a->sink.error, 502, "api_error",
                           "upstream_too_large", false,
                           "the provider's answer is over %u bytes",
                           ATTEMPT_MAX_BODY);
        a->abort_err = RL_E_UPSTREAM_PROTOCOL;
        return false;
    }
    return true;
}

/* Decides what a finished transfer means, filling a->sink.error. */
static enum rl_err judge(struct attempt *a, enum xfer_result res,
                         const char *detail)
{
    const struct model_cfg *model = a->model;
    const struct provider_ops *ops = model->provider->ops;
    struct provider_error *pe = &a->sink.error;
    if (a->abort_err != RL_OK) {
        return a->abort_err;
    }
    if (res == XFER_TIMEOUT) {
        provider_error_set(pe, 504, "api_error", "upstream_timeout", true,
                           "could not connect to provider %s in time",
                           model->provider->name);
        return RL_E_UPSTREAM_TIMEOUT;
    }
    if (res != XFER_OK && !a->byte_us) {
        provider_error_set(pe, 502, "api_error", "upstream_unreachable", true,
                           "could not reach provider %s: %s",
                           model->provider->name, detail ? detail : "?");
        return RL_E_UPSTREAM_CONNECT;
    }
    if (res != XFER_OK) {
        provider_error_set(pe, 502, "api_error", "upstream_stream_cut", true,
                           "the connection to provider %s broke before the "
                           "answer was complete", model->provider->name);
        return RL_E_UPSTREAM_CUT;
    }
    if (a->status < 200 || a->status >= 300) {
        ops->map_error(a->status, (struct str){a->body.p, a->body.len},
                       a->retry_after_s, pe);
        return RL_E_UPSTREAM;
    }
    if (a->call->req->stream) {
        a->call->in_cb = true;
        enum rl_err err = framer_finish(&a->framer, on_frame, a);
        a->call->in_cb = false;
        if (err != RL_OK) {
            return err;
        }
        if (!a->sink.finished) {
            provider_error_set(pe, 502, "api_error", "upstream_stream_cut",
                               true, "provider %s ended the stream before "
                               "the answer was complete",
                               model->provider->name);
            return RL_E_UPSTREAM_CUT;
        }
        return RL_OK;
    }
    return ops->parse_response((struct str){a->body.p ? a->body.p : "",
                                            a->body.len},
                               &a->answer, &a->answer_members,
                               &a->sink.usage, pe);
}

static void on_xfer_done(void *ctx, enum xfer_result res, const char *detail)
{
    struct attempt *a = ctx;
    a->xfer = NULL; /* the transport frees it */
    enum rl_err err = judge(a, res, detail);
    upstream_attempt_end(a, err);
}

static const struct xfer_cbs xfer_cbs = {
    .on_headers = on_headers,
    .on_data = on_data,
    .on_done = on_xfer_done,
};

/* ---------------------------------------------------------------------
 * Internal to src/providers/ (call.h)
 * ------------------------------------------------------------------- */

struct attempt *attempt_start(struct provider_call *call, size_t idx,
                              uint64_t token_ms, bool prefill,
                              enum rl_err *err)
{
    struct attempt *a = rl_calloc(1, sizeof(*a));
    a->call = call;
    a->idx = idx;
    a->prefill = prefill;
    a->model = call->plan[idx];
    a->round = call->round;
    a->token_ms = token_ms;
    const struct provider_ops *ops = a->model->provider->ops;
    bool stream = call->req->stream;
    buf_init(&a->ureq.url, 8192);
    buf_init(&a->ureq.headers, 16384);
    buf_init(&a->ureq.body, ATTEMPT_MAX_REQUEST);
    buf_init(&a->body, stream ? ATTEMPT_MAX_ERROR_BODY : ATTEMPT_MAX_BODY);
    buf_init(&a->answer, stream ? 0 : ATTEMPT_MAX_BODY);
    buf_init(&a->held, 64 * 1024);
    framer_init(&a->framer, ops->framing, ATTEMPT_MAX_EVENT);
    if (ops->stream_state_size) {
        a->state = rl_calloc(1, ops->stream_state_size);
    }
    a->sink.emit = emit;
    a->sink.ctx = a;
    *err = ops->build_request(prefill ? &call->cont : call->req, a->model,
                              &a->ureq, &a->sink.error);
    if (*err != RL_OK) {
        return a;
    }
    a->start_us = clock_now_us();
    struct xfer_req xr = {
        .url = a->ureq.url.p,
        .headers = &a->ureq.headers,
        .body = {a->ureq.body.p, a->ureq.body.len},
        .connect_timeout_ms = call->limits.connect_ms,
    };
    a->xfer = transport_start(call->up->transport, &xr, &xfer_cbs, a);
    if (!a->xfer) {
        provider_error_set(&a->sink.error, 502, "api_error",
                           "upstream_unreachable", true,
                           "could not start the upstream request");
        *err = RL_E_UPSTREAM_CONNECT;
        return a;
    }
    a->sent = true;
    call->attempts++;
    return a;
}

void attempt_free(struct attempt *a)
{
    if (a->xfer) {
        transport_cancel(a->xfer);
        a->xfer = NULL;
    }
    buf_free(&a->ureq.url);
    buf_free(&a->ureq.headers);
    buf_free(&a->ureq.body);
    buf_free(&a->body);
    buf_free(&a->answer);
    buf_free(&a->held);
    framer_free(&a->framer);
    free(a->state);
    free(a);
}

void attempt_abort(struct attempt *a, enum rl_err err)
{
    if (a->xfer) {
        transport_cancel(a->xfer);
        a->xfer = NULL;
    }
    a->abort_err = err;
    upstream_attempt_end(a, err);
}

void attempt_pause(struct attempt *a, bool pause)
{
    if (a->paused == pause) {
        return;
    }
    a->paused = pause;
    uint64_t now = clock_now_us();
    if (pause) {
        a->paused_at_us = now;
    } else {
        /* The deadlines go on from where the pause stopped them. */
        uint64_t paused_us = now - a->paused_at_us;
        struct provider_call *call = a->call;
        a->paused_us += paused_us;
        a->last_byte_us = now;
        a->token_ms += paused_us / 1000;
        if (call->deadline_us != UINT64_MAX) {
            call->deadline_us += paused_us;
        }
    }
    if (a->xfer) {
        transport_pause(a->xfer, pause);
    }
}

void attempt_report_fill(const struct attempt *a, enum rl_err err,
                         struct attempt_report *r)
{
    uint64_t now = clock_now_us();
    memset(r, 0, sizeof(*r));
    r->err = err;
    r->outcome = a->doomed ? ATTEMPT_CANCELLED
                           : retry_outcome(err, &a->sink.error, a->status);
    r->status = (int)a->status;
    r->retry_after_s = a->retry_after_s;
    r->ttfb_us = a->byte_us ? a->byte_us - a->start_us : 0;
    r->ttft_us = a->token_us ? a->token_us - a->start_us : 0;
    /* What the provider took: the time paused for the client is not its
     * (the router learns decode rates from this). */
    uint64_t paused = a->paused_us + (a->paused ? now - a->paused_at_us : 0);
    r->total_us = a->start_us ? now - a->start_us - paused : 0;
    r->usage = a->sink.usage;
    r->completion_events = a->events;
    r->index = (int)a->idx;
    r->round = a->round;
    r->streamed = a->call->req->stream;
    r->hedge = a->hedge;
    r->rescue = a->rescue;
    r->won = a->call->winner == a;
    r->billable_prompt = a->sent;
    r->wait = a->wait;
    r->first_reported = a->first_reported;
}
