/*
 * writer.c - the request log's writer: a bounded queue that the event
 * loops hand rows to, and one thread that writes them in batches.
 *
 * store_enqueue() (any worker) copies a row into a ring under a mutex and
 * returns; it never waits for the store. When the ring is full the row is
 * appended to the journal instead. The writer thread takes up to
 * batch_rows rows (or what came within batch_wait_ms), inserts them in one
 * transaction, and on failure appends them to the journal (fsynced) and
 * reconnects with backoff; once the store answers again, it replays the
 * journal. At close the ring is drained into the store or the journal.
 * Read writer_main() first; the invariants are in
 * docs/internals/request-log.md.
 */
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#define RETRY_MIN_MS 100
#define IDLE_WAKE_MS 1000
#define STILL_DOWN_LOG_MS 30000

static struct {
    pthread_mutex_t mu;      /* guards the ring, the counters, the flags */
    pthread_cond_t work;     /* the writer waits here for rows */
    pthread_cond_t done;     /* store_flush waits here */
    struct store_row *ring;  /* cap rows */
    size_t cap;
    size_t head;             /* index of the oldest row */
    size_t count;            /* rows in the ring */
    uint64_t queued;         /* rows ever put in the ring */
    uint64_t finished;       /* of those, rows stored, journaled or lost */
    bool stopping;           /* store_close was called */
    bool flushing;           /* a store_flush waits: do not linger */
    struct store_stats stats;
    uint64_t overflow_log_ms; /* when the last "queue full" was logged */
    uint64_t overflow_unlogged; /* rows overflowed since that line */
    /* Set at open, then the writer thread's alone. */
    struct store_opts opts;
    struct store_target target;
    struct journal *journal;
    struct store_conn *conn;  /* NULL while the store is unreachable */
    uint64_t next_try_ms;     /* earliest reconnect */
    uint64_t backoff_ms;
    uint64_t down_logged_ms;  /* when "still unreachable" was logged */
    uint64_t replayed_ms;     /* when the journal was last replayed */
    uint64_t maintained_ms;   /* when the partitions were last kept */
    pthread_t thread;
} S = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

static atomic_bool is_open;

static uint64_t now_ms(void)
{
    return clock_now_us() / 1000;
}

/* Logs msg with a free-text detail, JSON-escaped. */
static void log_detail(enum log_level level, const char *msg,
                       const char *detail)
{
    struct buf b;
    buf_init(&b, 16384);
    buf_append(&b, "", 0);
    buf_append_json_escaped(&b, detail, strlen(detail));
    log_write(level, msg, "\"store\":\"%s\",\"detail\":\"%s\"",
              S.target.engine ? S.target.engine->name : "", b.p ? b.p : "");
    buf_free(&b);
}

/* ---------------------------------------------------------------------
 * Connection, migrations, replay (writer thread, or open before it)
 * ------------------------------------------------------------------- */

static void say_unreachable(const char *why)
{
    char msg[4096];
    if (S.target.engine == &store_pg) {
        snprintf(msg, sizeof(msg),
                 "cannot connect to PostgreSQL at %s: %s; is it running? "
                 "`make up` starts one. Rows go to the journal in %s until "
                 "it is back.", S.target.shown, why, S.target.journal_dir);
    } else {
        snprintf(msg, sizeof(msg),
                 "cannot use SQLite at %s: %s; check that the folder is "
                 "writable. Rows go to the journal in %s until it works.",
                 S.target.target, why, S.target.journal_dir);
    }
    log_detail(LOG_ERROR, "request log store unreachable", msg);
}

/* Appends row, which the store refused for its content, with the
 * store's reason to rejected.jsonl in the journal folder (fsynced), for
 * the operator to look at; it is never sent again. */
