/*
 * registry.c - the table of provider kinds, and helpers every adapter
 * shares. A new wire format is one row here and one file beside this one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "providers/provider.h"

extern const struct provider_ops openai_ops;

static const struct provider_ops *const kinds[] = {
    &openai_ops,
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
    return "openai";
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

bool provider_usage_from_openai_text(struct str usage, struct usage *out)
{
    json_error_t jerr;
    json_t *u = json_loadb(usage.p, usage.len, 0, &jerr);
    bool ok = json_is_object(u);
    provider_usage_from_openai(u, out);
    json_decref(u);
    return ok;
}
