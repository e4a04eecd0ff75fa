/*
 * test_store.c - unit tests of src/store/ (row encoding, the journal,
 * migrations, the writer's queue) and of accounting_row(), against SQLite
 * files in a temporary folder. PostgreSQL is covered by the integration
 * tests (tests/integration/test_store_pg.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>
#include <sqlite3.h>

#include "accounting/accounting.h"
#include "config/config.h"
#include "request.h"
#include "store/store.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/relay-test-store.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static struct store_row sample(int i)
{
    struct store_row r;
    memset(&r, 0, sizeof(r));
    r.ts_us = 1732500000123456LL + i;
    snprintf(r.request_id, sizeof(r.request_id), "req_%024d", i);
    store_copy_text(r.key_prefix, sizeof(r.key_prefix), "glw_abcd");
    store_copy_text(r.key_id, sizeof(r.key_id), "key_0123456789abcdef");
    store_copy_text(r.model_requested, sizeof(r.model_requested),
                    "auto \"quoted\" \\ caf\xc3\xa9\n");
    store_copy_text(r.model, sizeof(r.model), "llama-3.1-8b");
    store_copy_text(r.provider, sizeof(r.provider), "groq");
    store_copy_text(r.error_type, sizeof(r.error_type), i % 2 ? "x" : "");
    store_copy_text(r.cache_status, sizeof(r.cache_status), "miss");
    r.status = 200;
    r.attempts = 1;
    r.prompt_tokens = 6 + i;
    r.completion_tokens = 12;
    r.cached_tokens = 2;
    r.cache_write_tokens = 3;
    r.reasoning_tokens = 4;
    r.cost_nusd = 1260 + i;
    r.latency_us = 286;
    r.ttft_us = 239;
    r.upstream_us = 253;
    r.overhead_us = 33;
    r.stream = true;
    r.client_gone = i % 3 == 0;
    return r;
}

/* ---------------------------------------------------------------------
 * Rows
 * ------------------------------------------------------------------- */

static void test_a_row_survives_its_journal_line(void **state)
{
    (void)state;
    struct store_row in = sample(7);
    in.has_similarity = true;
    in.cache_similarity = 0.931;
    store_copy_text(in.route, sizeof(in.route),
                    "chosen=a 300ms $0.00001; b: 480ms > 400ms");
    store_copy_text(in.attempt_log, sizeof(in.attempt_log),
                    "[{\"model\":\"a\",\"outcome\":\"ok\"}]");
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(store_row_encode(&in, &b), RL_OK);
    assert_null(memchr(b.p, '\n', b.len)); /* one line */
    struct store_row out;
    assert_int_equal(store_row_decode(b.p, b.len, &out), RL_OK);
    assert_true(out.has_similarity);
    assert_true(out.cache_similarity > 0.9309 &&
                out.cache_similarity < 0.9311);
    out.cache_similarity = in.cache_similarity;
    assert_memory_equal(&in, &out, sizeof(in));
    buf_free(&b);
}

static void test_a_missing_similarity_stays_null(void **state)
{
    (void)state;
    struct store_row in = sample(1);
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(store_row_encode(&in, &b), RL_OK);
    assert_non_null(strstr(b.p, "\"cache_similarity\":null"));
    struct store_row out;
    assert_int_equal(store_row_decode(b.p, b.len, &out), RL_OK);
    assert_false(out.has_similarity);
    buf_free(&b);
}

/* A journal line's similarity outside [-1, 1] (no row of Relay's has one)
 * decodes as none: 1e300 made the encoder's conversion to millionths
 * overflow, undefined behaviour (fuzz_journal; UBSan in make asan-unit). */
static void test_a_similarity_out_of_range_is_none(void **state)
{
    (void)state;
    struct store_row in = sample(2);
    in.has_similarity = true;
    in.cache_similarity = 0.5;
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(store_row_encode(&in, &b), RL_OK);
    buf_append(&b, "", 0);
    char *at = strstr(b.p, "\"cache_similarity\":0.500000");
    assert_non_null(at);
    memcpy(at + strlen("\"cache_similarity\":"), "1e300   ", 8);
    struct store_row out;
    assert_int_equal(store_row_decode(b.p, b.len, &out), RL_OK);
    assert_false(out.has_similarity);
    buf_reset(&b);
    out.has_similarity = true;
    out.cache_similarity = 1e300;
    assert_int_equal(store_row_encode(&out, &b), RL_OK);
    assert_non_null(strstr(b.p, "\"cache_similarity\":1.000000"));
    buf_free(&b);
}

