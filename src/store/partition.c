/*
 * partition.c - the names and bounds of request_log's partitions in
 * PostgreSQL, and which of them retention drops. Pure: no I/O, no clock;
 * pg.c runs the SQL (pg_maintain) and tests/unit/test_store.c checks this.
 *
 * request_log is partitioned by range of ts in UTC days (migration 008):
 * request_log_YYYYMMDD holds [that day 00:00 UTC, the next day 00:00 UTC);
 * request_log_before_YYYYMMDD is the table that existed before the
 * migration, holding everything before that day; request_log_default takes
 * any row no other partition covers, so no row is ever refused. Days are
 * counted from 1970-01-01 (day 0), proleptic Gregorian calendar.
 */
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

#define SECONDS_PER_DAY 86400

int64_t store_partition_day(int64_t unix_s)
{
    int64_t d = unix_s / SECONDS_PER_DAY;
    return unix_s % SECONDS_PER_DAY < 0 ? d - 1 : d; /* floor */
}

/* Year, month (1-12) and day (1-31) of a day number (H. Hinnant's
 * civil_from_days, an era being 400 years). */
static void civil(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* The day number of a civil date (days_from_civil). */
static int64_t days_of(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void store_partition_name(int64_t day, char *out, size_t n)
{
    int64_t y;
    int m;
    int d;
    civil(day, &y, &m, &d);
    snprintf(out, n, "request_log_%04lld%02d%02d", (long long)y, m, d);
}

void store_partition_bound(int64_t day, char *out, size_t n)
{
    int64_t y;
    int m;
    int d;
    civil(day, &y, &m, &d);
    snprintf(out, n, "%04lld-%02d-%02d 00:00:00+00", (long long)y, m, d);
}

/* Reads YYYYMMDD (exactly 8 digits, a real date) into a day number. */
static bool parse_date(const char *s, int64_t *day)
{
    if (strlen(s) != 8 || strspn(s, "0123456789") != 8) {
        return false;
    }
    int64_t y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 +
                (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[4] - '0') * 10 + (s[5] - '0');
    int d = (s[6] - '0') * 10 + (s[7] - '0');
    if (m < 1 || m > 12 || d < 1 || d > 31) {
        return false;
    }
    *day = days_of(y, m, d);
    int64_t y2;
    int m2;
    int d2;
    civil(*day, &y2, &m2, &d2);
    return y2 == y && m2 == m && d2 == d; /* not 20260231 */
}

bool store_partition_parse(const char *name, struct store_partition *out)
{
    static const char daily[] = "request_log_";
    static const char before[] = "request_log_before_";
    memset(out, 0, sizeof(*out));
    if (strncmp(name, before, sizeof(before) - 1) == 0) {
        int64_t day;
        if (!parse_date(name + sizeof(before) - 1, &day)) {
            return false;
        }
        out->unbounded_below = true;
        out->from_day = day; /* not meaningful: everything before end */
        out->end_day = day;
        return true;
    }
    if (strncmp(name, daily, sizeof(daily) - 1) == 0) {
        int64_t day;
        if (!parse_date(name + sizeof(daily) - 1, &day)) {
            return false;
        }
        out->from_day = day;
        out->end_day = day + 1;
        return true;
    }
    return false;
}

bool store_partition_expired(const struct store_partition *p, int64_t today,
                             uint32_t retention_days)
{
    /* Kept: every row of the last retention_days days, today included, so
     * a partition goes once its last row is older than that. */
    return retention_days > 0 && p->end_day <= today - (int64_t)retention_days;
}

/* ---------------------------------------------------------------------
 * Maintenance (PostgreSQL, through the engine's query operation)
 * ------------------------------------------------------------------- */

#define MAX_PARTITIONS 4096 /* read per pass; ten years of days */

struct part_list {
    char (*names)[64];
    size_t n;
    bool partitioned; /* request_log is a partitioned table */
};

static void on_relkind(void *arg, const char *const *cols, int ncols)
{
    struct part_list *l = arg;
    l->partitioned = ncols == 1 && cols[0] && strcmp(cols[0], "p") == 0;
}

static void on_partition(void *arg, const char *const *cols, int ncols)
{
    struct part_list *l = arg;
    if (ncols == 1 && cols[0] && l->n < MAX_PARTITIONS) {
        snprintf(l->names[l->n++], sizeof(l->names[0]), "%s", cols[0]);
    }
}

/* Runs the statements of sql[] in one transaction; ROLLBACK on failure. */
static enum rl_err in_tx(const struct store_engine *e, struct store_conn *c,
                         const char *const *sql, size_t n, char *err,
                         size_t errn)
{
    enum rl_err r = e->query(c, "BEGIN", NULL, 0, NULL, NULL, err, errn);
    for (size_t i = 0; r == RL_OK && i < n; i++) {
        r = e->query(c, sql[i], NULL, 0, NULL, NULL, err, errn);
    }
    if (r == RL_OK) {
        r = e->query(c, "COMMIT", NULL, 0, NULL, NULL, err, errn);
    }
    if (r != RL_OK) {
        char ignore[256];
        e->query(c, "ROLLBACK", NULL, 0, NULL, NULL, ignore, sizeof(ignore));
        return RL_E_IO;
    }
    return RL_OK;
}

static bool covered(const struct part_list *l, int64_t day)
{
    for (size_t i = 0; i < l->n; i++) {
        struct store_partition p;
        if (store_partition_parse(l->names[i], &p) &&
            (p.unbounded_below || p.from_day <= day) && day < p.end_day) {
            return true;
        }
    }
    return false;
}

/* Makes day's partition: a plain table first, filled with the default
 * partition's rows for that day, then attached (SHARE UPDATE EXCLUSIVE on
 * request_log: inserts and reads go on). */
static enum rl_err create_day(const struct store_engine *e,
                              struct store_conn *c, int64_t day, char *err,
                              size_t errn)
{
    char name[64];
    char lo[40];
    char hi[40];
    store_partition_name(day, name, sizeof(name));
    store_partition_bound(day, lo, sizeof(lo));
    store_partition_bound(day + 1, hi, sizeof(hi));
    char create[256];
    char move[512];
    char attach[256];
    snprintf(create, sizeof(create),
             "CREATE TABLE %s (LIKE request_log INCLUDING DEFAULTS)", name);
    snprintf(move, sizeof(move),
             "WITH moved AS (DELETE FROM request_log_default WHERE ts >= "
             "'%s' AND ts < '%s' RETURNING *) INSERT INTO %s SELECT * FROM "
             "moved", lo, hi, name);
    snprintf(attach, sizeof(attach),
             "ALTER TABLE request_log ATTACH PARTITION %s FOR VALUES FROM "
             "('%s') TO ('%s')", name, lo, hi);
    const char *sql[] = {create, move, attach};
    return in_tx(e, c, sql, 3, err, errn);
}

static enum rl_err drop_part(const struct store_engine *e,
                             struct store_conn *c, const char *name,
                             char *err, size_t errn)
{
    char detach[160];
    char drop[128];
    snprintf(detach, sizeof(detach),
             "ALTER TABLE request_log DETACH PARTITION %s", name);
    snprintf(drop, sizeof(drop), "DROP TABLE %s", name);
    const char *sql[] = {detach, drop};
    return in_tx(e, c, sql, 2, err, errn);
}

/* Rows past retention that the default partition took (late replays). */
static void on_count(void *arg, const char *const *cols, int ncols)
{
    if (ncols == 1 && cols[0]) {
        *(int64_t *)arg = strtoll(cols[0], NULL, 10);
    }
}

static enum rl_err passes(const struct store_engine *e, struct store_conn *c,
                          struct part_list *l, int64_t today,
                          uint32_t retention_days,
                          struct store_maintenance *out, char *err,
                          size_t errn)
{
    for (int64_t d = today; d <= today + STORE_PARTITIONS_AHEAD; d++) {
        if (covered(l, d)) {
            continue;
        }
        if (create_day(e, c, d, err, errn) != RL_OK) {
            return RL_E_IO;
        }
        out->created++;
    }
    if (retention_days == 0) {
        return RL_OK;
    }
    for (size_t i = 0; i < l->n; i++) {
        struct store_partition p;
        if (!store_partition_parse(l->names[i], &p) ||
            !store_partition_expired(&p, today, retention_days)) {
            continue;
        }
        if (drop_part(e, c, l->names[i], err, errn) != RL_OK) {
            return RL_E_IO;
        }
        if (!out->dropped_first[0] ||
            strcmp(l->names[i], out->dropped_first) < 0) {
            snprintf(out->dropped_first, sizeof(out->dropped_first), "%s",
                     l->names[i]);
        }
        out->dropped++;
    }
    char cutoff[40];
    char del[256];
    store_partition_bound(today - (int64_t)retention_days, cutoff,
                          sizeof(cutoff));
    snprintf(del, sizeof(del),
             "WITH gone AS (DELETE FROM request_log_default WHERE ts < '%s' "
             "RETURNING 1) SELECT count(*) FROM gone", cutoff);
    return e->query(c, del, NULL, 0, on_count, &out->deleted_rows, err,
                    errn);
}

enum rl_err store_partitions_maintain(const struct store_engine *e,
                                      struct store_conn *c, int64_t now_s,
                                      uint32_t retention_days,
                                      struct store_maintenance *out,
                                      char *err, size_t errn)
{
    memset(out, 0, sizeof(*out));
    struct part_list l = {0};
    enum rl_err r = e->query(c, "SELECT relkind FROM pg_class WHERE oid = "
                             "to_regclass('request_log')",
                             NULL, 0, on_relkind, &l, err, errn);
    if (r != RL_OK || !l.partitioned) {
        return r == RL_OK ? RL_OK : RL_E_IO;
    }
    l.names = rl_calloc(MAX_PARTITIONS, sizeof(*l.names));
    r = e->query(c, "SELECT c.relname FROM pg_inherits i JOIN pg_class c "
                 "ON c.oid = i.inhrelid WHERE i.inhparent = "
                 "'request_log'::regclass ORDER BY 1",
                 NULL, 0, on_partition, &l, err, errn);
    char ignore[256];
    if (r == RL_OK) {
        r = e->query(c, "SET lock_timeout = '2s'", NULL, 0, NULL, NULL, err,
                     errn);
    }
    if (r == RL_OK) {
        r = passes(e, c, &l, store_partition_day(now_s), retention_days, out,
                   err, errn);
        e->query(c, "RESET lock_timeout", NULL, 0, NULL, NULL, ignore,
                 sizeof(ignore));
    }
    free(l.names);
    return r == RL_OK ? RL_OK : RL_E_IO;
}
