/*
 * framing.h - cuts an upstream byte stream into events, once for every
 * adapter: Server-Sent Events (text/event-stream) or NDJSON lines.
 *
 * Internal to src/providers/. Bytes arrive in any split; an event is handed
 * on only when complete. Every buffer is capped: an event larger than the
 * cap is a protocol error, never unbounded growth.
 */
#ifndef RL_FRAMING_H
#define RL_FRAMING_H

#include <stdbool.h>

#include "providers/provider.h"

/* Called once per complete event; a non-RL_OK return stops the feed. For
 * NDJSON, event is empty and data is the line. */
typedef enum rl_err (*framer_event_fn)(void *ctx, struct str event,
                                       struct str data);

struct framer {
    enum framing_kind kind; /* SSE or NDJSON */
    struct buf line;        /* the line being received */
    struct buf event;       /* SSE: the current event's name */
    struct buf data;        /* SSE: the current event's data lines */
    bool has_data;          /* SSE: a data field was seen */
    struct str view;        /* SSE: the one data line, still in the input */
    bool viewing;           /* data is view, not yet copied into data */
    bool after_cr;          /* the previous byte was a CR (CRLF pairs) */
};

/* Initialises f for kind; no event may exceed max_event bytes. */
void framer_init(struct framer *f, enum framing_kind kind, size_t max_event);
void framer_free(struct framer *f);
/* Feeds n bytes; calls fn for each event completed by them. */
enum rl_err framer_feed(struct framer *f, const char *p, size_t n,
                        framer_event_fn fn, void *ctx);
/* At the end of the stream: NDJSON hands on a last line without a newline;
 * SSE drops an event that was never ended by a blank line (as the SSE
 * specification says). */
enum rl_err framer_finish(struct framer *f, framer_event_fn fn, void *ctx);

#endif
