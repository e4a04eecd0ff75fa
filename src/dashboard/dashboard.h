/*
 * dashboard.h - serving the built dashboard (dashboard/dist) as static
 * files: on the dashboard's own listener (dashboard.listen, at /) and on
 * the main port under /dashboard/. Node is not needed at run time.
 */
#ifndef RL_DASHBOARD_H
#define RL_DASHBOARD_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"
#include "util/str.h"

#define DASHBOARD_MAX_FILE (8u << 20) /* larger files are refused (413) */

/*
 * Maps the URL path rel (what follows the dashboard's root, without a
 * leading slash) to a file under dir: "" and paths without a file
 * extension (the page's own routes) are index.html; a path with "..",
 * a backslash, a NUL or a hidden segment is refused. Writes the file's
 * path into out (size n) and returns false when refused. Pure.
 */
bool dashboard_path(const char *dir, struct str rel, char *out, size_t n);

/* Returns the Content-Type of path from its extension (static text). */
const char *dashboard_content_type(const char *path);

/*
 * Reads the file at path into body (capped at DASHBOARD_MAX_FILE).
 * Returns 200, 404 (missing, or not a regular file) or 413 (too large).
 * Blocking: the files are small and in the page cache after the first
 * read.
 */
int dashboard_read(const char *path, struct buf *body);

#endif
