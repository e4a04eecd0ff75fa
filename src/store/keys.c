/*
 * keys.c - API keys in the store: create, list, revoke, the changes since
 * a version, and each key's spend since a time. Blocking calls over one
 * connection (struct store_db), for `relay keys`, the admin API's thread
 * pool jobs and the key cache's thread; never on an event loop.
 *
 * The SQL is written once for both engines through the engines' query()
 * (text parameters $1..$n); only timestamps and the write lock differ.
 * Writers are serialised (PostgreSQL: LOCK TABLE ... SHARE ROW EXCLUSIVE,
 * which conflicts with itself; SQLite: BEGIN IMMEDIATE) and take
 * max(version) + 1 inside that transaction, so versions become visible in
 * order and a reader polling `version > last` misses nothing. Read
 * store_key_revoke() first. Invariants: docs/internals/keys.md.
 */
#include "store/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/alloc.h"

/* The columns of a key, in the order row_key() reads them. */
#define KEY_COLS(created, revoked)                                        \
    "id, name, prefix, sha256, rpm, tpm, max_concurrent, budget_nusd, "   \
    "budget_period, models, routing, " created ", " revoked ", version, "  \
    "cache"
#define PG_TS(col) "to_char(" col " AT TIME ZONE 'UTC', " \
                   "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define SQ_TS(col) "substr(" col ", 1, 19) || 'Z'"
#define PG_KEY_COLS KEY_COLS(PG_TS("created_at"), PG_TS("revoked_at"))
#define SQ_KEY_COLS KEY_COLS(SQ_TS("created_at"), SQ_TS("revoked_at"))
#define KEY_NCOLS 15

/* ---------------------------------------------------------------------
 * Periods
 * ------------------------------------------------------------------- */

static const char *const period_names[] = {
    [STORE_PERIOD_NONE] = "",
    [STORE_PERIOD_DAY] = "day",
    [STORE_PERIOD_WEEK] = "week",
    [STORE_PERIOD_MONTH] = "month",
    [STORE_PERIOD_TOTAL] = "total",
};

const char *store_period_name(enum store_period p)
{
    if ((unsigned)p > STORE_PERIOD_TOTAL) {
        return "";
    }
    return period_names[p];
}

bool store_period_parse(const char *s, enum store_period *out)
{
    for (int p = STORE_PERIOD_DAY; p <= STORE_PERIOD_TOTAL; p++) {
        if (s && strcmp(s, period_names[p]) == 0) {
            *out = (enum store_period)p;
            return true;
        }
    }
    return false;
}

