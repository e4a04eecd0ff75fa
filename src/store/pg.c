/*
 * pg.c - the request log in PostgreSQL, through libpq (blocking calls,
 * only ever on the writer thread or in `relay migrate`).
 *
 * A batch is one transaction: COPY (text format) straight into request_log;
 * if a request id is there already, the transaction fails and the batch is
 * sent again through a TEMP staging table, INSERT ... SELECT ... ON
 * CONFLICT DO NOTHING (the unique key is (request_id, ts) since the log is
 * partitioned by ts, migration 008; ts travels with the row, so a replayed
 * row conflicts with its first try). So a batch is stored whole or not at
 * all, and sending it again (journal replay) adds nothing. COPY costs the
 * server a fraction of a 13,000-parameter INSERT (docs/decisions.md).
 * Migrations take an advisory lock so that gateways starting together
 * apply each one once.
 */
#include "store/store.h"

#include <postgresql/libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

static enum rl_err pg_query(struct store_conn *c, const char *sql,
                            const char *const *params, int nparams,
                            store_row_fn fn, void *arg, char *err,
                            size_t errn);

struct store_conn {
    PGconn *pg;
    bool staged;     /* request_log_stage and rl_merge exist (session) */
    char sqlstate[6]; /* of the last failed command, or "" */
};

/* Copies libpq's message without its trailing newline. */
static void pg_error(PGconn *pg, char *err, size_t n)
{
    snprintf(err, n, "%s", pg ? PQerrorMessage(pg) : "out of memory");
    size_t len = strlen(err);
    while (len > 0 && (err[len - 1] == '\n' || err[len - 1] == ' ')) {
        err[--len] = '\0';
    }
}

/* libpq prints notices ("relation ... already exists, skipping") to
 * stderr, which must hold only JSON log lines. */
static void quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static struct store_conn *pg_connect(const char *target, char *err, size_t n)
{
    /* The URL first: later keywords override what it says. */
    const char *keys[] = {"dbname", "connect_timeout", "application_name",
                          "keepalives_idle", "keepalives_interval",
                          "keepalives_count", NULL};
    const char *vals[] = {target, "5", "relay", "10", "5", "3", NULL};
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        pg_error(pg, err, n);
        PQfinish(pg);
        return NULL;
    }
    PQsetNoticeProcessor(pg, quiet, NULL);
    /* A statement that hangs (a lock, a disk that stalls) must not stop
     * the writer forever: it fails and the batch goes to the journal. */
    PGresult *res = PQexec(pg, "SET statement_timeout = '30s'");
    PQclear(res);
    struct store_conn *c = rl_calloc(1, sizeof(*c));
    c->pg = pg;
    return c;
}

static void pg_disconnect(struct store_conn *c)
{
    if (c) {
        PQfinish(c->pg);
        free(c);
    }
}

/* Whether res has status want; otherwise writes why into err. */
static bool pg_ok(PGconn *pg, PGresult *res, ExecStatusType want, char *err,
                  size_t n)
{
    bool ok = res && PQresultStatus(res) == want;
    if (!ok) {
        if (res && PQresultErrorMessage(res)[0]) {
            snprintf(err, n, "%s", PQresultErrorMessage(res));
            size_t len = strlen(err);
            while (len > 0 && err[len - 1] == '\n') {
                err[--len] = '\0';
            }
        } else {
            pg_error(pg, err, n);
        }
    }
    return ok;
}

/* ---------------------------------------------------------------------
 * Insert
 * ------------------------------------------------------------------- */

#define COPY_FLUSH_BYTES (64u << 10) /* COPY data sent per message */
#define COPY_BUF_MAX (1u << 20)      /* cap of the COPY buffer, bytes */

/* The session's staging table and the statement that moves its rows into
 * request_log. The stage is TEMP (no WAL, no other session sees it) and
 * ON COMMIT DELETE ROWS, so each batch starts from an empty one without a
 * TRUNCATE. Created when a batch first needs it, after the migrations. */
