/*
 * registry.c - the table of provider kinds, and helpers every adapter
 * shares. A new wire format is one row here and one file beside this one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "providers/provider.h"
#include "util/jscan.h"

extern const struct provider_ops openai_ops;
extern const struct provider_ops anthropic_ops;
extern const struct provider_ops gemini_ops;
extern const struct provider_ops ollama_ops;

static const struct provider_ops *const kinds[] = {
    &openai_ops,
    &anthropic_ops,
    &gemini_ops,
    &ollama_ops,
    NULL,
};

const struct provider_ops *provider_ops_find(const char *kind)
{
    for (const struct provider_ops *const *k = kinds; *k; k++) {
        if (strcmp((*k)->kind, kind) == 0) {
            return *k;
        }
    }
    return NULL;
}

const char *provider_kinds(void)
{
    return "openai, anthropic, gemini, ollama";
}

void provider_error_set(struct provider_error *err, int status,
                        const char *type, const char *code, bool retryable,
                        const char *fmt, ...)
{
    err->status = status;
    err->type = type;
    err->code = code;
    err->retryable = retryable;
    err->retry_after_s = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

static int64_t count(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0
               ? (int64_t)json_integer_value(v)
               : 0;
}

void provider_usage_from_openai(json_t *usage, struct usage *out)
{
    if (!json_is_object(usage)) {
        return;
    }
    out->present = true;
    out->prompt_tokens = count(usage, "prompt_tokens");
    out->completion_tokens = count(usage, "completion_tokens");
    json_t *pd = json_object_get(usage, "prompt_tokens_details");
    out->cached_tokens = count(pd, "cached_tokens");
    json_t *cd = json_object_get(usage, "completion_tokens_details");
    out->reasoning_tokens = count(cd, "reasoning_tokens");
}

/* Reads a non-negative integer member of an object's text; 0 if absent. */
static int64_t count_text(const struct jscan_item *items, size_t n,
                          const char *key)
{
    const struct jscan_item *it = jscan_find(items, n, key);
    int64_t v = 0;
    if (!it || it->value.len > 18) {
        return 0;
    }
    for (size_t i = 0; i < it->value.len; i++) {
        char c = it->value.p[i];
        if (c < '0' || c > '9') {
            return 0; /* negative, fractional or not a number */
        }
        v = v * 10 + (c - '0');
    }
    return v;
}

bool provider_usage_from_openai_text(struct str usage, struct usage *out)
{
    /* On the hot path (every answer): spans, not a parsed tree, of text
     * the adapter's scan has checked. */
    struct jscan_item items[32];
    size_t n;
    if (!jscan_checked(usage, items, 32, &n) || usage.p[0] != '{') {
        return false;
    }
    out->present = true;
    out->prompt_tokens = count_text(items, n, "prompt_tokens");
    out->completion_tokens = count_text(items, n, "completion_tokens");
    struct jscan_item sub[32];
    size_t m;
    const struct jscan_item *pd = jscan_find(items, n,
                                             "prompt_tokens_details");
    if (pd && pd->type == '{' && jscan_checked(pd->value, sub, 32, &m)) {
        out->cached_tokens = count_text(sub, m, "cached_tokens");
    }
    const struct jscan_item *cd = jscan_find(items, n,
                                             "completion_tokens_details");
    if (cd && cd->type == '{' && jscan_checked(cd->value, sub, 32, &m)) {
        out->reasoning_tokens = count_text(sub, m, "reasoning_tokens");
    }
    return true;
}
