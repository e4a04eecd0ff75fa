/*
 * fuzz_config.c - any text as relay.yaml, loaded by the real loader
 * (src/config/: libyaml, ${VAR} expansion from the environment and the
 * .env beside the file, every section's checks, fallbacks resolved). The
 * input is the YAML, then optionally a line "#.env" and the .env's text.
 *
 * Contracts checked besides "no crash, no leak, no undefined behaviour":
 * a load either succeeds with a snapshot and no error, or fails with no
 * snapshot and at least one error; every error line reads
 * "<file>:<line>: <field>: <message>" with a line inside the file (1 for
 * the file as a whole); a file holding a NUL byte is refused; a loaded
 * snapshot finds each of its models by
 * name, each with a provider and adapter, its fallbacks among its models.
 */
#include <unistd.h>

#include "fuzz.h"

static char dir[64];
static char path[128];
static char envpath[128];

/* Checks that line (len bytes, no newline) reads "path:N: field: msg". */
static void error_line_check(const char *line, size_t len, size_t nlines)
{
    size_t plen = strlen(path);
    bool ok = len > plen + 1 && memcmp(line, path, plen) == 0 &&
              line[plen] == ':';
    size_t i = plen + 1;
    size_t num = 0;
    size_t digits = 0;
    while (ok && i < len && line[i] >= '0' && line[i] <= '9' && digits < 9) {
        num = num * 10 + (size_t)(line[i++] - '0');
        digits++;
    }
    ok = ok && digits > 0 && num >= 1 && num <= nlines + 1 && i + 1 < len &&
         line[i] == ':' && line[i + 1] == ' ';
    const char *rest = line + i + 2;
    size_t rlen = ok ? len - i - 2 : 0;
    /* The field is the YAML's own text and may hold a ':'; a ": " must
     * come after it, then the message. */
    const char *sep = ok ? memmem(rest, rlen, ": ", 2) : NULL;
    ok = ok && sep && sep > rest && (size_t)(sep - rest) + 2 < rlen;
    ok = ok && !memchr(line, '\0', len);
    if (!ok) {
        fuzz_show("error line", line, len);
        FUZZ_CHECK(!"an error reads file:line: field: message");
    }
}

static void loaded_check(const struct config *c)
{
    FUZZ_CHECK(c->nmodels > 0);
    for (size_t i = 0; i < c->nmodels; i++) {
        const struct model_cfg *m = &c->models[i];
        FUZZ_CHECK(m->name && m->provider && m->provider->ops);
        FUZZ_CHECK(config_model(c, m->name, strlen(m->name)) != NULL);
        for (size_t k = 0; k < m->nfallbacks; k++) {
            const struct model_cfg *f = m->fallbacks[k];
            FUZZ_CHECK(f >= c->models && f < c->models + c->nmodels);
        }
    }
}

/* Removes the target's folder when libFuzzer exits. */
static void remove_dir(void)
{
    unlink(path);
    unlink(envpath);
    rmdir(dir);
}

static void write_file(const char *p, const uint8_t *data, size_t size)
{
    FILE *f = fopen(p, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(fwrite(data, 1, size, f) == size);
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/fuzz_config.XXXXXX");
        FUZZ_CHECK(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/relay.yaml", dir);
        snprintf(envpath, sizeof(envpath), "%s/.env", dir);
        setenv("RELAY_FUZZ_KEY", "sk-fuzz", 1);
        unsetenv("RELAY_FUZZ_UNSET");
        atexit(remove_dir);
    }
    const uint8_t *env = memmem(data, size, "\n#.env\n", 7);
    size_t ylen = env ? (size_t)(env - data) + 1 : size;
    write_file(path, data, ylen);
    if (env) {
        write_file(envpath, env + 7, size - ylen - 6);
    } else {
        unlink(envpath);
    }
    /* YAML breaks lines at \n, \r, NEL, LS and PS (a bound: \r\n is one). */
    size_t nlines = 1;
    for (size_t i = 0; i < ylen; i++) {
        nlines += data[i] == '\n' || data[i] == '\r' ||
                  (data[i] == 0xc2 && i + 1 < ylen && data[i + 1] == 0x85) ||
                  (data[i] == 0xe2 && i + 2 < ylen && data[i + 1] == 0x80 &&
                   (data[i + 2] == 0xa8 || data[i + 2] == 0xa9));
    }
    struct buf errors;
    buf_init(&errors, 1 << 22);
    struct config *c = NULL;
    enum rl_err e = config_load(path, &c, &errors);
    /* A NUL byte is refused, not the end of the text. */
    FUZZ_CHECK(e != RL_OK || !memchr(data, '\0', ylen));
    if (e == RL_OK) {
        FUZZ_CHECK(c != NULL && errors.len == 0);
        loaded_check(c);
        config_unref(c);
    } else {
        FUZZ_CHECK(e == RL_E_CONFIG || e == RL_E_IO);
        FUZZ_CHECK(c == NULL && errors.len > 0);
        FUZZ_CHECK(errors.p[errors.len - 1] == '\n');
        const char *p = errors.p;
        const char *end = errors.p + errors.len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            error_line_check(p, (size_t)(nl - p), nlines);
            p = nl + 1;
        }
    }
    buf_free(&errors);
    return 0;
}