static bool stage_ready(struct store_conn *c, char *err, size_t n)
{
    if (c->staged) {
        return true;
    }
    PGresult *res = PQexec(c->pg,
                           "CREATE TEMP TABLE IF NOT EXISTS request_log_stage"
                           " (LIKE request_log INCLUDING DEFAULTS)"
                           " ON COMMIT DELETE ROWS");
    bool ok = pg_ok(c->pg, res, PGRES_COMMAND_OK, err, n);
    PQclear(res);
    if (!ok) {
        return false;
    }
    res = PQprepare(c->pg, "rl_merge",
                    "INSERT INTO request_log (" STORE_COLUMNS ") SELECT "
                    STORE_COLUMNS " FROM request_log_stage"
                    " ON CONFLICT DO NOTHING"
                    " RETURNING request_id", 0, NULL);
    ok = pg_ok(c->pg, res, PGRES_COMMAND_OK, err, n);
    PQclear(res);
    c->staged = ok;
    return ok;
}

/* SQLSTATE classes 22 (data exception) and 23 (integrity constraint) are
 * about what a row holds: sending it again cannot help. Anything else
 * (connection, schema, resources) may pass on a later try. Keeps the
 * SQLSTATE in c->sqlstate. */
static enum rl_err classify(struct store_conn *c, PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
                            : NULL;
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state ? state : "");
    bool rejected = state && (strncmp(state, "22", 2) == 0 ||
                              strncmp(state, "23", 2) == 0);
    return rejected ? RL_E_REJECTED : RL_E_IO;
}

/* Checks the result of a command (no result rows) and frees it. */
static enum rl_err step(struct store_conn *c, PGresult *res, char *err,
                        size_t n)
{
    enum rl_err e = pg_ok(c->pg, res, PGRES_COMMAND_OK, err, n)
                        ? RL_OK
                        : classify(c, res);
    PQclear(res);
    return e;
}

/* Streams rows with COPY table (STORE_COLUMNS) FROM STDIN, text format. */
static enum rl_err copy_rows(struct store_conn *c, const char *table,
                             const struct store_row *rows, size_t n,
                             char *err, size_t errn)
{
    char sql[sizeof(STORE_COLUMNS) + 128];
    snprintf(sql, sizeof(sql), "COPY %s (" STORE_COLUMNS ") FROM STDIN",
             table);
    PGresult *res = PQexec(c->pg, sql);
    if (!pg_ok(c->pg, res, PGRES_COPY_IN, err, errn)) {
        enum rl_err e = classify(c, res);
        PQclear(res);
        return e;
    }
    PQclear(res);
    struct buf b;
    buf_init(&b, COPY_BUF_MAX);
    bool sent = true;
    for (size_t i = 0; i < n && sent; i++) {
        sent = store_row_copy_line(&rows[i], &b) == RL_OK;
        if (sent && (b.len >= COPY_FLUSH_BYTES || i + 1 == n)) {
            sent = PQputCopyData(c->pg, b.p, (int)b.len) == 1;
            buf_reset(&b);
        }
    }
    buf_free(&b);
    /* A failed encoding ends the COPY with an error: nothing is kept. */
    if (PQputCopyEnd(c->pg, sent ? NULL : "encoding a row failed") != 1) {
        pg_error(c->pg, err, errn);
        return RL_E_IO;
    }
    enum rl_err e = RL_OK;
    while ((res = PQgetResult(c->pg)) != NULL) {
        if (e == RL_OK) {
            e = step(c, res, err, errn);
        } else {
            PQclear(res);
        }
    }
    return e;
}

/* Orders indexes into a batch by request id (qsort_r's context: rows). */
static int by_request_id(const void *a, const void *b, void *arg)
{
    const struct store_row *rows = arg;
    return strcmp(rows[*(const size_t *)a].request_id,
                  rows[*(const size_t *)b].request_id);
}

/* Sets stored[i] for the rows whose request id the merge's RETURNING
 * lists: one row per id returned, the first of the batch not yet marked
 * (a batch may hold an id twice; only one of them was inserted). */