static void set_aside(const struct store_row *row, const char *why)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/rejected.jsonl", S.target.journal_dir);
    struct buf b;
    buf_init(&b, 65536);
    buf_append_cstr(&b, "{\"error\":\"");
    buf_append_json_escaped(&b, why, strlen(why));
    buf_append_cstr(&b, "\",\"row\":");
    bool ok = store_row_encode(row, &b) == RL_OK;
    buf_append_cstr(&b, "}\n");
    FILE *f = ok ? fopen(path, "a") : NULL;
    ok = f && fwrite(b.p, 1, b.len, f) == b.len && fflush(f) == 0 &&
         fsync(fileno(f)) == 0;
    if (f) {
        ok = fclose(f) == 0 && ok;
    }
    buf_free(&b);
    pthread_mutex_lock(&S.mu);
    S.stats.rejected += ok;
    S.stats.lost += !ok;
    pthread_mutex_unlock(&S.mu);
    log_write(ok ? LOG_WARN : LOG_ERROR, ok ? "request log row rejected by "
              "the store; set aside" : "request log row rejected by the "
              "store and could not be set aside",
              "\"request_id\":\"%s\",\"file\":\"%s\"", row->request_id,
              path);
}

/* Inserts rows. When the store refuses the batch for a row's content,
 * inserts them one at a time and sets the refused ones aside, so that one
 * bad row can hold back neither its batch nor the journal. Returns RL_OK
 * when every row is stored or set aside (*nrejected of them), RL_E_IO
 * when the store failed otherwise (the rows stored already are ignored
 * when the batch is sent again). */
static enum rl_err insert_rows(const struct store_row *rows, size_t n,
                               char *err, size_t errn, size_t *nrejected)
{
    *nrejected = 0;
    enum rl_err e = S.target.engine->insert(S.conn, rows, n, err, errn);
    if (e != RL_E_REJECTED) {
        return e;
    }
    for (size_t i = 0; i < n; i++) {
        e = S.target.engine->insert(S.conn, &rows[i], 1, err, errn);
        if (e == RL_E_REJECTED) {
            set_aside(&rows[i], err);
            (*nrejected)++;
        } else if (e != RL_OK) {
            return e;
        }
    }
    return RL_OK;
}

static enum rl_err sink_insert(void *arg, const struct store_row *rows,
                               size_t n)
{
    char *err = arg;
    size_t nrejected = 0;
    return insert_rows(rows, n, err, 512, &nrejected);
}

static void drop_conn(void)
{
    S.target.engine->disconnect(S.conn);
    S.conn = NULL;
    S.backoff_ms = S.backoff_ms ? S.backoff_ms * 2 : RETRY_MIN_MS;
    if (S.backoff_ms > S.opts.retry_max_ms) {
        S.backoff_ms = S.opts.retry_max_ms;
    }
    S.next_try_ms = now_ms() + S.backoff_ms;
}

/* Replays the journal into the connected store; drops the connection if
 * a batch fails (the journal keeps every row it had). */
static void replay(void)
{
    char err[512] = "";
    uint64_t nrows = 0;
    uint64_t nbad = 0;
    enum rl_err e = journal_replay(S.journal, S.opts.batch_rows, sink_insert,
                                   err, &nrows, &nbad);
    pthread_mutex_lock(&S.mu);
    S.stats.replayed += nrows;
    pthread_mutex_unlock(&S.mu);
    if (nrows || nbad) {
        log_write(LOG_INFO, "request log journal replayed",
                  "\"rows\":%llu,\"skipped_lines\":%llu,\"complete\":%s",
                  (unsigned long long)nrows, (unsigned long long)nbad,
                  e == RL_OK ? "true" : "false");
    }
    if (e != RL_OK) {
        log_detail(LOG_WARN, "request log replay stopped; will retry", err);
        drop_conn();
    }
}

/* PostgreSQL: makes the coming days' partitions of request_log and drops
 * those past retention (partition.c), on this thread between batches, so
 * the workers never wait for it: their rows wait in the ring meanwhile. */
static void maintain(void)
{
    S.maintained_ms = now_ms();
    if (S.target.engine != &store_pg) {
        return; /* SQLite keeps one flat table */
    }
    struct store_maintenance m;
    char err[512] = "";
    if (store_partitions_maintain(S.target.engine, S.conn,
                                  (int64_t)(clock_wall_ms() / 1000),
                                  S.opts.retention_days, &m, err,
                                  sizeof(err)) != RL_OK) {
        log_detail(LOG_WARN, "request log partition upkeep failed; trying "
                   "again later", err);
        return;
    }
    if (m.created || m.dropped || m.deleted_rows) {
        log_write(LOG_INFO, "request log partitions kept",
                  "\"created\":%d,\"dropped\":%d,\"oldest_dropped\":\"%s\","
                  "\"deleted_rows\":%lld,\"retention_days\":%u", m.created,
                  m.dropped, m.dropped_first, (long long)m.deleted_rows,
                  S.opts.retention_days);
    }
}

