/*
 * upstream.c - one client request answered by the first candidate model
 * that works: the plan walk, hedges, retries, stream rescue, deadlines.
 *
 * A call walks its plan, one attempt (attempt.c) at a time, or two when the
 * current candidate is slow to its first token and a hedge starts the next
 * one too: the first to produce a content event commits and the other is
 * cancelled. While nothing has reached the client, a failure another try
 * may fix (connection, deadline, 429, 5xx, a cut) moves to the next
 * candidate; when the plan is exhausted it is walked again, up to
 * limits.retries times, after a jittered backoff on the loop's timer. After
 * output started, a cut deterministic stream is rescued (its new answer
 * must begin with the text already sent); anything else ends the call with
 * an error, which the core turns into an SSE error event. Every attempt is
 * reported once through on_attempt. While the client is behind, only the
 * attempt whose output it gets is paused (provider_call_pause), and its
 * deadlines stand still. Read provider_call_start(),
 * upstream_attempt_end() and advance() first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "providers/call.h"
#include "providers/retry.h"
#include "providers/transport.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#define SWEEP_INTERVAL_MS 50
#define NO_CANDIDATE ((size_t)-1)

static void advance(struct provider_call *call);
static void sweep(struct upstream *up);

/* ---------------------------------------------------------------------
 * The list of active calls, the wake-up timer
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
    call->prev = call->next = NULL;
    up->ncalls--;
}

static void on_kick(uv_timer_t *timer)
{
    struct upstream *up = timer->data;
    up->kick_at_us = 0;
    sweep(up);
}

/* Makes the sweep run at at_us (or the next loop iteration), sooner than
 * its interval: hedges, retries and cancelled losers. */
static void wake_at(struct upstream *up, uint64_t at_us)
{
    if (up->kick_at_us && up->kick_at_us <= at_us) {
        return;
    }
    uint64_t now = clock_now_us();
    uint64_t ms = at_us > now ? (at_us - now + 999) / 1000 : 0;
    up->kick_at_us = at_us ? at_us : 1;
    uv_timer_start(&up->kick, on_kick, ms, 0);
}

static uint64_t next_rnd(struct upstream *up)
{
    uint64_t x = up->rnd;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    up->rnd = x;
    return x;
}

/* ---------------------------------------------------------------------
 * Attempts of a call: report, retire, cancel
 * ------------------------------------------------------------------- */

static void drop_live(struct provider_call *call, struct attempt *a)
{
    for (size_t i = 0; i < call->nlive; i++) {
        if (call->live[i] == a) {
            call->live[i] = call->live[--call->nlive];
            return;
        }
    }
}

/* Tells the caller how a ended (once per attempt that was sent). */
static void report(struct provider_call *call, struct attempt *a,
                   enum rl_err err, bool cancelled)
{
    if (!a->sent) {
        return;
    }
    struct attempt_report r;
    attempt_report_fill(a, err, &r);
    if (cancelled) {
        r.outcome = ATTEMPT_CANCELLED;
    }
    if (call->nbriefs < PROVIDER_MAX_BRIEFS) {
        call->briefs[call->nbriefs++] = (struct attempt_brief){
            .model = a->model,
            .outcome = r.outcome,
            .status = r.status,
            .ms = (uint32_t)(r.total_us / 1000),
            .hedge = a->hedge,
        };
    }
    if (call->cbs.on_attempt) {
        call->cbs.on_attempt(call->ctx, a->model, &r);
    }
}

/* Reports a, takes it out of the call and frees it. */
static void retire(struct provider_call *call, struct attempt *a,
                   enum rl_err err, bool cancelled)
{
    report(call, a, err, cancelled);
    drop_live(call, a);
    if (call->winner == a) {
        call->winner = NULL;
    }
    attempt_free(a);
}

/* Retires every live attempt but keep, as cancelled. */
static void cancel_others(struct provider_call *call, struct attempt *keep)
{
    for (size_t i = call->nlive; i-- > 0;) {
        if (call->live[i] != keep) {
            retire(call, call->live[i], RL_OK, true);
        }
    }
}

