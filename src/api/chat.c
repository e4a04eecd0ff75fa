/*
 * chat.c - checks a POST /v1/chat/completions body the way OpenAI does,
 * with OpenAI's wording, so that SDKs and users see familiar errors.
 *
 * Only what Relay must rely on, or what a provider would reject with a less
 * helpful message, is checked here; unknown fields pass through to the
 * provider untouched. Read api_chat_parse() first.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"

/* ---------------------------------------------------------------------
 * Problems
 * ------------------------------------------------------------------- */

static enum rl_err problem_set(struct api_problem *p, const char *param,
                               const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum rl_err problem_set(struct api_problem *p, const char *param,
                               const char *fmt, ...)
{
    snprintf(p->param, sizeof(p->param), "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, ap);
    va_end(ap);
    return RL_E_INVALID_REQUEST;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static enum rl_err wrong_type(struct api_problem *p, const char *param,
                              const json_t *v, const char *expected)
{
    return problem_set(p, param, "Invalid type for '%s': expected %s, but "
                       "got %s instead.", param, expected, type_name(v));
}

/* ---------------------------------------------------------------------
 * Scalar parameters
 * ------------------------------------------------------------------- */

enum kind {
    K_BOOL,
    K_NUMBER,
    K_INTEGER,
    K_STRING,
    K_OBJECT,
    K_ARRAY,
};

struct param_rule {
    const char *name;
    enum kind kind;
    double lo; /* numbers: inclusive bounds */
    double hi;
};

static const struct param_rule rules[] = {
    {"model", K_STRING, 0, 0},
    {"stream", K_BOOL, 0, 0},
    {"temperature", K_NUMBER, 0, 2},
    {"top_p", K_NUMBER, 0, 1},
    {"n", K_INTEGER, 1, 128},
    {"max_tokens", K_INTEGER, 1, 1e9},
    {"max_completion_tokens", K_INTEGER, 1, 1e9},
    {"presence_penalty", K_NUMBER, -2, 2},
    {"frequency_penalty", K_NUMBER, -2, 2},
    {"seed", K_INTEGER, -9.2e18, 9.2e18},
    {"user", K_STRING, 0, 0},
    {"logprobs", K_BOOL, 0, 0},
    {"top_logprobs", K_INTEGER, 0, 20},
    {"parallel_tool_calls", K_BOOL, 0, 0},
    {"tools", K_ARRAY, 0, 0},
    {"response_format", K_OBJECT, 0, 0},
    {"stream_options", K_OBJECT, 0, 0},
    {"routing", K_OBJECT, 0, 0},
    {"cache", K_OBJECT, 0, 0},
    {"metadata", K_OBJECT, 0, 0},
    {"logit_bias", K_OBJECT, 0, 0},
};

static enum rl_err check_rule(const struct param_rule *r, json_t *v,
                              struct api_problem *p)
{
    switch (r->kind) {
    case K_BOOL:
        return json_is_boolean(v) ? RL_OK
                                  : wrong_type(p, r->name, v, "a boolean");
    case K_STRING:
        return json_is_string(v) ? RL_OK
                                 : wrong_type(p, r->name, v, "a string");
    case K_OBJECT:
        return json_is_object(v) ? RL_OK
                                 : wrong_type(p, r->name, v, "an object");
    case K_ARRAY:
        return json_is_array(v) ? RL_OK
                                : wrong_type(p, r->name, v, "an array");
    case K_INTEGER:
        if (!json_is_integer(v)) {
            return wrong_type(p, r->name, v, "an integer");
        }
        break;
    case K_NUMBER:
        if (!json_is_number(v)) {
            return wrong_type(p, r->name, v, "a number");
        }
        break;
    }
    double d = json_number_value(v);
    if (d < r->lo || d > r->hi) {
        return problem_set(p, r->name, "Invalid '%s': %g is out of range; "
                           "expected a value from %g to %g.", r->name, d,
                           r->lo, r->hi);
    }
    return RL_OK;
}

/* ---------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------- */

static enum rl_err check_part(json_t *part, const char *param,
                              struct api_problem *p)
{
    if (!json_is_object(part)) {
        return wrong_type(p, param, part, "an object");
    }
    const char *type = json_string_value(json_object_get(part, "type"));
    if (!type) {
        return problem_set(p, param, "Missing required parameter: "
                           "'%s.type'.", param);
    }
    if (strcmp(type, "text") == 0 &&
        !json_is_string(json_object_get(part, "text"))) {
        return problem_set(p, param, "Missing required parameter: "
                           "'%s.text'.", param);
    }
    if (strcmp(type, "image_url") == 0) {
        json_t *img = json_object_get(part, "image_url");
        json_t *url = json_is_object(img) ? json_object_get(img, "url") : img;
        if (!json_is_string(url)) {
            return problem_set(p, param, "Missing required parameter: "
                               "'%s.image_url.url'.", param);
        }
    }
    return RL_OK;
}

static enum rl_err check_content(json_t *content, const char *role,
                                 bool may_be_null, const char *param,
                                 struct api_problem *p)
{
    if (!content || json_is_null(content)) {
        if (may_be_null) {
            return RL_OK;
        }
        return problem_set(p, param, "Missing required parameter: '%s' "
                           "(a %s message needs content).", param, role);
    }
    if (json_is_string(content)) {
        return RL_OK;
    }
    if (!json_is_array(content)) {
        return wrong_type(p, param, content, "a string or an array of "
                          "content parts");
    }
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        char sub[128];
        snprintf(sub, sizeof(sub), "%s[%zu]", param, i);
        enum rl_err err = check_part(part, sub, p);
        if (err != RL_OK) {
            return err;
        }
    }
    return RL_OK;
}

static enum rl_err check_message(json_t *m, size_t i, struct api_problem *p)
{
    char param[64];
    snprintf(param, sizeof(param), "messages[%zu]", i);
    if (!json_is_object(m)) {
        return wrong_type(p, param, m, "an object");
    }
    static const char *const roles[] = {"system", "developer", "user",
                                        "assistant", "tool", "function",
                                        NULL};
    json_t *rv = json_object_get(m, "role");
    char rparam[80];
    snprintf(rparam, sizeof(rparam), "%s.role", param);
    if (!rv) {
        return problem_set(p, rparam, "Missing required parameter: '%s'.",
                           rparam);
    }
    const char *role = json_string_value(rv);
    if (!role) {
        return wrong_type(p, rparam, rv, "a string");
    }
    const char *const *r = roles;
    while (*r && strcmp(*r, role) != 0) {
        r++;
    }
    if (!*r) {
        return problem_set(p, rparam, "Invalid value: '%s'. Supported "
                           "values are: 'system', 'developer', 'user', "
                           "'assistant', 'tool' and 'function'.", role);
    }
    char cparam[80];
    snprintf(cparam, sizeof(cparam), "%s.content", param);
    bool assistant = strcmp(role, "assistant") == 0;
    enum rl_err err = check_content(json_object_get(m, "content"), role,
                                    assistant, cparam, p);
    if (err != RL_OK) {
        return err;
    }
    if (strcmp(role, "tool") == 0 &&
        !json_is_string(json_object_get(m, "tool_call_id"))) {
        return problem_set(p, param, "Missing required parameter: "
                           "'%s.tool_call_id'.", param);
    }
    return RL_OK;
}

static enum rl_err check_messages(json_t *msgs, struct api_problem *p)
{
    if (!msgs) {
        return problem_set(p, "messages", "Missing required parameter: "
                           "'messages'.");
    }
    if (!json_is_array(msgs)) {
        return wrong_type(p, "messages", msgs, "an array");
    }
    if (json_array_size(msgs) == 0) {
        return problem_set(p, "messages", "Invalid 'messages': empty array. "
                           "Expected an array with minimum length 1, but "
                           "got an empty array instead.");
    }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        enum rl_err err = check_message(m, i, p);
        if (err != RL_OK) {
            return err;
        }
    }
    return RL_OK;
}

/* ---------------------------------------------------------------------
 * Tools, stop, response_format
 * ------------------------------------------------------------------- */

static enum rl_err check_tools(json_t *tools, struct api_problem *p)
{
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        char param[64];
        snprintf(param, sizeof(param), "tools[%zu]", i);
        if (!json_is_object(t)) {
            return wrong_type(p, param, t, "an object");
        }
        json_t *fn = json_object_get(t, "function");
        if (!json_is_object(fn) ||
            !json_is_string(json_object_get(fn, "name"))) {
            return problem_set(p, param, "Missing required parameter: "
                               "'%s.function.name'.", param);
        }
    }
    return RL_OK;
}

