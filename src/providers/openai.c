/*
 * openai.c - the OpenAI chat-completions wire format, for OpenAI and every
 * compatible API: Groq, Mistral, Ollama's /v1, vLLM, llama.cpp's server.
 *
 * Docs: https://platform.openai.com/docs/api-reference/chat. The request is
 * passed through with the model rewritten to the upstream id, Relay's own
 * fields (routing, cache) removed and, for streams, usage asked for. Vendors
 * differ only in small ways, kept as rows of the quirks table below rather
 * than as new files. Read build_request() first.
 */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "providers/provider.h"

/* Fields of the client's body that are Relay's, never the provider's. */
static const char *const relay_fields[] = {"routing", "cache", NULL};

/* What one compatible vendor does differently, matched on the base URL. */
struct quirks {
    const char *host;             /* substring of base_url, NULL: default */
    bool stream_options;          /* accepts stream_options.include_usage */
    bool max_completion_tokens;   /* knows max_completion_tokens */
};

static const struct quirks quirk_table[] = {
    /* Mistral sends usage in its last chunk unasked and refuses
     * stream_options; it predates max_completion_tokens. */
    {"api.mistral.ai", false, false},
    {"api.groq.com", true, true},
    {"api.openai.com", true, true},
    /* Ollama's /v1 and other local servers know only max_tokens. */
    {":11434", true, false},
    {NULL, true, true},
};

static const struct quirks *quirks_for(const char *base_url)
{
    const struct quirks *q = quirk_table;
    while (q->host && !strstr(base_url, q->host)) {
        q++;
    }
    return q;
}

static enum rl_err build_request(const struct chat_req *req,
                                 const struct model_cfg *model,
                                 struct upstream_req *out,
                                 struct provider_error *err)
{
    const struct provider_cfg *p = model->provider;
    const struct quirks *q = quirks_for(p->base_url);
    json_t *body = json_copy(req->body); /* shallow: children are shared */
    if (!body) {
        provider_error_set(err, 500, "api_error", NULL, false,
                           "out of memory building the upstream request");
        return RL_E_NOMEM;
    }
    for (const char *const *f = relay_fields; *f; f++) {
        json_object_del(body, *f);
    }
    json_object_set_new(body, "model", json_string(model->upstream));
    if (req->stream && q->stream_options) {
        json_object_set_new(body, "stream_options",
                            json_pack("{s:b}", "include_usage", 1));
    } else if (!q->stream_options) {
        json_object_del(body, "stream_options");
    }
    json_t *mct = json_object_get(body, "max_completion_tokens");
    if (mct && !q->max_completion_tokens) {
        json_object_set(body, "max_tokens", mct);
        json_object_del(body, "max_completion_tokens");
    }
    enum rl_err result = RL_OK;
    if (buf_printf(&out->url, "%s/chat/completions", p->base_url) != RL_OK) {
        result = RL_E_CAP;
        goto out;
    }
    if (p->api_key && p->api_key[0]) {
        buf_printf(&out->headers, "Authorization: Bearer %s\n", p->api_key);
    }
    size_t need = json_dumpb(body, NULL, 0, JSON_COMPACT);
    if (buf_reserve(&out->body, need) != RL_OK) {
        provider_error_set(err, 413, "invalid_request_error",
                           "request_too_large", false,
                           "the request is too large for the provider");
        result = RL_E_BODY_TOO_LARGE;
        goto out;
    }
    out->body.len = json_dumpb(body, out->body.p, need, JSON_COMPACT);
    out->body.p[out->body.len] = '\0';
out:
    json_decref(body);
    return result;
}

static enum rl_err parse_response(struct str body, json_t **out,
                                  struct usage *usage,
                                  struct provider_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(body.p, body.len, 0, &jerr);
    if (!root || !json_is_object(root) ||
        !json_is_array(json_object_get(root, "choices"))) {
        json_decref(root);
        provider_error_set(err, 502, "api_error", "upstream_protocol_error",
                           true, "the provider's answer is not a chat "
                           "completion");
        return RL_E_UPSTREAM_PROTOCOL;
    }
    provider_usage_from_openai(json_object_get(root, "usage"), usage);
    *out = root;
    return RL_OK;
}