/* Frees the call and what it holds, calling nothing. */
static void free_call(struct provider_call *call)
{
    while (call->nlive) {
        struct attempt *a = call->live[--call->nlive];
        attempt_free(a);
    }
    if (call->prev || call->next || call->up->calls == call) {
        unlink_call(call);
    }
    buf_free(&call->sent);
    buf_free(&call->cont_raw);
    free(call->skip);
    free(call);
}

/* Ends the call: reports, on_done, then free. */
static void finish_call(struct provider_call *call, enum rl_err err)
{
    struct attempt *w = call->winner;
    if (err == RL_OK && !w) {
        err = RL_E_INTERNAL; /* an answer needs its attempt */
    }
    cancel_others(call, w);
    if (w) {
        report(call, w, err, false);
        drop_live(call, w);
    }
    bool own = w && err == RL_OK;
    struct call_result res = {
        .err = err,
        .error = own ? w->sink.error : call->last_error,
        .model = w ? w->model : call->last_model,
        .completion = {own && w->answer.p ? w->answer.p : "",
                       own ? w->answer.len : 0},
        .members = {own ? w->answer_members.items : NULL,
                    own ? w->answer_members.n : 0},
        .usage = own ? w->sink.usage : (struct usage){0},
        .started = call->started,
        .attempts = call->attempts,
        .upstream_us = clock_now_us() - call->start_us,
        .ttft_us = call->ttft_us,
        .nbriefs = call->nbriefs,
        .rescued = call->rescued,
    };
    if (w && err != RL_OK) {
        res.error = w->sink.error;
    }
    memcpy(res.briefs, call->briefs, sizeof(res.briefs));
    unlink_call(call);
    if (!res.model) {
        res.model = call->plan[0];
    }
    if (!call->cancelled) {
        call->cbs.on_done(call->ctx, &res);
    }
    if (w) {
        attempt_free(w); /* after on_done: res.completion points into it */
    }
    call->winner = NULL;
    free_call(call);
}

/* ---------------------------------------------------------------------
 * Choosing the next candidate
 * ------------------------------------------------------------------- */

/* True if plan[idx] may still be asked in this call. */
static bool eligible(const struct provider_call *call, size_t idx)
{
    if (call->skip[idx]) {
        return false;
    }
    return call->ctx_floor == 0 ||
           call->plan[idx]->context_tokens > call->ctx_floor;
}

static size_t next_candidate(struct provider_call *call)
{
    while (call->next_idx < call->nplan) {
        size_t idx = call->next_idx++;
        if (eligible(call, idx)) {
            return idx;
        }
    }
    return NO_CANDIDATE;
}

/* The first-token deadline of plan[idx]'s attempt. */
static uint64_t token_ms_of(const struct provider_call *call, size_t idx)
{
    const struct call_limits *l = &call->limits;
    if (idx == 0 && l->primary_first_token_ms) {
        return l->primary_first_token_ms;
    }
    return l->first_byte_ms;
}

/* Notes a failure for the choice of what comes next. */
static void note_failure(struct provider_call *call, struct attempt *a,
                         enum rl_err err)
{
    enum attempt_outcome o = retry_outcome(err, &a->sink.error, a->status);
    call->last_error = a->sink.error;
    call->last_err = err;
    call->last_model = a->model;
    if (o == ATTEMPT_CONTEXT_LENGTH) {
        /* Only a larger window can help; never this model again. */
        int64_t w = a->model->context_tokens;
        call->ctx_floor = w > call->ctx_floor ? w : call->ctx_floor;
        call->skip[a->idx] = true;
        return;
    }
    if (!a->sink.error.retryable) {
        call->fatal = true;
        return;
    }
    if (o == ATTEMPT_RATE_LIMITED && a->retry_after_s) {
        uint64_t wait_ms = (uint64_t)a->retry_after_s * 1000;
        uint64_t now = clock_now_us();
        bool fits = wait_ms <= call->limits.retry_max_wait_ms &&
                    now + wait_ms * 1000 < call->deadline_us;
        if (!fits) {
            call->skip[a->idx] = true; /* the client gets its Retry-After */
        } else if (a->retry_after_s > call->wait_s) {
            call->wait_s = a->retry_after_s;
        }
    }
}

