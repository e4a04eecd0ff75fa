/*
 * upstream.c - one client request answered by the first candidate model
 * that works: the attempt, its deadlines, its stream, its fallback.
 *
 * A call walks its plan. Each attempt asks the model's adapter for the
 * upstream request, runs it on the worker's transport, cuts a streamed answer
 * into events (framing.c) and turns them into OpenAI chunks (the adapter's
 * on_event). While nothing has reached the client, a failure that another
 * model may not have (connection, timeout, 429, 5xx, a cut stream) moves to
 * the next candidate; after that it ends the call with an error, which the
 * core turns into an SSE error event. Read provider_call_start() and
 * finish_attempt() first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "providers/framing.h"
#include "providers/provider.h"
#include "providers/transport.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#define UPSTREAM_MAX_BODY (64u * 1024 * 1024) /* a whole non-stream answer */
#define UPSTREAM_MAX_ERROR_BODY (64u * 1024)  /* an error answer we keep */
#define UPSTREAM_MAX_EVENT (8u * 1024 * 1024) /* one stream event */
#define UPSTREAM_MAX_REQUEST (64u * 1024 * 1024)
#define SWEEP_INTERVAL_MS 50

struct upstream {
    uv_loop_t *loop;            /* the worker's loop */
    struct transport *transport; /* upstream HTTP on that loop */
    uv_timer_t sweep;           /* checks the deadlines of calls */
    struct provider_call *calls; /* active calls, newest first */
    size_t ncalls;
};

struct provider_call {
    struct upstream *up;
    struct provider_call *prev; /* in up->calls */
    struct provider_call *next;
    const struct chat_req *req; /* the caller's, valid until the end */
    const struct model_cfg *const *plan; /* candidates, in order */
    size_t nplan;
    size_t idx;                 /* the candidate being tried */
    struct call_limits limits;
    struct provider_call_cbs cbs;
    void *ctx;                  /* the caller's */
    /* The current attempt. */
    struct xfer *xfer;          /* the attempt's transfer, NULL between */
    struct upstream_req ureq;
    long status;                /* upstream HTTP status, 0 before it */
    uint32_t retry_after_s;     /* upstream Retry-After */
    struct buf body;            /* whole answer or error body */
    struct buf answer;          /* the answer in OpenAI's shape */
    struct framer framer;       /* stream events */
    void *state;                /* the adapter's stream state */
    struct chunk_sink sink;
    enum rl_err abort_err;      /* why we stopped the transfer ourselves */
    uint64_t attempt_start_us;
    uint64_t deadline_us;       /* the attempt fails when passed */
    bool got_byte;              /* the attempt received answer bytes */
    /* The whole call. */
    uint64_t start_us;
    uint64_t upstream_us;       /* summed over finished attempts */
    uint64_t ttft_us;
    int attempts;
    bool started;               /* on_first was called */
    bool in_cb;                 /* inside the caller's callbacks */
    bool cancelled;             /* the caller gave up: no more callbacks */
};

static void start_next(struct provider_call *call);

/* ---------------------------------------------------------------------
 * The list of active calls and their deadlines
 * ------------------------------------------------------------------- */

static void link_call(struct provider_call *call)
{
    struct upstream *up = call->up;
    call->next = up->calls;
    if (up->calls) {
        up->calls->prev = call;
    }
    up->calls = call;
    up->ncalls++;
}

static void unlink_call(struct provider_call *call)
{
    struct upstream *up = call->up;
    if (call->prev) {
        call->prev->next = call->next;
    } else {
        up->calls = call->next;
    }
    if (call->next) {
        call->next->prev = call->prev;
    }
    up->ncalls--;
}

/* Releases what the current attempt holds; the call stays. */
static void end_attempt(struct provider_call *call)
{
    if (call->xfer) {
        transport_cancel(call->xfer);
        call->xfer = NULL;
    }
    buf_free(&call->ureq.url);
    buf_free(&call->ureq.headers);
    buf_free(&call->ureq.body);
    buf_free(&call->body);
    buf_free(&call->answer);
    framer_free(&call->framer);
    free(call->state);
    call->state = NULL;
}

static void free_call(struct provider_call *call)
{
    end_attempt(call);
    unlink_call(call);
    free(call);
}

