/*
 * fuzz.h - what the libFuzzer targets of tests/fuzz/ share: a copy of the
 * input without a terminating NUL (so that reading past it is caught by
 * ASan), the four adapters by kind, and a check that fails loudly.
 *
 * Header-only, included once per target. Each target is built by
 * `make fuzz` against the real library objects (build-fuzz/obj), never
 * against copies of them; see docs/reliability.md ("Fuzzing").
 */
#ifndef RL_FUZZ_H
#define RL_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "providers/provider.h"
#include "util/alloc.h"
#include "json_check.h"

/* A broken contract is a crash, so libFuzzer keeps the input. */
#define FUZZ_CHECK(cond)                                                  \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__,     \
                    __LINE__, #cond);                                     \
            abort();                                                      \
        }                                                                 \
    } while (0)

/* Prints text that broke a contract (bytes escaped), for the report. */
static inline void fuzz_show(const char *what, const char *p, size_t len)
{
    fprintf(stderr, "%s (%zu bytes): ", what, len);
    for (size_t i = 0; i < len && i < 2000; i++) {
        unsigned char b = (unsigned char)p[i];
        if (b >= 0x20 && b < 0x7f) {
            fputc(b, stderr);
        } else {
            fprintf(stderr, "\\x%02x", b);
        }
    }
    fputc('\n', stderr);
}

/* Returns a heap copy of the input with nothing after its last byte. */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
    char *p = rl_malloc(size ? size : 1);
    memcpy(p, data, size);
    return p;
}

/* For an input read in pieces: its first byte says how many bytes each
 * read brings (1..64). Returns that and a heap copy of the rest (*size
 * bytes, see fuzz_copy), or 0 and NULL for an empty input. */
static inline size_t fuzz_split(const uint8_t *data, size_t *size,
                                char **rest)
{
    *rest = NULL;
    if (*size == 0) {
        return 0;
    }
    size_t step = 1 + data[0] % 64;
    *rest = fuzz_copy(data + 1, *size - 1);
    (*size)--;
    return step;
}

/* True when text is one well-formed JSON object, in valid UTF-8. */
static inline bool fuzz_is_object(const char *p, size_t len)
{
    return p && json_check_object(p, len);
}

/* A provider and a model of the given kind, as config.c would make. */
struct fuzz_model {
    struct provider_cfg provider;
    struct model_cfg model;
};

static inline void fuzz_model_init(struct fuzz_model *m, const char *kind)
{
    memset(m, 0, sizeof(*m));
    m->provider.name = "up";
    m->provider.kind = (char *)kind;
    m->provider.ops = provider_ops_find(kind);
    m->provider.base_url = "http://127.0.0.1:9/v1";
    m->provider.api_key = "sk-fuzz";
    m->model.name = "small";
    m->model.provider = &m->provider;
    m->model.upstream = "upstream-model";
    m->model.context_tokens = 8192;
    FUZZ_CHECK(m->provider.ops != NULL);
}

#endif