int64_t store_period_start_us(enum store_period p, int64_t now_us)
{
    if (p != STORE_PERIOD_DAY && p != STORE_PERIOD_WEEK &&
        p != STORE_PERIOD_MONTH) {
        return 0;
    }
    time_t secs = (time_t)(now_us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    tm.tm_hour = 0;
    tm.tm_min = 0;
    tm.tm_sec = 0;
    if (p == STORE_PERIOD_MONTH) {
        tm.tm_mday = 1;
    }
    int64_t start = (int64_t)timegm(&tm);
    if (p == STORE_PERIOD_WEEK) {
        int since_monday = (tm.tm_wday + 6) % 7; /* tm_wday 0 is Sunday */
        start -= (int64_t)since_monday * 86400;
    }
    return start * 1000000;
}

/* ---------------------------------------------------------------------
 * Connection
 * ------------------------------------------------------------------- */

enum rl_err store_db_open(const char *url, bool migrate, struct store_db *db,
                          char *err, size_t n)
{
    memset(db, 0, sizeof(*db));
    if (url && strcmp(url, "none") == 0) {
        snprintf(err, n, "the store is off (store: none in the "
                 "configuration); API keys need one: set store: to a "
                 "postgres:// URL, or leave it empty for SQLite");
        return RL_E_CONFIG;
    }
    enum rl_err result = store_target_parse(url, &db->target, err, n);
    if (result != RL_OK) {
        return result;
    }
    db->engine = db->target.engine;
    char why[512] = "";
    db->conn = db->engine->connect(db->target.target, why, sizeof(why));
    if (!db->conn) {
        snprintf(err, n, "cannot connect to %s at %s: %s; %s",
                 db->engine == &store_pg ? "PostgreSQL" : "SQLite",
                 db->target.shown, why,
                 db->engine == &store_pg
                     ? "is it running? `make up` starts one"
                     : "is its folder there and writable?");
        return RL_E_IO;
    }
    int napplied = 0;
    if (migrate) {
        result = store_migrate(db->engine, db->conn, &napplied, err, n);
    }
    if (result != RL_OK) {
        store_db_close(db);
    }
    return result;
}

void store_db_close(struct store_db *db)
{
    if (db->engine && db->conn) {
        db->engine->disconnect(db->conn);
    }
    db->conn = NULL;
}

static bool is_pg(const struct store_db *db)
{
    return db->engine == &store_pg;
}

static enum rl_err run(struct store_db *db, const char *sql,
                       const char *const *params, int nparams,
                       store_row_fn fn, void *arg, char *err, size_t n)
{
    return db->engine->query(db->conn, sql, params, nparams, fn, arg, err,
                             n);
}

/* ---------------------------------------------------------------------
 * Reading rows
 * ------------------------------------------------------------------- */

struct key_list {
    struct store_key *keys;
    size_t n;
    size_t cap;
};

static int64_t num(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

static void row_key(void *arg, const char *const *cols, int ncols)
{
    struct key_list *l = arg;
    if (ncols != KEY_NCOLS) {
        return;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->keys = rl_realloc(l->keys, l->cap * sizeof(*l->keys));
    }
    struct store_key *k = &l->keys[l->n++];
    memset(k, 0, sizeof(*k));
    store_copy_text(k->id, sizeof(k->id), cols[0]);
    store_copy_text(k->name, sizeof(k->name), cols[1]);
    store_copy_text(k->prefix, sizeof(k->prefix), cols[2]);
    store_copy_text(k->sha256_hex, sizeof(k->sha256_hex), cols[3]);
    k->rpm = num(cols[4]);
    k->tpm = num(cols[5]);
    k->max_concurrent = num(cols[6]);
    k->budget_nusd = num(cols[7]);
    if (!store_period_parse(cols[8], &k->budget_period)) {
        k->budget_period = STORE_PERIOD_NONE;
    }
    store_copy_text(k->models, sizeof(k->models), cols[9]);
    store_copy_text(k->routing, sizeof(k->routing), cols[10]);
    store_copy_text(k->created_at, sizeof(k->created_at), cols[11]);
    store_copy_text(k->revoked_at, sizeof(k->revoked_at), cols[12]);
    k->version = num(cols[13]);
    store_copy_text(k->cache, sizeof(k->cache), cols[14]);
}

static enum rl_err select_keys(struct store_db *db, const char *where,
                               const char *const *params, int nparams,
                               struct store_key **out, size_t *nout,
                               char *err, size_t n)
{
    char sql[1024];
    snprintf(sql, sizeof(sql), "SELECT %s FROM api_keys %s",
             is_pg(db) ? PG_KEY_COLS : SQ_KEY_COLS, where);
    struct key_list l = {0};
    enum rl_err result = run(db, sql, params, nparams, row_key, &l, err, n);
    if (result != RL_OK) {
        free(l.keys);
        l.keys = NULL;
        l.n = 0;
    }
    *out = l.keys;
    *nout = l.n;
    return result;
}

enum rl_err store_keys_list(struct store_db *db, bool all,
                            struct store_key **out, size_t *nout, char *err,
                            size_t n)
{
    return select_keys(db,
                       all ? "ORDER BY created_at, id"
                           : "WHERE revoked_at IS NULL ORDER BY created_at, "
                             "id",
                       NULL, 0, out, nout, err, n);
}

enum rl_err store_keys_since(struct store_db *db, int64_t version,
                             struct store_key **out, size_t *nout, char *err,
                             size_t n)
{
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, version);
    const char *params[] = {v};
    return select_keys(db, "WHERE version > $1 ORDER BY version", params, 1,
                       out, nout, err, n);
}

/* ---------------------------------------------------------------------
 * Writing: one serialised transaction per change
 * ------------------------------------------------------------------- */

static void row_int(void *arg, const char *const *cols, int ncols)
{
    if (ncols >= 1) {
        *(int64_t *)arg = num(cols[0]);
    }
}

/* Begins a write transaction that no other writer runs beside and sets
 * *version to the version its change gets. */
static enum rl_err begin_write(struct store_db *db, int64_t *version,
                               char *err, size_t n)
{
    enum rl_err result;
    if (is_pg(db)) {
        result = run(db, "BEGIN", NULL, 0, NULL, NULL, err, n);
        if (result == RL_OK) {
            result = run(db, "LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE "
                         "MODE", NULL, 0, NULL, NULL, err, n);
        }
    } else {
        result = run(db, "BEGIN IMMEDIATE", NULL, 0, NULL, NULL, err, n);
    }
    *version = 0;
    if (result == RL_OK) {
        result = run(db, "SELECT coalesce(max(version), 0) + 1 FROM "
                     "api_keys", NULL, 0, row_int, version, err, n);
    }
    return result;
}

/* Commits when result is RL_OK, else rolls back; returns the outcome. */
static enum rl_err end_write(struct store_db *db, enum rl_err result,
                             char *err, size_t n)
{
    if (result == RL_OK) {
        result = run(db, "COMMIT", NULL, 0, NULL, NULL, err, n);
        if (result == RL_OK) {
            return RL_OK;
        }
    }
    char ignore[256];
    run(db, "ROLLBACK", NULL, 0, NULL, NULL, ignore, sizeof(ignore));
    return result;
}

static void now_iso(char out[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    store_ts_format((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, out);
}

enum rl_err store_key_insert(struct store_db *db, struct store_key *k,
                             char *err, size_t n)
{
    int64_t version = 0;
    enum rl_err result = begin_write(db, &version, err, n);
    int64_t taken = 0;
    const char *dup[] = {k->id, k->sha256_hex};
    if (result == RL_OK) {
        result = run(db, "SELECT count(*) FROM api_keys WHERE id = $1 OR "
                     "sha256 = $2", dup, 2, row_int, &taken, err, n);
    }
    if (result == RL_OK && taken) {
        snprintf(err, n, "a key with this id or hash exists already");
        result = RL_E_INVALID_REQUEST;
    }
    char nums[5][24];
    char now[32];
    now_iso(now);
    snprintf(nums[0], 24, "%" PRId64, k->rpm);
    snprintf(nums[1], 24, "%" PRId64, k->tpm);
    snprintf(nums[2], 24, "%" PRId64, k->max_concurrent);
    snprintf(nums[3], 24, "%" PRId64, k->budget_nusd);
    snprintf(nums[4], 24, "%" PRId64, version);
    const char *params[] = {
        k->id, k->name, k->prefix, k->sha256_hex, nums[0], nums[1],
        nums[2], nums[3], store_period_name(k->budget_period),
        k->models[0] ? k->models : "[]",
        k->routing[0] ? k->routing : "{}", now, nums[4],
        k->cache[0] ? k->cache : "{}",
    };
    if (result == RL_OK) {
        result = run(db,
                     "INSERT INTO api_keys (id, name, prefix, sha256, rpm, "
                     "tpm, max_concurrent, budget_nusd, budget_period, "
                     "models, routing, created_at, version, cache) VALUES "
                     "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
                     "$13, $14)",
                     params, 14, NULL, NULL, err, n);
    }
    result = end_write(db, result, err, n);
    if (result == RL_OK) {
        k->version = version;
        snprintf(k->created_at, sizeof(k->created_at), "%.19sZ", now);
        k->revoked_at[0] = '\0';
    }
    return result;
}

/* Names the live keys of l in err: "key_a, key_b". */
static void list_ids(const struct key_list *l, char *err, size_t n)
{
    size_t at = strlen(err);
    for (size_t i = 0; i < l->n && at + 2 < n; i++) {
        int k = snprintf(err + at, n - at, "%s%s", i ? ", " : "",
                         l->keys[i].id);
        at += k > 0 ? (size_t)k : 0;
    }
}

/* Finds the one live key that id_or_prefix names, inside the write. */
static enum rl_err find_live(struct store_db *db, const char *id_or_prefix,
                             struct key_list *l, char *err, size_t n)
{
    const char *params[] = {id_or_prefix};
    char sql[1024];
    snprintf(sql, sizeof(sql), "SELECT %s FROM api_keys WHERE (id = $1 OR "
             "prefix = $1) AND revoked_at IS NULL ORDER BY created_at",
             is_pg(db) ? PG_KEY_COLS : SQ_KEY_COLS);
    enum rl_err result = run(db, sql, params, 1, row_key, l, err, n);
    if (result != RL_OK) {
        return result;
    }
    if (l->n == 0) {
        int64_t gone = 0;
        result = run(db, "SELECT count(*) FROM api_keys WHERE id = $1 OR "
                     "prefix = $1", params, 1, row_int, &gone, err, n);
        if (result == RL_OK) {
            snprintf(err, n, gone ? "key %s is revoked already"
                                  : "no key has the id or prefix %s; "
                                    "`relay keys list` shows them",
                     id_or_prefix);
            result = RL_E_NOT_FOUND;
        }
    } else if (l->n > 1) {
        snprintf(err, n, "the prefix %s matches %zu live keys; revoke one "
                 "by its id: ", id_or_prefix, l->n);
        list_ids(l, err, n);
        result = RL_E_INVALID_REQUEST;
    }
    return result;
}

enum rl_err store_key_revoke(struct store_db *db, const char *id_or_prefix,
                             struct store_key *out, char *err, size_t n)
{
    int64_t version = 0;
    struct key_list l = {0};
    enum rl_err result = begin_write(db, &version, err, n);
    if (result == RL_OK) {
        result = find_live(db, id_or_prefix, &l, err, n);
    }
    char now[32];
    now_iso(now);
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, version);
    if (result == RL_OK) {
        const char *params[] = {now, v, l.keys[0].id};
        result = run(db, "UPDATE api_keys SET revoked_at = $1, version = $2"
                     " WHERE id = $3", params, 3, NULL, NULL, err, n);
    }
    result = end_write(db, result, err, n);
    if (result == RL_OK) {
        *out = l.keys[0];
        out->version = version;
        snprintf(out->revoked_at, sizeof(out->revoked_at), "%.19sZ", now);
    }
    free(l.keys);
    return result;
}

/* ---------------------------------------------------------------------
 * Spend
 * ------------------------------------------------------------------- */

struct spend_list {
    struct store_spend *rows;
    size_t n;
    size_t cap;
};

static void row_spend(void *arg, const char *const *cols, int ncols)
{
    struct spend_list *l = arg;
    if (ncols != 2 || !cols[0]) {
        return;
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->rows = rl_realloc(l->rows, l->cap * sizeof(*l->rows));
    }
    struct store_spend *s = &l->rows[l->n++];
    store_copy_text(s->key_id, sizeof(s->key_id), cols[0]);
    s->spent_nusd = num(cols[1]);
}

enum rl_err store_keys_spend(struct store_db *db, int64_t since_us,
                             struct store_spend **out, size_t *nout,
                             char *err, size_t n)
{
    char since[32];
    store_ts_format(since_us, since);
    const char *params[] = {since};
    struct spend_list l = {0};
    enum rl_err result = run(db,
                             "SELECT key_id, sum(cost_nusd) FROM request_log"
                             " WHERE key_id <> '' AND ts >= $1 GROUP BY "
                             "key_id",
                             params, 1, row_spend, &l, err, n);
    if (result != RL_OK) {
        free(l.rows);
        l.rows = NULL;
        l.n = 0;
    }
    *out = l.rows;
    *nout = l.n;
    return result;
}