/* Tells the caller that a was sent (its wait begins). */
static void started(struct provider_call *call, struct attempt *a)
{
    if (call->cbs.on_attempt_start) {
        a->wait = call->cbs.on_attempt_start(call->ctx, a->model,
                                             (int)a->idx);
    }
}

/* Starts one attempt at plan[idx]; false (the failure noted) if it could
 * not even be sent. */
static bool launch(struct provider_call *call, size_t idx, bool hedge)
{
    enum rl_err err;
    struct attempt *a = attempt_start(call, idx, token_ms_of(call, idx),
                                      false, &err);
    if (err != RL_OK) {
        note_failure(call, a, err);
        attempt_free(a);
        return false;
    }
    a->hedge = hedge;
    started(call, a);
    call->live[call->nlive++] = a;
    if (!hedge && call->limits.hedge_ms) {
        call->hedge_at_us = a->start_us + call->limits.hedge_ms * 1000;
        wake_at(call->up, call->hedge_at_us);
    }
    return true;
}

/* Starts the next candidate of this round that can be sent. */
static bool launch_next(struct provider_call *call)
{
    while (!call->fatal) {
        size_t idx = next_candidate(call);
        if (idx == NO_CANDIDATE) {
            return false;
        }
        if (launch(call, idx, false)) {
            return true;
        }
    }
    return false;
}

/* The plan is exhausted: arms the next round, if one may help. */
static bool schedule_retry(struct provider_call *call)
{
    if (call->fatal || call->round >= call->limits.retries) {
        return false;
    }
    bool any = false;
    for (size_t i = 0; i < call->nplan; i++) {
        any = any || eligible(call, i);
    }
    if (!any) {
        return false;
    }
    call->round++;
    uint64_t ms = retry_backoff_ms(call->round, call->limits.backoff_ms,
                                   call->limits.backoff_max_ms,
                                   next_rnd(call->up));
    if ((uint64_t)call->wait_s * 1000 > ms) {
        ms = (uint64_t)call->wait_s * 1000; /* the upstream's Retry-After */
    }
    uint64_t at = clock_now_us() + ms * 1000;
    if (at >= call->deadline_us) {
        return false;
    }
    call->wait_s = 0;
    call->next_idx = 0;
    call->hedge_at_us = 0;
    call->wake_us = at;
    wake_at(call->up, at);
    return true;
}

/* Nothing is running: the next candidate, else a retry, else the end. */
static void advance(struct provider_call *call)
{
    if (launch_next(call) || schedule_retry(call)) {
        return;
    }
    finish_call(call, call->last_err ? call->last_err : RL_E_UPSTREAM);
}

/* ---------------------------------------------------------------------
 * Stream output: commit, hold, deliver, rescue
 * ------------------------------------------------------------------- */

/* Hands a chunk to the client, keeping its text for a rescue. */
static void deliver(struct provider_call *call, struct str chunk,
                    const struct chunk_members *members)
{
    if (call->rescuable) {
        struct chunk_look look;
        if (!retry_chunk_look(chunk, members, &call->sent, &look) ||
            look.other) {
            call->rescuable = false; /* over the cap, or not plain text */
        }
    }
    call->cbs.on_chunk(call->ctx, chunk, members);
}

/* a produced the first content event: its answer is the client's. */
static void commit(struct provider_call *call, struct attempt *a)
{
    call->winner = a;
    if (call->paused) {
        attempt_pause(a, true);
    }
    call->answer_idx = a->idx;
    call->started = true;
    call->ttft_us = clock_now_us() - call->start_us;
    for (size_t i = 0; i < call->nlive; i++) {
        if (call->live[i] != a) {
            /* We may be inside a's transfer callback, where another
             * transfer may not be stopped: the sweep does it. */
            call->live[i]->doomed = true;
            wake_at(call->up, 0);
        }
    }
    call->cbs.on_first(call->ctx, a->model, call->attempts);
    const char *p = a->held.p;
    const char *end = p ? p + a->held.len : p;
    while (p < end && !call->cancelled) {
        size_t len = strlen(p);
        deliver(call, (struct str){p, len}, NULL);
        p += len + 1;
    }
    buf_free(&a->held);
}