/* ---------------------------------------------------------------------
 * Curl callbacks: bytes of the current attempt
 * ------------------------------------------------------------------- */

static void emit(struct chunk_sink *sink, struct str chunk,
                 const struct chunk_members *members)
{
    struct provider_call *call = sink->ctx;
    if (call->cancelled) {
        return;
    }
    if (!call->started) {
        call->started = true;
        call->ttft_us = clock_now_us() - call->start_us;
        call->cbs.on_first(call->ctx, call->plan[call->idx], call->attempts);
        if (call->cancelled) {
            return;
        }
    }
    call->cbs.on_chunk(call->ctx, chunk, members);
}

static enum rl_err on_frame(void *ctx, struct str event, struct str data)
{
    struct provider_call *call = ctx;
    const struct provider_ops *ops = call->plan[call->idx]->provider->ops;
    enum rl_err err = ops->on_event(call->state, event, data, &call->sink);
    if (call->cancelled) {
        return RL_E_SHUTTING_DOWN; /* stop feeding; nobody listens */
    }
    return err;
}

static void on_headers(void *ctx, long status, uint32_t retry_after_s)
{
    struct provider_call *call = ctx;
    call->status = status;
    call->retry_after_s = retry_after_s;
    call->got_byte = true;
    call->deadline_us = clock_now_us() + call->limits.idle_ms * 1000;
}

static bool on_data(void *ctx, const char *p, size_t len)
{
    struct provider_call *call = ctx;
    if (call->cancelled) {
        return false;
    }
    call->got_byte = true;
    call->deadline_us = clock_now_us() + call->limits.idle_ms * 1000;
    bool ok_status = call->status >= 200 && call->status < 300;
    if (!ok_status || !call->req->stream) {
        if (buf_append(&call->body, p, len) != RL_OK) {
            provider_error_set(&call->sink.error, 502, "api_error",
                               "upstream_too_large", false,
                               "the provider's answer is over %u bytes",
                               UPSTREAM_MAX_BODY);
            call->abort_err = RL_E_UPSTREAM_PROTOCOL;
            return false;
        }
        return true;
    }
    call->in_cb = true;
    enum rl_err err = framer_feed(&call->framer, p, len, on_frame, call);
    call->in_cb = false;
    if (call->cancelled) {
        return false;
    }
    if (err != RL_OK) {
        if (err == RL_E_UPSTREAM_PROTOCOL && !call->sink.error.status) {
            provider_error_set(&call->sink.error, 502, "api_error",
                               "upstream_protocol_error", true,
                               "the provider sent a malformed stream");
        }
        call->abort_err = err;
        return false;
    }
    return true;
}

static void finish_attempt(struct provider_call *call, enum xfer_result res,
                           const char *detail);

static void on_xfer_done(void *ctx, enum xfer_result res, const char *detail)
{
    struct provider_call *call = ctx;
    call->xfer = NULL; /* the transport frees it */
    finish_attempt(call, res, detail);
}

static const struct xfer_cbs xfer_cbs = {
    .on_headers = on_headers,
    .on_data = on_data,
    .on_done = on_xfer_done,
};

/* ---------------------------------------------------------------------
 * Attempts
 * ------------------------------------------------------------------- */

/* Starts an attempt at plan[idx]. On failure, returns the error with
 * sink.error filled, and no transfer is running. */
