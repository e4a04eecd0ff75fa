/*
 * split.c - what the semantic cache compares and what must match exactly
 * (docs/cache.md, "What is embedded"): a request is split into the text
 * that is embedded (its last message, a user message's text) and a hash
 * of everything else that changes the answer (the exact cache's canonical
 * request with that one text taken out: system prompt, earlier turns,
 * tools, response format, answer-changing parameters, model class).
 *
 * Pure. `relay cache compare` and the running cache both call it.
 */
#include <jansson.h>
#include <string.h>

#include "cache/cache.h"
#include "cache/internal.h"

bool cache_semantic_split(struct str raw, const char *model_class,
                          struct buf *text, char ctx_hex[65])
{
    json_t *req = json_loadb(raw.p, raw.len, 0, NULL);
    if (!json_is_object(req)) {
        json_decref(req);
        return false;
    }
    json_t *key = cache_key_json(req, model_class);
    json_decref(req);
    json_t *msgs = json_object_get(key, "messages");
    size_t n = json_array_size(msgs);
    json_t *last = n ? json_array_get(msgs, n - 1) : NULL;
    const char *role = json_string_value(json_object_get(last, "role"));
    json_t *content = json_object_get(last, "content");
    /* A user's own words only: not a tool result, not an assistant
     * prefill, not images (content_of keeps non-text parts as an array). */
    bool ok = role && strcmp(role, "user") == 0 &&
              json_is_string(content) && json_string_length(content) > 0 &&
              !json_object_get(last, "tool_calls");
    if (ok) {
        ok = buf_append(text, json_string_value(content),
                        json_string_length(content)) == RL_OK;
    }
    if (ok) {
        json_object_del(last, "content");
        json_object_set_new(key, "semantic", json_integer(1));
        struct buf canon;
        buf_init(&canon, (size_t)64 << 20);
        ok = cache_key_text(key, &canon) == RL_OK;
        cache_sha256_hex(canon.p ? canon.p : "", canon.len, ctx_hex);
        buf_free(&canon);
    }
    json_decref(key);
    return ok;
}
