/*
 * chat.c - checks a POST /v1/chat/completions body the way OpenAI does,
 * with OpenAI's wording, so that SDKs and users see familiar errors.
 *
 * Only what Relay must rely on, or what a provider would reject with a less
 * helpful message, is checked here; unknown fields pass through to the
 * provider untouched. The body is read as spans (util/jscan.h), not parsed
 * into a tree: this runs for every request. Read api_chat_parse() first.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "util/fmt.h"
#include "util/jscan.h"

#include <jansson.h>

#define CHAT_MAX_MEMBERS 128 /* top-level fields of a request */

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

static bool is_number(const struct jscan_item *v)
{
    return v->type == '-' || (v->type >= '0' && v->type <= '9');
}

static bool is_integer(const struct jscan_item *v)
{
    return is_number(v) && !memchr(v->value.p, '.', v->value.len) &&
           !memchr(v->value.p, 'e', v->value.len) &&
           !memchr(v->value.p, 'E', v->value.len);
}

static const char *type_name(const struct jscan_item *v)
{
    switch (v->type) {
    case '{': return "an object";
    case '[': return "an array";
    case '"': return "a string";
    case 't':
    case 'f': return "a boolean";
    case 'n': return "null";
    default: return is_integer(v) ? "an integer" : "a number";
    }
}

static enum rl_err wrong_type(struct api_problem *p, const char *param,
                              const struct jscan_item *v,
                              const char *expected)
{
    return problem_set(p, param, "Invalid type for '%s': expected %s, but "
                       "got %s instead.", param, expected, type_name(v));
}

