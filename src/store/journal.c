/*
 * journal.c - rows that could not be stored yet, as JSON lines in files.
 *
 * Each process appends to its own file, DIR/j-<unix-us>-<pid>-<seq>.jsonl,
 * which it holds with flock() for as long as it may append to it. Replay
 * takes every file nobody holds, oldest first, hands its rows to the store
 * in batches and deletes the file only after all its rows are stored. A
 * crash during replay leaves the file whole, and the next replay sends the
 * same rows again, which the store ignores (request_id is unique). So a
 * row is never lost and never stored twice. Read journal_append() and
 * journal_replay() first; docs/internals/request-log.md has the rest.
 */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/alloc.h"
#include "util/clock.h"
#include "util/log.h"

#define JOURNAL_LINE_MAX (64 * 1024)

struct journal {
    pthread_mutex_t mu;  /* guards everything below */
    char *dir;           /* the folder, owned */
    int fd;              /* this process's current file, or -1 */
    unsigned seq;        /* files opened so far, for unique names */
    uint64_t gen;        /* appends so far */
    bool pending;        /* a file may hold rows */
    bool dirty;          /* appended without fsync */
    struct buf line;     /* scratch for encoding, under mu */
};

static bool is_journal_name(const char *name)
{
    size_t n = strlen(name);
    return n > 8 && strncmp(name, "j-", 2) == 0 &&
           strcmp(name + n - 6, ".jsonl") == 0;
}

uint64_t journal_dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        return 0;
    }
    uint64_t total = 0;
    int fd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (is_journal_name(e->d_name) &&
            fstatat(fd, e->d_name, &st, 0) == 0 && S_ISREG(st.st_mode)) {
            total += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    return total;
}

/* mkdir -p for dir. */
static int make_dirs(const char *dir)
{
    char path[1024];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        return -1;
    }
    return 0;
}

static bool any_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        return false;
    }
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        found = is_journal_name(e->d_name);
    }
    closedir(d);
    return found;
}

struct journal *journal_open(const char *dir, char *err, size_t n)
{
    if (make_dirs(dir) != 0) {
        snprintf(err, n, "cannot create the journal folder %s: %s", dir,
                 strerror(errno));
        return NULL;
    }
    struct journal *j = rl_calloc(1, sizeof(*j));
    pthread_mutex_init(&j->mu, NULL);
    j->dir = rl_strdup(dir);
    j->fd = -1;
    j->pending = any_files(dir);
    buf_init(&j->line, 64u << 20);
    return j;
}

void journal_close(struct journal *j)
{
    if (!j) {
        return;
    }
    if (j->fd >= 0) {
        if (j->dirty) {
            fdatasync(j->fd);
        }
        close(j->fd); /* releases the flock: the file may be replayed */
    }
    buf_free(&j->line);
    pthread_mutex_destroy(&j->mu);
    free(j->dir);
    free(j);
}

static void sync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

/* Opens a new current file, held with flock. Called under mu. */
static enum rl_err open_current(struct journal *j)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/j-%020llu-%d-%u.jsonl", j->dir,
             (unsigned long long)clock_wall_ms() * 1000ULL, (int)getpid(),
             j->seq++);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC,
                  0600);
    if (fd < 0) {
        return RL_E_IO;
    }
    if (flock(fd, LOCK_EX) != 0) {
        close(fd);
        unlink(path);
        return RL_E_IO;
    }
    sync_dir(j->dir); /* the name must survive a crash too */
    j->fd = fd;
    return RL_OK;
}

static enum rl_err write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return RL_E_IO;
        }
        p += k;
        n -= (size_t)k;
    }
    return RL_OK;
}

enum rl_err journal_append(struct journal *j, const struct store_row *rows,
                           size_t n, bool sync)
{
    enum rl_err result = RL_OK;
    pthread_mutex_lock(&j->mu);
    buf_reset(&j->line);
    for (size_t i = 0; i < n && result == RL_OK; i++) {
        result = store_row_encode(&rows[i], &j->line);
        if (result == RL_OK) {
            result = buf_append(&j->line, "\n", 1);
        }
    }
    if (result != RL_OK) {
        goto out;
    }
    if (j->fd < 0 && (result = open_current(j)) != RL_OK) {
        goto out;
    }
    off_t before = lseek(j->fd, 0, SEEK_END);
    result = write_all(j->fd, j->line.p, j->line.len);
    if (result == RL_OK && sync && fdatasync(j->fd) != 0) {
        result = RL_E_IO;
    }
    if (result != RL_OK) {
        /* All or nothing: a half-written batch (disk full) is cut off, so
         * the file holds only whole lines. */
        if (before >= 0 && ftruncate(j->fd, before) != 0) {
            before = -1;
        }
        goto out;
    }
    j->dirty = !sync;
    j->gen++;
    j->pending = true;
out:
    pthread_mutex_unlock(&j->mu);
    return result;
}

