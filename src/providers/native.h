/*
 * native.h - helpers shared by the native adapters (anthropic.c, gemini.c,
 * ollama.c): the wire formats that are not OpenAI's and so must be
 * translated both ways.
 *
 * Internal to src/providers/. What is here is what all three do the same
 * way: writing OpenAI chunks and completions, usage in OpenAI's convention,
 * data URLs, the request fields no native API can honour, and the error
 * classes every provider's failures fall into. Read native_chunk_emit()
 * first.
 */
#ifndef RL_NATIVE_H
#define RL_NATIVE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "providers/provider.h"

#define NATIVE_MAX_CHUNK (16u * 1024 * 1024) /* one OpenAI chunk we write */

/* ---------------------------------------------------------------------
 * Answers in OpenAI's shape
 * ------------------------------------------------------------------- */

/*
 * Emits one chat.completion.chunk with one choice whose delta holds
 * delta_members (the inside of the delta object, possibly empty) and whose
 * finish_reason is finish (a static string) or null. The first chunk of a
 * stream also carries "role":"assistant": *role_sent tracks that. The id
 * and model are left empty: the core puts its own.
 */
void native_chunk_emit(struct chunk_sink *sink, bool *role_sent,
                       struct str delta_members, const char *finish);
/* Emits the final usage-only chunk (choices []) from sink->usage. */
void native_usage_emit(struct chunk_sink *sink);
/* Appends an OpenAI usage object for u, as JSON text. */
enum rl_err native_usage_append(struct buf *out, const struct usage *u);

/*
 * Appends a chat.completion object to out: one choice whose message has
 * text (NULL: content null) and tool_calls (an OpenAI tool_calls array, or
 * NULL), finish reason finish, and usage u. Borrows every argument.
 */
enum rl_err native_completion_append(struct buf *out, const char *id,
                                     const char *text, json_t *tool_calls,
                                     const char *finish,
                                     const struct usage *u);

/* ---------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------- */

/* Fills err for a request the provider cannot honour (400). Returns
 * RL_E_INVALID_REQUEST. */
enum rl_err native_refuse(struct provider_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses the client's body into a new object (the caller decrefs), or
 * refuses it. */
json_t *native_parse_body(const struct chat_req *req,
                          struct provider_error *err);

/*
 * Refuses what no native adapter can express in OpenAI's answer shape:
 * n > 1, logprobs, top_logprobs, audio output, and a `function` role
 * message (the API before tools). provider names the provider in the
 * message. Returns RL_OK or RL_E_INVALID_REQUEST.
 */
enum rl_err native_check_common(json_t *in, const char *provider,
                                struct provider_error *err);

/* Returns max_completion_tokens, else max_tokens, else 0 when neither is
 * a positive integer. */
json_int_t native_max_tokens(json_t *in);

/*
 * Joins the text of a message's content (a string, or an array of text
 * parts) into out, parts separated by sep. Refuses a part that is not text
 * (what names the message in the error). Returns RL_OK or
 * RL_E_INVALID_REQUEST.
 */
enum rl_err native_content_text(json_t *content, const char *sep,
                                struct buf *out, const char *what,
                                struct provider_error *err);

/*
 * Splits a data URL "data:<mime>;base64,<data>" into its media type and its
 * base64 data, both pointing into url. False if url is not a base64 data
 * URL.
 */
bool native_data_url(const char *url, struct str *mime, struct str *data);

/* Returns the function name of the assistant tool call with this id,
 * looking back from messages[before - 1]; NULL if none. */
const char *native_tool_name(json_t *messages, size_t before,
                             const char *id);

/* Returns the tool call's arguments (a JSON object text) parsed into a new
 * object; "" or absent gives {}. NULL if it is not a JSON object. */
json_t *native_tool_args(json_t *tool_call);
/* Returns a provider's tool arguments (any JSON value, or NULL when the
 * call has none) as compact JSON text for OpenAI's "arguments": "{}" when
 * absent. The caller frees it; NULL only if args cannot be encoded. */
char *native_args_text(json_t *args);

/* Serialises body into out->body (compact), 413 if over its cap. */
enum rl_err native_body_dump(json_t *body, struct upstream_req *out,
                             struct provider_error *err);

/* ---------------------------------------------------------------------
 * Stream events
 * ------------------------------------------------------------------- */

/* Reads a non-negative integer value's text; -1 if it is not one. */
int64_t native_int(struct str value);
/* True if value is the JSON string lit (with no escapes). */
bool native_str_is(struct str value, const char *lit);
/* Fills sink->error for a malformed event; returns
 * RL_E_UPSTREAM_PROTOCOL. */
enum rl_err native_bad_event(struct chunk_sink *sink, const char *what);

/* ---------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------- */

/* What kind of failure a provider's error answer is. */
enum native_fail {
    NATIVE_FAIL_OTHER,       /* anything else: 502, retryable */
    NATIVE_FAIL_RATE,        /* rate limited: 429, retryable */
    NATIVE_FAIL_OVERLOADED,  /* provider overloaded: 503, retryable */
    NATIVE_FAIL_SERVER,      /* provider's 5xx: same status, retryable */
    NATIVE_FAIL_CONTEXT,     /* prompt too long: 400 context_length_exceeded */
    NATIVE_FAIL_INVALID,     /* request refused: 400 */
    NATIVE_FAIL_SAFETY,      /* blocked by a safety filter: 400 */
    NATIVE_FAIL_AUTH,        /* Relay's key refused: 502 */
    NATIVE_FAIL_NOT_FOUND,   /* unknown upstream model: 502 */
    NATIVE_FAIL_TOO_LARGE,   /* request body too large: 413 */
};

/*
 * Fills out for a failure of kind, with the provider's message (NULL: a
 * message of ours) and the upstream HTTP status. For auth and not-found
 * failures Relay's own message is kept: the client cannot fix those.
 */
void native_error_set(struct provider_error *out, enum native_fail kind,
                      long status, const char *message,
                      uint32_t retry_after_s);

/* True if s contains needle, ignoring ASCII case. */
bool native_contains(const char *s, const char *needle);

/* Returns the `list` array of the last turn of turns if that turn has
 * role, else of a new turn {"role": role, list: []} appended to turns, for
 * providers that want one turn's pieces together. Borrowed reference. */
json_t *native_turn(json_t *turns, const char *role, const char *list);

/* Copies OpenAI's "stop" (a string or a list) into out[key] as a list. */
void native_copy_stop(json_t *in, json_t *out, const char *key);

/* Returns obj[key] if it is a positive integer, else 0 (token counts). */
int64_t native_count(json_t *obj, const char *key);

/* Makes a tool call id from what is known of a call, for providers that
 * give none: the same call gives the same id ("call_<index>_<fnv32>"). */
void native_call_id(char out[24], int index, struct str name,
                    struct str args);

#endif
