/*
 * pg.c - the request log in PostgreSQL, through libpq (blocking calls,
 * only ever on the writer thread or in `relay migrate`).
 *
 * A batch is one multi-row INSERT ... ON CONFLICT (request_id) DO NOTHING
 * with text parameters: one statement, so one transaction, so a batch is
 * stored whole or not at all, and sending it again (journal replay) adds
 * nothing. Migrations take an advisory lock so that gateways starting
 * together apply each one once.
 */
#include "store/store.h"

#include <inttypes.h>
#include <postgresql/libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

#define PG_NUM 24 /* bytes for one number as text */

struct store_conn {
    PGconn *pg;
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

static const char *num(char *slot, int64_t v)
{
    snprintf(slot, PG_NUM, "%" PRId64, v);
    return slot;
}

static const char *or_null(const char *s)
{
    return s[0] ? s : NULL;
}

/* Fills the STORE_NCOLUMNS parameters of one row; numbers go to nums. */
static void row_params(const struct store_row *r, const char **p,
                       char (*nums)[PG_NUM])
{
    store_ts_format(r->ts_us, nums[0]);
    p[0] = nums[0];
    p[1] = r->request_id;
    p[2] = r->key_prefix;
    p[3] = r->model_requested;
    p[4] = r->model;
    p[5] = r->provider;
    p[6] = num(nums[1], r->status);
    p[7] = or_null(r->error_type);
    p[8] = or_null(r->error_code);
    p[9] = r->stream ? "t" : "f";
    p[10] = num(nums[2], r->prompt_tokens);
    p[11] = num(nums[3], r->completion_tokens);
    p[12] = num(nums[4], r->cached_tokens);
    p[13] = num(nums[5], r->cache_write_tokens);
    p[14] = num(nums[6], r->reasoning_tokens);
    p[15] = r->usage_estimated ? "t" : "f";
    p[16] = num(nums[7], r->cost_nusd);
    p[17] = num(nums[8], r->savings_nusd);
    p[18] = r->cache_status[0] ? r->cache_status : "miss";
    p[19] = NULL;
    if (r->has_similarity) {
        snprintf(nums[9], PG_NUM, "%.6f", r->cache_similarity);
        p[19] = nums[9];
    }
    p[20] = num(nums[10], (int64_t)r->latency_us);
    p[21] = num(nums[11], (int64_t)r->ttft_us);
    p[22] = num(nums[12], (int64_t)r->upstream_us);
    p[23] = num(nums[13], (int64_t)r->overhead_us);
    p[24] = num(nums[14], r->attempts);
    p[25] = r->client_gone ? "t" : "f";
    p[26] = r->key_id;
}

static enum rl_err pg_insert(struct store_conn *c, const struct store_row *rows,
                             size_t n, char *err, size_t errn)
{
    if (n == 0) {
        return RL_OK;
    }
    size_t np = n * STORE_NCOLUMNS; /* 500 rows: 13,000 of 65,535 allowed */
    const char **params = rl_malloc(np * sizeof(*params));
    char(*nums)[PG_NUM] = rl_malloc(n * 16 * sizeof(*nums));
    struct buf sql;
    buf_init(&sql, 1 << 20);
    buf_append_cstr(&sql, "INSERT INTO request_log (" STORE_COLUMNS
                          ") VALUES ");
    for (size_t i = 0; i < n; i++) {
        row_params(&rows[i], params + i * STORE_NCOLUMNS, nums + i * 16);
        buf_append_cstr(&sql, i ? ",(" : "(");
        for (size_t k = 0; k < STORE_NCOLUMNS; k++) {
            buf_append_cstr(&sql, k ? ",$" : "$");
            buf_append_u64(&sql, i * STORE_NCOLUMNS + k + 1);
        }
        buf_append_cstr(&sql, ")");
    }
    buf_append_cstr(&sql, " ON CONFLICT (request_id) DO NOTHING");
    PGresult *res = PQexecParams(c->pg, sql.p, (int)np, NULL, params, NULL,
                                 NULL, 0);
    bool ok = pg_ok(c->pg, res, PGRES_COMMAND_OK, err, errn);
    /* SQLSTATE classes 22 (data exception) and 23 (integrity constraint)
     * are about what a row holds: sending it again cannot help. Anything
     * else (connection, schema, resources) may pass on a later try. */
    const char *state = ok ? NULL : PQresultErrorField(res, PG_DIAG_SQLSTATE);
    bool rejected = state && (strncmp(state, "22", 2) == 0 ||
                              strncmp(state, "23", 2) == 0);
    PQclear(res);
    buf_free(&sql);
    free(nums);
    free(params);
    return ok ? RL_OK : rejected ? RL_E_REJECTED : RL_E_IO;
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

#define PG_MAX_COLS 32

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
