/*
 * dashboard.c - the built dashboard as static files: which file a URL
 * means (index.html for the page's own routes; no way out of the folder),
 * its content type, and reading it under a size cap. The routes that call
 * this are in gateway/gateway.c. Read dashboard_path() first.
 */
#include "dashboard/dashboard.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Whether a segment of the path is safe: no "..", no hidden files. */
static bool safe(struct str rel)
{
    size_t start = 0;
    for (size_t i = 0; i <= rel.len; i++) {
        if (i < rel.len) {
            char ch = rel.p[i];
            if (ch == '\0' || ch == '\\' || ch == '%') {
                return false; /* no encoded bytes: the build has none */
            }
            if (ch != '/') {
                continue;
            }
        }
        if (i > start && rel.p[start] == '.') {
            return false; /* "..", ".", ".env", ".git" */
        }
        start = i + 1;
    }
    return true;
}

bool dashboard_path(const char *dir, struct str rel, char *out, size_t n)
{
    while (rel.len && rel.p[0] == '/') {
        rel.p++;
        rel.len--;
    }
    if (!safe(rel)) {
        return false;
    }
    const char *slash = rel.len ? memrchr(rel.p, '/', rel.len) : NULL;
    const char *base = slash ? slash + 1 : rel.p;
    size_t blen = rel.len - (size_t)(base - rel.p);
    bool has_ext = blen && memchr(base, '.', blen) != NULL;
    int w = has_ext ? snprintf(out, n, "%s/%.*s", dir, (int)rel.len, rel.p)
                    : snprintf(out, n, "%s/index.html", dir);
    return w > 0 && (size_t)w < n;
}

const char *dashboard_content_type(const char *path)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".txt", "text/plain; charset=utf-8"},
        {".map", "application/json"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(dot, types[i].ext) == 0) {
            return types[i].type;
        }
    }
    return "application/octet-stream";
}

int dashboard_read(const char *path, struct buf *body)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) {
            close(fd);
        }
        return 404;
    }
    if ((size_t)st.st_size > DASHBOARD_MAX_FILE ||
        buf_reserve(body, (size_t)st.st_size) != RL_OK) {
        close(fd);
        return 413;
    }
    char chunk[65536];
    int status = 200;
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof(chunk));
        if (got <= 0) {
            status = got < 0 ? 404 : status;
            break;
        }
        if (buf_append(body, chunk, (size_t)got) != RL_OK) {
            status = 413;
            break;
        }
    }
    close(fd);
    return status;
}