/* The rescue's new answer differs from what the client has. */
static void diverge(struct provider_call *call, struct attempt *a)
{
    call->rescuable = false;
    provider_error_set(&a->sink.error, 502, "api_error",
                       "upstream_stream_cut", false,
                       "the stream from provider %s broke off, and a new "
                       "answer did not go on from the text already sent",
                       a->model->provider->name);
    a->abort_err = RL_E_UPSTREAM_CUT;
}

/* Sends the part of chunk after its text's first rest bytes. */
static void deliver_rest(struct provider_call *call, struct str chunk,
                         struct str text, size_t rest)
{
    json_error_t jerr;
    json_t *root = json_loadb(chunk.p, chunk.len, 0, &jerr);
    json_t *delta = json_object_get(
        json_array_get(json_object_get(root, "choices"), 0), "delta");
    if (delta) {
        json_object_del(delta, "role");
        json_object_set_new(delta, "content",
                            json_stringn(text.p + rest, text.len - rest));
        char *s = json_dumps(root, JSON_COMPACT);
        if (s) {
            deliver(call, (struct str){s, strlen(s)}, NULL);
            free(s);
        }
    }
    json_decref(root);
}

/* A chunk of a rescue: skipped while it repeats what was sent. */
static void rescue_chunk(struct provider_call *call, struct attempt *a,
                         struct str chunk,
                         const struct chunk_members *members)
{
    struct buf text;
    buf_init(&text, call->limits.rescue_max_bytes + 65536);
    struct chunk_look look;
    if (!retry_chunk_look(chunk, members, &text, &look) || look.other) {
        diverge(call, a);
    } else if (look.text || look.finish) {
        struct str sent = {call->sent.p ? call->sent.p : "", call->sent.len};
        struct str t = {text.p ? text.p : "", text.len};
        size_t rest = 0;
        enum retry_match m = retry_prefix_match(sent, &a->matched, t, &rest);
        if (m == RETRY_MATCH_DIVERGED ||
            (m == RETRY_MATCH_MORE && look.finish)) {
            diverge(call, a);
        } else if (m == RETRY_MATCH_DONE) {
            a->caught_up = true;
            if (rest < t.len) {
                deliver_rest(call, chunk, t, rest);
            } else if (look.finish) {
                deliver_rest(call, chunk, t, t.len);
            }
        }
    }
    buf_free(&text);
}

/* A chunk of a prefill continuation: the role chunk is not sent again
 * (the client has one), the whitespace the prefill left out is dropped
 * from the start of the new text once, and the rest goes on as the
 * client's stream. */
static void prefill_chunk(struct provider_call *call, struct attempt *a,
                          struct str chunk,
                          const struct chunk_members *members)
{
    struct buf text;
    buf_init(&text, call->limits.rescue_max_bytes + 65536);
    struct chunk_look look;
    if (!retry_chunk_look(chunk, members, &text, &look) || look.other) {
        a->caught_up = true; /* not plain text: new output as it is */
        deliver(call, chunk, members);
    } else if (look.text) {
        struct str t = {text.p, text.len};
        struct str ws = {call->sent.p + call->trim_at, call->trimmed};
        size_t drop = retry_skip_space(ws, &a->matched, t, &a->caught_up);
        if (drop < t.len || look.finish) {
            deliver_rest(call, chunk, t, drop);
        }
    } else if (look.finish) {
        a->caught_up = true;
        deliver(call, chunk, members);
    }
    buf_free(&text);
}