static void mark_returned(PGresult *res, const struct store_row *rows,
                          size_t n, bool *stored)
{
    size_t *order = rl_malloc((n ? n : 1) * sizeof(*order));
    for (size_t i = 0; i < n; i++) {
        order[i] = i;
    }
    qsort_r(order, n, sizeof(*order), by_request_id, (void *)rows);
    int ntuples = PQntuples(res);
    for (int t = 0; t < ntuples; t++) {
        const char *id = PQgetvalue(res, t, 0);
        size_t lo = 0;
        size_t hi = n;
        while (lo < hi) { /* the first row whose id is >= id */
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(rows[order[mid]].request_id, id) < 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        while (lo < n && strcmp(rows[order[lo]].request_id, id) == 0 &&
               stored[order[lo]]) {
            lo++;
        }
        if (lo < n && strcmp(rows[order[lo]].request_id, id) == 0) {
            stored[order[lo]] = true;
        }
    }
    free(order);
}

/* The merge: INSERT ... SELECT from the stage ... RETURNING request_id,
 * then the rollup of the rows it inserted, and of no other. */
static enum rl_err merge_stage(struct store_conn *c,
                               const struct store_row *rows, size_t n,
                               char *err, size_t errn)
{
    PGresult *res = PQexecPrepared(c->pg, "rl_merge", 0, NULL, NULL, NULL, 0);
    if (!pg_ok(c->pg, res, PGRES_TUPLES_OK, err, errn)) {
        enum rl_err e = classify(c, res);
        PQclear(res);
        return e;
    }
    bool *stored = rl_calloc(n, sizeof(*stored));
    mark_returned(res, rows, n, stored);
    PQclear(res);
    enum rl_err e = store_rollup_add(&store_pg, c, rows, stored, n, err,
                                     errn);
    free(stored);
    return e;
}

/* One transaction. Direct: COPY into request_log, then the rollup of the
 * whole batch (a direct COPY stores every row or fails). Merged: COPY into
 * the empty stage, INSERT ... SELECT ... ON CONFLICT DO NOTHING into
 * request_log and the rollup of what it inserted, COMMIT (which empties
 * the stage). Rolls back on failure, so either way the
 * batch and its rollup are stored whole or not at all. */
static enum rl_err copy_batch(struct store_conn *c, bool merge,
                              const struct store_row *rows, size_t n,
                              char *err, size_t errn)
{
    c->sqlstate[0] = '\0';
    if (merge && !stage_ready(c, err, errn)) {
        return RL_E_IO;
    }
    enum rl_err e = step(c, PQexec(c->pg, "BEGIN"), err, errn);
    if (e == RL_OK) {
        e = copy_rows(c, merge ? "request_log_stage" : "request_log", rows,
                      n, err, errn);
    }
    if (e == RL_OK) {
        e = merge ? merge_stage(c, rows, n, err, errn)
                  : store_rollup_add(&store_pg, c, rows, NULL, n, err, errn);
    }
    if (e == RL_OK) {
        e = step(c, PQexec(c->pg, "COMMIT"), err, errn);
    }
    if (e != RL_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        PQclear(PQexec(c->pg, "ROLLBACK"));
    }
    return e;
}

/* Inserts rows, ignoring request ids already stored. A batch is first
 * copied straight into request_log, the cheap path; a request id that is
 * there already (a journal replay, a batch whose COMMIT answer was lost)
 * fails it with unique_violation, and it is then sent again through the
 * stage, which skips the rows already stored. */
static enum rl_err pg_insert(struct store_conn *c, const struct store_row *rows,
                             size_t n, char *err, size_t errn)
{
    if (n == 0) {
        return RL_OK;
    }
    enum rl_err e = copy_batch(c, false, rows, n, err, errn);
    if (e == RL_E_REJECTED && strcmp(c->sqlstate, "23505") == 0) {
        e = copy_batch(c, true, rows, n, err, errn);
    }
    return e;
}

/* ---------------------------------------------------------------------
 * Migrations
 * ------------------------------------------------------------------- */

static bool pg_cmd(PGconn *pg, const char *sql, char *err, size_t n)
{
    PGresult *res = PQexec(pg, sql);
    bool ok = pg_ok(pg, res, PGRES_COMMAND_OK, err, n) ||
              (res && PQresultStatus(res) == PGRES_TUPLES_OK);
    PQclear(res);
    return ok;
}

static enum rl_err pg_migrate_one(struct store_conn *c, int version,
                                  const char *name, const char *sql,
                                  bool *applied, char *err, size_t errn)
{
    *applied = false;
    char v[16];
    snprintf(v, sizeof(v), "%d", version);
    const char *params[] = {v, name};
    PGresult *res = NULL;
    if (!pg_cmd(c->pg, "BEGIN", err, errn)) {
        return RL_E_IO;
    }
    /* One gateway at a time: the others wait here, then find it done. */
    bool ok = pg_cmd(c->pg,
                     "SELECT pg_advisory_xact_lock(478560413029)", err,
                     errn) &&
              pg_cmd(c->pg,
                     "CREATE TABLE IF NOT EXISTS schema_migrations ("
                     "version integer PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT now())",
                     err, errn);
    if (ok) {
        res = PQexecParams(c->pg,
                           "SELECT 1 FROM schema_migrations WHERE version = "
                           "$1::integer",
                           1, NULL, params, NULL, NULL, 0);
        ok = pg_ok(c->pg, res, PGRES_TUPLES_OK, err, errn);
        *applied = ok && PQntuples(res) == 0;
        PQclear(res);
    }
    if (ok && *applied) {
        ok = pg_cmd(c->pg, sql, err, errn);
        if (ok) {
            res = PQexecParams(c->pg,
                               "INSERT INTO schema_migrations (version, name)"
                               " VALUES ($1::integer, $2)",
                               2, NULL, params, NULL, NULL, 0);
            ok = pg_ok(c->pg, res, PGRES_COMMAND_OK, err, errn);
            PQclear(res);
        }
    }
    char ignore[256];
    if (!ok) {
        *applied = false;
        pg_cmd(c->pg, "ROLLBACK", ignore, sizeof(ignore));
        return RL_E_IO;
    }
    return pg_cmd(c->pg, "COMMIT", err, errn) ? RL_OK : RL_E_IO;
}

static int64_t pg_count(struct store_conn *c)
{
    PGresult *res = PQexec(c->pg, "SELECT count(*) FROM request_log");
    int64_t n = -1;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res)) {
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    }
    PQclear(res);
    return n;
}