static enum rl_err check_misc(json_t *root, struct api_problem *p)
{
    json_t *stop = json_object_get(root, "stop");
    if (stop && !json_is_null(stop) && !json_is_string(stop)) {
        if (!json_is_array(stop) || json_array_size(stop) > 4) {
            return wrong_type(p, "stop", stop, "a string or an array of at "
                              "most 4 strings");
        }
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s) {
            if (!json_is_string(s)) {
                return wrong_type(p, "stop", s, "a string");
            }
        }
    }
    json_t *tc = json_object_get(root, "tool_choice");
    if (tc && !json_is_string(tc) && !json_is_object(tc)) {
        return wrong_type(p, "tool_choice", tc, "a string or an object");
    }
    json_t *rf = json_object_get(root, "response_format");
    if (rf) {
        const char *type = json_string_value(json_object_get(rf, "type"));
        if (!type || (strcmp(type, "text") != 0 &&
                      strcmp(type, "json_object") != 0 &&
                      strcmp(type, "json_schema") != 0)) {
            return problem_set(p, "response_format.type", "Invalid "
                               "'response_format.type': expected 'text', "
                               "'json_object' or 'json_schema'.");
        }
    }
    return RL_OK;
}

/* ---------------------------------------------------------------------
 * Entry
 * ------------------------------------------------------------------- */