static enum rl_err start_attempt(struct provider_call *call)
{
    const struct model_cfg *model = call->plan[call->idx];
    const struct provider_ops *ops = model->provider->ops;
    buf_init(&call->ureq.url, 8192);
    buf_init(&call->ureq.headers, 16384);
    buf_init(&call->ureq.body, UPSTREAM_MAX_REQUEST);
    memset(&call->sink, 0, sizeof(call->sink));
    call->sink.emit = emit;
    call->sink.ctx = call;
    call->status = 0;
    call->retry_after_s = 0;
    call->abort_err = RL_OK;
    call->got_byte = false;
    enum rl_err err = ops->build_request(call->req, model, &call->ureq,
                                         &call->sink.error);
    if (err != RL_OK) {
        return err;
    }
    bool stream = call->req->stream;
    buf_init(&call->body, stream ? UPSTREAM_MAX_ERROR_BODY
                                 : UPSTREAM_MAX_BODY);
    buf_init(&call->answer, stream ? 0 : UPSTREAM_MAX_BODY);
    framer_init(&call->framer, ops->framing, UPSTREAM_MAX_EVENT);
    if (ops->stream_state_size) {
        call->state = rl_calloc(1, ops->stream_state_size);
    }
    call->attempts++;
    call->attempt_start_us = clock_now_us();
    call->deadline_us = call->attempt_start_us +
                        call->limits.first_byte_ms * 1000;
    struct xfer_req xr = {
        .url = call->ureq.url.p,
        .headers = &call->ureq.headers,
        .body = {call->ureq.body.p, call->ureq.body.len},
        .connect_timeout_ms = call->limits.connect_ms,
    };
    call->xfer = transport_start(call->up->transport, &xr, &xfer_cbs, call);
    if (!call->xfer) {
        provider_error_set(&call->sink.error, 502, "api_error",
                           "upstream_unreachable", true,
                           "could not start the upstream request");
        return RL_E_UPSTREAM_CONNECT;
    }
    return RL_OK;
}

