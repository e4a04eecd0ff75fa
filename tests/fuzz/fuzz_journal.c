/*
 * fuzz_journal.c - a request-log journal file as a crash may leave it (or
 * as anything else may have written it), replayed by the real reader
 * (src/store/journal.c: getline, torn and over-long lines skipped, each
 * line decoded by store_row_decode in row.c) into a sink that does what
 * the writer's does with each row: writes its COPY line (pg.c) and, for a
 * row the store refuses, its journal line again (writer.c's set_aside).
 *
 * Contracts checked besides "no crash, no leak, no undefined behaviour":
 * every row replayed has a request id and NUL-terminated strings in valid
 * UTF-8; its journal line is one line that decodes back to the same row
 * (the similarity to a millionth); its COPY line is one line of 29
 * tab-separated fields; rows plus skipped lines never exceed the lines of
 * the file.
 */
#include <fcntl.h>
#include <unistd.h>

#include "fuzz.h"
#include "store/store.h"

static char dir[64];

static bool utf8_ok(const char *s, size_t cap)
{
    const char *end = memchr(s, '\0', cap);
    return end && json_check_utf8((const unsigned char *)s,
                                  (size_t)(end - s));
}

static void row_check(const struct store_row *r)
{
    FUZZ_CHECK(r->request_id[0]);
    const struct {
        const char *s;
        size_t cap;
    } text[] = {
        {r->request_id, sizeof(r->request_id)},
        {r->key_prefix, sizeof(r->key_prefix)},
        {r->key_id, sizeof(r->key_id)},
        {r->route, sizeof(r->route)},
        {r->attempt_log, sizeof(r->attempt_log)},
        {r->model_requested, sizeof(r->model_requested)},
        {r->model, sizeof(r->model)},
        {r->provider, sizeof(r->provider)},
        {r->error_type, sizeof(r->error_type)},
        {r->error_code, sizeof(r->error_code)},
        {r->cache_status, sizeof(r->cache_status)},
    };
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
        FUZZ_CHECK(utf8_ok(text[i].s, text[i].cap));
    }
    struct buf b;
    buf_init(&b, 1 << 20);
    FUZZ_CHECK(store_row_encode(r, &b) == RL_OK);
    FUZZ_CHECK(!memchr(b.p, '\n', b.len));
    struct store_row again;
    if (store_row_decode(b.p, b.len, &again) != RL_OK) {
        fuzz_show("journal line written", b.p, b.len);
        FUZZ_CHECK(!"a row's journal line decodes");
    }
    FUZZ_CHECK(again.has_similarity == r->has_similarity);
    double d = again.cache_similarity - r->cache_similarity;
    FUZZ_CHECK(d > -2e-6 && d < 2e-6);
    again.cache_similarity = r->cache_similarity;
    if (memcmp(&again, r, sizeof(again)) != 0) {
        fuzz_show("journal line written", b.p, b.len);
        FUZZ_CHECK(!"a row's journal line decodes to the same row");
    }
    buf_reset(&b);
    FUZZ_CHECK(store_row_copy_line(r, &b) == RL_OK);
    FUZZ_CHECK(b.len > 0 && b.p[b.len - 1] == '\n');
    FUZZ_CHECK(memchr(b.p, '\n', b.len) == b.p + b.len - 1);
    size_t tabs = 0;
    for (size_t i = 0; i < b.len; i++) {
        tabs += b.p[i] == '\t';
    }
    FUZZ_CHECK(tabs == STORE_NCOLUMNS - 1);
    buf_free(&b);
}

static uint64_t seen;

/* Removes the target's folder when libFuzzer exits (the file is deleted
 * by each replay already). */
static void remove_dir(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/j-fuzz-1.jsonl", dir);
    unlink(path);
    rmdir(dir);
}

static enum rl_err sink(void *arg, const struct store_row *rows, size_t n)
{
    (void)arg;
    for (size_t i = 0; i < n; i++) {
        row_check(&rows[i]);
    }
    seen += n;
    return RL_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/fuzz_journal.XXXXXX");
        FUZZ_CHECK(mkdtemp(dir) != NULL);
        atexit(remove_dir);
    }
    char path[128];
    snprintf(path, sizeof(path), "%s/j-fuzz-1.jsonl", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
    close(fd);
    size_t lines = 0;
    for (size_t i = 0; i < size; i++) {
        lines += data[i] == '\n';
    }
    char err[256];
    struct journal *j = journal_open(dir, err, sizeof(err));
    FUZZ_CHECK(j != NULL);
    uint64_t nrows = 0, nbad = 0;
    seen = 0;
    /* Batches of 3, so that a file of a few lines fills some. */
    FUZZ_CHECK(journal_replay(j, 3, sink, NULL, &nrows, &nbad) == RL_OK);
    FUZZ_CHECK(nrows == seen);
    FUZZ_CHECK(nrows + nbad <= lines + 1);
    FUZZ_CHECK(access(path, F_OK) != 0); /* replayed whole: deleted */
    journal_close(j);
    return 0;
}
