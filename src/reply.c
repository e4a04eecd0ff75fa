/*
 * reply.c - writing answers for a request (see reply.h).
 *
 * Chunks and completions get Relay's id and the configured model name, so
 * the client sees one consistent answer whatever provider and fallback
 * produced it. Read reply_stream_chunk() first.
 */
#include "reply.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "request.h"
#include "server/server.h"
#include "util/clock.h"

/* Appends the headers every answer carries. */
static void common_headers(struct req *r, struct buf *h)
{
    uint64_t now = clock_now_us();
    uint64_t overhead;
    if (r->call_start_us && r->streamed) {
        /* Streaming: what we spent before handing the call over; the rest
         * of the wait was the provider's. */
        overhead = r->call_start_us - r->start_us;
    } else {
        uint64_t total = now - r->start_us;
        overhead = total > r->upstream_us ? total - r->upstream_us : 0;
    }
    const char *model = r->model ? r->model->name : "none";
    const char *provider = r->model ? r->model->provider->name : "none";
    buf_printf(h, "x-request-id: %s\r\nx-relay-model: %s\r\n"
               "x-relay-provider: %s\r\nx-relay-overhead-ms: %llu.%03u\r\n"
               "x-relay-attempts: %d\r\n", r->id, model, provider,
               (unsigned long long)(overhead / 1000),
               (unsigned)(overhead % 1000), r->attempts);
}

static void send_error(struct req *r, struct api_error *e)
{
    r->status = e->status;
    r->error_type = e->type;
    r->error_code = e->code;
    if (!r->conn) {
        return;
    }
    struct buf h;
    buf_init(&h, 4096);
    common_headers(r, &h);
    server_on_abort(r->conn, NULL, NULL);
    errors_respond(r->conn, e, (struct str){h.p, h.len});
    buf_free(&h);
}

void reply_error(struct req *r, enum rl_err err, const char *message,
                 const char *param)
{
    struct api_error e;
    errors_from_rl(err, message, param, &e);
    send_error(r, &e);
}

void reply_provider_error(struct req *r, const struct provider_error *pe)
{
    struct api_error e = {
        .status = pe->status ? pe->status : 502,
        .type = pe->type ? pe->type : "api_error",
        .code = pe->code,
        .retry_after_s = pe->retry_after_s,
    };
    snprintf(e.message, sizeof(e.message), "%s", pe->message);
    if (!r->streamed) {
        send_error(r, &e);
        return;
    }
    /* Output has reached the client: say so in the stream, and end it
     * without [DONE] so that nobody mistakes it for a complete answer. */
    r->error_type = e.type;
    r->error_code = e.code;
    if (!r->conn) {
        return;
    }
    server_on_abort(r->conn, NULL, NULL);
    buf_reset(&r->out);
    struct buf body;
    buf_init(&body, 4096);
    errors_body(&e, &body);
    sse_event(&r->out, (struct str){body.p, body.len});
    buf_free(&body);
    if (server_stream_write(r->conn, (struct str){r->out.p, r->out.len})) {
        server_stream_end(r->conn);
    }
}

/* Gives obj Relay's id, the model's configured name and a creation time. */
static void brand(struct req *r, json_t *obj)
{
    char id[48];
    snprintf(id, sizeof(id), "chatcmpl-%s", r->id + 4);
    json_object_set_new(obj, "id", json_string(id));
    json_object_set_new(obj, "model", json_string(r->model->name));
    if (!json_is_integer(json_object_get(obj, "created"))) {
        json_object_set_new(obj, "created", json_integer(time(NULL)));
    }
}

static void dump(json_t *obj, struct buf *out)
{
    size_t need = json_dumpb(obj, NULL, 0, JSON_COMPACT);
    buf_reset(out);
    if (buf_reserve(out, need) == RL_OK) {
        out->len = json_dumpb(obj, out->p, need, JSON_COMPACT);
        out->p[out->len] = '\0';
    }
}

void reply_completion(struct req *r, json_t *completion)
{
    brand(r, completion);
    dump(completion, &r->out);
    json_decref(completion);
    r->status = 200;
    if (!r->conn) {
        return;
    }
    struct buf h;
    buf_init(&h, 4096);
    common_headers(r, &h);
    server_on_abort(r->conn, NULL, NULL);
    server_respond(r->conn, 200, "application/json",
                   (struct str){h.p, h.len},
                   (struct str){r->out.p, r->out.len});
    buf_free(&h);
}

void reply_stream_begin(struct req *r)
{
    r->streamed = true;
    r->status = 200;
    if (!r->conn) {
        return;
    }
    struct buf h;
    buf_init(&h, 4096);
    common_headers(r, &h);
    server_stream_begin(r->conn, 200, (struct str){h.p, h.len});
    buf_free(&h);
}

bool reply_stream_chunk(struct req *r, json_t *chunk)
{
    if (!r->chat.include_usage) {
        /* We asked the provider for usage (for accounting); the client did
         * not, so it gets the stream it asked for. */
        json_object_del(chunk, "usage");
        json_t *choices = json_object_get(chunk, "choices");
        if (json_is_array(choices) && json_array_size(choices) == 0) {
            json_decref(chunk);
            return r->conn != NULL;
        }
    }
    brand(r, chunk);
    size_t need = json_dumpb(chunk, NULL, 0, JSON_COMPACT);
    buf_reset(&r->out);
    bool ok = buf_reserve(&r->out, need + 8) == RL_OK;
    if (ok) {
        buf_append(&r->out, "data: ", 6);
        r->out.len += json_dumpb(chunk, r->out.p + r->out.len, need,
                                 JSON_COMPACT);
        buf_append(&r->out, "\n\n", 2);
    }
    json_decref(chunk);
    if (!r->conn || !ok) {
        return false;
    }
    return server_stream_write(r->conn, (struct str){r->out.p, r->out.len});
}

void reply_stream_done(struct req *r)
{
    if (!r->conn) {
        return;
    }
    server_on_abort(r->conn, NULL, NULL);
    buf_reset(&r->out);
    sse_done(&r->out);
    if (server_stream_write(r->conn, (struct str){r->out.p, r->out.len})) {
        server_stream_end(r->conn);
    }
}

void reply_json(struct req *r, int status, struct str body)
{
    r->status = status;
    if (!r->conn) {
        return;
    }
    struct buf h;
    buf_init(&h, 4096);
    common_headers(r, &h);
    server_on_abort(r->conn, NULL, NULL);
    server_respond(r->conn, status, "application/json",
                   (struct str){h.p, h.len}, body);
    buf_free(&h);
}
