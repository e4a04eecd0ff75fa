/*
 * fakeprov.h - the fake LLM provider's shared types.
 *
 * A request is turned once into a `struct answer` (what to say, how fast,
 * which failure to stage); the connection code in conn.c times it and a
 * wire format (`struct fake_format`: openai.c, anthropic.c, gemini.c,
 * ollama.c) renders it. The model-name script (script.c) and the
 * deterministic text (text.c) know nothing about HTTP or any wire format;
 * a format is one parser and one set of renderers plus a route line in
 * conn.c:dispatch().
 *
 * Read first: struct answer below, then conn.c:job_start().
 */
#ifndef FAKEPROV_H
#define FAKEPROV_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/str.h"

#define FAKE_MAX_TOKENS 16000000   /* largest completion length allowed:
                                      about 80 MB of text (huge answers) */
#define FAKE_MAX_BODY (16u << 20)  /* largest request body, bytes */
#define FAKE_MAX_HEADERS (64u << 10) /* largest request head, bytes */

/* ---------------------------------------------------------------------- */
/* Options from the command line; read-only once the workers run.         */

struct fake_opts {
    char host[64];        /* listen address, numeric IPv4 or IPv6 */
    int port;             /* listen port; 0 picks a free one */
    int nworkers;         /* threads, each with its own loop */
    int64_t ttft_ms;      /* default delay before the first token, ms */
    double tps;           /* default pacing, tokens per second; 0 = none */
    int64_t tokens;       /* default completion length, tokens */
    const char *require_key; /* bearer key demanded, or NULL */
    bool quiet;           /* no start line */
    bool verbose;         /* one log line per request */
    bool record;          /* keep the request ring for /_fake/requests */
    uint64_t seed;        /* seed of the PRNG behind the `p` script key */
};

extern struct fake_opts fake_opts;

/* ---------------------------------------------------------------------- */
/* script.c: the model-name script, `base?key=value&key=value`.           */

enum fake_fault {
    FAULT_NONE = 0,
    FAULT_RESET,       /* RST before any byte */
    FAULT_HANG,        /* never answer */
    FAULT_STALL,       /* stream `after` tokens, then send nothing more */
    FAULT_CUT,         /* stream `after` tokens, then close */
    FAULT_MALFORMED,   /* after `after` tokens, an event that is not JSON */
    FAULT_NODONE,      /* a whole stream without `data: [DONE]` */
    FAULT_SLOWHEADERS, /* wait ttft, send the headers only, hang */
    FAULT_SAFETY,      /* a healthy answer with no text, stopped by a filter */
    FAULT_BLOCKED      /* the prompt itself blocked (Gemini promptFeedback) */
};

struct script {
    struct str base;       /* the model name before '?' */
    int64_t ttft_ms;       /* delay before the first token, ms; -1 unset */
    double tps;            /* tokens per second; -1 unset, 0 = no pacing */
    int64_t tokens;        /* completion length, tokens; -1 unset */
    int status;            /* HTTP status to answer with; 0 = success */
    struct str code;       /* error code override; len 0 = default */
    enum fake_fault fault; /* failure to stage */
    int64_t after;         /* tokens before a mid-stream fault; -1 = half */
    int64_t first;         /* failures only for the first N; 0 = all */
    int64_t flap;          /* failures for requests 1..N, 2N+1..3N, ...
                              of this model string, healthy between;
                              0 = no flapping */
    double p;              /* probability the failure applies, 0..1 */
    int64_t retry_after_s; /* Retry-After of a 429, s; 0 = no header */
    int64_t cache_read;    /* cached prompt tokens read (`cached`) */
    int64_t cache_write;   /* prompt tokens written to the cache */
    int64_t usage;         /* 0: OpenAI answers carry no usage; 1 (the
                              default, set by the parser) reports it */
    int64_t slow_ms;       /* extra delay before the first token for the
                              requests numbered slow_from..slow_to */
    int64_t slow_from;     /* first slow request (1-based, per model
                              string, across workers) */
    int64_t slow_to;       /* last slow request; 0: no end */
};

