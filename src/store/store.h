/*
 * store.h - the request log: one row per request, written off the event
 * loop to PostgreSQL or SQLite, through a local journal when the store is
 * out of reach, so that no row is lost or written twice.
 *
 * The gateway calls store_open() before its workers start and
 * store_close() after they have stopped; accounting_finish() calls
 * store_enqueue() once per request. Rows cross threads only through the
 * writer's bounded queue (writer.c). The engines (pg.c, sqlite.c) and the
 * journal (journal.c) are used by the writer thread and by `relay migrate`.
 * The invariants are in docs/internals/request-log.md.
 */
#ifndef RL_STORE_H
#define RL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"

/* ---------------------------------------------------------------------
 * One row of request_log
 * ------------------------------------------------------------------- */

/* Fixed-size strings, so a row is copied into the queue with memcpy and no
 * allocation. Longer values are cut at a UTF-8 boundary. */
struct store_row {
    int64_t ts_us;               /* when the request arrived, Unix time */
    char request_id[32];         /* unique; "req_" + 24 hex digits */
    char key_prefix[16];         /* display prefix of the API key */
    char key_id[32];             /* "key_" + 16 hex of a store key, or "" */
    char model_requested[256];   /* "auto" or a name, as the client sent */
    char model[128];             /* configured model that answered */
    char provider[64];           /* configured provider name */
    char error_type[64];         /* OpenAI error type, or empty */
    char error_code[64];         /* OpenAI error code, or empty */
    char cache_status[16];       /* "miss" for now */
    int32_t status;              /* HTTP status sent */
    int32_t attempts;            /* upstream requests made */
    int64_t prompt_tokens;       /* tokens */
    int64_t completion_tokens;   /* tokens */
    int64_t cached_tokens;       /* tokens */
    int64_t cache_write_tokens;  /* tokens */
    int64_t reasoning_tokens;    /* tokens */
    int64_t cost_nusd;           /* nano-dollars */
    int64_t savings_nusd;        /* nano-dollars; 0 until the cache */
    double cache_similarity;     /* cosine, when has_similarity */
    uint64_t latency_us;         /* arrival to end of response */
    uint64_t ttft_us;            /* to the first streamed event */
    uint64_t upstream_us;        /* waiting on providers */
    uint64_t overhead_us;        /* latency_us - upstream_us */
    bool stream;                 /* the response was SSE */
    bool usage_estimated;        /* the provider reported no usage */
    bool client_gone;            /* the client left before the end */
    bool has_similarity;         /* cache_similarity is set (else null) */
};

/* The columns of request_log, in the order the engines bind them. */
#define STORE_COLUMNS                                                     \
    "ts, request_id, key_prefix, model_requested, model, provider, "      \
    "status, error_type, error_code, stream, prompt_tokens, "             \
    "completion_tokens, cached_tokens, cache_write_tokens, "              \
    "reasoning_tokens, usage_estimated, cost_nusd, savings_nusd, "        \
    "cache_status, cache_similarity, latency_us, ttft_us, upstream_us, "  \
    "overhead_us, attempts, client_gone, key_id"
#define STORE_NCOLUMNS 27

/* Copies the NUL-terminated src (NULL: "") into dst of size n, cut at a
 * UTF-8 character boundary when it does not fit. */
void store_copy_text(char *dst, size_t n, const char *src);

/* Appends row as one JSON object (no newline) to b: the journal format. */
enum rl_err store_row_encode(const struct store_row *row, struct buf *b);
/* Parses one JSON object written by store_row_encode into row. Returns
 * RL_E_INVALID_JSON when line is not one (a torn or foreign line). */
enum rl_err store_row_decode(const char *line, size_t len,
                             struct store_row *row);
/* Writes ts_us as "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" (UTC) into out[32]. */
void store_ts_format(int64_t ts_us, char out[32]);

/* ---------------------------------------------------------------------
 * The store as a whole (writer.c): one per process
 * ------------------------------------------------------------------- */

/* Counters since store_open, for logs and tests. */
struct store_stats {
    uint64_t enqueued;     /* rows handed to store_enqueue */
    uint64_t inserted;     /* rows sent to the store in a committed batch */
    uint64_t journaled;    /* rows appended to the journal */
    uint64_t overflowed;   /* of those, rows journaled because the queue
                              was full */
    uint64_t replayed;     /* journal rows sent to the store */
    uint64_t lost;         /* rows neither stored nor journaled */
    uint64_t failed_batches; /* inserts that failed */
};

/* Options of store_open; zero values take the defaults. */
struct store_opts {
    size_t queue_rows;     /* queue capacity (default 8192) */
    size_t batch_rows;     /* most rows per insert (default 500) */
    uint64_t batch_wait_ms; /* longest wait for a full batch (default 50) */
    uint64_t retry_max_ms; /* longest reconnect backoff (default 5000) */
    const char *journal_dir; /* default: beside the store (see store.c) */
};