/* Makes call->cont, the request with the text the client has as a final
 * assistant message, without its trailing whitespace (call->trimmed).
 * False when there is nothing to continue or it does not fit. */
static bool prefill_ready(struct provider_call *call)
{
    if (call->cont.raw.len) {
        return true;
    }
    struct str sent = {call->sent.p ? call->sent.p : "", call->sent.len};
    call->trimmed = retry_trailing_space(sent);
    sent.len -= call->trimmed;
    call->trim_at = sent.len;
    if (sent.len == 0 ||
        !retry_prefill_request(call->req->raw, sent, &call->cont_raw)) {
        return false;
    }
    call->cont = *call->req;
    call->cont.raw = (struct str){call->cont_raw.p, call->cont_raw.len};
    return true;
}

/* Tells the caller that a's stream sent its first content event. */
static void first_token(struct provider_call *call, struct attempt *a)
{
    if (call->cbs.on_attempt_first && call->req->stream) {
        a->first_reported = true;
        call->cbs.on_attempt_first(call->ctx, a->model, a->wait,
                                   a->token_us - a->start_us);
    }
}

void upstream_attempt_chunk(struct attempt *a, struct str chunk,
                            const struct chunk_members *members)
{
    struct provider_call *call = a->call;
    if (call->winner == a && (!a->rescue || a->caught_up)) {
        a->events++;
        deliver(call, chunk, members);
        return;
    }
    struct chunk_look look;
    bool ok = retry_chunk_look(chunk, members, NULL, &look);
    bool content = !ok || look.text || look.other || look.finish;
    if (content) {
        a->events++;
        if (!a->token_us) {
            a->token_us = clock_now_us();
            first_token(call, a);
        }
    }
    if (a->rescue) {
        if (a->prefill) {
            prefill_chunk(call, a, chunk, members);
        } else {
            rescue_chunk(call, a, chunk, members);
        }
        return;
    }
    if (!content) {
        /* A role chunk: held until this attempt is known to answer. */
        if (buf_append(&a->held, chunk.p, chunk.len) == RL_OK &&
            buf_append(&a->held, "", 1) == RL_OK) {
            return;
        }
    }
    commit(call, a);
    if (!call->cancelled) {
        deliver(call, chunk, members);
    }
}

/* The client's stream broke off: asks the next candidate (the same model
 * first) to go on with it. A provider that continues a final assistant
 * message is sent the text already streamed as one (prefill); any other
 * only for a deterministic request, asked the same question again (its
 * new answer must begin with the text sent, rescue_chunk()). False if no
 * candidate can. */
static bool rescue(struct provider_call *call)
{
    uint64_t now = clock_now_us();
    if (!call->rescuable || !call->last_error.retryable ||
        now >= call->deadline_us) {
        return false;
    }
    call->cont.raw.len = 0; /* made again: the text sent may have grown */
    while (call->nrescues < call->nplan) {
        size_t k = call->nrescues++;
        size_t idx = call->answer_idx;
        if (k > 0) {
            idx = k - 1 < call->answer_idx ? k - 1 : k; /* the others */
        }
        bool prefill = call->plan[idx]->provider->ops->prefill;
        if ((prefill && !prefill_ready(call)) ||
            (!prefill && !call->deterministic)) {
            continue;
        }
        enum rl_err err;
        struct attempt *a = attempt_start(call, idx,
                                          call->limits.first_byte_ms,
                                          prefill, &err);
        if (err != RL_OK) {
            attempt_free(a);
            continue;
        }
        a->rescue = true;
        started(call, a);
        call->live[call->nlive++] = a;
        call->winner = a;
        if (call->paused) {
            attempt_pause(a, true); /* the client is still behind */
        }
        call->rescued = true;
        log_write(LOG_INFO, "rescuing a cut stream",
                  "\"model\":\"%s\",\"sent_bytes\":%zu,\"how\":\"%s\"",
                  a->model->name, call->sent.len,
                  prefill ? "prefill" : "replay");
        return true;
    }
    return false;
}

/* ---------------------------------------------------------------------
 * The end of an attempt
 * ------------------------------------------------------------------- */

