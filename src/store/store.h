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
    char route[512];             /* the x-relay-route text, or "" */
    char attempt_log[640];       /* upstream attempts as a JSON array, or
                                    "" (never cut mid-object: see
                                    accounting.c) */
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
    "overhead_us, attempts, client_gone, key_id, route, attempt_log"
#define STORE_NCOLUMNS 29

/* Copies the NUL-terminated src (NULL: "") into dst of size n, cut at a
 * UTF-8 character boundary when it does not fit. */
void store_copy_text(char *dst, size_t n, const char *src);

/* Appends row as one JSON object (no newline) to b: the journal format. */
enum rl_err store_row_encode(const struct store_row *row, struct buf *b);
/* Appends row to b as one line of PostgreSQL's COPY text format: the
 * columns of STORE_COLUMNS in order, tab-separated, backslash escapes, \N
 * for null (error_type and error_code when empty, cache_similarity when
 * unset), ending in a newline. RL_E_CAP (b unchanged) past b's cap. */
enum rl_err store_row_copy_line(const struct store_row *row, struct buf *b);
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
    uint64_t rejected;     /* rows the store refused for their content,
                              set aside in the journal folder's
                              rejected.jsonl */
};

/* Options of store_open; zero values take the defaults. */
struct store_opts {
    size_t queue_rows;     /* queue capacity (default 8192) */
    size_t batch_rows;     /* most rows per insert (default 2000) */
    uint64_t batch_wait_ms; /* longest wait for a full batch (default 50) */
    uint64_t retry_max_ms; /* longest reconnect backoff (default 5000) */
    const char *journal_dir; /* default: beside the store (see store.c) */
    uint32_t retention_days; /* request_log.retention_days; 0: keep all */
    uint64_t maintain_every_ms; /* between partition passes (default one
                                   hour; one also runs at each connect) */
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
/* Rows waiting in the queue now; 0 when no store is open. Takes the
 * queue's lock for a moment: for scrapes, not for the request path. */
size_t store_queue_depth(void);
/* The queue's capacity in rows; 0 when no store is open. */
size_t store_queue_capacity(void);
/* Bytes in the journal folder's journal files (rows not yet in the
 * store); 0 when no store is open. Lists the folder: for scrapes. */
uint64_t store_journal_bytes(void);
/* Drains the queue into the store (or the journal), stops the writer and
 * closes everything. Safe to call when nothing is open. */
void store_close(void);

/* ---------------------------------------------------------------------
 * Engines (pg.c, sqlite.c), used by the writer thread and `relay migrate`
 * ------------------------------------------------------------------- */

struct store_conn;

/* Called by an engine's query for each result row: cols[i] is the text of
 * column i, or NULL for an SQL null; valid only during the call. */
typedef void (*store_row_fn)(void *arg, const char *const *cols, int ncols);

/* What one maintenance pass did (store_partitions_maintain). */
struct store_maintenance {
    int created;        /* partitions made */
    int dropped;        /* partitions dropped by retention */
    int64_t deleted_rows; /* rows past retention deleted from it */
    char dropped_first[64]; /* the oldest partition dropped, or "" */
};

struct store_engine {
    const char *name; /* "postgresql" or "sqlite" */
    /* Connects; on failure writes why into err (size n) and returns NULL. */
    struct store_conn *(*connect)(const char *target, char *err, size_t n);
    void (*disconnect)(struct store_conn *c);
    /* Inserts rows in one transaction, ignoring request ids already there.
     * On failure writes why into err and returns RL_E_REJECTED when a row's
     * content was refused (another try cannot help), else RL_E_IO; either
     * way nothing of the batch is stored. */
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
    /* Runs one statement with text parameters $1..$nparams (NULL: SQL
     * null) and calls fn (if not NULL) for each row it returns. On failure
     * writes why into err and returns RL_E_IO. Used by keys.c. */
    enum rl_err (*query)(struct store_conn *c, const char *sql,
                         const char *const *params, int nparams,
                         store_row_fn fn, void *arg, char *err, size_t errn);
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
 * API keys (keys.c): blocking calls, never on an event loop
 *
 * Used by `relay keys`, the admin API (on libuv's thread pool) and the key
 * cache's thread (src/auth/keycache.c), each with its own connection. Only
 * a key's SHA-256 and display prefix are stored, never the key. Every
 * change (create, revoke) gives the key's row a new version, larger than
 * any before, and writers are serialised, so a reader that polls
 * store_keys_since(last version seen) in order misses no change. See
 * docs/internals/keys.md.
 * ------------------------------------------------------------------- */

/* The period a budget is counted over (UTC calendar periods). */
enum store_period {
    STORE_PERIOD_NONE = 0, /* no budget */
    STORE_PERIOD_DAY,      /* since 00:00 UTC today */
    STORE_PERIOD_WEEK,     /* since Monday 00:00 UTC */
    STORE_PERIOD_MONTH,    /* since the 1st, 00:00 UTC */
    STORE_PERIOD_TOTAL,    /* since the key was made */
};

#define STORE_KEY_MODELS_MAX 1024 /* bytes of the models JSON text */
#define STORE_KEY_ROUTING_MAX 256 /* bytes of the routing JSON text */
#define STORE_KEY_CACHE_MAX 64    /* bytes of the cache JSON text */

/* One row of api_keys. Fixed sizes, as store_row. */
struct store_key {
    char id[32];              /* "key_" + 16 hex digits, stable */
    char name[64];            /* chosen by the operator */
    char prefix[16];          /* "glw_" + the key's first 4 characters */
    char sha256_hex[65];      /* SHA-256 of the whole key, lower-case hex */
    int64_t rpm;              /* requests per minute; 0: no limit */
    int64_t tpm;              /* tokens per minute; 0: no limit */
    int64_t max_concurrent;   /* requests at once; 0: no limit */
    int64_t budget_nusd;      /* spend per period, nano-dollars; 0: none */
    enum store_period budget_period; /* NONE when budget_nusd is 0 */
    char models[STORE_KEY_MODELS_MAX];   /* JSON array of names; []: all */
    char routing[STORE_KEY_ROUTING_MAX]; /* JSON object; {}: no defaults */
    char created_at[32];      /* "YYYY-MM-DDTHH:MM:SSZ" (UTC) */
    char revoked_at[32];      /* the same, or "" while the key is live */
    int64_t version;          /* of its last change */
    char cache[STORE_KEY_CACHE_MAX]; /* JSON object: {"threshold": 0.95};
                                        {}: the configured ones */
};

/* One key's spend over a period, from request_log. */
struct store_spend {
    char key_id[32];   /* api_keys.id */
    int64_t spent_nusd; /* sum(cost_nusd), nano-dollars */
};

/* An open connection to the store of a URL, with its engine. */
struct store_db {
    const struct store_engine *engine;
    struct store_conn *conn;
    struct store_target target;
};

/* Returns the name of p ("day", "week", "month", "total"; "" for NONE). */
const char *store_period_name(enum store_period p);
/* Parses a period name; false for anything else. */
bool store_period_parse(const char *s, enum store_period *out);
/* Returns the start of the period p that holds now_us (Unix time, UTC), in
 * Unix microseconds; 0 for TOTAL and NONE. */
int64_t store_period_start_us(enum store_period p, int64_t now_us);

/* Connects db to url (as store_open reads it; "none" is RL_E_CONFIG) and,
 * when migrate is set, applies pending migrations. On failure writes what
 * to do into err and returns RL_E_CONFIG or RL_E_IO; db needs no close. */
enum rl_err store_db_open(const char *url, bool migrate, struct store_db *db,
                          char *err, size_t n);
/* Closes what store_db_open opened; safe on a zeroed db. */
void store_db_close(struct store_db *db);

/* Inserts k (id, name, prefix, sha256_hex, limits, models, routing set by
 * the caller) with created_at now and the next version, which it writes
 * back into k. RL_E_INVALID_REQUEST (err says why) when the id or hash is
 * taken; RL_E_IO when the store fails. */
enum rl_err store_key_insert(struct store_db *db, struct store_key *k,
                             char *err, size_t n);
/* Returns the keys (live only, or all with all) in order of creation in
 * *out, which the caller frees, and their number in *nout. */
enum rl_err store_keys_list(struct store_db *db, bool all,
                            struct store_key **out, size_t *nout, char *err,
                            size_t n);
/* Revokes the live key whose id or prefix is id_or_prefix and copies its
 * row, as revoked, into out. RL_E_NOT_FOUND when no live key matches (err
 * says so, and whether it was revoked already); RL_E_INVALID_REQUEST when
 * a prefix matches several live keys (err lists their ids). */
enum rl_err store_key_revoke(struct store_db *db, const char *id_or_prefix,
                             struct store_key *out, char *err, size_t n);
/* Returns every key (live or revoked) changed after version, in version
 * order, in *out (the caller frees it). 0 loads them all. */
enum rl_err store_keys_since(struct store_db *db, int64_t version,
                             struct store_key **out, size_t *nout, char *err,
                             size_t n);
/* Returns, for each key with requests since since_us (Unix microseconds),
 * the sum of their cost in *out (the caller frees it). */
enum rl_err store_keys_spend(struct store_db *db, int64_t since_us,
                             struct store_spend **out, size_t *nout,
                             char *err, size_t n);

/* ---------------------------------------------------------------------
 * The hourly rollup (rollup.c) and the analytics read from it
 * (analytics.c); docs/internals/analytics.md
 * ------------------------------------------------------------------- */

#define STORE_HOUR_US 3600000000LL /* microseconds in an hour */
#define STORE_LAT_BUCKETS 32       /* buckets of the latency histogram */

/* Lower bound of each latency bucket, microseconds: 0, then 1 ms *
 * 2^((k-1)/2) rounded; the last bucket (32.768 s) has no upper bound. */
extern const uint64_t store_latency_bounds_us[STORE_LAT_BUCKETS];
/* Returns the bucket of latency_us (0..STORE_LAT_BUCKETS-1). */
int store_latency_bucket(uint64_t latency_us);
/* Returns the q-quantile (0 < q <= 1) of a histogram, in milliseconds,
 * interpolated linearly inside its bucket; 0 for an empty histogram. */
double store_latency_quantile_ms(const int64_t hist[STORE_LAT_BUCKETS],
                                 double q);
/* Whether the row was answered from the cache (exact or semantic). */
bool store_row_cache_hit(const struct store_row *r);
/* Whether the row counts as a server-side failure (errors_5xx): status
 * 500 and up, or a stream that failed after its 200 was sent (its status
 * stays what the client got, its error code says what happened). */
bool store_row_server_error(const struct store_row *r);
/*
 * Adds rows[i] for which stored[i] is set (every row when stored is NULL)
 * to request_rollup through e's query on c, which must be inside the
 * transaction that inserted them. Borrows everything. RL_E_IO with err on
 * failure (the caller rolls back).
 */
enum rl_err store_rollup_add(const struct store_engine *e,
                             struct store_conn *c,
                             const struct store_row *rows, const bool *stored,
                             size_t n, char *err, size_t errn);

/* Sums over a set of rows. Money in nano-dollars, latency in us. */
struct store_an_sums {
    int64_t requests;          /* rows */
    int64_t prompt_tokens;     /* tokens */
    int64_t completion_tokens; /* tokens */
    int64_t cost_nusd;         /* spend */
    int64_t savings_nusd;      /* what cache hits would have cost */
    int64_t cache_hits;        /* rows answered from the cache */
    int64_t errors_4xx;        /* rows with status 400..499 */
    int64_t errors_5xx;        /* rows with status >= 500, and streams
                                  that failed after their 200 */
    int64_t latency_sum_us;    /* sum of latency_us */
};

/* One hour of a range (hour_us: its start, Unix microseconds). */
struct store_an_hour {
    int64_t hour_us;
    struct store_an_sums s;
};

struct store_an_provider {
    char provider[64];  /* configured provider name */
    int64_t requests;   /* rows */
    int64_t cost_nusd;  /* spend */
};

struct store_an_model {
    char model[128];                  /* configured model ("" unrouted) */
    int64_t requests;                 /* rows */
    int64_t hist[STORE_LAT_BUCKETS];  /* rows per latency bucket */
};

struct store_an_key {
    char key_id[32];   /* api_keys.id, or "" for a static key */
    char prefix[16];   /* display prefix, from the log */
    char name[64];     /* api_keys.name without "demo:", or "" */
    bool demo;         /* the key's name starts with "demo:" */
    int64_t requests;  /* rows */
    int64_t cost_nusd; /* spend */
};

#define STORE_DEMO_PREFIX "demo:" /* names of the demo traffic's keys */
#define STORE_CACHE_PANEL_US (48 * STORE_HOUR_US) /* "saved, 48h" */

/* What /admin/analytics shows for [start_us, end_us). The arrays are the
 * struct's (store_analytics_free). */
struct store_analytics {
    int64_t start_us;                /* Unix microseconds */
    int64_t end_us;                  /* Unix microseconds, excluded */
    struct store_an_sums total;      /* the whole range */
    struct store_an_hour *hours;     /* every hour touched, in order */
    size_t nhours;
    struct store_an_provider *providers; /* by requests, descending */
    size_t nproviders;
    struct store_an_model *models;   /* by requests, descending */
    size_t nmodels;
    struct store_an_key *keys;       /* by spend, descending; all keys */
    size_t nkeys;
    struct store_an_hour *cache_hours; /* the 48 h before end_us */
    size_t ncache_hours;
    struct store_an_sums cache_total;  /* the same 48 h */
    bool demo; /* every keyed request of the range came from a demo key */
};

/*
 * Fills out for the span_us before end_us from db: whole hours from
 * request_rollup, the partial hours at both ends from request_log, so the
 * figures are exact for any end_us. Blocking (thread pool or CLI). On
 * failure writes why into err and returns RL_E_IO; out then needs no free.
 */
enum rl_err store_analytics_query(struct store_db *db, int64_t span_us,
                                  int64_t end_us, struct store_analytics *out,
                                  char *err, size_t n);
/* Frees the arrays of a; safe on a zeroed a. */
void store_analytics_free(struct store_analytics *a);

/* ---------------------------------------------------------------------
 * The journal (journal.c): rows that could not be stored yet
 * ------------------------------------------------------------------- */

struct journal;

/* Opens the journal in dir (created if missing). Nothing is written until
 * the first append. Returns NULL and writes why into err on failure. */
struct journal *journal_open(const char *dir, char *err, size_t n);
/* The bytes of every journal file in dir (this process's and any left by
 * others); 0 when dir cannot be read. One readdir and a stat per file. */
uint64_t journal_dir_bytes(const char *dir);
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

/* ----- request_log partitions (partition.c; PostgreSQL only) ------- */

/* What a partition's name says about the days it holds. */
struct store_partition {
    int64_t from_day;     /* first day held (days since 1970-01-01 UTC) */
    int64_t end_day;      /* first day not held */
    bool unbounded_below; /* request_log_before_*: everything before end */
};

#define STORE_PARTITIONS_AHEAD 2 /* days made ahead of today */

/* The UTC day number of a unix time (floor). */
int64_t store_partition_day(int64_t unix_s);
/* Writes "request_log_YYYYMMDD", the partition of day. */
void store_partition_name(int64_t day, char *out, size_t n);
/* Writes "YYYY-MM-DD 00:00:00+00", day's start as a timestamptz. */
void store_partition_bound(int64_t day, char *out, size_t n);
/* Reads a partition's name (request_log_YYYYMMDD or
 * request_log_before_YYYYMMDD); false for any other name (the default). */
bool store_partition_parse(const char *name, struct store_partition *out);
/* Whether retention drops p today: all its days are older than
 * retention_days before today (0: never). */
bool store_partition_expired(const struct store_partition *p, int64_t today,
                             uint32_t retention_days);
/*
 * Keeps request_log's partitions in PostgreSQL through c (e must be
 * &store_pg; the writer thread or `relay migrate` only): makes the day
 * partitions of today and the STORE_PARTITIONS_AHEAD next days (moving in
 * any rows the default partition holds for them), and with
 * retention_days > 0 drops the partitions wholly older than that and
 * deletes such rows from the default one. request_rollup is never
 * touched. now_s is the unix time. Each change is its own short
 * transaction under a 2 s lock_timeout, so it never queues the writer's
 * inserts behind a long read for more than that. Does nothing on a
 * request_log that is not partitioned. Fills *out; on failure writes why
 * into err and returns RL_E_IO, with the failed step rolled back.
 */
enum rl_err store_partitions_maintain(const struct store_engine *e,
                                      struct store_conn *c, int64_t now_s,
                                      uint32_t retention_days,
                                      struct store_maintenance *out,
                                      char *err, size_t errn);

#endif