/*
 * Opens the process's store for url ("postgres://..." or
 * "postgresql://...", "sqlite:PATH", or NULL/empty for SQLite at
 * .relay/relay.db), applies pending migrations, and starts the writer
 * thread, which replays a journal left by an earlier run. A store that
 * cannot be reached is logged with what to do and is not an error: rows go
 * to the journal until it is back. Returns RL_E_CONFIG for a URL it cannot
 * use and RL_E_IO when the journal folder cannot be created (both logged).
 */
enum rl_err store_open(const char *url, const struct store_opts *opts);
/* Copies row into the queue and returns at once: never waits on the store
 * or the writer. When the queue is full the row is appended to the journal
 * instead (counted, logged at most once a second). Does nothing when no
 * store is open. Thread-safe. */
void store_enqueue(const struct store_row *row);
/* Waits until every row enqueued before the call has been stored or
 * journaled. For tests and shutdown. */
void store_flush(void);
/* Returns a snapshot of the counters. */
struct store_stats store_stats_get(void);
/* Drains the queue into the store (or the journal), stops the writer and
 * closes everything. Safe to call when nothing is open. */
void store_close(void);

/* ---------------------------------------------------------------------
 * Engines (pg.c, sqlite.c), used by the writer thread and `relay migrate`
 * ------------------------------------------------------------------- */

struct store_conn;

struct store_engine {
    const char *name; /* "postgresql" or "sqlite" */
    /* Connects; on failure writes why into err (size n) and returns NULL. */
    struct store_conn *(*connect)(const char *target, char *err, size_t n);
    void (*disconnect)(struct store_conn *c);
    /* Inserts rows in one transaction, ignoring request ids already there.
     * On failure writes why into err and returns RL_E_IO: nothing of the
     * batch may be assumed stored (nor assumed absent). */
    enum rl_err (*insert)(struct store_conn *c, const struct store_row *rows,
                          size_t n, char *err, size_t errn);
    /* Runs one migration's SQL and records version in schema_migrations,
     * in one transaction, unless version is already recorded. Sets
     * *applied when it ran. */
    enum rl_err (*migrate_one)(struct store_conn *c, int version,
                               const char *name, const char *sql,
                               bool *applied, char *err, size_t errn);
    /* Counts the rows of request_log (tests, `relay migrate`). */
    int64_t (*count)(struct store_conn *c);
};

extern const struct store_engine store_pg;
extern const struct store_engine store_sqlite;

/* Where a URL leads: the engine, its connect target, and the default
 * journal folder. Returns RL_E_CONFIG with a message in err otherwise. */
struct store_target {
    const struct store_engine *engine;
    char target[1024];      /* libpq URL, or SQLite file path */
    char journal_dir[1024]; /* where this store's journal lives */
    char shown[1024];       /* the URL without a password, for messages */
};
enum rl_err store_target_parse(const char *url, struct store_target *t,
                               char *err, size_t n);

/*
 * Applies every migration in the migrations folder ($RELAY_MIGRATIONS,
 * else ./migrations, else migrations/ beside the binary's folder) that c
 * lacks, in order. Files are NNN_name.sql (both engines), or
 * NNN_name.pg.sql / NNN_name.sqlite.sql (one engine). Sets *napplied.
 */
enum rl_err store_migrate(const struct store_engine *e, struct store_conn *c,
                          int *napplied, char *err, size_t n);

/* ---------------------------------------------------------------------
 * The journal (journal.c): rows that could not be stored yet
 * ------------------------------------------------------------------- */

struct journal;

/* Opens the journal in dir (created if missing). Nothing is written until
 * the first append. Returns NULL and writes why into err on failure. */
struct journal *journal_open(const char *dir, char *err, size_t n);
void journal_close(struct journal *j);
/* Appends rows as JSON lines to this process's journal file, then fsyncs
 * it when sync is set. All or nothing: a failed write is cut back off.
 * Thread-safe. */
enum rl_err journal_append(struct journal *j, const struct store_row *rows,
                           size_t n, bool sync);
/* Fsyncs what was appended without sync. Thread-safe. */
enum rl_err journal_sync(struct journal *j);
/* Whether a journal file may hold rows (this process's or one left by
 * another process that is gone). */
bool journal_pending(struct journal *j);

/* Called by journal_replay with rows in journal order; returns RL_OK when
 * they are stored. */
typedef enum rl_err (*journal_sink_fn)(void *arg, const struct store_row *rows,
                                       size_t n);
/*
 * Replays every journal file not held by a live process, oldest first, in
 * batches of up to batch rows, and deletes each file once all its rows are
 * stored. This process's current file is closed first (the next append
 * starts a new one). A torn or unreadable line is skipped and counted in
 * *nbad. Stops at the first failed batch (its file stays, whole). Sets
 * *nrows to the rows handed to sink successfully.
 */
enum rl_err journal_replay(struct journal *j, size_t batch,
                           journal_sink_fn sink, void *arg, uint64_t *nrows,
                           uint64_t *nbad);

#endif