static void log_failure(struct attempt *a, enum rl_err err)
{
    log_write(LOG_WARN, "upstream attempt failed",
              "\"model\":\"%s\",\"provider\":\"%s\",\"status\":%ld,"
              "\"error\":\"%s\",\"attempt\":%d,\"hedge\":%s,"
              "\"rescue\":%s",
              a->model->name, a->model->provider->name, a->status,
              rl_strerror(err), a->call->attempts,
              a->hedge ? "true" : "false", a->rescue ? "true" : "false");
}

void upstream_attempt_end(struct attempt *a, enum rl_err err)
{
    struct provider_call *call = a->call;
    if (call->cancelled) {
        free_call(call); /* reported by provider_call_cancel() */
        return;
    }
    if (a->doomed) {
        retire(call, a, err, true);
        return;
    }
    bool stream = call->req->stream;
    if (err == RL_OK && a->rescue && !a->caught_up) {
        diverge(call, a); /* the new answer is shorter */
        err = RL_E_UPSTREAM_CUT;
    }
    if (err == RL_OK) {
        if (stream && !call->winner) {
            /* An answer with no content event at all. The caller may
             * cancel from on_first or on_chunk: as in a data callback. */
            call->in_cb = true;
            commit(call, a);
            call->in_cb = false;
            if (call->cancelled) {
                free_call(call);
                return;
            }
        }
        call->winner = a;
        finish_call(call, RL_OK);
        return;
    }
    log_failure(a, err);
    if (call->winner == a) {
        /* Output reached the client: rescue it, or end with the error.
         * The rescue goes first, so that the cut attempt is reported as
         * not the answer's: what it cost is the request's all the same. */
        call->last_error = a->sink.error;
        call->last_err = err;
        call->last_model = a->model;
        bool rescued = rescue(call);
        retire(call, a, err, false);
        if (!rescued) {
            finish_call(call, err);
        }
        return;
    }
    note_failure(call, a, err);
    retire(call, a, err, false);
    if (call->fatal) {
        finish_call(call, err);
    } else if (call->nlive == 0) {
        advance(call);
    }
}

/* ---------------------------------------------------------------------
 * The sweep: deadlines, hedges, retries, losers
 * ------------------------------------------------------------------- */

/* Fails a if one of its deadlines has passed; true if it did. */
static bool check_deadlines(struct provider_call *c, struct attempt *a,
                            uint64_t now)
{
    const char *name = a->model->provider->name;
    struct provider_error *pe = &a->sink.error;
    if (a->paused) {
        return false; /* waiting for the client, not for the provider */
    }
    if (now >= c->deadline_us) {
        provider_error_set(pe, 504, "api_error", "upstream_timeout", true,
                           "the call to provider %s took longer than "
                           "%llu ms", name,
                           (unsigned long long)c->limits.total_ms);
    } else if (!a->token_us && now >= a->start_us + a->token_ms * 1000) {
        provider_error_set(pe, 504, "api_error", "upstream_timeout", true,
                           "provider %s did not answer within %llu ms",
                           name, (unsigned long long)a->token_ms);
    } else if (a->byte_us &&
               now >= a->last_byte_us + c->limits.idle_ms * 1000) {
        provider_error_set(pe, 504, "api_error", "upstream_timeout", true,
                           "provider %s stopped sending for %llu ms", name,
                           (unsigned long long)c->limits.idle_ms);
    } else {
        return false;
    }
    attempt_abort(a, RL_E_UPSTREAM_TIMEOUT);
    return true;
}

/* Does the first thing due in call c; true if it did something (c may be
 * gone, and the list changed). */
