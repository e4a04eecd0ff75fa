/*
 * text.c - deterministic words, token counts and schema-shaped values.
 *
 * Everything here is a pure function of its input, so tests can compute
 * the fake's answers and usage themselves; docs/fakeprov.md states the
 * formulas and the vocabulary. No HTTP, no wire format, no shared state.
 *
 * Read first: fake_text_word(), then fake_text_prompt_tokens().
 */
#include "fakeprov.h"

#include <stdlib.h>
#include <strings.h>

/* The answer's vocabulary: 64 short words, index = hash % 64. */
static const char *const vocab[TEXT_VOCAB_LEN] = {
    "the",    "quick",  "brown",  "fox",    "jumps",  "over",   "lazy",
    "dog",    "relay",  "routes", "every",  "prompt", "to",     "a",
    "model",  "that",   "is",     "fast",   "and",    "cheap",  "tokens",
    "stream", "back",   "as",     "they",   "land",   "cache",  "hits",
    "cost",   "nothing", "keys",  "have",   "limits", "which",  "hold",
    "across", "all",    "nodes",  "latency", "stays", "low",    "while",
    "quality", "remains", "high",   "we",     "ship",   "it",     "today",
    "with",   "care",   "for",    "users",  "who",    "need",   "answers",
    "in",     "time",   "at",     "scale",  "on",     "one",    "small",
    "box",
};

uint64_t fake_text_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

struct str fake_text_word(uint64_t seed, uint32_t i)
{
    unsigned char le[4] = {(unsigned char)i, (unsigned char)(i >> 8),
                           (unsigned char)(i >> 16),
                           (unsigned char)(i >> 24)};
    uint64_t h = fake_text_fnv1a(seed, le, sizeof(le));
    return str_from(vocab[h % TEXT_VOCAB_LEN]);
}

size_t fake_text_chars(struct str s)
{
    size_t n = 0;
    for (size_t i = 0; i < s.len; i++) {
        /* Count every byte that does not continue a UTF-8 sequence. */
        n += ((unsigned char)s.p[i] & 0xc0) != 0x80;
    }
    return n;
}

static void scan_one(const json_t *s, uint64_t *h, size_t *chars)
{
    struct str t = {json_string_value(s), json_string_length(s)};
    if (h) {
        *h = fake_text_fnv1a(*h, t.p, t.len);
    }
    if (chars) {
        *chars += fake_text_chars(t);
    }
}

void fake_text_content_scan(const json_t *content, uint64_t *h, size_t *chars)
{
    if (json_is_string(content)) {
        scan_one(content, h, chars);
        return;
    }
    if (!json_is_array(content)) {
        return; /* null (an assistant's tool call) or junk: no text */
    }
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        const json_t *text = json_object_get(part, "text");
        if (type && strcmp(type, "text") == 0 && json_is_string(text)) {
            scan_one(text, h, chars);
        }
    }
}

void fake_text_parts_scan(const json_t *parts, uint64_t *h, size_t *chars)
{
    size_t i;
    const json_t *part;
    json_array_foreach(parts, i, part) {
        const json_t *text = json_object_get(part, "text");
        if (json_is_string(text)) {
            scan_one(text, h, chars);
        }
    }
}

int64_t fake_text_message_tokens(size_t chars)
{
    return (int64_t)((chars + 3) / 4) + 4;
}

int64_t fake_text_prompt_tokens(const json_t *messages)
{
    int64_t total = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m) {
        size_t chars = 0;
        fake_text_content_scan(json_object_get(m, "content"), NULL, &chars);
        total += fake_text_message_tokens(chars);
    }
    return total;
}

uint64_t fake_text_prompt_seed(const json_t *messages)
{
    uint64_t h = TEXT_FNV_OFFSET;
    for (size_t i = json_array_size(messages); i-- > 0;) {
        const json_t *m = json_array_get(messages, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "user") == 0) {
            fake_text_content_scan(json_object_get(m, "content"), &h, NULL);
            break;
        }
    }
    return h;
}

/* ---------------------------------------------------------------------- */
/* Values for JSON schemas (tool arguments, json_schema answers)          */

/* Returns the first type named by a schema's "type" (a string or an array
 * of strings) other than "null"; NULL when there is none. */
static const char *schema_type(const json_t *prop)
{
    const json_t *t = json_object_get(prop, "type");
    if (json_is_string(t)) {
        return json_string_value(t);
    }
    size_t i;
    const json_t *e;
    json_array_foreach(t, i, e) {
        const char *s = json_string_value(e);
        if (s && strcasecmp(s, "null") != 0) {
            return s;
        }
    }
    return NULL;
}

static enum rl_err append_value(const json_t *prop, struct buf *out)
{
    const json_t *fixed = json_object_get(prop, "const");
    if (!fixed) {
        fixed = json_array_get(json_object_get(prop, "enum"), 0);
    }
    if (fixed) {
        char *s = json_dumps(fixed, JSON_COMPACT | JSON_ENCODE_ANY);
        enum rl_err err = s ? buf_append_cstr(out, s) : RL_E_INVALID_REQUEST;
        free(s);
        return err;
    }
    const char *type = schema_type(prop);
    const char *v = "\"value\"";
    if (!type || strcasecmp(type, "string") == 0) {
        v = "\"value\"";
    } else if (strcasecmp(type, "number") == 0 ||
               strcasecmp(type, "integer") == 0) {
        v = "1";
    } else if (strcasecmp(type, "boolean") == 0) {
        v = "true";
    } else if (strcasecmp(type, "array") == 0) {
        v = "[]";
    } else if (strcasecmp(type, "object") == 0) {
        v = "{}";
    }
    return buf_append_cstr(out, v);
}

enum rl_err fake_text_fill_schema(const json_t *schema, struct buf *out)
{
    const json_t *props = json_object_get(schema, "properties");
    const json_t *req = json_object_get(schema, "required");
    enum rl_err err = buf_append_cstr(out, "{");
    size_t i;
    size_t n = 0;
    const json_t *name;
    json_array_foreach(req, i, name) {
        if (err != RL_OK) {
            break;
        }
        if (!json_is_string(name)) {
            continue;
        }
        const char *k = json_string_value(name);
        size_t klen = json_string_length(name);
        err = buf_append_cstr(out, n++ ? ",\"" : "\"");
        if (err == RL_OK) {
            err = buf_append_json_escaped(out, k, klen);
        }
        if (err == RL_OK) {
            err = buf_append_cstr(out, "\":");
        }
        if (err == RL_OK) {
            err = append_value(json_object_getn(props, k, klen), out);
        }
    }
    if (err == RL_OK) {
        err = buf_append_cstr(out, "}");
    }
    return err;
}