/*
 * Parses the script in model into out; out->base and out->code point into
 * model. Returns RL_E_INVALID_REQUEST with a reason in err (at most
 * errlen bytes, NUL-terminated) on an unknown key or a bad value.
 */
enum rl_err fake_script_parse(struct str model, struct script *out, char *err,
                              size_t errlen);
/* True when sc stages a failure (a status or a fault). */
bool fake_script_has_failure(const struct script *sc);
/*
 * Decides whether the failure of sc applies to this request of the exact
 * model string model: counts the request when sc->first is set, draws from
 * the shared PRNG when sc->p < 1. Thread-safe.
 */
bool fake_script_failure_applies(const struct script *sc, struct str model);
/* Counts this request of model (its own count, apart from `first`'s) and
 * returns the extra first-token delay in ms it gets from slow_ms/from/to:
 * a provider that slows down for a stretch of requests, then recovers. */
int64_t fake_script_slow_ms(const struct script *sc, struct str model);
/* Forgets every `first` counter and reseeds the PRNG. Thread-safe. */
void fake_script_reset(uint64_t seed);
/* Returns the name of a fault ("cut"), for logs. */
const char *fake_script_fault_name(enum fake_fault f);

/* ---------------------------------------------------------------------- */
/* text.c: deterministic words, token counts, values from JSON schemas.   */

#define TEXT_FNV_OFFSET 14695981039346656037ull
#define TEXT_VOCAB_LEN 64

/* Continues the 64-bit FNV-1a hash h over the n bytes at p. */
uint64_t fake_text_fnv1a(uint64_t h, const void *p, size_t n);
/* Returns the word at index i of the answer to a prompt hashing to seed. */
struct str fake_text_word(uint64_t seed, uint32_t i);
/* Returns the number of Unicode code points in the UTF-8 bytes s. */
size_t fake_text_chars(struct str s);
/* Scans the text of a message content (a string, or the text parts of an
 * array joined with nothing): continues the hash *h over it and adds its
 * code points to *chars; either pointer may be NULL. */
void fake_text_content_scan(const json_t *content, uint64_t *h, size_t *chars);
/* Scans the text of Gemini parts ([{"text":...}, ...], other parts
 * ignored) like fake_text_content_scan(). */
void fake_text_parts_scan(const json_t *parts, uint64_t *h, size_t *chars);
/* Returns the tokens one message of chars code points costs: ceil/4 + 4. */
int64_t fake_text_message_tokens(size_t chars);
/* Returns sum over messages of ceil(chars / 4) + 4 (see docs/fakeprov.md). */
int64_t fake_text_prompt_tokens(const json_t *messages);
/* Returns the FNV-1a hash of the last user message's text. */
uint64_t fake_text_prompt_seed(const json_t *messages);
/*
 * Appends to out a compact JSON object with every `required` property of
 * the JSON schema set to a value of its type (see docs/fakeprov.md).
 */
enum rl_err fake_text_fill_schema(const json_t *schema, struct buf *out);

/* ---------------------------------------------------------------------- */
/* The answer: computed once per request, rendered by a wire format.      */

enum answer_kind {
    ANSWER_TEXT = 0, /* content is words (plain or a JSON object) */
    ANSWER_TOOL,     /* one tool call; content is its arguments */
    ANSWER_ERROR     /* an error body with status */
};

