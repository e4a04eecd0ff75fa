/*
 * env.c - ${VAR} in relay.yaml: taken from the environment, else from the
 * KEY=VALUE lines of the .env file beside the configuration (config.c
 * reads that file and calls config_expand() for every scalar).
 */
#include "config/config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util/alloc.h"

/* Looks name up in the KEY=VALUE lines of dotenv. Returns a heap copy. */
static char *dotenv_get(const char *dotenv, const char *name, size_t len)
{
    const char *line = dotenv;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        while (n && isspace((unsigned char)*line)) {
            line++;
            n--;
        }
        if (n > 7 && strncmp(line, "export ", 7) == 0) {
            line += 7;
            n -= 7;
        }
        if (n > len && strncmp(line, name, len) == 0 && line[len] == '=') {
            const char *v = line + len + 1;
            size_t vlen = n - len - 1;
            while (vlen && isspace((unsigned char)v[vlen - 1])) {
                vlen--;
            }
            if (vlen >= 2 && (v[0] == '"' || v[0] == '\'') &&
                v[vlen - 1] == v[0]) {
                v++;
                vlen -= 2;
            }
            return rl_strndup(v, vlen);
        }
        line = end ? end + 1 : NULL;
    }
    return NULL;
}

/* Finds the next variable in s: "${" or "$<" (see protect_vars). */
static const char *next_var(const char *s, char *close_ch)
{
    for (const char *p = strchr(s, '$'); p; p = strchr(p + 1, '$')) {
        if (p[1] == '{' || p[1] == '<') {
            *close_ch = p[1] == '{' ? '}' : '>';
            return p;
        }
    }
    return NULL;
}

enum rl_err config_expand(const char *s, const char *dotenv, struct buf *out)
{
    buf_reset(out);
    enum rl_err err = buf_append(out, "", 0);
    while (err == RL_OK && *s) {
        char close_ch;
        const char *open = next_var(s, &close_ch);
        if (!open) {
            return buf_append_cstr(out, s);
        }
        const char *close = strchr(open, close_ch);
        if (!close) {
            return RL_E_CONFIG;
        }
        err = buf_append(out, s, (size_t)(open - s));
        const char *name = open + 2;
        const char *dflt = strstr(name, ":-");
        if (dflt && dflt > close) {
            dflt = NULL;
        }
        size_t nlen = dflt ? (size_t)(dflt - name) : (size_t)(close - name);
        char key[256];
        if (nlen == 0 || nlen >= sizeof(key)) {
            return RL_E_CONFIG;
        }
        memcpy(key, name, nlen);
        key[nlen] = '\0';
        const char *val = getenv(key);
        char *from_file = NULL;
        if (!val || !*val) {
            from_file = dotenv ? dotenv_get(dotenv, key, nlen) : NULL;
            val = from_file;
        }
        if ((!val || !*val) && dflt) {
            err = buf_append(out, dflt + 2, (size_t)(close - dflt - 2));
        } else if (val && err == RL_OK) {
            err = buf_append_cstr(out, val);
        }
        free(from_file);
        s = close + 1;
    }
    return err;
}