/* Journal lines written before the key_id column existed still decode. */
static void test_a_journal_line_without_key_id_decodes(void **state)
{
    (void)state;
    struct store_row in = sample(3);
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(store_row_encode(&in, &b), RL_OK);
    buf_append(&b, "", 0);
    const char *field = ",\"key_id\":\"key_0123456789abcdef\"";
    char *at = strstr(b.p, field);
    assert_non_null(at);
    size_t cut = strlen(field);
    memmove(at, at + cut, strlen(at + cut) + 1);
    struct store_row out;
    assert_int_equal(store_row_decode(b.p, strlen(b.p), &out), RL_OK);
    assert_string_equal(out.key_id, "");
    assert_string_equal(out.request_id, in.request_id);
    buf_free(&b);
}

static void test_torn_or_foreign_lines_do_not_decode(void **state)
{
    (void)state;
    struct store_row in = sample(2);
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(store_row_encode(&in, &b), RL_OK);
    struct store_row out;
    assert_int_equal(store_row_decode(b.p, b.len - 10, &out),
                     RL_E_INVALID_JSON);
    assert_int_equal(store_row_decode("{\"v\":1}", 7, &out),
                     RL_E_INVALID_JSON);
    assert_int_equal(store_row_decode("[1]", 3, &out), RL_E_INVALID_JSON);
    buf_free(&b);
}

/* The COPY line is exact: 29 tab-separated fields in STORE_COLUMNS order,
 * backslash, tab, newline and carriage return escaped, \N for a null. */
static void test_a_copy_line_escapes_every_delimiter(void **state)
{
    (void)state;
    struct store_row r = sample(1); /* error_type "x", no similarity */
    store_copy_text(r.model_requested, sizeof(r.model_requested),
                    "a\tb\nc\\d\re\\N caf\xc3\xa9");
    store_copy_text(r.provider, sizeof(r.provider), "\\.");
    store_copy_text(r.route, sizeof(r.route), "chosen=m 12ms $0.0001");
    store_copy_text(r.attempt_log, sizeof(r.attempt_log),
                    "[{\"model\":\"m\",\"ms\":12}]");
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(store_row_copy_line(&r, &b), RL_OK);
    const char *want =
        "2024-11-25T02:00:00.123457Z\treq_000000000000000000000001\t"
        "glw_abcd\ta\\tb\\nc\\\\d\\re\\\\N caf\xc3\xa9\tllama-3.1-8b\t\\\\.\t"
        "200\tx\t\\N\tt\t7\t12\t2\t3\t4\tf\t1261\t0\tmiss\t\\N\t286\t239\t"
        "253\t33\t1\tf\tkey_0123456789abcdef\tchosen=m 12ms $0.0001\t"
        "[{\"model\":\"m\",\"ms\":12}]\n";
    assert_string_equal(b.p, want);
    size_t tabs = 0;
    for (size_t i = 0; i < b.len; i++) {
        tabs += b.p[i] == '\t';
    }
    assert_int_equal(tabs, STORE_NCOLUMNS - 1);
    buf_free(&b);
}

/* A set similarity is a number, an empty error type a null, an empty
 * key id an empty string (the column is NOT NULL), an unset cache status
 * "miss"; a second line follows the first; past the cap, nothing. */
static void test_a_copy_line_writes_nulls_numbers_and_defaults(void **state)
{
    (void)state;
    struct store_row r = sample(2); /* error_type "" */
    r.has_similarity = true;
    r.cache_similarity = 0.875;
    r.key_id[0] = '\0';
    r.cache_status[0] = '\0';
    r.cost_nusd = -5;
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(store_row_copy_line(&r, &b), RL_OK);
    size_t first = b.len;
    assert_int_equal(store_row_copy_line(&r, &b), RL_OK);
    assert_int_equal(b.len, 2 * first);
    assert_memory_equal(b.p, b.p + first, first);
    assert_non_null(strstr(b.p, "\t200\t\\N\t\\N\tt\t"));
    assert_non_null(strstr(b.p, "\t-5\t0\tmiss\t0.875000\t286\t"));
    /* key_id, route and attempt_log "", then \n. */
    assert_memory_equal(b.p + first - 4, "\t\t\t\n", 4);
    buf_free(&b);
    struct buf small;
    buf_init(&small, 64);
    assert_int_equal(store_row_copy_line(&r, &small), RL_E_CAP);
    assert_int_equal(small.len, 0);
    buf_free(&small);
}

