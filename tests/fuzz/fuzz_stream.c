/*
 * fuzz_stream.c - a provider's streamed answer: the input is the bytes an
 * upstream sends after a 200, cut into events by the real framer
 * (src/providers/framing.c: SSE or NDJSON) and turned into OpenAI chunks by
 * the real adapter's on_event. Built once per kind with -DFUZZ_KIND="...":
 * fuzz_stream_openai, _anthropic, _gemini, _ollama.
 *
 * Contracts checked besides "no crash, no leak, no undefined behaviour":
 * every chunk emitted is one well-formed JSON object (the core rebrands it
 * in place), and the outcome does not depend on how the bytes were split:
 * the whole input at once and the same input in small reads give the same
 * chunks, the same result, usage and finished flag.
 */
#include "fuzz.h"
#include "providers/framing.h"
#include "util/buf.h"

#ifndef FUZZ_KIND
#error "build with -DFUZZ_KIND=\"openai\" (or anthropic, gemini, ollama)"
#endif

#define FUZZ_MAX_EVENT (64u * 1024) /* small, so the cap is reached too */

struct run {
    struct chunk_sink sink;
    const struct provider_ops *ops;
    void *state;
    struct buf emitted; /* every chunk, each followed by a NUL */
    size_t nchunks;
    enum rl_err first_err;
};

static void emit(struct chunk_sink *sink, struct str chunk,
                 const struct chunk_members *members)
{
    struct run *r = sink->ctx;
    if (!fuzz_is_object(chunk.p, chunk.len)) {
        fuzz_show("chunk", chunk.p, chunk.len);
    }
    FUZZ_CHECK(fuzz_is_object(chunk.p, chunk.len));
    if (members) {
        for (size_t i = 0; i < members->n; i++) {
            /* A member's value lies inside the chunk. */
            const struct jscan_item *it = &members->items[i];
            FUZZ_CHECK(it->value.p >= chunk.p &&
                       it->value.p + it->value.len <= chunk.p + chunk.len);
        }
    }
    buf_append(&r->emitted, chunk.p, chunk.len);
    buf_append(&r->emitted, "", 1);
    r->nchunks++;
}

static enum rl_err on_frame(void *ctx, struct str event, struct str data)
{
    struct run *r = ctx;
    enum rl_err err = r->ops->on_event(r->state, event, data, &r->sink);
    if (err != RL_OK && r->first_err == RL_OK) {
        r->first_err = err;
    }
    return err;
}

/* Feeds p in reads of step bytes (0: all at once). */
static enum rl_err run_feed(struct run *r, const char *p, size_t n,
                            size_t step)
{
    memset(r, 0, sizeof(*r));
    r->ops = provider_ops_find(FUZZ_KIND);
    r->sink.emit = emit;
    r->sink.ctx = r;
    r->state = rl_calloc(1, r->ops->stream_state_size
                                ? r->ops->stream_state_size : 1);
    buf_init(&r->emitted, 64u << 20);
    struct framer f;
    framer_init(&f, r->ops->framing, FUZZ_MAX_EVENT);
    enum rl_err err = RL_OK;
    size_t off = 0;
    while (err == RL_OK && off < n) {
        size_t take = step && step < n - off ? step : n - off;
        /* Each read in its own allocation, as curl hands them over. */
        char *piece = rl_malloc(take);
        memcpy(piece, p + off, take);
        err = framer_feed(&f, piece, take, on_frame, r);
        free(piece);
        off += take;
    }
    if (err == RL_OK) {
        err = framer_finish(&f, on_frame, r);
    }
    framer_free(&f);
    free(r->state);
    return r->first_err != RL_OK ? r->first_err : err;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = fuzz_copy(data, size);
    struct run whole;
    struct run split;
    enum rl_err a = run_feed(&whole, p, size, 0);
    /* Reads of 1..8 bytes, chosen by the input so both vary together. */
    size_t step = 1 + (size ? (size_t)data[size - 1] % 8 : 0);
    enum rl_err b = run_feed(&split, p, size, step);
    FUZZ_CHECK(a == b);
    FUZZ_CHECK(whole.nchunks == split.nchunks);
    FUZZ_CHECK(whole.emitted.len == split.emitted.len);
    FUZZ_CHECK(whole.emitted.len == 0 ||
               memcmp(whole.emitted.p, split.emitted.p,
                      whole.emitted.len) == 0);
    FUZZ_CHECK(whole.sink.finished == split.sink.finished);
    FUZZ_CHECK(memcmp(&whole.sink.usage, &split.sink.usage,
                      sizeof(whole.sink.usage)) == 0);
    FUZZ_CHECK(strlen(whole.sink.error.message) <
               sizeof(whole.sink.error.message));
    buf_free(&whole.emitted);
    buf_free(&split.emitted);
    free(p);
    return 0;
}
