/*
 * migrate.c - which store a `store:` URL means, and applying the SQL files
 * of migrations/ to it, each once, in order.
 *
 * Migrations are NNN_name.sql (both engines) or NNN_name.pg.sql /
 * NNN_name.sqlite.sql (one engine); each runs in a transaction with its row
 * in schema_migrations, so applying them again does nothing.
 */
#include "store/store.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/alloc.h"

#define SQLITE_DEFAULT ".relay/relay.db"
#define MIGRATION_MAX_BYTES (4u << 20)

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Copies url into out with any password replaced by ***. */
static void hide_password(const char *url, char *out, size_t n)
{
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = scheme ? strchr(scheme + 3, ':') : NULL;
    if (at && colon && colon < at) {
        snprintf(out, n, "%.*s:***%s", (int)(colon - url), url, at);
    } else {
        snprintf(out, n, "%s", url);
    }
}

/* .relay/journal/<host_port_db>: one folder per PostgreSQL store. */
static void pg_journal_dir(const char *url, char *out, size_t n)
{
    const char *p = strstr(url, "://") + 3;
    const char *at = strchr(p, '@');
    const char *q = strchr(p, '?');
    if (at && (!q || at < q)) {
        p = at + 1;
    }
    char slug[128];
    size_t k = 0;
    for (; *p && *p != '?' && k + 1 < sizeof(slug); p++) {
        slug[k++] = isalnum((unsigned char)*p) || *p == '.' || *p == '-'
                        ? *p
                        : '_';
    }
    slug[k] = '\0';
    snprintf(out, n, ".relay/journal/pg_%s", slug);
}

enum rl_err store_target_parse(const char *url, struct store_target *t,
                               char *err, size_t n)
{
    memset(t, 0, sizeof(*t));
    if (!url || !*url) {
        url = "sqlite:" SQLITE_DEFAULT;
    }
    if (strlen(url) >= sizeof(t->target) - 64) {
        snprintf(err, n, "store: the URL is too long");
        return RL_E_CONFIG;
    }
    if (starts(url, "postgres://") || starts(url, "postgresql://")) {
        t->engine = &store_pg;
        snprintf(t->target, sizeof(t->target), "%s", url);
        hide_password(url, t->shown, sizeof(t->shown));
        pg_journal_dir(url, t->journal_dir, sizeof(t->journal_dir));
        return RL_OK;
    }
    if (starts(url, "sqlite:")) {
        const char *path = url + strlen("sqlite:");
        if (starts(path, "//")) {
            path += 2; /* sqlite:///abs/path or sqlite://rel/path */
        }
        if (!*path) {
            snprintf(err, n, "store: sqlite: needs a file path, as in "
                     "sqlite:.relay/relay.db");
            return RL_E_CONFIG;
        }
        t->engine = &store_sqlite;
        snprintf(t->target, sizeof(t->target), "%s", path);
        snprintf(t->shown, sizeof(t->shown), "sqlite:%s", path);
        snprintf(t->journal_dir, sizeof(t->journal_dir), "%s.journal", path);
        return RL_OK;
    }
    snprintf(err, n, "store: '%.200s' is not a store URL; use "
             "postgres://USER@HOST:PORT/DB, sqlite:PATH, or leave it empty "
             "for SQLite at " SQLITE_DEFAULT, url);
    return RL_E_CONFIG;
}

/* ---------------------------------------------------------------------
 * Migrations
 * ------------------------------------------------------------------- */

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* $RELAY_MIGRATIONS, ./migrations, or migrations/ beside the binary's
 * folder (build/relay -> ./migrations of the checkout). */
static bool find_dir(char *out, size_t n)
{
    const char *env = getenv("RELAY_MIGRATIONS");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return is_dir(out);
    }
    if (is_dir("migrations")) {
        snprintf(out, n, "migrations");
        return true;
    }
    char exe[1024];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (k <= 0) {
        return false;
    }
    exe[k] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) {
        return false;
    }
    *slash = '\0';
    snprintf(out, n, "%s/../migrations", exe);
    return is_dir(out);
}

/* Whether name is a migration for engine e; sets its version. */
static bool applies(const char *name, const struct store_engine *e,
                    int *version)
{
    size_t len = strlen(name);
    if (len < 8 || !isdigit((unsigned char)name[0]) ||
        strcmp(name + len - 4, ".sql") != 0) {
        return false;
    }
    *version = (int)strtol(name, NULL, 10);
    bool pg_only = len > 7 && strcmp(name + len - 7, ".pg.sql") == 0;
    bool sq_only = len > 11 && strcmp(name + len - 11, ".sqlite.sql") == 0;
    if (pg_only) {
        return e == &store_pg;
    }
    if (sq_only) {
        return e == &store_sqlite;
    }
    return true;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return NULL;
    }
    char *text = rl_malloc(MIGRATION_MAX_BYTES + 1);
    size_t k = fread(text, 1, MIGRATION_MAX_BYTES, f);
    bool whole = feof(f) && !ferror(f);
    fclose(f);
    if (!whole) {
        free(text);
        return NULL;
    }
    text[k] = '\0';
    return text;
}

static enum rl_err apply_file(const struct store_engine *e,
                              struct store_conn *c, const char *dir,
                              const char *name, int *napplied, char *err,
                              size_t n)
{
    int version = 0;
    if (!applies(name, e, &version)) {
        return RL_OK;
    }
    char path[2048];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    char *sql = read_text(path);
    if (!sql) {
        snprintf(err, n, "cannot read migration %s: %s", path,
                 strerror(errno));
        return RL_E_IO;
    }
    bool applied = false;
    char why[512];
    enum rl_err result = e->migrate_one(c, version, name, sql, &applied, why,
                                        sizeof(why));
    free(sql);
    if (result != RL_OK) {
        snprintf(err, n, "migration %s failed: %s", name, why);
        return result;
    }
    *napplied += applied;
    return RL_OK;
}

enum rl_err store_migrate(const struct store_engine *e, struct store_conn *c,
                          int *napplied, char *err, size_t n)
{
    *napplied = 0;
    char dir[1200];
    if (!find_dir(dir, sizeof(dir))) {
        snprintf(err, n, "cannot find the migrations folder (looked at "
                 "$RELAY_MIGRATIONS, ./migrations and beside the binary); "
                 "run relay from the checkout or set RELAY_MIGRATIONS");
        return RL_E_IO;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, n, "cannot open %s: %s", dir, strerror(errno));
        return RL_E_IO;
    }
    size_t count = 0;
    size_t cap = 16;
    char **names = rl_malloc(cap * sizeof(*names));
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.') {
            continue;
        }
        if (count == cap) {
            cap *= 2;
            names = rl_realloc(names, cap * sizeof(*names));
        }
        names[count++] = rl_strdup(ent->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof(*names), cmp_names);
    enum rl_err result = RL_OK;
    for (size_t i = 0; i < count; i++) {
        if (result == RL_OK) {
            result = apply_file(e, c, dir, names[i], napplied, err, n);
        }
        free(names[i]);
    }
    free(names);
    return result;
}