struct answer {
    enum answer_kind kind;
    uint64_t id;             /* number in chatcmpl-fake-<id>, call_fake_<id> */
    int64_t created_s;       /* unix time of the request, s */
    int64_t created_ns;      /* the same in ns (Ollama's created_at) */
    bool stream;             /* answer as a stream of events */
    bool include_usage;      /* stream: a usage chunk at the end */
    struct buf model;        /* the request's model string, echoed */
    struct buf content;      /* text, JSON text, or tool arguments */
    struct buf tool_name;    /* ANSWER_TOOL: the function called */
    size_t *cuts;            /* end offset in content of each piece */
    size_t npieces;          /* pieces streamed (tokens, fragments) */
    size_t cuts_cap;         /* entries allocated in cuts */
    const char *finish;      /* "stop", "length", "tool_calls",
                                "stop_sequence" or "content_filter" */
    struct buf stop_seq;     /* finish "stop_sequence": the one matched */
    int64_t prompt_tokens;   /* usage, see fake_text_prompt_tokens(); the
                                uncached input, cache tokens not included */
    int64_t cache_read;      /* usage: cached input tokens read */
    int64_t cache_write;     /* usage: input tokens written to the cache */
    int64_t completion_tokens; /* usage: the answer's length in tokens */
    bool no_usage;           /* OpenAI format: leave usage out entirely */
    uint64_t ttft_ms;        /* delay before the first token, ms */
    double tps;              /* pacing, tokens per second; 0 = none */
    int status;              /* ANSWER_ERROR: HTTP status */
    const char *err_type;    /* ANSWER_ERROR: error.type */
    struct buf err_code;     /* ANSWER_ERROR: error.code; empty = null */
    bool err_code_scripted;  /* err_code came from the `code` script key */
    struct buf err_msg;      /* ANSWER_ERROR: error.message */
    int64_t retry_after_s;   /* 429: Retry-After, s; 0 = no header */
    enum fake_fault fault;   /* failure staged, FAULT_NONE when healthy */
    size_t after;            /* pieces sent before a mid-stream fault */
};

/* Initialises an empty answer whose buffers are reused across requests. */
void fake_answer_init(struct answer *a);
void fake_answer_free(struct answer *a);
/* Empties a for the next request, keeping its allocations. */
void fake_answer_reset(struct answer *a);
/* Makes a an error answer: status, type, code (NULL = null), message. */
void fake_answer_error(struct answer *a, int status, const char *type,
                       const char *code, const char *msg);
/*
 * Makes a the error staged by sc->status (400, 401, 404, 429, 500, 503 or
 * another), with sc->code as the code when given.
 */
void fake_answer_scripted_error(struct answer *a, const struct script *sc);
/* Appends a cut at offset end of a->content (one more piece). */
void fake_answer_cut(struct answer *a, size_t end);
/* Cuts a->content from offset from into n pieces of about equal size,
 * never inside a UTF-8 sequence. */
void fake_answer_split(struct answer *a, size_t from, size_t n);
/* Fills a->content with ntokens words for seed, one piece per word, as
 * plain text ("w " each) or, when as_json, as {"answer":"w w"}. */
void fake_answer_words(struct answer *a, uint64_t seed, size_t ntokens,
                       bool as_json);
/* Returns the next number for ids (msg_fake_<n>, ...), across workers. */
uint64_t fake_answer_next_id(void);
/*
 * The shared middle of every format's build(): parses the script in
 * a->model into sc and sets the answer's length (capped by limit when
 * limit >= 0, then finish "length"), timing and cache counts. Returns
 * false with a 400 answer on a bad script.
 */
bool fake_answer_begin(struct answer *a, const struct fake_opts *o,
                       int64_t limit, struct script *sc);
/*
 * Cuts a plain-text answer at the earliest occurrence of any string of the
 * JSON array stops (or the one string stops), with finish "stop_sequence"
 * and the string in a->stop_seq. Returns true when it cut.
 */
bool fake_answer_stop_at(struct answer *a, const json_t *stops);
/* A final assistant message (prefill) of text prefill: a text answer
 * that begins with it goes on from where it ends (content and pieces
 * after it, completion_tokens the pieces left); any other is left whole.
 * Returns true if it went on. */
bool fake_answer_continue(struct answer *a, struct str prefill);
/*
 * The shared end of every build(): when sc's failure applies, makes a the
 * scripted error or stages the fault (safety and blocked empty the answer:
 * no pieces, 0 completion tokens, finish "content_filter").
 */
void fake_answer_stage(struct answer *a, const struct script *sc);

/* Small writers for the renderers; the buffers' caps are far above any
 * answer, so a failed append only truncates it. */
void fake_put(struct buf *b, const char *s);
void fake_put_esc(struct buf *b, const char *p, size_t n);
void fake_put_i64(struct buf *b, int64_t v);

