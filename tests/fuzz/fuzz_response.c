/*
 * fuzz_response.c - a provider's whole (non-stream) answer and its error
 * answers: the input is a response body, given to the real adapter's
 * parse_response (as after a 200) and map_error (as after each error
 * status Relay handles). Built once per kind with -DFUZZ_KIND="...":
 * fuzz_response_openai, _anthropic, _gemini, _ollama.
 *
 * Contracts checked besides "no crash, no leak, no undefined behaviour":
 * an accepted answer becomes one well-formed JSON object, and every error
 * maps to a 4xx or 5xx status with an OpenAI error type and a message.
 */
#include "fuzz.h"
#include "util/buf.h"
#include "util/jscan.h"

#ifndef FUZZ_KIND
#error "build with -DFUZZ_KIND=\"openai\" (or anthropic, gemini, ollama)"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {400, 401, 403, 404, 408, 413, 422, 429,
                                    500, 502, 503, 504, 529};
    const struct provider_ops *ops = provider_ops_find(FUZZ_KIND);
    char *p = fuzz_copy(data, size);
    struct str body = {p, size};

    struct buf out;
    buf_init(&out, 64u << 20);
    struct usage usage;
    memset(&usage, 0, sizeof(usage));
    struct provider_error perr;
    memset(&perr, 0, sizeof(perr));
    struct answer_members members;
    memset(&members, 0, sizeof(members));
    if (ops->parse_response(body, &out, &members, &usage, &perr) == RL_OK) {
        if (!fuzz_is_object(out.p, out.len)) {
            fuzz_show("completion", out.p, out.len);
        }
        FUZZ_CHECK(fuzz_is_object(out.p, out.len));
        /* Members handed on are the completion's own, as spans of it. */
        struct jscan_item own[64];
        size_t n = 0;
        FUZZ_CHECK(members.n == 0 ||
                   (jscan((struct str){out.p, out.len}, own, 64, &n) &&
                    n == members.n));
        for (size_t i = 0; i < members.n; i++) {
            FUZZ_CHECK(str_eq(members.items[i].key, own[i].key) &&
                       members.items[i].value.p == own[i].value.p &&
                       members.items[i].end == own[i].end);
        }
        FUZZ_CHECK(usage.prompt_tokens >= 0 && usage.completion_tokens >= 0);
    } else {
        FUZZ_CHECK(perr.status >= 400 && perr.status <= 599);
        FUZZ_CHECK(perr.type != NULL);
    }
    buf_free(&out);

    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        struct provider_error e;
        memset(&e, 0, sizeof(e));
        ops->map_error(statuses[i], body, (uint32_t)(i * 7), &e);
        FUZZ_CHECK(e.status >= 400 && e.status <= 599);
        FUZZ_CHECK(e.type != NULL);
        FUZZ_CHECK(memchr(e.message, '\0', sizeof(e.message)) != NULL);
    }
    free(p);
    return 0;
}