/* Reads a number's text as a double (numbers here are short). */
static double number_of(const struct jscan_item *v)
{
    char tmp[64];
    size_t n = v->value.len < sizeof(tmp) - 1 ? v->value.len
                                              : sizeof(tmp) - 1;
    memcpy(tmp, v->value.p, n);
    tmp[n] = '\0';
    return strtod(tmp, NULL);
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

static enum rl_err check_rule(const struct param_rule *r,
                              const struct jscan_item *v,
                              struct api_problem *p)
{
    switch (r->kind) {
    case K_BOOL:
        return v->type == 't' || v->type == 'f'
                   ? RL_OK
                   : wrong_type(p, r->name, v, "a boolean");
    case K_STRING:
        return v->type == '"' ? RL_OK
                              : wrong_type(p, r->name, v, "a string");
    case K_OBJECT:
        return v->type == '{' ? RL_OK
                              : wrong_type(p, r->name, v, "an object");
    case K_ARRAY:
        return v->type == '[' ? RL_OK
                              : wrong_type(p, r->name, v, "an array");
    case K_INTEGER:
        if (!is_integer(v)) {
            return wrong_type(p, r->name, v, "an integer");
        }
        break;
    case K_NUMBER:
        if (!is_number(v)) {
            return wrong_type(p, r->name, v, "a number");
        }
        break;
    }
    double d = number_of(v);
    if (d < r->lo || d > r->hi) {
        return problem_set(p, r->name, "Invalid '%s': %g is out of range; "
                           "expected a value from %g to %g.", r->name, d,
                           r->lo, r->hi);
    }
    return RL_OK;
}

/* ---------------------------------------------------------------------
 * Objects
 * ------------------------------------------------------------------- */

/* Finds member name of the object whose text is obj (one level). */
static bool member(struct str obj, const char *name, struct jscan_item *out)
{
    struct jscan_iter it;
    struct jscan_item item;
    bool found = false;
    if (!jscan_iter_checked(&it, obj)) {
        return false;
    }
    while (jscan_iter_next(&it, &item) == 1) {
        if (str_eq_lit(item.key, name)) {
            *out = item; /* the last one wins, as in most JSON parsers */
            found = true;
        }
    }
    return found;
}

/* True if the value is the string lit (no escapes expected in lit). */
static bool string_is(const struct jscan_item *v, const char *lit)
{
    size_t n = strlen(lit);
    return v->type == '"' && v->value.len == n + 2 &&
           memcmp(v->value.p + 1, lit, n) == 0;
}

/* ---------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------- */

/* Names of a message's fields ("messages[2].role") are made only for an
 * error message, never on the way of a good request. */
static void put_msg(struct fmt *f, char *out, size_t n, size_t i)
{
    fmt_init(f, out, n);
    fmt_str(f, "messages[");
    fmt_u64(f, i, 0);
    fmt_str(f, "]");
}

/* Writes "messages[i]" then tail to out. */
static const char *msg_name(char *out, size_t n, size_t i, const char *tail)
{
    struct fmt f;
    put_msg(&f, out, n, i);
    fmt_str(&f, tail);
    return out;
}

/* Writes "messages[i].content[j]" to out. */
static const char *part_name(char *out, size_t n, size_t i, size_t j)
{
    struct fmt f;
    put_msg(&f, out, n, i);
    fmt_str(&f, ".content[");
    fmt_u64(&f, j, 0);
    fmt_str(&f, "]");
    return out;
}

static enum rl_err check_part(const struct jscan_item *part, size_t msg,
                              size_t i, struct api_problem *p)
{
    char param[96];
    if (part->type != '{') {
        return wrong_type(p, part_name(param, sizeof(param), msg, i), part,
                          "an object");
    }
    struct jscan_item type;
    if (!member(part->value, "type", &type) || type.type != '"') {
        part_name(param, sizeof(param), msg, i);
        return problem_set(p, param, "Missing required parameter: "
                           "'%s.type'.", param);
    }
    struct jscan_item v;
    if (string_is(&type, "text") &&
        (!member(part->value, "text", &v) || v.type != '"')) {
        part_name(param, sizeof(param), msg, i);
        return problem_set(p, param, "Missing required parameter: "
                           "'%s.text'.", param);
    }
    if (string_is(&type, "image_url")) {
        struct jscan_item url;
        bool ok = member(part->value, "image_url", &v) &&
                  (v.type == '"' ||
                   (v.type == '{' && member(v.value, "url", &url) &&
                    url.type == '"'));
        if (!ok) {
            part_name(param, sizeof(param), msg, i);
            return problem_set(p, param, "Missing required parameter: "
                               "'%s.image_url.url'.", param);
        }
    }
    return RL_OK;
}

static enum rl_err check_content(const struct jscan_item *content,
                                 const char *role, bool may_be_null,
                                 size_t msg, struct api_problem *p)
{
    char param[80];
    if (!content || content->type == 'n') {
        if (may_be_null) {
            return RL_OK;
        }
        msg_name(param, sizeof(param), msg, ".content");
        return problem_set(p, param, "Missing required parameter: '%s' "
                           "(a %s message needs content).", param, role);
    }
    if (content->type == '"') {
        return RL_OK;
    }
    if (content->type != '[') {
        return wrong_type(p, msg_name(param, sizeof(param), msg, ".content"),
                          content, "a string or an array of content parts");
    }
    struct jscan_iter it;
    struct jscan_item part;
    jscan_iter_checked(&it, content->value);
    for (size_t i = 0; jscan_iter_next(&it, &part) == 1; i++) {
        enum rl_err err = check_part(&part, msg, i, p);
        if (err != RL_OK) {
            return err;
        }
    }
    return RL_OK;
}

static const char *const roles[] = {"system", "developer", "user",
                                    "assistant", "tool", "function", NULL};

static enum rl_err check_message(const struct jscan_item *m, size_t i,
                                 struct api_problem *p)
{
    char param[80];
    if (m->type != '{') {
        return wrong_type(p, msg_name(param, sizeof(param), i, ""), m,
                          "an object");
    }
    struct jscan_item rv;
    if (!member(m->value, "role", &rv)) {
        msg_name(param, sizeof(param), i, ".role");
        return problem_set(p, param, "Missing required parameter: '%s'.",
                           param);
    }
    if (rv.type != '"') {
        return wrong_type(p, msg_name(param, sizeof(param), i, ".role"), &rv,
                          "a string");
    }
    const char *role = NULL;
    for (const char *const *r = roles; *r && !role; r++) {
        role = string_is(&rv, *r) ? *r : NULL;
    }
    if (!role) {
        char given[80];
        char shown[STR_SHOWN_MAX + 4];
        size_t len;
        if (!jscan_string(rv.value, given, sizeof(given), &len)) {
            snprintf(given, sizeof(given), "(too long)");
            len = strlen(given);
        }
        return problem_set(p, msg_name(param, sizeof(param), i, ".role"),
                           "Invalid value: '%s'. Supported values are: "
                           "'system', 'developer', 'user', 'assistant', "
                           "'tool' and 'function'.",
                           str_shown((struct str){given, len}, shown,
                                     sizeof(shown)));
    }
    struct jscan_item content;
    bool has = member(m->value, "content", &content);
    enum rl_err err = check_content(has ? &content : NULL, role,
                                    strcmp(role, "assistant") == 0, i, p);
    if (err != RL_OK) {
        return err;
    }
    struct jscan_item id;
    if (strcmp(role, "tool") == 0 &&
        (!member(m->value, "tool_call_id", &id) || id.type != '"')) {
        msg_name(param, sizeof(param), i, ".tool_call_id");
        return problem_set(p, param, "Missing required parameter: '%s'.",
                           param);
    }
    return RL_OK;
}

static enum rl_err check_messages(const struct jscan_item *msgs,
                                  struct api_problem *p)
{
    if (!msgs) {
        return problem_set(p, "messages", "Missing required parameter: "
                           "'messages'.");
    }
    if (msgs->type != '[') {
        return wrong_type(p, "messages", msgs, "an array");
    }
    struct jscan_iter it;
    struct jscan_item m;
    jscan_iter_checked(&it, msgs->value);
    size_t i = 0;
    for (; jscan_iter_next(&it, &m) == 1; i++) {
        enum rl_err err = check_message(&m, i, p);
        if (err != RL_OK) {
            return err;
        }
    }
    if (i == 0) {
        return problem_set(p, "messages", "Invalid 'messages': empty array. "
                           "Expected an array with minimum length 1, but "
                           "got an empty array instead.");
    }
    return RL_OK;
}

/* ---------------------------------------------------------------------
 * Tools, stop, response_format
 * ------------------------------------------------------------------- */

static enum rl_err check_tools(const struct jscan_item *tools,
                               struct api_problem *p)
{
    struct jscan_iter it;
    struct jscan_item t;
    jscan_iter_checked(&it, tools->value);
    for (size_t i = 0; jscan_iter_next(&it, &t) == 1; i++) {
        char param[64];
        snprintf(param, sizeof(param), "tools[%zu]", i);
        if (t.type != '{') {
            return wrong_type(p, param, &t, "an object");
        }
        struct jscan_item fn;
        struct jscan_item name;
        if (!member(t.value, "function", &fn) || fn.type != '{' ||
            !member(fn.value, "name", &name) || name.type != '"') {
            return problem_set(p, param, "Missing required parameter: "
                               "'%s.function.name'.", param);
        }
    }
    return RL_OK;
}

static enum rl_err check_stop(const struct jscan_item *stop,
                              struct api_problem *p)
{
    if (stop->type == 'n' || stop->type == '"') {
        return RL_OK;
    }
    struct jscan_item items[5];
    size_t n;
    if (stop->type != '[' || !jscan_checked(stop->value, items, 4, &n)) {
        return wrong_type(p, "stop", stop, "a string or an array of at "
                          "most 4 strings");
    }
    for (size_t i = 0; i < n; i++) {
        if (items[i].type != '"') {
            return wrong_type(p, "stop", &items[i], "a string");
        }
    }
    return RL_OK;
}

/* Relay's own cache object: {mode, ttl, threshold} (docs/cache.md). */
static enum rl_err check_cache(const struct jscan_item *c,
                               struct api_problem *p)
{
    struct jscan_item v;
    if (member(c->value, "mode", &v) && !string_is(&v, "off") &&
        !string_is(&v, "exact") && !string_is(&v, "semantic")) {
        return problem_set(p, "cache.mode", "Invalid 'cache.mode': "
                           "expected 'off', 'exact' or 'semantic'.");
    }
    if (member(c->value, "threshold", &v) &&
        (!is_number(&v) || !(number_of(&v) > 0 && number_of(&v) <= 1))) {
        return problem_set(p, "cache.threshold", "Invalid "
                           "'cache.threshold': expected a cosine "
                           "similarity above 0 and at most 1, like 0.95.");
    }
    if (member(c->value, "ttl", &v) &&
        (!is_integer(&v) || number_of(&v) < 1 ||
         number_of(&v) > 86400.0 * 365)) {
        return problem_set(p, "cache.ttl", "Invalid 'cache.ttl': expected "
                           "whole seconds from 1 to 31536000.");
    }
    return RL_OK;
}

static enum rl_err check_misc(const struct jscan_item *items, size_t n,
                              struct api_problem *p)
{
    const struct jscan_item *cache = jscan_find(items, n, "cache");
    if (cache && cache->type == '{') {
        enum rl_err err = check_cache(cache, p);
        if (err != RL_OK) {
            return err;
        }
    }
    const struct jscan_item *stop = jscan_find(items, n, "stop");
    if (stop) {
        enum rl_err err = check_stop(stop, p);
        if (err != RL_OK) {
            return err;
        }
    }
    const struct jscan_item *tc = jscan_find(items, n, "tool_choice");
    if (tc && tc->type != '"' && tc->type != '{' && tc->type != 'n') {
        return wrong_type(p, "tool_choice", tc, "a string or an object");
    }
    const struct jscan_item *rf = jscan_find(items, n, "response_format");
    if (rf && rf->type == '{') {
        struct jscan_item type;
        bool ok = member(rf->value, "type", &type) &&
                  (string_is(&type, "text") ||
                   string_is(&type, "json_object") ||
                   string_is(&type, "json_schema"));
        if (!ok) {
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

static enum rl_err check(const struct jscan_item *items, size_t n,
                         struct chat_req *req, struct api_problem *p)
{
    const struct jscan_item *model = jscan_find(items, n, "model");
    if (!model) {
        return problem_set(p, "model", "Missing required parameter: "
                           "'model'. Use a model from GET /v1/models, or "
                           "\"auto\".");
    }
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        const struct jscan_item *v = jscan_find(items, n, rules[i].name);
        if (v && v->type != 'n') {
            enum rl_err err = check_rule(&rules[i], v, p);
            if (err != RL_OK) {
                return err;
            }
        }
    }
    enum rl_err err = check_messages(jscan_find(items, n, "messages"), p);
    const struct jscan_item *tools = jscan_find(items, n, "tools");
    if (err == RL_OK && tools && tools->type == '[') {
        err = check_tools(tools, p);
    }
    if (err == RL_OK) {
        err = check_misc(items, n, p);
    }
    if (err != RL_OK) {
        return err;
    }
    size_t len;
    if (!jscan_string(model->value, req->model, sizeof(req->model), &len) ||
        len == 0) {
        return problem_set(p, "model", "Invalid 'model': expected a model "
                           "name of 1 to %zu bytes.", sizeof(req->model) - 1);
    }
    const struct jscan_item *stream = jscan_find(items, n, "stream");
    req->stream = stream && stream->type == 't';
    const struct jscan_item *so = jscan_find(items, n, "stream_options");
    if (so && so->type != 'n' && !req->stream) {
        return problem_set(p, "stream_options", "The 'stream_options' "
                           "parameter is only allowed when 'stream' is "
                           "enabled.");
    }
    struct jscan_item iu;
    req->include_usage = req->stream && so && so->type == '{' &&
                         member(so->value, "include_usage", &iu) &&
                         iu.type == 't';
    const struct jscan_item *routing = jscan_find(items, n, "routing");
    if (routing && routing->type == '{') {
        req->routing = routing->value;
    }
    /* Checked above as integers from 1 to 1e9; the newer name wins. */
    const struct jscan_item *mt = jscan_find(items, n,
                                             "max_completion_tokens");
    if (!mt || mt->type == 'n') {
        mt = jscan_find(items, n, "max_tokens");
    }
    req->max_tokens = 0;
    for (size_t i = 0; mt && mt->type != 'n' && i < mt->value.len; i++) {
        req->max_tokens = req->max_tokens * 10 + (mt->value.p[i] - '0');
    }
    return RL_OK;
}

/* Says precisely what is wrong with a body jscan refused: this path is
 * rare, so a full parse for the message is fine here. */
static enum rl_err diagnose(struct str body, struct api_problem *problem)
{
    json_error_t jerr;
    json_t *root = json_loadb(body.p, body.len, 0, &jerr);
    enum rl_err err;
    if (!root) {
        problem_set(problem, NULL, "We could not parse the JSON body of "
                    "your request: %s (line %d, column %d). Send a JSON "
                    "object as the body.", jerr.text, jerr.line,
                    jerr.column);
        err = RL_E_INVALID_JSON;
    } else if (!json_is_object(root)) {
        static const char *const names[] = {
            "an object", "an array", "a string", "an integer", "a number",
            "a boolean", "a boolean", "null"};
        problem_set(problem, NULL, "The request body must be a JSON object, "
                    "but got %s.", names[json_typeof(root)]);
        err = RL_E_INVALID_REQUEST;
    } else {
        problem_set(problem, NULL, "The request has more than %d top-level "
                    "fields.", CHAT_MAX_MEMBERS);
        err = RL_E_INVALID_REQUEST;
    }
    json_decref(root);
    return err;
}

enum rl_err api_chat_parse(struct str body, struct chat_req *req,
                           struct api_problem *problem)
{
    memset(req, 0, sizeof(*req));
    problem->message[0] = '\0';
    problem->param[0] = '\0';
    size_t bad = 0;
    if (!jscan_utf8_valid(body.p, body.len, &bad)) {
        problem_set(problem, NULL, "The request body is not valid UTF-8 "
                    "(at byte %zu).", bad);
        return RL_E_INVALID_UTF8;
    }
    struct jscan_item items[CHAT_MAX_MEMBERS];
    size_t n = 0;
    struct jscan_iter it;
    if (!jscan(body, items, CHAT_MAX_MEMBERS, &n) ||
        !jscan_iter_init(&it, body) || !it.object) {
        return diagnose(body, problem);
    }
    enum rl_err err = check(items, n, req, problem);
    if (err == RL_OK) {
        req->raw = body;
    }
    return err;
}