static enum rl_err check(json_t *root, struct chat_req *req,
                         struct api_problem *p)
{
    if (!json_is_object(root)) {
        return problem_set(p, NULL, "The request body must be a JSON "
                           "object, but got %s.", type_name(root));
    }
    if (!json_object_get(root, "model")) {
        return problem_set(p, "model", "Missing required parameter: "
                           "'model'. Use a model from GET /v1/models, or "
                           "\"auto\".");
    }
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        json_t *v = json_object_get(root, rules[i].name);
        if (v && !json_is_null(v)) {
            enum rl_err err = check_rule(&rules[i], v, p);
            if (err != RL_OK) {
                return err;
            }
        }
    }
    enum rl_err err = check_messages(json_object_get(root, "messages"), p);
    if (err == RL_OK) {
        err = check_tools(json_object_get(root, "tools"), p);
    }
    if (err == RL_OK) {
        err = check_misc(root, p);
    }
    if (err != RL_OK) {
        return err;
    }
    req->body = root;
    req->stream = json_is_true(json_object_get(root, "stream"));
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so) && !req->stream) {
        return problem_set(p, "stream_options", "The 'stream_options' "
                           "parameter is only allowed when 'stream' is "
                           "enabled.");
    }
    req->include_usage =
        req->stream && json_is_true(json_object_get(so, "include_usage"));
    return RL_OK;
}

enum rl_err api_chat_parse(struct str body, json_t **body_out,
                           struct chat_req *req,
                           struct api_problem *problem)
{
    memset(req, 0, sizeof(*req));
    problem->message[0] = '\0';
    problem->param[0] = '\0';
    *body_out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(body.p, body.len, 0, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_invalid_utf8) {
            problem_set(problem, NULL, "The request body is not valid "
                        "UTF-8 (at byte %d).", jerr.position);
            return RL_E_INVALID_UTF8;
        }
        problem_set(problem, NULL, "We could not parse the JSON body of "
                    "your request: %s (line %d, column %d). Send a JSON "
                    "object as the body.", jerr.text, jerr.line,
                    jerr.column);
        return RL_E_INVALID_JSON;
    }
    enum rl_err err = check(root, req, problem);
    if (err != RL_OK) {
        json_decref(root);
        return err;
    }
    req->raw = body;
    *body_out = root;
    return RL_OK;
}
