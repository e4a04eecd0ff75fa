/*
 * sse.c - Server-Sent Events as OpenAI streams them: one "data:" line per
 * JSON chunk, a blank line after each, and "data: [DONE]" at a clean end.
 * JSON from jansson's compact dump has no raw newline, so one data line
 * always holds the whole chunk.
 */
#include "server/server.h"

enum rl_err sse_event(struct buf *out, struct str json)
{
    enum rl_err err = buf_append(out, "data: ", 6);
    if (err == RL_OK) {
        err = buf_append_str(out, json);
    }
    if (err == RL_OK) {
        err = buf_append(out, "\n\n", 2);
    }
    return err;
}

enum rl_err sse_done(struct buf *out)
{
    return buf_append_cstr(out, "data: [DONE]\n\n");
}
