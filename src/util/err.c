/*
 * err.c - names for enum rl_err, for logs and messages.
 */
#include "util/err.h"

static const char *const names[RL_E__COUNT] = {
    [RL_OK] = "ok",
    [RL_E_NOMEM] = "out of memory",
    [RL_E_INVALID_JSON] = "invalid JSON",
    [RL_E_INVALID_UTF8] = "invalid UTF-8",
    [RL_E_INVALID_REQUEST] = "invalid request",
    [RL_E_BODY_TOO_LARGE] = "request body too large",
    [RL_E_HEADERS_TOO_LARGE] = "request headers too large",
    [RL_E_BAD_HTTP] = "malformed HTTP",
    [RL_E_NOT_FOUND] = "not found",
    [RL_E_METHOD] = "method not allowed",
    [RL_E_MODEL_NOT_FOUND] = "model not found",
    [RL_E_UNAUTHORIZED] = "unauthorized",
    [RL_E_FORBIDDEN] = "forbidden",
    [RL_E_RATE_LIMITED] = "rate limited",
    [RL_E_UPSTREAM] = "upstream error",
    [RL_E_UPSTREAM_CONNECT] = "upstream unreachable",
    [RL_E_UPSTREAM_TIMEOUT] = "upstream timeout",
    [RL_E_UPSTREAM_PROTOCOL] = "upstream protocol error",
    [RL_E_UPSTREAM_CUT] = "upstream stream cut",
    [RL_E_TIMEOUT] = "client timeout",
    [RL_E_SHUTTING_DOWN] = "shutting down",
    [RL_E_CONFIG] = "configuration error",
    [RL_E_IO] = "I/O error",
    [RL_E_INTERNAL] = "internal error",
    [RL_E_UNSUPPORTED] = "unsupported",
    [RL_E_CAP] = "buffer cap reached",
    [RL_E_REJECTED] = "row rejected by the store",
    [RL_E_OVER_BUDGET] = "spend budget exhausted",
    [RL_E_LIMITS_DOWN] = "limits unavailable",
};

const char *rl_strerror(enum rl_err err)
{
    if ((unsigned)err >= RL_E__COUNT || !names[err]) {
        return "unknown error";
    }
    return names[err];
}