static void test_long_text_is_cut_at_a_character_boundary(void **state)
{
    (void)state;
    char dst[6];
    store_copy_text(dst, sizeof(dst), "abcd\xc3\xa9z"); /* é at 4..5 */
    assert_string_equal(dst, "abcd");
    store_copy_text(dst, sizeof(dst), "ab\xe2\x82\xac!"); /* € fits */
    assert_string_equal(dst, "ab\xe2\x82\xac");
    store_copy_text(dst, sizeof(dst), NULL);
    assert_string_equal(dst, "");
}

static void test_timestamps_are_iso_utc_with_microseconds(void **state)
{
    (void)state;
    char ts[32];
    store_ts_format(1732500000123456LL, ts);
    assert_string_equal(ts, "2024-11-25T02:00:00.123456Z");
    store_ts_format(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00.000000Z");
}

static void test_store_urls(void **state)
{
    (void)state;
    struct store_target t;
    char err[512];
    assert_int_equal(store_target_parse(NULL, &t, err, sizeof(err)), RL_OK);
    assert_ptr_equal(t.engine, &store_sqlite);
    assert_string_equal(t.target, ".relay/relay.db");
    assert_int_equal(store_target_parse("sqlite:/x/y.db", &t, err,
                                        sizeof(err)), RL_OK);
    assert_string_equal(t.target, "/x/y.db");
    assert_string_equal(t.journal_dir, "/x/y.db.journal");
    assert_int_equal(store_target_parse("postgres://u:pw@h:5/db?x=1", &t,
                                        err, sizeof(err)), RL_OK);
    assert_ptr_equal(t.engine, &store_pg);
    assert_null(strstr(t.shown, "pw"));
    assert_string_equal(t.journal_dir, ".relay/journal/pg_h_5_db");
    assert_int_equal(store_target_parse("mysql://h/db", &t, err,
                                        sizeof(err)), RL_E_CONFIG);
    assert_non_null(strstr(err, "postgres://"));
}

/* ---------------------------------------------------------------------
 * The journal
 * ------------------------------------------------------------------- */

struct collect {
    struct store_row rows[4096];
    size_t n;
    size_t calls;
    size_t fail_at_call; /* 1-based; 0: never */
};

static enum rl_err collect(void *arg, const struct store_row *rows, size_t n)
{
    struct collect *c = arg;
    c->calls++;
    if (c->fail_at_call && c->calls == c->fail_at_call) {
        return RL_E_IO;
    }
    for (size_t i = 0; i < n; i++) {
        c->rows[c->n++] = rows[i];
    }
    return RL_OK;
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        n += e->d_name[0] != '.';
    }
    if (d) {
        closedir(d);
    }
    return n;
}

static void test_journal_replays_in_order_in_batches_then_deletes(void **s)
{
    (void)s;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/j1", tmpdir);
    char err[512];
    struct journal *j = journal_open(dir, err, sizeof(err));
    assert_non_null(j);
    assert_false(journal_pending(j));
    for (int i = 0; i < 25; i++) {
        struct store_row r = sample(i);
        assert_int_equal(journal_append(j, &r, 1, i % 2 == 0), RL_OK);
    }
    assert_true(journal_pending(j));
    static struct collect c;
    memset(&c, 0, sizeof(c));
    uint64_t nrows = 0;
    uint64_t nbad = 0;
    assert_int_equal(journal_replay(j, 10, collect, &c, &nrows, &nbad),
                     RL_OK);
    assert_int_equal(nrows, 25);
    assert_int_equal(nbad, 0);
    assert_int_equal(c.calls, 3); /* 10 + 10 + 5 */
    for (int i = 0; i < 25; i++) {
        assert_string_equal(c.rows[i].request_id, sample(i).request_id);
    }
    assert_false(journal_pending(j));
    assert_int_equal(count_files(dir), 0);
    /* Appending after a replay starts a new file. */
    struct store_row r = sample(99);
    assert_int_equal(journal_append(j, &r, 1, true), RL_OK);
    assert_int_equal(count_files(dir), 1);
    journal_close(j);
}

