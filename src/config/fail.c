/*
 * fail.c - the load's error lines, "file:line: field: message", one per
 * mistake (config_fail, declared in loader.h): what the file itself
 * supplies (a field, a value quoted) is kept to the one line.
 */
#include <stdarg.h>
#include <stdio.h>

#include "config/loader.h"

/* Rewrites the control bytes of b after mark as \n, \r, \t or \xNN: a
 * field or a value quoted from the file may hold them, and an error is one
 * line (a newline in a value split it in two; fuzz_config). */
static void escape_controls(struct buf *b, size_t mark)
{
    struct buf tail;
    buf_init(&tail, b->max);
    buf_append(&tail, b->p + mark, b->len - mark);
    b->len = mark;
    for (size_t i = 0; i < tail.len; i++) {
        unsigned char c = (unsigned char)tail.p[i];
        if (c >= 0x20 && c != 0x7f) {
            buf_append(b, &tail.p[i], 1);
        } else if (c == '\n' || c == '\r' || c == '\t') {
            buf_append(b, c == '\n' ? "\\n" : c == '\r' ? "\\r" : "\\t", 2);
        } else {
            buf_printf(b, "\\x%02x", c);
        }
    }
    buf_free(&tail);
}

/* An empty field (a key "") is written "" so that the line still reads
 * "file:line: field: message". */
void config_fail(struct loader *ld, yaml_node_t *node, const char *field,
                 const char *fmt, ...)
{
    size_t line = node ? node->start_mark.line + 1 : 1;
    buf_printf(ld->errors, "%s:%zu: ", ld->path, line);
    size_t mark = ld->errors->len;
    buf_printf(ld->errors, "%s: ", field[0] ? field : "\"\"");
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(ld->errors, fmt, ap);
    va_end(ap);
    escape_controls(ld->errors, mark);
    buf_append_cstr(ld->errors, "\n");
    ld->nerrors++;
}
