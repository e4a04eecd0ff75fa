/*
 * errors.c - the one place where an error becomes an HTTP status and an
 * OpenAI error body: {"error":{"message","type","param","code"}}.
 *
 * Messages say what happened and what to do next; they never contain a key
 * or prompt text.
 */
#include <stdio.h>
#include <string.h>

#include "server/server.h"

struct error_row {
    int status;
    const char *type;
    const char *code;
    const char *message;
};

static const struct error_row rows[RL_E__COUNT] = {
    [RL_E_INVALID_JSON] = {400, "invalid_request_error", "invalid_json",
        "We could not parse the JSON body of your request. Send a JSON "
        "object as the body, with Content-Type: application/json."},
    [RL_E_INVALID_UTF8] = {400, "invalid_request_error", "invalid_utf8",
        "The request body is not valid UTF-8."},
    [RL_E_INVALID_REQUEST] = {400, "invalid_request_error", NULL,
        "The request is invalid."},
    [RL_E_BODY_TOO_LARGE] = {413, "invalid_request_error",
        "request_too_large",
        "The request body is larger than this gateway accepts "
        "(server.max_body_bytes). Send a smaller request."},
    [RL_E_HEADERS_TOO_LARGE] = {431, "invalid_request_error",
        "headers_too_large",
        "The request headers are larger than this gateway accepts "
        "(server.max_header_bytes)."},
    [RL_E_BAD_HTTP] = {400, "invalid_request_error", "bad_http",
        "The request is not valid HTTP/1.1."},
    [RL_E_NOT_FOUND] = {404, "invalid_request_error", "unknown_url",
        "Unknown request URL. The API is at /v1/chat/completions and "
        "/v1/models."},
    [RL_E_METHOD] = {405, "invalid_request_error", "method_not_allowed",
        "This method is not allowed on this URL."},
    [RL_E_MODEL_NOT_FOUND] = {404, "invalid_request_error",
        "model_not_found",
        "The model does not exist. GET /v1/models lists the models this "
        "gateway serves; \"auto\" lets it choose."},
    [RL_E_UNAUTHORIZED] = {401, "invalid_request_error", "invalid_api_key",
        "Incorrect or missing API key. Send it as Authorization: Bearer "
        "<key>."},
    [RL_E_FORBIDDEN] = {403, "permission_error", "permission_denied",
        "This API key is not allowed to do this."},
    [RL_E_RATE_LIMITED] = {429, "rate_limit_error", "rate_limit_exceeded",
        "Rate limit reached. Retry after the time in the Retry-After "
        "header."},
    [RL_E_UPSTREAM] = {502, "api_error", "upstream_error",
        "The provider returned an error."},
    [RL_E_UPSTREAM_CONNECT] = {502, "api_error", "upstream_unreachable",
        "The provider could not be reached."},
    [RL_E_UPSTREAM_TIMEOUT] = {504, "api_error", "upstream_timeout",
        "The provider did not answer in time."},
    [RL_E_UPSTREAM_PROTOCOL] = {502, "api_error", "upstream_protocol_error",
        "The provider's answer was malformed."},
    [RL_E_UPSTREAM_CUT] = {502, "api_error", "upstream_stream_cut",
        "The provider's answer ended before it was complete."},
    [RL_E_TIMEOUT] = {408, "invalid_request_error", "request_timeout",
        "The request did not arrive in time (server.read_timeout_ms)."},
    [RL_E_SHUTTING_DOWN] = {503, "api_error", "shutting_down",
        "The gateway is shutting down. Retry on another instance."},
    [RL_E_UNSUPPORTED] = {400, "invalid_request_error", "unsupported",
        "This provider does not support this operation."},
    [RL_E_OVER_BUDGET] = {429, "insufficient_quota", "budget_exceeded",
        "This API key has spent its budget for the period. Retry after the "
        "time in the Retry-After header, or raise the key's budget."},
    [RL_E_LIMITS_DOWN] = {503, "api_error", "limits_unavailable",
        "The gateway cannot check this key's limits right now (Redis is "
        "unreachable and limits.on_redis_failure is closed). Retry "
        "shortly."},
};

void errors_from_rl(enum rl_err err, const char *message, const char *param,
                    struct api_error *e)
{
    memset(e, 0, sizeof(*e));
    const struct error_row *row = NULL;
    if ((unsigned)err < RL_E__COUNT && rows[err].status) {
        row = &rows[err];
    }
    e->status = row ? row->status : 500;
    e->type = row ? row->type : "server_error";
    e->code = row ? row->code : "internal_error";
    e->param = param;
    const char *msg = message ? message
                      : row   ? row->message
                              : "The gateway failed; the error is logged.";
    snprintf(e->message, sizeof(e->message), "%s", msg);
}

static void json_string_or_null(struct buf *out, const char *s)
{
    if (!s) {
        buf_append_cstr(out, "null");
        return;
    }
    buf_append_cstr(out, "\"");
    buf_append_json_escaped(out, s, strlen(s));
    buf_append_cstr(out, "\"");
}

void errors_body(const struct api_error *e, struct buf *out)
{
    buf_append_cstr(out, "{\"error\":{\"message\":");
    json_string_or_null(out, e->message);
    buf_append_cstr(out, ",\"type\":");
    json_string_or_null(out, e->type);
    buf_append_cstr(out, ",\"param\":");
    json_string_or_null(out, e->param);
    buf_append_cstr(out, ",\"code\":");
    json_string_or_null(out, e->code);
    buf_append_cstr(out, "}}");
}

void errors_respond(struct conn *c, const struct api_error *e,
                    struct str headers)
{
    struct buf body;
    buf_init(&body, 4096);
    errors_body(e, &body);
    struct buf hdrs;
    buf_init(&hdrs, 16384);
    buf_append_str(&hdrs, headers);
    if (e->retry_after_s) {
        buf_printf(&hdrs, "Retry-After: %u\r\n", e->retry_after_s);
    }
    server_respond(c, e->status, "application/json",
                   (struct str){hdrs.p ? hdrs.p : "", hdrs.len},
                   (struct str){body.p, body.len});
    buf_free(&hdrs);
    buf_free(&body);
}