/* ---------------------------------------------------------------------
 * Queries for keys.c
 * ------------------------------------------------------------------- */

#define PG_MAX_COLS 64

static enum rl_err pg_query(struct store_conn *c, const char *sql,
                            const char *const *params, int nparams,
                            store_row_fn fn, void *arg, char *err,
                            size_t errn)
{
    PGresult *res = PQexecParams(c->pg, sql, nparams, NULL, params, NULL,
                                 NULL, 0);
    enum rl_err result = RL_OK;
    if (!res || (PQresultStatus(res) != PGRES_TUPLES_OK &&
                 PQresultStatus(res) != PGRES_COMMAND_OK)) {
        pg_ok(c->pg, res, PGRES_TUPLES_OK, err, errn);
        result = RL_E_IO;
        goto out;
    }
    int ncols = PQnfields(res);
    if (ncols > PG_MAX_COLS) {
        snprintf(err, errn, "a query returned %d columns", ncols);
        result = RL_E_INTERNAL;
        goto out;
    }
    for (int i = 0; fn && i < PQntuples(res); i++) {
        const char *cols[PG_MAX_COLS];
        for (int k = 0; k < ncols; k++) {
            cols[k] = PQgetisnull(res, i, k) ? NULL : PQgetvalue(res, i, k);
        }
        fn(arg, cols, ncols);
    }
out:
    PQclear(res);
    return result;
}

const struct store_engine store_pg = {
    .name = "postgresql",
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .insert = pg_insert,
    .migrate_one = pg_migrate_one,
    .count = pg_count,
    .query = pg_query,
};