static void test_a_torn_last_line_is_skipped(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/j2", tmpdir);
    char err[512];
    struct journal *j = journal_open(dir, err, sizeof(err));
    struct store_row rows[3] = {sample(1), sample(2), sample(3)};
    assert_int_equal(journal_append(j, rows, 3, true), RL_OK);
    journal_close(j);
    /* A crash in the middle of a write: half a line, no newline. */
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[1024] = "";
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    FILE *f = fopen(path, "a");
    fputs("{\"v\":1,\"ts_us\":17325000001234", f);
    fclose(f);
    j = journal_open(dir, err, sizeof(err));
    assert_true(journal_pending(j)); /* a file from an earlier run */
    static struct collect c;
    memset(&c, 0, sizeof(c));
    uint64_t nrows = 0;
    uint64_t nbad = 0;
    assert_int_equal(journal_replay(j, 500, collect, &c, &nrows, &nbad),
                     RL_OK);
    assert_int_equal(nrows, 3);
    assert_int_equal(nbad, 1);
    assert_int_equal(count_files(dir), 0);
    journal_close(j);
}

static void test_a_failed_replay_keeps_the_file_whole(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/j3", tmpdir);
    char err[512];
    struct journal *j = journal_open(dir, err, sizeof(err));
    struct store_row rows[30];
    for (int i = 0; i < 30; i++) {
        rows[i] = sample(i);
    }
    assert_int_equal(journal_append(j, rows, 30, true), RL_OK);
    static struct collect c;
    memset(&c, 0, sizeof(c));
    c.fail_at_call = 2;
    uint64_t nrows = 0;
    uint64_t nbad = 0;
    assert_int_equal(journal_replay(j, 10, collect, &c, &nrows, &nbad),
                     RL_E_IO);
    assert_int_equal(nrows, 10);
    assert_true(journal_pending(j));
    assert_int_equal(count_files(dir), 1);
    /* The next replay sends every row again, the first ten included: the
     * store's unique request_id makes that harmless. */
    memset(&c, 0, sizeof(c));
    assert_int_equal(journal_replay(j, 10, collect, &c, &nrows, &nbad),
                     RL_OK);
    assert_int_equal(nrows, 30);
    assert_int_equal(count_files(dir), 0);
    journal_close(j);
}

/* ---------------------------------------------------------------------
 * SQLite, migrations, the writer
 * ------------------------------------------------------------------- */