/* Decides what a finished transfer means, filling call->sink.error. */
static enum rl_err judge(struct provider_call *call, enum xfer_result res,
                         const char *detail)
{
    const struct model_cfg *model = call->plan[call->idx];
    const struct provider_ops *ops = model->provider->ops;
    struct provider_error *pe = &call->sink.error;
    if (call->abort_err != RL_OK) {
        return call->abort_err;
    }
    if (res == XFER_TIMEOUT) {
        provider_error_set(pe, 504, "api_error", "upstream_timeout", true,
                           "could not connect to provider %s in time",
                           model->provider->name);
        return RL_E_UPSTREAM_TIMEOUT;
    }
    if (res != XFER_OK && !call->got_byte) {
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
    if (call->status < 200 || call->status >= 300) {
        ops->map_error(call->status, (struct str){call->body.p, call->body.len},
                       call->retry_after_s, pe);
        return RL_E_UPSTREAM;
    }
    if (call->req->stream) {
        call->in_cb = true;
        enum rl_err err = framer_finish(&call->framer, on_frame, call);
        call->in_cb = false;
        if (err != RL_OK) {
            return err;
        }
        if (!call->sink.finished) {
            provider_error_set(pe, 502, "api_error", "upstream_stream_cut",
                               true, "provider %s ended the stream before "
                               "the answer was complete",
                               model->provider->name);
            return RL_E_UPSTREAM_CUT;
        }
        return RL_OK;
    }
    return ops->parse_response((struct str){call->body.p ? call->body.p : "",
                                            call->body.len},
                               &call->answer, &call->sink.usage, pe);
}

/* Ends the call: on_done, then free. */
static void finish_call(struct provider_call *call, enum rl_err err)
{
    struct call_result res = {
        .err = err,
        .error = call->sink.error,
        .model = call->plan[call->idx],
        .completion = {call->answer.p ? call->answer.p : "",
                       call->answer.len},
        .usage = call->sink.usage,
        .started = call->started,
        .attempts = call->attempts,
        .upstream_us = call->upstream_us,
        .ttft_us = call->ttft_us,
    };
    unlink_call(call);
    if (!call->cancelled) {
        call->cbs.on_done(call->ctx, &res);
    }
    end_attempt(call); /* after on_done: res.completion points into it */
    free(call);
}

/* An attempt's transfer ended (done, failed, or stopped by us). */
static void finish_attempt(struct provider_call *call, enum xfer_result res,
                           const char *detail)
{
    call->upstream_us += clock_now_us() - call->attempt_start_us;
    enum rl_err err = judge(call, res, detail);
    if (call->cancelled) {
        free_call(call);
        return;
    }
    if (err == RL_OK) {
        finish_call(call, RL_OK);
        return;
    }
    const struct model_cfg *model = call->plan[call->idx];
    log_write(LOG_WARN, "upstream attempt failed",
              "\"model\":\"%s\",\"provider\":\"%s\",\"status\":%ld,"
              "\"error\":\"%s\",\"attempt\":%d",
              model->name, model->provider->name, call->status,
              rl_strerror(err), call->attempts);
    if (call->sink.error.retryable && !call->started &&
        call->idx + 1 < call->nplan) {
        end_attempt(call);
        call->idx++;
        start_next(call);
        return;
    }
    finish_call(call, err);
}

/* Starts plan[idx], moving on past candidates that cannot even start. */
static void start_next(struct provider_call *call)
{
    for (;;) {
        enum rl_err err = start_attempt(call);
        if (err == RL_OK) {
            return;
        }
        bool more = call->sink.error.retryable &&
                    call->idx + 1 < call->nplan;
        if (!more) {
            finish_call(call, err);
            return;
        }
        end_attempt(call);
        call->idx++;
    }
}

/* Fails attempts whose deadline has passed. */
static void on_sweep(uv_timer_t *timer)
{
    struct upstream *up = timer->data;
    uint64_t now = clock_now_us();
    bool again = true;
    while (again) {
        again = false;
        for (struct provider_call *c = up->calls; c; c = c->next) {
            if (!c->xfer || now < c->deadline_us) {
                continue;
            }
            transport_cancel(c->xfer);
            c->xfer = NULL;
            const char *name = c->plan[c->idx]->provider->name;
            if (c->got_byte) {
                provider_error_set(&c->sink.error, 504, "api_error",
                                   "upstream_timeout", true,
                                   "provider %s stopped sending for %llu "
                                   "ms", name,
                                   (unsigned long long)c->limits.idle_ms);
            } else {
                provider_error_set(&c->sink.error, 504, "api_error",
                                   "upstream_timeout", true,
                                   "provider %s did not answer within %llu "
                                   "ms", name,
                                   (unsigned long long)c->limits.first_byte_ms);
            }
            c->abort_err = RL_E_UPSTREAM_TIMEOUT;
            finish_attempt(c, XFER_ABORTED, "timeout");
            again = true; /* the list may have changed under us */
            break;
        }
    }
}

/* ---------------------------------------------------------------------
 * Public
 * ------------------------------------------------------------------- */

struct upstream *upstream_new(struct uv_loop_s *loop)
{
    struct upstream *up = rl_calloc(1, sizeof(*up));
    up->loop = loop;
    up->transport = transport_new(loop);
    uv_timer_init(loop, &up->sweep);
    up->sweep.data = up;
    uv_timer_start(&up->sweep, on_sweep, SWEEP_INTERVAL_MS,
                   SWEEP_INTERVAL_MS);
    uv_unref((uv_handle_t *)&up->sweep);
    return up;
}

static void free_upstream(uv_handle_t *handle)
{
    free(handle->data);
}

void upstream_free(struct upstream *up)
{
    while (up->calls) {
        provider_call_cancel(up->calls);
    }
    transport_free(up->transport);
    uv_timer_stop(&up->sweep);
    uv_close((uv_handle_t *)&up->sweep, free_upstream);
}

size_t upstream_active(const struct upstream *up)
{
    return up->ncalls;
}

enum rl_err provider_call_start(struct upstream *up,
                                const struct chat_req *req,
                                const struct model_cfg *const *plan,
                                size_t nplan,
                                const struct call_limits *limits,
                                const struct provider_call_cbs *cbs,
                                void *ctx, struct provider_call **out,
                                struct provider_error *err_out)
{
    if (nplan == 0) {
        provider_error_set(err_out, 404, "invalid_request_error",
                           "model_not_found", false, "no model to call");
        return RL_E_MODEL_NOT_FOUND;
    }
    struct provider_call *call = rl_calloc(1, sizeof(*call));
    call->up = up;
    call->req = req;
    call->plan = plan;
    call->nplan = nplan;
    call->limits = *limits;
    call->cbs = *cbs;
    call->ctx = ctx;
    call->start_us = clock_now_us();
    link_call(call);
    /* As start_next(), but a call that cannot start at all fails here,
     * synchronously, so that no callback runs before we return. */
    for (;;) {
        enum rl_err err = start_attempt(call);
        if (err == RL_OK) {
            *out = call;
            return RL_OK;
        }
        if (!call->sink.error.retryable || call->idx + 1 >= nplan) {
            *err_out = call->sink.error;
            free_call(call);
            return err;
        }
        end_attempt(call);
        call->idx++;
    }
}

void provider_call_cancel(struct provider_call *call)
{
    call->cancelled = true;
    if (call->in_cb) {
        return; /* on_write sees the flag and stops the transfer */
    }
    free_call(call); /* which stops the transfer */
}
