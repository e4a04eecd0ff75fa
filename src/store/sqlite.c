/*
 * sqlite.c - the request log in SQLite, the default store (one file, no
 * server). Used only on the writer thread and in `relay migrate`.
 *
 * A batch is one IMMEDIATE transaction of INSERT OR IGNORE with a prepared
 * statement, so it is stored whole or not at all and replaying it adds
 * nothing. WAL mode and a busy timeout let several gateways (or a reader
 * such as the dashboard) share the file.
 */
#include "store/store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/alloc.h"

static enum rl_err sq_query(struct store_conn *c, const char *sql,
                            const char *const *params, int nparams,
                            store_row_fn fn, void *arg, char *err,
                            size_t errn);

struct store_conn {
    sqlite3 *db;
    sqlite3_stmt *insert; /* prepared once per connection */
};

static void db_error(sqlite3 *db, const char *doing, char *err, size_t n)
{
    snprintf(err, n, "%s: %s", doing, db ? sqlite3_errmsg(db) : "no memory");
}

static bool exec(sqlite3 *db, const char *sql, char *err, size_t n)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, n, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return false;
    }
    return true;
}

/* Creates the folders above the file at path (mkdir -p of its dirname). */
static void make_parents(const char *path)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0700); /* EEXIST is fine; other errors show at open */
            *s = '/';
        }
    }
}

static struct store_conn *sq_connect(const char *target, char *err, size_t n)
{
    make_parents(target);
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(target, &db, flags, NULL) != SQLITE_OK) {
        db_error(db, "opening", err, n);
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    if (!exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", err,
              n)) {
        sqlite3_close(db);
        return NULL;
    }
    struct store_conn *c = rl_calloc(1, sizeof(*c));
    c->db = db;
    return c;
}

static void sq_disconnect(struct store_conn *c)
{
    if (c) {
        sqlite3_finalize(c->insert);
        sqlite3_close(c->db);
        free(c);
    }
}

static void bind_text(sqlite3_stmt *st, int i, const char *s, bool null_empty)
{
    if (null_empty && !s[0]) {
        sqlite3_bind_null(st, i);
    } else {
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    }
}

static void bind_row(sqlite3_stmt *st, const struct store_row *r, char *ts)
{
    store_ts_format(r->ts_us, ts);
    bind_text(st, 1, ts, false);
    bind_text(st, 2, r->request_id, false);
    bind_text(st, 3, r->key_prefix, false);
    bind_text(st, 4, r->model_requested, false);
    bind_text(st, 5, r->model, false);
    bind_text(st, 6, r->provider, false);
    sqlite3_bind_int(st, 7, r->status);
    bind_text(st, 8, r->error_type, true);
    bind_text(st, 9, r->error_code, true);
    sqlite3_bind_int(st, 10, r->stream);
    sqlite3_bind_int64(st, 11, r->prompt_tokens);
    sqlite3_bind_int64(st, 12, r->completion_tokens);
    sqlite3_bind_int64(st, 13, r->cached_tokens);
    sqlite3_bind_int64(st, 14, r->cache_write_tokens);
    sqlite3_bind_int64(st, 15, r->reasoning_tokens);
    sqlite3_bind_int(st, 16, r->usage_estimated);
    sqlite3_bind_int64(st, 17, r->cost_nusd);
    sqlite3_bind_int64(st, 18, r->savings_nusd);
    bind_text(st, 19, r->cache_status[0] ? r->cache_status : "miss", false);
    if (r->has_similarity) {
        sqlite3_bind_double(st, 20, r->cache_similarity);
    } else {
        sqlite3_bind_null(st, 20);
    }
    sqlite3_bind_int64(st, 21, (sqlite3_int64)r->latency_us);
    sqlite3_bind_int64(st, 22, (sqlite3_int64)r->ttft_us);
    sqlite3_bind_int64(st, 23, (sqlite3_int64)r->upstream_us);
    sqlite3_bind_int64(st, 24, (sqlite3_int64)r->overhead_us);
    sqlite3_bind_int(st, 25, r->attempts);
    sqlite3_bind_int(st, 26, r->client_gone);
    bind_text(st, 27, r->key_id, false);
    bind_text(st, 28, r->route, false);
    bind_text(st, 29, r->attempt_log, false);
}

/* A constraint, a type or a size is about the row itself: another try
 * cannot help. Locks and I/O may pass. */
static enum rl_err classify(int rc)
{
    int base = rc & 0xff;
    return base == SQLITE_CONSTRAINT || base == SQLITE_MISMATCH ||
                   base == SQLITE_TOOBIG || base == SQLITE_RANGE
               ? RL_E_REJECTED
               : RL_E_IO;
}

/* Inserts rows in the open transaction; sets stored[i] for those that
 * were not there already (INSERT OR IGNORE changed nothing). */
static enum rl_err insert_each(struct store_conn *c,
                               const struct store_row *rows, size_t n,
                               bool *stored, char *err, size_t errn)
{
    char ts[32];
    for (size_t i = 0; i < n; i++) {
        bind_row(c->insert, &rows[i], ts);
        int rc = sqlite3_step(c->insert);
        sqlite3_reset(c->insert);
        sqlite3_clear_bindings(c->insert);
        if (rc != SQLITE_DONE) {
            db_error(c->db, "inserting", err, errn);
            return classify(rc);
        }
        stored[i] = sqlite3_changes(c->db) == 1;
    }
    return RL_OK;
}

/* One IMMEDIATE transaction: the rows, then the rollup of the rows that
 * were inserted (not of those already stored), then COMMIT; all rolled
 * back on any failure. */