/* Connects (if the backoff allows) and migrates; then, at most once a
 * second, replays the journal if it holds rows (a failed batch, or rows
 * that overflowed the queue while connected), and every
 * maintain_every_ms keeps the partitions. */
static void ensure_connected(void)
{
    if (S.conn) {
        uint64_t now = now_ms();
        if (now - S.replayed_ms >= 1000 && journal_pending(S.journal)) {
            S.replayed_ms = now;
            replay();
        }
        if (S.conn && now - S.maintained_ms >= S.opts.maintain_every_ms) {
            maintain();
        }
        return;
    }
    if (now_ms() < S.next_try_ms) {
        return;
    }
    bool was_down = S.down_logged_ms != 0;
    char err[1024] = "";
    S.conn = S.target.engine->connect(S.target.target, err, sizeof(err));
    int napplied = 0;
    if (S.conn && store_migrate(S.target.engine, S.conn, &napplied, err,
                                sizeof(err)) != RL_OK) {
        drop_conn();
    } else if (!S.conn) {
        drop_conn();
    }
    if (!S.conn) {
        uint64_t now = now_ms();
        if (!was_down || now - S.down_logged_ms >= STILL_DOWN_LOG_MS) {
            say_unreachable(err);
            S.down_logged_ms = now;
        }
        return;
    }
    S.backoff_ms = 0;
    if (was_down) {
        log_write(LOG_INFO, "request log store is back", "\"store\":\"%s\"",
                  S.target.engine->name);
    }
    if (napplied) {
        log_write(LOG_INFO, "migrations applied", "\"count\":%d", napplied);
    }
    S.down_logged_ms = 0;
    /* Partitions before the replay, so that replayed rows of today find
     * theirs. */
    maintain();
    if (journal_pending(S.journal)) {
        S.replayed_ms = now_ms();
        replay();
    }
}

/* ---------------------------------------------------------------------
 * The writer thread
 * ------------------------------------------------------------------- */

/* Takes up to opts.batch_rows rows into out, waiting for the first and
 * then up to batch_wait_ms for a full batch. Returns 0 on an idle wake (or
 * when stopping with nothing left). */
static size_t take(struct store_row *out, bool *stop)
{
    pthread_mutex_lock(&S.mu);
    if (S.count == 0 && !S.stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += IDLE_WAKE_MS / 1000;
        pthread_cond_timedwait(&S.work, &S.mu, &ts);
    }
    if (S.count > 0 && S.count < S.opts.batch_rows && !S.stopping &&
        !S.flushing) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + S.opts.batch_wait_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        while (S.count < S.opts.batch_rows && !S.stopping && !S.flushing &&
               pthread_cond_timedwait(&S.work, &S.mu, &ts) != ETIMEDOUT) {
        }
    }
    size_t n = S.count < S.opts.batch_rows ? S.count : S.opts.batch_rows;
    for (size_t i = 0; i < n; i++) {
        out[i] = S.ring[(S.head + i) % S.cap];
    }
    S.head = (S.head + n) % S.cap;
    S.count -= n;
    *stop = S.stopping && S.count == 0;
    pthread_mutex_unlock(&S.mu);
    return n;
}

static void finish(size_t n, uint64_t inserted, uint64_t journaled,
                   uint64_t lost)
{
    pthread_mutex_lock(&S.mu);
    S.finished += n;
    S.stats.inserted += inserted;
    S.stats.journaled += journaled;
    S.stats.lost += lost;
    pthread_cond_broadcast(&S.done);
    pthread_mutex_unlock(&S.mu);
}

/* Stores one batch, or journals it; keeps trying both while neither
 * works, except at close, where it gives up after a few tries. */