static int64_t sqlite_count(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_migrations_apply_once(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/m/relay.db", tmpdir);
    char err[512];
    struct store_conn *c = store_sqlite.connect(path, err, sizeof(err));
    assert_non_null(c);
    int n = -1;
    assert_int_equal(store_migrate(&store_sqlite, c, &n, err, sizeof(err)),
                     RL_OK);
    assert_true(n >= 1);
    assert_int_equal(store_migrate(&store_sqlite, c, &n, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(n, 0);
    struct store_row rows[2] = {sample(1), sample(1)};
    /* The same request id twice, and again: one row. */
    assert_int_equal(store_sqlite.insert(c, rows, 2, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(store_sqlite.insert(c, rows, 1, err, sizeof(err)),
                     RL_OK);
    assert_int_equal(store_sqlite.count(c), 1);
    store_sqlite.disconnect(c);
    assert_int_equal(sqlite_count(path, "SELECT cost_nusd FROM request_log"),
                     1261);
    assert_int_equal(sqlite_count(path, "SELECT count(*) FROM request_log "
                                        "WHERE key_id = "
                                        "'key_0123456789abcdef'"),
                     1);
}

static void test_the_writer_stores_every_row_once(void **state)
{
    (void)state;
    char url[512];
    snprintf(url, sizeof(url), "sqlite:%s/w/relay.db", tmpdir);
    struct store_opts o = {.batch_rows = 64, .batch_wait_ms = 5};
    assert_int_equal(store_open(url, &o), RL_OK);
    for (int i = 0; i < 1000; i++) {
        struct store_row r = sample(i);
        store_enqueue(&r);
    }
    store_flush();
    struct store_stats st = store_stats_get();
    assert_int_equal(st.enqueued, 1000);
    assert_int_equal(st.inserted + st.journaled, 1000);
    assert_int_equal(st.lost, 0);
    store_close();
    assert_int_equal(sqlite_count(url + 7, "SELECT count(*) FROM "
                                           "request_log"), 1000);
}

/* An unreachable PostgreSQL and a queue of 4: every row goes to the
 * journal (some straight from store_enqueue), none is lost; then a SQLite
 * store opened on the same journal replays all of them, once. */
static void test_rows_wait_in_the_journal_until_a_store_takes_them(void **s)
{
    (void)s;
    char jdir[512];
    snprintf(jdir, sizeof(jdir), "%s/shared.journal", tmpdir);
    struct store_opts o = {.queue_rows = 4, .batch_rows = 2,
                           .batch_wait_ms = 1, .journal_dir = jdir};
    assert_int_equal(store_open("postgres://relay@127.0.0.1:1/none"
                                "?connect_timeout=1", &o), RL_OK);
    for (int i = 0; i < 2000; i++) {
        struct store_row r = sample(i);
        store_enqueue(&r);
    }
    store_flush();
    struct store_stats st = store_stats_get();
    assert_int_equal(st.inserted, 0);
    assert_int_equal(st.journaled, 2000);
    assert_true(st.overflowed > 0);
    assert_int_equal(st.lost, 0);
    store_close();

    char url[512];
    snprintf(url, sizeof(url), "sqlite:%s/r/relay.db", tmpdir);
    o = (struct store_opts){.journal_dir = jdir};
    assert_int_equal(store_open(url, &o), RL_OK); /* replays at open */
    st = store_stats_get();
    assert_int_equal(st.replayed, 2000);
    store_close();
    assert_int_equal(count_files(jdir), 0);
    assert_int_equal(sqlite_count(url + 7, "SELECT count(*) FROM "
                                           "request_log"), 2000);
    assert_int_equal(sqlite_count(url + 7, "SELECT count(DISTINCT "
                                           "request_id) FROM request_log"),
                     2000);
}

/* Rows that overflow a small queue while the store is up are journaled,
 * then replayed by the running writer (not only at a reconnect). */
static void test_overflow_while_connected_is_replayed_soon(void **state)
{
    (void)state;
    char url[512];
    snprintf(url, sizeof(url), "sqlite:%s/o/relay.db", tmpdir);
    struct store_opts o = {.queue_rows = 4, .batch_rows = 2,
                           .batch_wait_ms = 1};
    assert_int_equal(store_open(url, &o), RL_OK);
    for (int i = 0; i < 2000; i++) {
        struct store_row r = sample(i);
        store_enqueue(&r);
    }
    store_flush();
    struct store_stats st = store_stats_get();
    for (int k = 0; k < 100 && st.inserted + st.replayed < 2000; k++) {
        usleep(50 * 1000);
        st = store_stats_get();
    }
    assert_true(st.overflowed > 0);
    assert_int_equal(st.inserted + st.replayed, 2000);
    assert_int_equal(st.lost, 0);
    store_close();
    assert_int_equal(sqlite_count(url + 7, "SELECT count(*) FROM "
                                           "request_log"), 2000);
}

/* A row the store refuses for its content (here a trigger stands in for a
 * data error) is set aside in rejected.jsonl with the reason; the rest of
 * its batch is stored, and nothing is retried forever. */
static void test_a_rejected_row_is_set_aside_and_its_batch_stored(void **s)
{
    (void)s;
    char path[512];
    snprintf(path, sizeof(path), "%s/p/relay.db", tmpdir);
    char err[512];
    struct store_conn *c = store_sqlite.connect(path, err, sizeof(err));
    assert_non_null(c);
    int n = 0;
    assert_int_equal(store_migrate(&store_sqlite, c, &n, err, sizeof(err)),
                     RL_OK);
    store_sqlite.disconnect(c);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TRIGGER poison BEFORE INSERT "
                                      "ON request_log WHEN NEW.status = 599 "
                                      "BEGIN SELECT RAISE(ABORT, 'poison'); "
                                      "END;", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    struct store_row rows[3] = {sample(1), sample(2), sample(3)};
    rows[1].status = 599;
    c = store_sqlite.connect(path, err, sizeof(err));
    assert_int_equal(store_sqlite.insert(c, rows, 3, err, sizeof(err)),
                     RL_E_REJECTED);
    store_sqlite.disconnect(c);

    char url[600];
    snprintf(url, sizeof(url), "sqlite:%s", path);
    char jdir[512];
    snprintf(jdir, sizeof(jdir), "%s/p/journal", tmpdir);
    struct store_opts o = {.batch_rows = 8, .batch_wait_ms = 5,
                           .journal_dir = jdir};
    assert_int_equal(store_open(url, &o), RL_OK);
    for (int i = 0; i < 3; i++) {
        store_enqueue(&rows[i]);
    }
    store_flush();
    struct store_stats st = store_stats_get();
    assert_int_equal(st.inserted, 2);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.journaled, 0);
    assert_int_equal(st.lost, 0);
    store_close();
    assert_int_equal(sqlite_count(path, "SELECT count(*) FROM request_log"),
                     2);
    char rej[600];
    snprintf(rej, sizeof(rej), "%s/rejected.jsonl", jdir);
    FILE *f = fopen(rej, "r");
    assert_non_null(f);
    char line[8192];
    assert_non_null(fgets(line, sizeof(line), f));
    assert_non_null(strstr(line, "poison"));
    assert_non_null(strstr(line, rows[1].request_id));
    assert_null(fgets(line, sizeof(line), f)); /* one line only */
    fclose(f);
}

/* ---------------------------------------------------------------------
 * accounting_row
 * ------------------------------------------------------------------- */

static void test_accounting_fills_the_row_from_the_request(void **state)
{
    (void)state;
    struct provider_cfg p = {.name = "fake"};
    struct model_cfg m = {.name = "test-model", .provider = &p};
    static struct req r;
    memset(&r, 0, sizeof(r));
    memcpy(r.id, "req_0123456789abcdef01234567", 29);
    memcpy(r.key_prefix, "rk-test-", 9);
    r.model_requested = "auto";
    r.model = &m;
    r.status = 502;
    r.error_type = "api_error";
    r.error_code = "upstream_error";
    r.start_us = 1000;
    r.end_us = 6000;
    r.upstream_us = 4000;
    r.ttft_us = 0;
    r.attempts = 2;
    r.streamed = true;
    r.client_gone = true;
    struct store_row row;
    accounting_row(&r, 1732500000000000LL, &row);
    assert_int_equal(row.ts_us, 1732500000000000LL - 5000);
    assert_string_equal(row.request_id, r.id);
    assert_string_equal(row.key_prefix, "rk-test-");
    assert_string_equal(row.model_requested, "auto");
    assert_string_equal(row.model, "test-model");
    assert_string_equal(row.provider, "fake");
    assert_string_equal(row.error_type, "api_error");
    assert_string_equal(row.error_code, "upstream_error");
    assert_string_equal(row.cache_status, "miss");
    assert_int_equal(row.status, 502);
    assert_int_equal(row.latency_us, 5000);
    assert_int_equal(row.overhead_us, 1000);
    assert_int_equal(row.attempts, 2);
    assert_true(row.stream);
    assert_true(row.client_gone);
    assert_false(row.usage_estimated); /* a failed call is not estimated */
    assert_false(row.has_similarity);
    assert_int_equal(row.savings_nusd, 0);
}

int main(void)
{
    if (!getenv("RELAY_MIGRATIONS")) {
        setenv("RELAY_MIGRATIONS", "migrations", 1);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_row_survives_its_journal_line),
        cmocka_unit_test_setup_teardown(
            test_a_rejected_row_is_set_aside_and_its_batch_stored, setup,
            teardown),
        cmocka_unit_test(test_a_missing_similarity_stays_null),
        cmocka_unit_test(test_a_similarity_out_of_range_is_none),
        cmocka_unit_test(test_a_journal_line_without_key_id_decodes),
        cmocka_unit_test(test_torn_or_foreign_lines_do_not_decode),
        cmocka_unit_test(test_a_copy_line_escapes_every_delimiter),
        cmocka_unit_test(test_a_copy_line_writes_nulls_numbers_and_defaults),
        cmocka_unit_test(test_long_text_is_cut_at_a_character_boundary),
        cmocka_unit_test(test_timestamps_are_iso_utc_with_microseconds),
        cmocka_unit_test(test_store_urls),
        cmocka_unit_test(test_journal_replays_in_order_in_batches_then_deletes),
        cmocka_unit_test(test_a_torn_last_line_is_skipped),
        cmocka_unit_test(test_a_failed_replay_keeps_the_file_whole),
        cmocka_unit_test(test_migrations_apply_once),
        cmocka_unit_test(test_the_writer_stores_every_row_once),
        cmocka_unit_test(test_rows_wait_in_the_journal_until_a_store_takes_them),
        cmocka_unit_test(test_overflow_while_connected_is_replayed_soon),
        cmocka_unit_test(test_accounting_fills_the_row_from_the_request),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