static bool sweep_call(struct provider_call *c, uint64_t now)
{
    for (size_t i = 0; i < c->nlive; i++) {
        struct attempt *a = c->live[i];
        if (a->doomed) {
            retire(c, a, RL_OK, true);
            return true;
        }
        if (a->xfer && check_deadlines(c, a, now)) {
            return true;
        }
    }
    if (c->hedge_at_us && now >= c->hedge_at_us) {
        c->hedge_at_us = 0;
        if (!c->winner && c->nlive == 1 && !c->fatal) {
            size_t idx = next_candidate(c);
            if (idx != NO_CANDIDATE) {
                launch(c, idx, true);
            }
        }
        return true;
    }
    if (c->wake_us && now >= c->wake_us && c->nlive == 0) {
        c->wake_us = 0;
        advance(c);
        return true;
    }
    return false;
}

static void sweep(struct upstream *up)
{
    bool again = true;
    while (again) {
        again = false;
        uint64_t now = clock_now_us();
        for (struct provider_call *c = up->calls; c; c = c->next) {
            if (sweep_call(c, now)) {
                again = true; /* the list may have changed under us */
                break;
            }
        }
    }
}

static void on_sweep(uv_timer_t *timer)
{
    sweep(timer->data);
}

/* ---------------------------------------------------------------------
 * Public
 * ------------------------------------------------------------------- */

struct upstream *upstream_new(struct uv_loop_s *loop)
{
    struct upstream *up = rl_calloc(1, sizeof(*up));
    up->loop = loop;
    up->transport = transport_new(loop);
    up->rnd = clock_now_us() | 1;
    uv_timer_init(loop, &up->sweep);
    up->sweep.data = up;
    uv_timer_start(&up->sweep, on_sweep, SWEEP_INTERVAL_MS,
                   SWEEP_INTERVAL_MS);
    uv_unref((uv_handle_t *)&up->sweep);
    uv_timer_init(loop, &up->kick);
    up->kick.data = up;
    uv_unref((uv_handle_t *)&up->kick);
    return up;
}

static void free_upstream(uv_handle_t *handle)
{
    struct upstream *up = handle->data;
    if (--up->nclosing == 0) {
        free(up);
    }
}

void upstream_free(struct upstream *up)
{
    while (up->calls) {
        struct provider_call *c = up->calls;
        c->cancelled = true;
        free_call(c);
    }
    transport_free(up->transport);
    uv_timer_stop(&up->sweep);
    uv_timer_stop(&up->kick);
    up->nclosing = 2;
    uv_close((uv_handle_t *)&up->sweep, free_upstream);
    uv_close((uv_handle_t *)&up->kick, free_upstream);
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
    call->skip = rl_calloc(nplan, sizeof(*call->skip));
    call->start_us = clock_now_us();
    call->deadline_us = limits->total_ms
                            ? call->start_us + limits->total_ms * 1000
                            : UINT64_MAX;
    call->deterministic = retry_deterministic(req->raw);
    bool prefill = false;
    for (size_t i = 0; i < nplan; i++) {
        prefill = prefill || plan[i]->provider->ops->prefill;
    }
    call->rescuable = req->stream && limits->rescue_max_bytes &&
                      (call->deterministic || prefill);
    buf_init(&call->sent, limits->rescue_max_bytes);
    buf_init(&call->cont_raw, call->rescuable
                                  ? req->raw.len + limits->rescue_max_bytes * 2 +
                                        1024
                                  : 0);
    link_call(call);
    /* A call that cannot start at all fails here, synchronously, so that
     * no callback runs before we return. */
    if (!launch_next(call)) {
        *err_out = call->last_error;
        enum rl_err err = call->last_err;
        free_call(call);
        return err ? err : RL_E_UPSTREAM;
    }
    *out = call;
    return RL_OK;
}

void provider_call_pause(struct provider_call *call, bool pause)
{
    call->paused = pause;
    if (call->winner) {
        attempt_pause(call->winner, pause);
    }
}

void provider_call_cancel(struct provider_call *call)
{
    /* The client is gone: each live attempt ends, cancelled, now. */
    for (size_t i = 0; i < call->nlive; i++) {
        report(call, call->live[i], RL_OK, true);
    }
    call->cancelled = true;
    if (call->in_cb) {
        return; /* the transfer sees the flag and stops */
    }
    free_call(call); /* which stops the transfers */
}