static void write_batch(const struct store_row *rows, size_t n)
{
    for (int attempt = 0;; attempt++) {
        ensure_connected();
        char err[512] = "";
        size_t nrejected = 0;
        if (S.conn) {
            if (insert_rows(rows, n, err, sizeof(err), &nrejected) == RL_OK) {
                finish(n, n - nrejected, 0, 0);
                return;
            }
            log_detail(LOG_WARN, "request log batch failed; journaling it "
                       "and reconnecting", err);
            pthread_mutex_lock(&S.mu);
            S.stats.failed_batches++;
            pthread_mutex_unlock(&S.mu);
            drop_conn();
        }
        if (journal_append(S.journal, rows, n, true) == RL_OK) {
            finish(n, 0, n, 0);
            return;
        }
        pthread_mutex_lock(&S.mu);
        bool stopping = S.stopping;
        pthread_mutex_unlock(&S.mu);
        log_write(LOG_ERROR, "request log: neither the store nor the "
                  "journal can take rows (disk full?); holding them",
                  "\"rows\":%zu,\"error\":\"%s\",\"journal\":\"%s\"", n,
                  strerror(errno), S.target.journal_dir);
        if (stopping && attempt >= 2) {
            finish(n, 0, 0, n);
            return;
        }
        struct timespec pause = {.tv_sec = 1};
        nanosleep(&pause, NULL);
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    struct store_row *batch = rl_malloc(S.opts.batch_rows * sizeof(*batch));
    bool stop = false;
    while (!stop) {
        size_t n = take(batch, &stop);
        journal_sync(S.journal); /* rows that overflowed the queue */
        if (n) {
            write_batch(batch, n);
        } else {
            ensure_connected(); /* idle: reconnect, replay */
        }
    }
    if (S.conn && journal_pending(S.journal)) {
        replay();
    }
    free(batch);
    log_thread_exit();
    return NULL;
}

/* ---------------------------------------------------------------------
 * The public side
 * ------------------------------------------------------------------- */

static void set_defaults(const struct store_opts *o)
{
    S.opts = o ? *o : (struct store_opts){0};
    S.opts.queue_rows = S.opts.queue_rows ? S.opts.queue_rows : 8192;
    S.opts.batch_rows = S.opts.batch_rows ? S.opts.batch_rows : 2000;
    S.opts.batch_wait_ms = S.opts.batch_wait_ms ? S.opts.batch_wait_ms : 50;
    S.opts.retry_max_ms = S.opts.retry_max_ms ? S.opts.retry_max_ms : 5000;
    S.opts.maintain_every_ms =
        S.opts.maintain_every_ms ? S.opts.maintain_every_ms : 3600000;
}

enum rl_err store_open(const char *url, const struct store_opts *opts)
{
    if (atomic_load(&is_open)) {
        return RL_E_INTERNAL;
    }
    if (url && strcmp(url, "none") == 0) {
        /* The operator's choice: the JSON log lines only, no rows. */
        log_write(LOG_WARN, "request log store is off (store: none): "
                  "requests are only in the JSON log lines", NULL);
        return RL_OK;
    }
    set_defaults(opts);
    char err[1024] = "";
    enum rl_err e = store_target_parse(url, &S.target, err, sizeof(err));
    if (e == RL_OK) {
        if (S.opts.journal_dir) {
            snprintf(S.target.journal_dir, sizeof(S.target.journal_dir), "%s",
                     S.opts.journal_dir);
        }
        S.journal = journal_open(S.target.journal_dir, err, sizeof(err));
        e = S.journal ? RL_OK : RL_E_IO;
    }
    if (e != RL_OK) {
        log_detail(LOG_ERROR, "cannot open the request log", err);
        return e;
    }
    S.ring = rl_calloc(S.opts.queue_rows, sizeof(*S.ring));
    S.cap = S.opts.queue_rows;
    S.head = S.count = 0;
    S.queued = S.finished = 0;
    S.stopping = S.flushing = false;
    memset(&S.stats, 0, sizeof(S.stats));
    S.conn = NULL;
    S.next_try_ms = 0;
    S.backoff_ms = 0;
    S.down_logged_ms = 0;
    /* Connect, migrate and replay now, so a fresh store has its tables
     * before the first request; if it is down, the writer keeps trying. */
    ensure_connected();
    log_write(LOG_INFO, "request log open",
              "\"store\":\"%s\",\"connected\":%s", S.target.engine->name,
              S.conn ? "true" : "false");
    atomic_store(&is_open, true);
    if (pthread_create(&S.thread, NULL, writer_main, NULL) != 0) {
        abort(); /* as an allocation failure: nothing sensible to do */
    }
    return RL_OK;
}

/* Journals a row the full queue could not take; logs once a second. */
static void overflow(const struct store_row *row)
{
    bool ok = journal_append(S.journal, row, 1, false) == RL_OK;
    uint64_t now = now_ms();
    pthread_mutex_lock(&S.mu);
    S.stats.overflowed += ok;
    S.stats.journaled += ok;
    S.stats.lost += !ok;
    S.overflow_unlogged++;
    bool say = now - S.overflow_log_ms >= 1000;
    uint64_t nrows = S.overflow_unlogged;
    if (say) {
        S.overflow_log_ms = now;
        S.overflow_unlogged = 0;
    }
    pthread_mutex_unlock(&S.mu);
    if (say) {
        log_write(ok ? LOG_WARN : LOG_ERROR,
                  ok ? "request log queue full; rows go to the journal"
                     : "request log queue full and journal failing; rows "
                       "lost",
                  "\"rows\":%llu", (unsigned long long)nrows);
    }
}

void store_enqueue(const struct store_row *row)
{
    if (!atomic_load_explicit(&is_open, memory_order_acquire)) {
        return;
    }
    pthread_mutex_lock(&S.mu);
    S.stats.enqueued++;
    if (S.count < S.cap && !S.stopping) {
        S.ring[(S.head + S.count) % S.cap] = *row;
        S.count++;
        S.queued++;
        if (S.count == S.opts.batch_rows || S.count == 1) {
            pthread_cond_signal(&S.work);
        }
        pthread_mutex_unlock(&S.mu);
        return;
    }
    pthread_mutex_unlock(&S.mu);
    overflow(row);
}

void store_flush(void)
{
    if (!atomic_load(&is_open)) {
        return;
    }
    pthread_mutex_lock(&S.mu);
    uint64_t target = S.queued;
    S.flushing = true;
    pthread_cond_signal(&S.work);
    while (S.finished < target) {
        pthread_cond_wait(&S.done, &S.mu);
    }
    S.flushing = false;
    pthread_mutex_unlock(&S.mu);
    journal_sync(S.journal);
}

struct store_stats store_stats_get(void)
{
    pthread_mutex_lock(&S.mu);
    struct store_stats s = S.stats;
    pthread_mutex_unlock(&S.mu);
    return s;
}

size_t store_queue_depth(void)
{
    if (!atomic_load(&is_open)) {
        return 0;
    }
    pthread_mutex_lock(&S.mu);
    size_t n = S.count;
    pthread_mutex_unlock(&S.mu);
    return n;
}

size_t store_queue_capacity(void)
{
    return atomic_load(&is_open) ? S.cap : 0;
}

uint64_t store_journal_bytes(void)
{
    /* journal_dir is set before is_open and not changed while open. */
    return atomic_load(&is_open) ? journal_dir_bytes(S.target.journal_dir)
                                 : 0;
}

void store_close(void)
{
    if (!atomic_load(&is_open)) {
        return;
    }
    pthread_mutex_lock(&S.mu);
    S.stopping = true;
    pthread_cond_signal(&S.work);
    pthread_mutex_unlock(&S.mu);
    pthread_join(S.thread, NULL);
    atomic_store(&is_open, false);
    struct store_stats st = S.stats;
    if (S.conn) {
        S.target.engine->disconnect(S.conn);
        S.conn = NULL;
    }
    journal_close(S.journal);
    S.journal = NULL;
    free(S.ring);
    S.ring = NULL;
    log_write(st.lost ? LOG_ERROR : LOG_INFO, "request log closed",
              "\"enqueued\":%llu,\"inserted\":%llu,\"journaled\":%llu,"
              "\"overflowed\":%llu,\"replayed\":%llu,\"rejected\":%llu,"
              "\"lost\":%llu",
              (unsigned long long)st.enqueued,
              (unsigned long long)st.inserted,
              (unsigned long long)st.journaled,
              (unsigned long long)st.overflowed,
              (unsigned long long)st.replayed,
              (unsigned long long)st.rejected, (unsigned long long)st.lost);
}
