/*
 * framing.c - SSE and NDJSON framing (see framing.h).
 *
 * The SSE rules followed are the WHATWG ones: lines end in CRLF, LF or CR;
 * a line starting with ':' is a comment; "field: value" drops one space
 * after the colon; data lines join with LF; a blank line dispatches. An
 * event whose data is not valid UTF-8 is a protocol error: adapters copy
 * upstream text into the chunks the client parses as JSON, which must be
 * UTF-8 (found by tests/fuzz: every adapter passed such bytes on). Read
 * framer_feed() first.
 */
#include "providers/framing.h"

#include <string.h>

void framer_init(struct framer *f, enum framing_kind kind, size_t max_event)
{
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    buf_init(&f->line, max_event);
    buf_init(&f->event, 256);
    buf_init(&f->data, max_event);
}

void framer_free(struct framer *f)
{
    buf_free(&f->line);
    buf_free(&f->event);
    buf_free(&f->data);
}

/* Copies a data line still pointing into the caller's input into our own
 * buffer, before that input goes away. */
static enum rl_err keep_view(struct framer *f)
{
    if (!f->viewing) {
        return RL_OK;
    }
    f->viewing = false;
    return buf_append_str(&f->data, f->view) == RL_OK
               ? RL_OK
               : RL_E_UPSTREAM_PROTOCOL;
}

/* Hands one event on, if its data is text a JSON parser accepts. */
static enum rl_err deliver(framer_event_fn fn, void *ctx, struct str event,
                           struct str data)
{
    size_t bad;
    if (!jscan_utf8_valid(data.p, data.len, &bad)) {
        return RL_E_UPSTREAM_PROTOCOL;
    }
    return fn(ctx, event, data);
}

static enum rl_err dispatch(struct framer *f, framer_event_fn fn, void *ctx)
{
    enum rl_err err = RL_OK;
    if (f->has_data) {
        struct str ev = {f->event.p ? f->event.p : "", f->event.len};
        struct str data = f->viewing
                              ? f->view
                              : (struct str){f->data.p ? f->data.p : "",
                                             f->data.len};
        err = deliver(fn, ctx, ev, data);
    }
    buf_reset(&f->event);
    buf_reset(&f->data);
    f->has_data = false;
    f->viewing = false;
    return err;
}

/* Handles one complete SSE line (without its end). */
/* in_input: line points into the bytes being fed (valid until the feed
 * returns), not into our line buffer. */
static enum rl_err sse_line(struct framer *f, struct str line, bool in_input,
                            framer_event_fn fn, void *ctx)
{
    if (line.len == 0) {
        return dispatch(f, fn, ctx);
    }
    if (line.p[0] == ':') {
        return RL_OK; /* comment, e.g. a keep-alive ": ping" */
    }
    const char *colon = memchr(line.p, ':', line.len);
    struct str name = line;
    struct str value = {"", 0};
    if (colon) {
        name.len = (size_t)(colon - line.p);
        value.p = colon + 1;
        value.len = line.len - name.len - 1;
        if (value.len && value.p[0] == ' ') {
            value.p++;
            value.len--;
        }
    }
    if (str_eq_lit(name, "data")) {
        if (!f->has_data && in_input) {
            /* The usual event, one data line arriving whole: no copy. */
            f->view = value;
            f->viewing = true;
            f->has_data = true;
            return value.len <= f->data.max ? RL_OK : RL_E_UPSTREAM_PROTOCOL;
        }
        enum rl_err err = keep_view(f);
        if (f->has_data && err == RL_OK) {
            err = buf_append(&f->data, "\n", 1);
        }
        if (err == RL_OK) {
            err = buf_append_str(&f->data, value);
        }
        f->has_data = true;
        return err == RL_OK ? RL_OK : RL_E_UPSTREAM_PROTOCOL;
    }
    if (str_eq_lit(name, "event")) {
        buf_reset(&f->event);
        if (buf_append_str(&f->event, value) != RL_OK) {
            return RL_E_UPSTREAM_PROTOCOL;
        }
    }
    return RL_OK; /* id, retry and unknown fields are ignored */
}

static enum rl_err on_line(struct framer *f, struct str line, bool in_input,
                           framer_event_fn fn, void *ctx)
{
    if (f->kind == FRAMING_SSE) {
        return sse_line(f, line, in_input, fn, ctx);
    }
    struct str t = str_trim(line);
    if (t.len && t.p[t.len - 1] == '\r') {
        t.len--;
    }
    return t.len ? deliver(fn, ctx, (struct str){"", 0}, t) : RL_OK;
}

enum rl_err framer_feed(struct framer *f, const char *p, size_t n,
                        framer_event_fn fn, void *ctx)
{
    size_t i = 0;
    while (i < n) {
        if (f->after_cr && p[i] == '\n') {
            f->after_cr = false; /* the LF of a CRLF already handled */
            i++;
            continue;
        }
        f->after_cr = false;
        size_t start = i;
        /* The next line end, LF or CR, found with memchr (vectorised). */
        const char *lf = memchr(p + i, '\n', n - i);
        const char *cr = memchr(p + i, '\r', lf ? (size_t)(lf - (p + i))
                                                : n - i);
        const char *eol = cr ? cr : lf;
        i = eol ? (size_t)(eol - p) : n;
        struct str line;
        if (i == n) {
            /* No end yet: keep the piece for the next feed. */
            if (buf_append(&f->line, p + start, n - start) != RL_OK) {
                return RL_E_UPSTREAM_PROTOCOL;
            }
            return keep_view(f);
        }
        f->after_cr = p[i] == '\r';
        bool in_input = f->line.len == 0;
        if (f->line.len) {
            if (buf_append(&f->line, p + start, i - start) != RL_OK) {
                return RL_E_UPSTREAM_PROTOCOL;
            }
            line = (struct str){f->line.p, f->line.len};
        } else {
            line = (struct str){p + start, i - start};
            if (line.len > f->line.max) {
                return RL_E_UPSTREAM_PROTOCOL; /* same cap, however split */
            }
        }
        i++;
        enum rl_err err = on_line(f, line, in_input, fn, ctx);
        buf_reset(&f->line);
        if (err != RL_OK) {
            return err;
        }
    }
    return keep_view(f);
}

enum rl_err framer_finish(struct framer *f, framer_event_fn fn, void *ctx)
{
    enum rl_err err = RL_OK;
    if (f->kind == FRAMING_NDJSON && f->line.len) {
        err = on_line(f, (struct str){f->line.p, f->line.len}, false, fn,
                      ctx);
    }
    buf_reset(&f->line);
    buf_reset(&f->data);
    f->has_data = false;
    f->viewing = false;
    return err;
}
