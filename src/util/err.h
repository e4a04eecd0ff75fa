/*
 * err.h - the one error enum of Relay.
 *
 * Values are only ever appended; each carries a one-line comment. The
 * mapping from an error to an HTTP status and an OpenAI error body lives in
 * exactly one place, server/errors.c.
 */
#ifndef RL_ERR_H
#define RL_ERR_H

enum rl_err {
    RL_OK = 0,
    RL_E_NOMEM,            /* an allocation failed (normally aborts) */
    RL_E_INVALID_JSON,     /* the request body is not valid JSON */
    RL_E_INVALID_UTF8,     /* the request body is not valid UTF-8 */
    RL_E_INVALID_REQUEST,  /* well-formed JSON, but a field is wrong */
    RL_E_BODY_TOO_LARGE,   /* the request body is over the configured cap */
    RL_E_HEADERS_TOO_LARGE, /* request headers over the cap */
    RL_E_BAD_HTTP,         /* the bytes are not HTTP/1.1 */
    RL_E_NOT_FOUND,        /* no such route */
    RL_E_METHOD,           /* route exists, method does not */
    RL_E_MODEL_NOT_FOUND,  /* the requested model is not configured */
    RL_E_UNAUTHORIZED,     /* missing or bad API key */
    RL_E_FORBIDDEN,        /* key valid, but not for this */
    RL_E_RATE_LIMITED,     /* over a per-key limit */
    RL_E_UPSTREAM,         /* the provider answered with an error */
    RL_E_UPSTREAM_CONNECT, /* the provider could not be reached */
    RL_E_UPSTREAM_TIMEOUT, /* the provider did not answer in time */
    RL_E_UPSTREAM_PROTOCOL, /* the provider's answer was malformed */
    RL_E_UPSTREAM_CUT,     /* the provider's stream ended before its end */
    RL_E_TIMEOUT,          /* the client was too slow */
    RL_E_SHUTTING_DOWN,    /* the gateway is draining */
    RL_E_CONFIG,           /* the configuration is invalid */
    RL_E_IO,               /* a system call failed */
    RL_E_INTERNAL,         /* a bug: an invariant did not hold */
    RL_E_UNSUPPORTED,      /* the provider lacks this operation */
    RL_E_CAP,              /* a capped buffer is full */
    RL_E_REJECTED,         /* the store refused a row for what it holds */
    RL_E_OVER_BUDGET,      /* the key's spend budget for the period is used */
    RL_E_LIMITS_DOWN,      /* limits cannot be checked (fail-closed) */
    RL_E__COUNT
};

/* Returns a static, human-readable name for err ("upstream timeout"). */
const char *rl_strerror(enum rl_err err);

#endif