/* ---------------------------------------------------------------------- */
/* A wire format: parse its request into an answer, render the answer.    */

/* How a format's requests carry the --require-key key. */
enum fake_auth {
    AUTH_BEARER = 0, /* Authorization: Bearer KEY (OpenAI) */
    AUTH_X_API_KEY,  /* x-api-key: KEY or Bearer KEY (Anthropic) */
    AUTH_GOOGLE,     /* x-goog-api-key: KEY or ?key=KEY (Gemini) */
    AUTH_NONE        /* no key ever (Ollama) */
};

struct fake_format {
    const char *name;        /* "openai" */
    const char *stream_type; /* Content-Type of a stream */
    enum fake_auth auth;     /* where --require-key's key is looked for */
    const char *need_header; /* a header that must be present, or NULL */
    /*
     * Reads what the URL says (Gemini: the model and whether to stream)
     * into a before build(); may set an error answer. NULL = nothing.
     */
    void (*from_url)(struct str url, struct answer *a);
    /*
     * Builds a from the parsed request body and the options; sets an error
     * answer (ANSWER_ERROR) for bad input. Never fails otherwise.
     */
    void (*build)(const json_t *req, const struct fake_opts *o,
                  struct answer *a);
    /* Appends the whole non-stream body (or the error body). */
    void (*body)(const struct answer *a, struct buf *out);
    /* Appends the events sent with the stream's headers. */
    void (*stream_head)(const struct answer *a, struct buf *out);
    /* Appends the events of piece k. */
    void (*stream_piece)(const struct answer *a, size_t k, struct buf *out);
    /* Appends the closing events; [DONE] (or its like) only when done. */
    void (*stream_end)(const struct answer *a, bool done, struct buf *out);
    /* Appends one event whose data is not valid JSON. */
    void (*stream_malformed)(const struct answer *a, struct buf *out);
    /* Appends the error body of a (used for every non-2xx answer). */
    void (*error_body)(const struct answer *a, struct buf *out);
};

extern const struct fake_format fake_openai_format;
extern const struct fake_format fake_anthropic_format;
extern const struct fake_format fake_gemini_format;
extern const struct fake_format fake_ollama_format;

/* Appends the OpenAI list of the fake's models (GET /v1/models). */
void fake_openai_models(struct buf *out);
/* True when url (path and query) is a Gemini generateContent call:
 * /v1beta/models/{model}:generateContent or :streamGenerateContent. */
bool fake_gemini_route(struct str url);
/* Appends the Ollama model list (GET /api/tags). */
void fake_ollama_tags(struct buf *out);
/* Appends the Ollama version object (GET /api/version). */
void fake_ollama_version(struct buf *out);

/* ---------------------------------------------------------------------- */
/* record.c: the ring of recent chat requests behind /_fake/requests.     */

struct record_header {
    struct str name;  /* as received; lower-cased when recorded */
    struct str value; /* as received */
};

/* Sets the ring's size (entries); 0 turns recording off. */
void fake_record_init(size_t cap);
/* Records one request; body is embedded as JSON when body_is_json, else as
 * a string. Copies everything. Thread-safe. */
void fake_record_add(const char *method, struct str path,
                     const struct record_header *h, size_t nh, struct str body,
                     bool body_is_json);
/* Appends the ring, oldest first, as a JSON array. Thread-safe. */
void fake_record_dump(struct buf *out);
/* Empties the ring. Thread-safe. */
void fake_record_clear(void);
/* Frees the calling thread's serialisation buffer; call as a worker ends. */
void fake_record_thread_free(void);

/* ---------------------------------------------------------------------- */
/* conn.c: one client connection on a worker's loop.                      */

/* Accepts a connection on server and starts reading from it. A listener's
 * handle has data == NULL; a connection's handles point to it. */
void fake_conn_accept(uv_stream_t *server);
/* uv_walk callback for a stopping worker: closes every handle, freeing the
 * connections as their handles close. */
void fake_conn_close_all(uv_handle_t *h, void *arg);

#endif