enum rl_err journal_sync(struct journal *j)
{
    enum rl_err result = RL_OK;
    pthread_mutex_lock(&j->mu);
    if (j->fd >= 0 && j->dirty) {
        result = fdatasync(j->fd) == 0 ? RL_OK : RL_E_IO;
        j->dirty = result != RL_OK;
    }
    pthread_mutex_unlock(&j->mu);
    return result;
}

bool journal_pending(struct journal *j)
{
    pthread_mutex_lock(&j->mu);
    bool p = j->pending;
    pthread_mutex_unlock(&j->mu);
    return p;
}

/* ---------------------------------------------------------------------
 * Replay
 * ------------------------------------------------------------------- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns the sorted journal file names in dir (caller frees). */
static char **list_files(const char *dir, size_t *count)
{
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        return NULL;
    }
    size_t cap = 16;
    char **names = rl_malloc(cap * sizeof(*names));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_journal_name(e->d_name)) {
            continue;
        }
        if (*count == cap) {
            cap *= 2;
            names = rl_realloc(names, cap * sizeof(*names));
        }
        names[(*count)++] = rl_strdup(e->d_name);
    }
    closedir(d);
    qsort(names, *count, sizeof(*names), cmp_names);
    return names;
}

struct replay {
    size_t batch;
    journal_sink_fn sink;
    void *arg;
    uint64_t nrows;
    uint64_t nbad;
    struct store_row *rows;
    size_t nrows_buf;
};

static enum rl_err flush_rows(struct replay *rp)
{
    if (rp->nrows_buf == 0) {
        return RL_OK;
    }
    enum rl_err e = rp->sink(rp->arg, rp->rows, rp->nrows_buf);
    if (e == RL_OK) {
        rp->nrows += rp->nrows_buf;
    }
    rp->nrows_buf = 0;
    return e;
}

/* Replays one file held with flock on fd; RL_OK when all its rows are
 * stored. Lines without their newline (torn by a crash) are skipped. */
static enum rl_err replay_fd(struct replay *rp, int fd)
{
    FILE *f = fdopen(dup(fd), "r");
    if (!f) {
        return RL_E_IO;
    }
    enum rl_err result = RL_OK;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while (result == RL_OK && (len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n' || len > JOURNAL_LINE_MAX ||
            store_row_decode(line, (size_t)len - 1,
                             &rp->rows[rp->nrows_buf]) != RL_OK) {
            rp->nbad++;
            continue;
        }
        if (++rp->nrows_buf == rp->batch) {
            result = flush_rows(rp);
        }
    }
    if (result == RL_OK && ferror(f)) {
        result = RL_E_IO;
    }
    if (result == RL_OK) {
        result = flush_rows(rp);
    }
    free(line);
    fclose(f);
    return result;
}

/* Replays dir/name unless another process holds it. */
static enum rl_err replay_file(struct replay *rp, const char *dir,
                               const char *name)
{
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return RL_OK; /* replayed and deleted by another process */
    }
    struct stat st;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &st) != 0 ||
        st.st_nlink == 0) {
        close(fd); /* a live process appends to it, or it is gone */
        return RL_OK;
    }
    enum rl_err result = replay_fd(rp, fd);
    if (result == RL_OK && unlink(path) != 0 && errno != ENOENT) {
        result = RL_E_IO;
    }
    close(fd);
    return result;
}

enum rl_err journal_replay(struct journal *j, size_t batch,
                           journal_sink_fn sink, void *arg, uint64_t *nrows,
                           uint64_t *nbad)
{
    pthread_mutex_lock(&j->mu);
    if (j->fd >= 0) {
        /* Rotate: our file becomes replayable; new rows start another. */
        if (j->dirty) {
            fdatasync(j->fd);
            j->dirty = false;
        }
        close(j->fd);
        j->fd = -1;
    }
    uint64_t gen = j->gen;
    pthread_mutex_unlock(&j->mu);

    struct replay rp = {.batch = batch ? batch : 500, .sink = sink,
                        .arg = arg};
    rp.rows = rl_malloc(rp.batch * sizeof(*rp.rows));
    size_t count = 0;
    char **names = list_files(j->dir, &count);
    enum rl_err result = RL_OK;
    for (size_t i = 0; i < count; i++) {
        if (result == RL_OK) {
            result = replay_file(&rp, j->dir, names[i]);
        }
        free(names[i]);
    }
    free(names);
    free(rp.rows);
    *nrows = rp.nrows;
    *nbad = rp.nbad;
    if (result == RL_OK) {
        pthread_mutex_lock(&j->mu);
        if (j->gen == gen) {
            j->pending = false;
        }
        pthread_mutex_unlock(&j->mu);
    }
    return result;
}