static enum rl_err sq_insert(struct store_conn *c, const struct store_row *rows,
                             size_t n, char *err, size_t errn)
{
    if (!c->insert &&
        sqlite3_prepare_v2(c->db,
                           "INSERT OR IGNORE INTO request_log (" STORE_COLUMNS
                           ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,"
                           "?,?,?,?,?,?,?,?,?,?)",
                           -1, &c->insert, NULL) != SQLITE_OK) {
        db_error(c->db, "preparing the insert", err, errn);
        return RL_E_IO;
    }
    if (!exec(c->db, "BEGIN IMMEDIATE", err, errn)) {
        return RL_E_IO;
    }
    bool *stored = rl_calloc(n ? n : 1, sizeof(*stored));
    enum rl_err e = insert_each(c, rows, n, stored, err, errn);
    if (e == RL_OK) {
        e = store_rollup_add(&store_sqlite, c, rows, stored, n, err, errn);
    }
    free(stored);
    if (e == RL_OK && !exec(c->db, "COMMIT", err, errn)) {
        e = RL_E_IO;
    }
    if (e != RL_OK) {
        char ignore[256];
        exec(c->db, "ROLLBACK", ignore, sizeof(ignore));
    }
    return e;
}

static enum rl_err sq_migrate_one(struct store_conn *c, int version,
                                  const char *name, const char *sql,
                                  bool *applied, char *err, size_t errn)
{
    *applied = false;
    if (!exec(c->db, "BEGIN IMMEDIATE", err, errn)) {
        return RL_E_IO;
    }
    bool ok = exec(c->db,
                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   "version integer PRIMARY KEY, name text NOT NULL, "
                   "applied_at text NOT NULL DEFAULT "
                   "(strftime('%Y-%m-%dT%H:%M:%fZ','now')))",
                   err, errn);
    sqlite3_stmt *st = NULL;
    if (ok) {
        ok = sqlite3_prepare_v2(c->db,
                                "SELECT 1 FROM schema_migrations "
                                "WHERE version = ?",
                                -1, &st, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_int(st, 1, version);
            int rc = sqlite3_step(st);
            ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
            *applied = rc == SQLITE_DONE;
        }
        sqlite3_finalize(st);
        st = NULL;
        if (!ok) {
            db_error(c->db, "reading schema_migrations", err, errn);
        }
    }
    if (ok && *applied) {
        ok = exec(c->db, sql, err, errn) &&
             sqlite3_prepare_v2(c->db,
                                "INSERT INTO schema_migrations (version, "
                                "name) VALUES (?, ?)",
                                -1, &st, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_int(st, 1, version);
            sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
            ok = sqlite3_step(st) == SQLITE_DONE;
            if (!ok) {
                db_error(c->db, "recording the migration", err, errn);
            }
        }
        sqlite3_finalize(st);
    }
    char ignore[256];
    if (!ok) {
        *applied = false;
        exec(c->db, "ROLLBACK", ignore, sizeof(ignore));
        return RL_E_IO;
    }
    return exec(c->db, "COMMIT", err, errn) ? RL_OK : RL_E_IO;
}

static int64_t sq_count(struct store_conn *c)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(c->db, "SELECT count(*) FROM request_log", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return n;
}

/* ---------------------------------------------------------------------
 * Queries for keys.c
 * ------------------------------------------------------------------- */

#define SQ_MAX_COLS 64

/* Binds params to $1..$n by name, so their order in the SQL is free. */
static bool bind_params(sqlite3_stmt *st, const char *const *params,
                        int nparams)
{
    for (int i = 0; i < nparams; i++) {
        char name[16];
        snprintf(name, sizeof(name), "$%d", i + 1);
        int at = sqlite3_bind_parameter_index(st, name);
        if (at == 0) {
            continue; /* not used by this statement */
        }
        int rc = params[i] ? sqlite3_bind_text(st, at, params[i], -1,
                                               SQLITE_STATIC)
                           : sqlite3_bind_null(st, at);
        if (rc != SQLITE_OK) {
            return false;
        }
    }
    return true;
}

static enum rl_err sq_query(struct store_conn *c, const char *sql,
                            const char *const *params, int nparams,
                            store_row_fn fn, void *arg, char *err,
                            size_t errn)
{
    sqlite3_stmt *st = NULL;
    enum rl_err result = RL_OK;
    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK ||
        !bind_params(st, params, nparams)) {
        db_error(c->db, "preparing a query", err, errn);
        result = RL_E_IO;
        goto out;
    }
    int ncols = sqlite3_column_count(st);
    if (ncols > SQ_MAX_COLS) {
        snprintf(err, errn, "a query returned %d columns", ncols);
        result = RL_E_INTERNAL;
        goto out;
    }
    int rc = sqlite3_step(st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        const char *cols[SQ_MAX_COLS];
        for (int k = 0; k < ncols; k++) {
            cols[k] = (const char *)sqlite3_column_text(st, k);
        }
        if (fn) {
            fn(arg, cols, ncols);
        }
    }
    if (rc != SQLITE_DONE) {
        db_error(c->db, "running a query", err, errn);
        result = RL_E_IO;
    }
out:
    sqlite3_finalize(st);
    return result;
}

const struct store_engine store_sqlite = {
    .name = "sqlite",
    .connect = sq_connect,
    .disconnect = sq_disconnect,
    .insert = sq_insert,
    .migrate_one = sq_migrate_one,
    .count = sq_count,
    .query = sq_query,
};
