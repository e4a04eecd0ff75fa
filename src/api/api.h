/*
 * api.h - the OpenAI-compatible surface: checking a chat request the way
 * OpenAI does, and the model list.
 *
 * Pure functions over JSON; no I/O. The pipeline decides what happens next.
 */
#ifndef RL_API_H
#define RL_API_H

#include <jansson.h>

#include "providers/provider.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/str.h"

struct config;

/* Why a request was refused, for the error response. */
struct api_problem {
    char message[512]; /* OpenAI-style: "Invalid type for 'x': ..." */
    char param[128];   /* "messages[0].role", or empty */
};

/*
 * Checks a chat-completions body. On success returns RL_OK and fills req,
 * whose spans point into body (which must outlive req). On failure returns
 * RL_E_INVALID_JSON, RL_E_INVALID_UTF8 or RL_E_INVALID_REQUEST with problem
 * filled.
 */
enum rl_err api_chat_parse(struct str body, struct chat_req *req,
                           struct api_problem *problem);

/* Appends OpenAI's model list for cfg to out. */
void api_models_list(const struct config *cfg, struct buf *out);
/* Appends one model object; RL_E_MODEL_NOT_FOUND when id is unknown. */
enum rl_err api_models_get(const struct config *cfg, struct str id,
                           struct buf *out);

#endif
