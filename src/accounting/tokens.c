/*
 * tokens.c - token counts estimated from text, for when a count is needed
 * before the provider gives one (the tokens-per-minute reservation, the
 * router's fit and cost) or when a provider reports no usage at all (the
 * row is then marked usage_estimated).
 *
 * The estimate follows how BPE tokenizers of the GPT/Llama families cut
 * English and code: a run of letters or digits is one token per started
 * five bytes, each punctuation byte is one token, white space joins the
 * next word, and every character outside ASCII is one token. On English
 * prose it lands within about 15% of tiktoken's cl100k count; it is an
 * estimate and is always labelled one. It reads JSON string text with its
 * escapes still in (\n counts as white space, \uXXXX as one character), so
 * nothing is decoded or copied.
 *
 * It does not tokenize for real (no vocabulary ships with the gateway).
 */
#include "accounting/accounting.h"

#include <string.h>

#include "util/jscan.h"

#define PER_MESSAGE 4 /* role and separators of one chat message */
#define PER_ANSWER 3  /* the priming of the assistant's reply */
#define WORD_BYTES 5  /* bytes of a word run per token */
#define MAX_ITEMS 64  /* members of one message or part we look at */

static bool is_word(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_';
}

int64_t accounting_tokens_text(const char *p, size_t len)
{
    int64_t n = 0;
    size_t run = 0; /* bytes of the current word run */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (is_word(c)) {
            run++;
            continue;
        }
        n += (int64_t)((run + WORD_BYTES - 1) / WORD_BYTES);
        run = 0;
        if (c == '\\' && i + 1 < len) {
            char e = p[i + 1];
            if (e == 'u') {
                n++; /* one escaped character */
                i += i + 5 < len ? 5 : len - i - 1;
            } else if (e == 'n' || e == 't' || e == 'r') {
                i++; /* white space */
            } else {
                n++; /* \" \\ \/: punctuation */
                i++;
            }
        } else if (c >= 0x80) {
            if ((c & 0xC0) != 0x80) {
                n++; /* the first byte of a character */
            }
        } else if (c != ' ' && c != '\n' && c != '\t' && c != '\r') {
            n++;
        }
    }
    return n + (int64_t)((run + WORD_BYTES - 1) / WORD_BYTES);
}

/* The tokens of a JSON string value's text (with its quotes), or of any
 * other value's text as it stands (tool arguments, structured parts). */
static int64_t value_tokens(struct str v)
{
    if (v.len >= 2 && v.p[0] == '"') {
        return accounting_tokens_text(v.p + 1, v.len - 2);
    }
    return accounting_tokens_text(v.p, v.len);
}

/* The tokens of a message's "content": a string, or an array of parts
 * whose "text" members count (images are not estimated). */
static int64_t content_tokens(const struct jscan_item *content)
{
    if (content->type == '"') {
        return value_tokens(content->value);
    }
    if (content->type != '[') {
        return 0;
    }
    int64_t n = 0;
    struct jscan_iter it;
    struct jscan_item part;
    jscan_iter_checked(&it, content->value);
    while (jscan_iter_next(&it, &part) == 1) {
        struct jscan_item m[MAX_ITEMS];
        size_t nm = 0;
        if (part.type == '{' && jscan_checked(part.value, m, MAX_ITEMS, &nm)) {
            const struct jscan_item *text = jscan_find(m, nm, "text");
            if (text) {
                n += value_tokens(text->value);
            }
        }
    }
    return n;
}

int64_t accounting_tokens_prompt(struct str request)
{
    struct jscan_item top[MAX_ITEMS];
    size_t ntop = 0;
    if (!jscan_checked(request, top, MAX_ITEMS, &ntop)) {
        return accounting_tokens_text(request.p, request.len);
    }
    int64_t n = PER_ANSWER;
    const struct jscan_item *tools = jscan_find(top, ntop, "tools");
    if (tools) {
        n += accounting_tokens_text(tools->value.p, tools->value.len);
    }
    const struct jscan_item *msgs = jscan_find(top, ntop, "messages");
    if (!msgs || msgs->type != '[') {
        return n;
    }
    struct jscan_iter it;
    struct jscan_item msg;
    jscan_iter_checked(&it, msgs->value);
    while (jscan_iter_next(&it, &msg) == 1) {
        struct jscan_item m[MAX_ITEMS];
        size_t nm = 0;
        n += PER_MESSAGE;
        if (msg.type != '{' || !jscan_checked(msg.value, m, MAX_ITEMS, &nm)) {
            continue;
        }
        const struct jscan_item *content = jscan_find(m, nm, "content");
        if (content) {
            n += content_tokens(content);
        }
        const struct jscan_item *calls = jscan_find(m, nm, "tool_calls");
        if (calls) {
            n += accounting_tokens_text(calls->value.p, calls->value.len);
        }
    }
    return n;
}

/* Adds the tokens of every string that follows `"<name>":"` in text. */
static int64_t strings_after(struct str text, const char *name)
{
    int64_t n = 0;
    size_t nlen = strlen(name);
    const char *p = text.p;
    const char *end = text.p + text.len;
    while (p < end) {
        const char *hit = memmem(p, (size_t)(end - p), name, nlen);
        if (!hit) {
            break;
        }
        const char *s = hit + nlen;
        const char *q = s;
        while (q < end && *q != '"') {
            q += *q == '\\' && q + 1 < end ? 2 : 1;
        }
        n += accounting_tokens_text(s, (size_t)(q - s));
        p = q + 1;
    }
    return n;
}

/* The tokens of the JSON string whose text starts at s (past its opening
 * quote), before end; *next is set past it. */
static int64_t string_at(const char *s, const char *end, const char **next)
{
    const char *q = s;
    while (q < end && *q != '"') {
        q += *q == '\\' && q + 1 < end ? 2 : 1;
    }
    *next = q + 1;
    return accounting_tokens_text(s, (size_t)(q - s));
}

int64_t accounting_tokens_chunk(struct str chunk)
{
    /* One pass from quote to quote for both keys: this runs for every
     * chunk of every stream, on its choices (reply.c), where a memmem per
     * key cost three times as much. */
    static const char content[] = "content\":\"";
    static const char arguments[] = "arguments\":\"";
    int64_t n = 0;
    const char *p = chunk.p;
    const char *end = chunk.p + chunk.len;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (!q) {
            break;
        }
        q++;
        size_t left = (size_t)(end - q);
        if (left > sizeof(content) - 1 &&
            memcmp(q, content, sizeof(content) - 1) == 0) {
            n += string_at(q + sizeof(content) - 1, end, &p);
        } else if (left > sizeof(arguments) - 1 &&
                   memcmp(q, arguments, sizeof(arguments) - 1) == 0) {
            n += string_at(q + sizeof(arguments) - 1, end, &p);
        } else {
            p = q;
        }
    }
    return n;
}

int64_t accounting_tokens_output(struct str answer)
{
    return strings_after(answer, "\"content\":\"") +
           strings_after(answer, "\"arguments\":\"") +
           strings_after(answer, "\"refusal\":\"");
}