/* Copies an OpenAI error object's message into err. */
static void error_from_body(json_t *error, struct provider_error *err)
{
    const char *msg = json_string_value(json_object_get(error, "message"));
    if (!msg && json_is_string(error)) {
        msg = json_string_value(error);
    }
    if (msg) {
        snprintf(err->message, sizeof(err->message), "%s", msg);
    }
}

static enum rl_err on_event(void *state, struct str event, struct str data,
                            struct chunk_sink *sink)
{
    (void)state;
    (void)event;
    if (str_eq_lit(data, "[DONE]")) {
        return RL_OK; /* the core writes its own [DONE] */
    }
    json_error_t jerr;
    json_t *chunk = json_loadb(data.p, data.len, 0, &jerr);
    if (!chunk || !json_is_object(chunk)) {
        json_decref(chunk);
        provider_error_set(&sink->error, 502, "api_error",
                           "upstream_protocol_error", true,
                           "the provider sent a malformed stream event");
        return RL_E_UPSTREAM_PROTOCOL;
    }
    json_t *error = json_object_get(chunk, "error");
    if (error) {
        provider_error_set(&sink->error, 502, "api_error", "upstream_error",
                           true, "the provider failed during the stream");
        error_from_body(error, &sink->error);
        json_decref(chunk);
        return RL_E_UPSTREAM;
    }
    json_t *usage = json_object_get(chunk, "usage");
    if (json_is_object(usage)) {
        provider_usage_from_openai(usage, &sink->usage);
    }
    json_t *choices = json_object_get(chunk, "choices");
    size_t i;
    json_t *choice;
    json_array_foreach(choices, i, choice) {
        if (json_is_string(json_object_get(choice, "finish_reason"))) {
            sink->finished = true;
        }
    }
    sink->emit(sink, chunk);
    return RL_OK;
}

static void map_error(long status, struct str body, uint32_t retry_after_s,
                      struct provider_error *out)
{
    json_error_t jerr;
    json_t *root = json_loadb(body.p, body.len, 0, &jerr);
    json_t *error = json_object_get(root, "error");
    const char *code = json_string_value(json_object_get(error, "code"));
    if (status == 429) {
        provider_error_set(out, 429, "rate_limit_error",
                           "rate_limit_exceeded", true,
                           "the provider is rate limiting requests");
    } else if (status == 400 || status == 422) {
        bool ctx = code && strcmp(code, "context_length_exceeded") == 0;
        provider_error_set(out, 400, "invalid_request_error",
                           ctx ? "context_length_exceeded" : NULL, false,
                           "the provider refused the request");
    } else if (status == 401 || status == 403) {
        provider_error_set(out, 502, "api_error", "upstream_auth_failed",
                           true, "the provider refused Relay's credentials; "
                           "check the provider's api_key in relay.yaml");
    } else if (status == 404) {
        provider_error_set(out, 502, "api_error", "upstream_model_not_found",
                           true, "the provider does not know this model's "
                           "upstream id; check models[].upstream");
    } else if (status == 413) {
        provider_error_set(out, 413, "invalid_request_error",
                           "request_too_large", false,
                           "the request is too large for the provider");
    } else if (status >= 500 && status <= 599) {
        provider_error_set(out, (int)status, "api_error", "upstream_error",
                           true, "the provider failed with status %ld",
                           status);
    } else {
        provider_error_set(out, 502, "api_error", "upstream_error", true,
                           "the provider answered with status %ld", status);
    }
    out->retry_after_s = retry_after_s;
    if (error && status != 401 && status != 403 && status != 404) {
        error_from_body(error, out);
    }
    json_decref(root);
}

const struct provider_ops openai_ops = {
    .kind = "openai",
    .framing = FRAMING_SSE,
    .stream_state_size = 0,
    .build_request = build_request,
    .parse_response = parse_response,
    .on_event = on_event,
    .map_error = map_error,
};
