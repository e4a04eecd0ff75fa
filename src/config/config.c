/*
 * config.c - reads relay.yaml with libyaml into a struct config.
 *
 * The file is loaded as a YAML document (nodes keep their line numbers),
 * then walked once: every field is checked and every mistake is reported
 * with its line and dotted path, so `relay config check` can list them all
 * at once instead of stopping at the first. Read config_load() first.
 */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/sha.h>
#include <yaml.h>

#include "providers/provider.h"
#include "redis/redis.h"
#include "config/loader.h"
#include "util/alloc.h"

#define CONFIG_MAX_FILE (1024 * 1024)
#define CONFIG_MAX_VALUE (64 * 1024)


/* ---------------------------------------------------------------------
 * Errors and scalars
 * ------------------------------------------------------------------- */

/* Returns the expanded text of a scalar node, valid until the next call,
 * or NULL (with an error) when node is not a scalar. */
const char *config_scalar(struct loader *ld, yaml_node_t *node,
                          const char *field)
{
    if (!node || node->type != YAML_SCALAR_NODE) {
        config_fail(ld, node, field, "expected a single value");
        return NULL;
    }
    const char *raw = (const char *)node->data.scalar.value;
    if (config_expand(raw, ld->dotenv, &ld->scratch) != RL_OK) {
        config_fail(ld, node, field, "bad ${VAR} expansion in \"%s\"", raw);
        return NULL;
    }
    return ld->scratch.p;
}

static char *scalar_dup(struct loader *ld, yaml_node_t *node,
                        const char *field)
{
    const char *s = config_scalar(ld, node, field);
    return s ? rl_strdup(s) : NULL;
}

bool config_scalar_bool(struct loader *ld, yaml_node_t *node,
                        const char *field, bool *out)
{
    const char *s = config_scalar(ld, node, field);
    if (!s) {
        return false;
    }
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        *out = s[0] == 't';
        return true;
    }
    config_fail(ld, node, field, "expected true or false, got \"%s\"", s);
    return false;
}

bool config_scalar_int(struct loader *ld, yaml_node_t *node,
                       const char *field, int64_t lo, int64_t hi,
                       int64_t *out)
{
    const char *s = config_scalar(ld, node, field);
    if (!s) {
        return false;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        config_fail(ld, node, field,
                    "expected a whole number from %lld to %lld, "
             "got \"%s\"", (long long)lo, (long long)hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool config_parse_price(const char *s, int64_t *out_nusd)
{
    /* Decimal USD with at most 9 fractional digits, parsed without floats
     * so that "0.05" is exactly 50,000,000 nano-dollars. */
    int64_t whole = 0;
    int64_t frac = 0;
    int nfrac = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p)) {
        return false;
    }
    while (isdigit((unsigned char)*p)) {
        if (whole > 1000000) {
            return false;
        }
        whole = whole * 10 + (*p++ - '0');
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            if (nfrac == 9) {
                return false;
            }
            frac = frac * 10 + (*p++ - '0');
            nfrac++;
        }
    }
    if (*p) {
        return false;
    }
    while (nfrac++ < 9) {
        frac *= 10;
    }
    *out_nusd = whole * 1000000000LL + frac;
    return true;
}

/* ---------------------------------------------------------------------
 * Mappings
 * ------------------------------------------------------------------- */

bool config_each_pair(struct loader *ld, yaml_node_t *map, const char *field,
                      pair_fn visit, void *ctx)
{
    if (!map || map->type != YAML_MAPPING_NODE) {
        config_fail(ld, map, field, "expected a mapping (key: value lines)");
        return false;
    }
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start;
         pr < map->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(&ld->doc, pr->value);
        if (!k || k->type != YAML_SCALAR_NODE) {
            config_fail(ld, k, field, "keys must be plain names");
            continue;
        }
        const char *key = (const char *)k->data.scalar.value;
        yaml_node_t *earlier = NULL;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start;
             q < pr && !earlier; q++) {
            yaml_node_t *qk = yaml_document_get_node(&ld->doc, q->key);
            if (qk && qk->type == YAML_SCALAR_NODE &&
                strcmp((const char *)qk->data.scalar.value, key) == 0) {
                earlier = qk;
            }
        }
        if (earlier) {
            config_fail(ld, k, field,
                        "\"%s\" is given twice (first at line %zu); "
                 "keep one", key, earlier->start_mark.line + 1);
            continue;
        }
        visit(ld, key, k, v, ctx);
    }
    return true;
}

static size_t seq_len(yaml_node_t *seq)
{
    return (size_t)(seq->data.sequence.items.top -
                    seq->data.sequence.items.start);
}

static yaml_node_t *seq_item(struct loader *ld, yaml_node_t *seq, size_t i)
{
    return yaml_document_get_node(&ld->doc,
                                  seq->data.sequence.items.start[i]);
}

/* ---------------------------------------------------------------------
 * Sections
 * ------------------------------------------------------------------- */

static void set_ms(struct loader *ld, yaml_node_t *v, const char *field,
                   uint64_t *out)
{
    int64_t n;
    if (config_scalar_int(ld, v, field, 1, 86400000, &n)) {
        *out = (uint64_t)n;
    }
}

static void server_pair(struct loader *ld, const char *key, yaml_node_t *k,
                        yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    int64_t n;
    if (strcmp(key, "max_body_bytes") == 0) {
        if (config_scalar_int(ld, v, "server.max_body_bytes", 1024, 1LL << 30,
            &n)) {
            c->max_body_bytes = (size_t)n;
        }
    } else if (strcmp(key, "max_header_bytes") == 0) {
        if (config_scalar_int(ld, v, "server.max_header_bytes", 1024, 1 << 20,
            &n)) {
            c->max_header_bytes = (size_t)n;
        }
    } else if (strcmp(key, "read_timeout_ms") == 0) {
        set_ms(ld, v, "server.read_timeout_ms", &c->read_timeout_ms);
    } else if (strcmp(key, "idle_timeout_ms") == 0) {
        set_ms(ld, v, "server.idle_timeout_ms", &c->idle_timeout_ms);
    } else if (strcmp(key, "shutdown_grace_ms") == 0) {
        set_ms(ld, v, "server.shutdown_grace_ms", &c->shutdown_grace_ms);
    } else if (strcmp(key, "output_high_water_bytes") == 0) {
        /* At most 4 MiB: with one 8 MiB event on top it stays under the
         * 16 MiB a client may have unsent (src/server/conn.c). */
        if (config_scalar_int(ld, v, "server.output_high_water_bytes",
                              65536, 4 << 20, &n)) {
            c->output_high_water_bytes = (size_t)n;
        }
    } else if (strcmp(key, "write_timeout_ms") == 0) {
        set_ms(ld, v, "server.write_timeout_ms", &c->write_timeout_ms);
    } else {
        config_fail(ld, k, "server", "unknown field \"%s\"", key);
    }
}

/* The fields of `upstream:` that may be 0 (see upstream_pair). */
static void upstream_pair_more(struct loader *ld, const char *key,
                               yaml_node_t *k, yaml_node_t *v,
                               struct config *c)
{
    int64_t n;
    if (strcmp(key, "retries") == 0) {
        if (config_scalar_int(ld, v, "upstream.retries", 0, 5, &n)) {
            c->retries = (int)n;
        }
    } else if (strcmp(key, "retry_max_wait_ms") == 0) {
        if (config_scalar_int(ld, v, "upstream.retry_max_wait_ms", 0, 600000, &n)) {
            c->retry_max_wait_ms = (uint64_t)n;
        }
    } else if (strcmp(key, "hedge_after_ms") == 0) {
        if (config_scalar_int(ld, v, "upstream.hedge_after_ms", 0, 3600000, &n)) {
            c->hedge_after_ms = (uint64_t)n;
        }
    } else if (strcmp(key, "rescue_max_bytes") == 0) {
        if (config_scalar_int(ld, v, "upstream.rescue_max_bytes", 0, 16 << 20,
                       &n)) {
            c->rescue_max_bytes = (size_t)n;
        }
    } else {
        config_fail(ld, k, "upstream", "unknown field \"%s\"", key);
    }
}

static void upstream_pair(struct loader *ld, const char *key, yaml_node_t *k,
                          yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    if (strcmp(key, "connect_timeout_ms") == 0) {
        set_ms(ld, v, "upstream.connect_timeout_ms", &c->connect_timeout_ms);
    } else if (strcmp(key, "first_byte_timeout_ms") == 0) {
        set_ms(ld, v, "upstream.first_byte_timeout_ms",
               &c->first_byte_timeout_ms);
    } else if (strcmp(key, "idle_timeout_ms") == 0) {
        set_ms(ld, v, "upstream.idle_timeout_ms", &c->stream_idle_timeout_ms);
    } else if (strcmp(key, "total_timeout_ms") == 0) {
        set_ms(ld, v, "upstream.total_timeout_ms", &c->call_timeout_ms);
    } else if (strcmp(key, "retry_backoff_ms") == 0) {
        set_ms(ld, v, "upstream.retry_backoff_ms", &c->retry_backoff_ms);
    } else if (strcmp(key, "retry_backoff_max_ms") == 0) {
        set_ms(ld, v, "upstream.retry_backoff_max_ms",
               &c->retry_backoff_max_ms);
    } else {
        upstream_pair_more(ld, key, k, v, c);
    }
}

static void auth_pair(struct loader *ld, const char *key, yaml_node_t *k,
                      yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    if (strcmp(key, "keys") != 0) {
        config_fail(ld, k, "auth", "unknown field \"%s\"", key);
        return;
    }
    if (!v || v->type != YAML_SEQUENCE_NODE) {
        config_fail(ld, v, "auth.keys", "expected a list of keys");
        return;
    }
    /* Only hashes are kept: the keys themselves never stay in memory. */
    c->key_sha256 = rl_calloc(seq_len(v), sizeof(*c->key_sha256));
    c->key_prefix = rl_calloc(seq_len(v), sizeof(*c->key_prefix));
    for (size_t i = 0; i < seq_len(v); i++) {
        yaml_node_t *item = seq_item(ld, v, i);
        const char *s = config_scalar(ld, item, "auth.keys");
        if (!s || !*s) {
            continue; /* an unset ${VAR} leaves no key, not "" */
        }
        if (strlen(s) < 16 || strlen(s) > 512) {
            config_fail(ld, item, "auth.keys",
                        "a key must be 16 to 512 characters "
                 "long");
            continue;
        }
        SHA256((const unsigned char *)s, strlen(s), c->key_sha256[c->nkeys]);
        snprintf(c->key_prefix[c->nkeys], sizeof(c->key_prefix[0]), "%.8s",
                 s);
        c->nkeys++;
    }
}

struct provider_ctx {
    struct provider_cfg *p; /* being filled */
    char field[160];        /* "providers.groq" */
};

static void provider_pair(struct loader *ld, const char *key, yaml_node_t *k,
                          yaml_node_t *v, void *vctx)
{
    struct provider_ctx *pc = vctx;
    char f[200];
    snprintf(f, sizeof(f), "%s.%s", pc->field, key);
    if (strcmp(key, "kind") == 0) {
        pc->p->kind = scalar_dup(ld, v, f);
        if (pc->p->kind) {
            pc->p->ops = provider_ops_find(pc->p->kind);
            if (!pc->p->ops) {
                config_fail(ld, v, f, "unknown kind \"%s\" (known: %s)",
                     pc->p->kind, provider_kinds());
            }
        }
    } else if (strcmp(key, "base_url") == 0) {
        pc->p->base_url = scalar_dup(ld, v, f);
        char *u = pc->p->base_url;
        if (u && strncmp(u, "http://", 7) != 0 &&
            strncmp(u, "https://", 8) != 0) {
            config_fail(ld, v, f,
                        "expected an http:// or https:// URL, got \"%s\"",
                 u);
        }
        size_t n = u ? strlen(u) : 0;
        while (n && u[n - 1] == '/') {
            u[--n] = '\0';
        }
    } else if (strcmp(key, "api_key") == 0) {
        pc->p->api_key = scalar_dup(ld, v, f);
    } else {
        config_fail(ld, k, pc->field, "unknown field \"%s\"", key);
    }
}

static void providers_pair(struct loader *ld, const char *key,
                           yaml_node_t *k, yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    (void)k;
    struct provider_cfg *p = &c->providers[c->nproviders++];
    p->name = rl_strdup(key);
    struct provider_ctx pc = {.p = p};
    snprintf(pc.field, sizeof(pc.field), "providers.%s", key);
    if (!config_each_pair(ld, v, pc.field, provider_pair, &pc)) {
        return;
    }
    if (!p->kind) {
        config_fail(ld, v, pc.field,
                    "missing \"kind\" (openai, anthropic, gemini "
             "or ollama)");
    }
    if (!p->base_url) {
        config_fail(ld, v, pc.field, "missing \"base_url\"");
    }
    if (!p->api_key) {
        p->api_key = rl_strdup("");
    }
}

struct model_ctx {
    struct config *c;     /* for provider lookups */
    struct model_cfg *m;  /* being filled */
    yaml_node_t *fallbacks; /* resolved after every model is known */
    char field[160];      /* "models[3]" */
};

static void price_pair(struct loader *ld, const char *key, yaml_node_t *k,
                       yaml_node_t *v, void *vctx)
{
    struct model_ctx *mc = vctx;
    char f[200];
    snprintf(f, sizeof(f), "%s.price.%s", mc->field, key);
    int64_t *dst = NULL;
    if (strcmp(key, "input") == 0) {
        dst = &mc->m->input_nusd_per_mtok;
    } else if (strcmp(key, "output") == 0) {
        dst = &mc->m->output_nusd_per_mtok;
    } else if (strcmp(key, "cached_input") == 0) {
        dst = &mc->m->cached_nusd_per_mtok;
    } else if (strcmp(key, "cache_write") == 0) {
        dst = &mc->m->cache_write_nusd_per_mtok;
    } else {
        config_fail(ld, k, f, "unknown price (input, output, cached_input, "
             "cache_write)");
        return;
    }
    const char *s = config_scalar(ld, v, f);
    if (s && !config_parse_price(s, dst)) {
        config_fail(ld, v, f, "expected USD per million tokens like 0.15, got "
             "\"%s\"", s);
    }
}

static void latency_pair(struct loader *ld, const char *key, yaml_node_t *k,
                         yaml_node_t *v, void *vctx)
{
    struct model_ctx *mc = vctx;
    char f[200];
    snprintf(f, sizeof(f), "%s.latency.%s", mc->field, key);
    int64_t n;
    if (strcmp(key, "ttft_ms") == 0) {
        if (config_scalar_int(ld, v, f, 0, 600000, &n)) {
            mc->m->prior_ttft_ms = (uint32_t)n;
        }
    } else if (strcmp(key, "tokens_per_s") == 0) {
        if (config_scalar_int(ld, v, f, 1, 1000000, &n)) {
            mc->m->prior_tokens_per_s = (uint32_t)n;
        }
    } else {
        config_fail(ld, k, f, "unknown field (ttft_ms, tokens_per_s)");
    }
}

static void model_pair(struct loader *ld, const char *key, yaml_node_t *k,
                       yaml_node_t *v, void *vctx)
{
    struct model_ctx *mc = vctx;
    struct model_cfg *m = mc->m;
    char f[200];
    snprintf(f, sizeof(f), "%s.%s", mc->field, key);
    int64_t n;
    if (strcmp(key, "name") == 0) {
        m->name = scalar_dup(ld, v, f);
    } else if (strcmp(key, "provider") == 0) {
        const char *s = config_scalar(ld, v, f);
        for (size_t i = 0; s && i < mc->c->nproviders; i++) {
            if (strcmp(mc->c->providers[i].name, s) == 0) {
                m->provider = &mc->c->providers[i];
            }
        }
        if (s && !m->provider) {
            config_fail(ld, v, f, "no provider \"%s\" under providers:", s);
        }
    } else if (strcmp(key, "upstream") == 0) {
        m->upstream = scalar_dup(ld, v, f);
    } else if (strcmp(key, "price") == 0) {
        config_each_pair(ld, v, f, price_pair, mc);
    } else if (strcmp(key, "latency") == 0) {
        config_each_pair(ld, v, f, latency_pair, mc);
    } else if (strcmp(key, "tier") == 0) {
        if (config_scalar_int(ld, v, f, 0, 100, &n)) {
            m->tier = (int)n;
        }
    } else if (strcmp(key, "context") == 0) {
        if (config_scalar_int(ld, v, f, 1, 100000000, &n)) {
            m->context_tokens = n;
        }
    } else if (strcmp(key, "fallbacks") == 0) {
        if (!v || v->type != YAML_SEQUENCE_NODE) {
            config_fail(ld, v, f, "expected a list of model names");
        } else {
            mc->fallbacks = v;
        }
    } else {
        config_fail(ld, k, mc->field, "unknown field \"%s\"", key);
    }
}

static void resolve_fallbacks(struct loader *ld, struct config *c,
                              struct model_cfg *m, yaml_node_t *seq,
                              const char *field)
{
    size_t n = seq_len(seq);
    m->fallbacks = rl_calloc(n, sizeof(*m->fallbacks));
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = seq_item(ld, seq, i);
        const char *s = config_scalar(ld, item, field);
        if (!s) {
            continue;
        }
        const struct model_cfg *fb = config_model(c, s, strlen(s));
        if (!fb) {
            config_fail(ld, item, field, "no model named \"%s\"", s);
        } else if (fb == m) {
            config_fail(ld, item, field, "a model cannot fall back to itself");
        } else {
            m->fallbacks[m->nfallbacks++] = (struct model_cfg *)fb;
        }
    }
}

static void load_models(struct loader *ld, struct config *c, yaml_node_t *v)
{
    if (!v || v->type != YAML_SEQUENCE_NODE) {
        config_fail(ld, v, "models", "expected a list of models (- name: ...)");
        return;
    }
    size_t n = seq_len(v);
    c->models = rl_calloc(n, sizeof(*c->models));
    yaml_node_t **fbs = rl_calloc(n, sizeof(*fbs));
    size_t *item_of = rl_calloc(n, sizeof(*item_of)); /* list position */
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = seq_item(ld, v, i);
        struct model_ctx mc = {.c = c, .m = &c->models[c->nmodels]};
        snprintf(mc.field, sizeof(mc.field), "models[%zu]", i);
        mc.m->tier = 1;
        mc.m->context_tokens = 8192;
        mc.m->prior_ttft_ms = 500;
        mc.m->prior_tokens_per_s = 100;
        mc.m->cache_write_nusd_per_mtok = -1; /* unset: the input price */
        if (!config_each_pair(ld, item, mc.field, model_pair, &mc)) {
            continue;
        }
        if (mc.m->cache_write_nusd_per_mtok < 0) {
            mc.m->cache_write_nusd_per_mtok = mc.m->input_nusd_per_mtok;
        }
        if (!mc.m->name || !*mc.m->name) {
            config_fail(ld, item, mc.field, "missing \"name\"");
        } else if (strcmp(mc.m->name, "auto") == 0) {
            config_fail(ld, item, mc.field, "\"auto\" is reserved for routing");
        } else if (config_model(c, mc.m->name, strlen(mc.m->name))) {
            config_fail(ld, item, mc.field,
                        "a model named \"%s\" exists already",
                 mc.m->name);
        }
        if (!mc.m->provider) {
            config_fail(ld, item, mc.field, "missing \"provider\"");
        }
        if (!mc.m->upstream && mc.m->name) {
            mc.m->upstream = rl_strdup(mc.m->name);
        }
        item_of[c->nmodels] = i;
        fbs[c->nmodels++] = mc.fallbacks;
    }
    for (size_t i = 0; i < c->nmodels; i++) {
        if (fbs[i]) {
            char f[64];
            snprintf(f, sizeof(f), "models[%zu].fallbacks", item_of[i]);
            resolve_fallbacks(ld, c, &c->models[i], fbs[i], f);
        }
    }
    free(fbs);
    free(item_of);
}

static void limits_pair(struct loader *ld, const char *key, yaml_node_t *k,
                        yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    int64_t n;
    if (strcmp(key, "on_redis_failure") == 0) {
        const char *s = config_scalar(ld, v, "limits.on_redis_failure");
        if (s && strcmp(s, "open") == 0) {
            c->limits_fail_closed = false;
        } else if (s && strcmp(s, "closed") == 0) {
            c->limits_fail_closed = true;
        } else if (s) {
            config_fail(ld, v, "limits.on_redis_failure",
                        "expected open (limit "
                 "in-process) or closed (refuse with 503), got \"%s\"", s);
        }
    } else if (strcmp(key, "redis_timeout_ms") == 0) {
        if (config_scalar_int(ld, v, "limits.redis_timeout_ms", 1, 10000, &n)) {
            c->limits_redis_timeout_ms = (uint64_t)n;
        }
    } else if (strcmp(key, "default_max_tokens") == 0) {
        if (config_scalar_int(ld, v, "limits.default_max_tokens", 1, 10000000,
            &n)) {
            c->limits_default_max_tokens = n;
        }
    } else {
        config_fail(ld, k, "limits", "unknown field \"%s\" (on_redis_failure, "
             "redis_timeout_ms, default_max_tokens)", key);
    }
}

static void parse_listen(struct loader *ld, char **host, int *port_out,
                         yaml_node_t *v, const char *field)
{
    const char *s = config_scalar(ld, v, field);
    if (!s) {
        return;
    }
    const char *colon = strrchr(s, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon == s || !end || *end || port < 0 || port > 65535) {
        config_fail(ld, v, field, "expected HOST:PORT like 127.0.0.1:8080, got "
             "\"%s\"", s);
        return;
    }
    free(*host);
    *host = rl_strndup(s, (size_t)(colon - s));
    *port_out = (int)port;
}

static void dashboard_pair(struct loader *ld, const char *key, yaml_node_t *k,
                           yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    if (strcmp(key, "listen") == 0) {
        parse_listen(ld, &c->dashboard_host, &c->dashboard_port, v,
                     "dashboard.listen");
    } else if (strcmp(key, "dir") == 0) {
        free(c->dashboard_dir);
        c->dashboard_dir = scalar_dup(ld, v, "dashboard.dir");
    } else if (strcmp(key, "local_admin") == 0) {
        const char *s = config_scalar(ld, v, "dashboard.local_admin");
        c->dashboard_local_admin = s && strcmp(s, "true") == 0;
        if (s && !c->dashboard_local_admin && strcmp(s, "false") != 0) {
            config_fail(ld, v, "dashboard.local_admin", "expected true or false");
        }
    } else {
        config_fail(ld, k, "dashboard", "unknown field \"%s\" (listen, dir, "
             "local_admin)", key);
    }
}

/* local_admin opens the analytics to whoever reaches the listener: only
 * on a loopback address, where that is the machine's own users. */
static void check_dashboard(struct loader *ld, struct config *c)
{
    const char *h = c->dashboard_host;
    bool loopback = h && (strncmp(h, "127.", 4) == 0 ||
                          strcmp(h, "::1") == 0 ||
                          strcmp(h, "localhost") == 0);
    if (c->dashboard_local_admin && !loopback) {
        config_fail(ld, NULL, "dashboard.local_admin", "true is only allowed "
             "with a loopback dashboard.listen (127.0.0.1:5173); a "
             "deployment signs in with the admin key instead");
    }
}

static void metrics_pair(struct loader *ld, const char *key, yaml_node_t *k,
                         yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    if (strcmp(key, "admin_key_required") == 0) {
        config_scalar_bool(ld, v, "metrics.admin_key_required",
                           &c->metrics_admin_key_required);
    } else {
        config_fail(ld, k, "metrics", "unknown field \"%s\" "
                    "(admin_key_required)", key);
    }
}

static void request_log_pair(struct loader *ld, const char *key,
                             yaml_node_t *k, yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    int64_t n;
    if (strcmp(key, "retention_days") == 0) {
        if (config_scalar_int(ld, v, "request_log.retention_days", 0, 36500,
                              &n)) {
            c->log_retention_days = (uint32_t)n;
        }
    } else {
        config_fail(ld, k, "request_log", "unknown field \"%s\" "
                    "(retention_days)", key);
    }
}

static void top_pair(struct loader *ld, const char *key, yaml_node_t *k,
                     yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    int64_t n;
    if (strcmp(key, "listen") == 0) {
        parse_listen(ld, &c->listen_host, &c->listen_port, v, "listen");
    } else if (strcmp(key, "workers") == 0) {
        if (config_scalar_int(ld, v, "workers", 1, 256, &n)) {
            c->workers = (int)n;
        }
    } else if (strcmp(key, "log_level") == 0) {
        const char *s = config_scalar(ld, v, "log_level");
        if (s && !log_level_parse(s, &c->log_level)) {
            config_fail(ld, v, "log_level",
                        "expected debug, info, warn, error or "
                 "off, got \"%s\"", s);
        }
    } else if (strcmp(key, "log_file") == 0) {
        const char *s = config_scalar(ld, v, "log_file");
        if (s && *s) {
            c->log_file = rl_strdup(s);
        }
    } else if (strcmp(key, "store") == 0) {
        c->store = scalar_dup(ld, v, "store");
    } else if (strcmp(key, "redis") == 0) {
        c->redis = scalar_dup(ld, v, "redis");
        struct redis_url u;
        char why[256];
        if (c->redis && *c->redis &&
            redis_url_parse(c->redis, &u, why, sizeof(why)) != RL_OK) {
            config_fail(ld, v, "redis", "%s", why);
        }
    } else if (strcmp(key, "admin_key") == 0) {
        c->admin_key = scalar_dup(ld, v, "admin_key");
    } else if (strcmp(key, "log_prompts") == 0) {
        config_scalar_bool(ld, v, "log_prompts", &c->log_prompts);
    } else if (strcmp(key, "request_log") == 0) {
        config_each_pair(ld, v, "request_log", request_log_pair, c);
    } else if (strcmp(key, "metrics") == 0) {
        config_each_pair(ld, v, "metrics", metrics_pair, c);
    } else if (strcmp(key, "dashboard") == 0) {
        config_each_pair(ld, v, "dashboard", dashboard_pair, c);
    } else if (strcmp(key, "auth") == 0) {
        config_each_pair(ld, v, "auth", auth_pair, c);
    } else if (strcmp(key, "server") == 0) {
        config_each_pair(ld, v, "server", server_pair, c);
    } else if (strcmp(key, "upstream") == 0) {
        config_each_pair(ld, v, "upstream", upstream_pair, c);
    } else if (strcmp(key, "providers") == 0) {
        size_t np = v && v->type == YAML_MAPPING_NODE
                        ? (size_t)(v->data.mapping.pairs.top -
                                   v->data.mapping.pairs.start)
                        : 0;
        c->providers = rl_calloc(np, sizeof(*c->providers));
        config_each_pair(ld, v, "providers", providers_pair, c);
    } else if (strcmp(key, "models") == 0) {
        /* Resolved after providers, wherever it stands in the file. */
    } else if (strcmp(key, "routing") == 0) {
        config_each_pair(ld, v, "routing", config_routing_section, c);
    } else if (strcmp(key, "limits") == 0) {
        config_each_pair(ld, v, "limits", limits_pair, c);
    } else if (strcmp(key, "cache") == 0) {
        config_each_pair(ld, v, "cache", config_cache_section, c);
    } else {
        config_fail(ld, k, key, "unknown top-level field");
    }
}

static void set_defaults(struct config *c)
{
    c->listen_host = rl_strdup("127.0.0.1");
    c->listen_port = 8080;
    c->dashboard_dir = rl_strdup("dashboard/dist");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    c->workers = ncpu > 0 ? (int)ncpu : 1;
    c->log_level = LOG_INFO;
    c->max_body_bytes = 4 * 1024 * 1024;
    c->max_header_bytes = 16 * 1024;
    c->read_timeout_ms = 30000;
    c->idle_timeout_ms = 60000;
    c->shutdown_grace_ms = 10000;
    c->output_high_water_bytes = 1 << 20;
    c->write_timeout_ms = 30000;
    c->connect_timeout_ms = 5000;
    c->first_byte_timeout_ms = 60000;
    c->stream_idle_timeout_ms = 60000;
    c->call_timeout_ms = 600000;
    c->retries = 1;
    c->retry_backoff_ms = 50;
    c->retry_backoff_max_ms = 1000;
    c->retry_max_wait_ms = 2000;
    c->rescue_max_bytes = 65536;
    c->limits_redis_timeout_ms = 100;
    c->limits_default_max_tokens = 1024;
    c->default_max_latency_ms = 2000;
    c->default_min_quality_tier = 1;
    config_routing_knobs_default(&c->routing);
    config_cache_knobs_default(&c->cache);
}

/* Reads the whole file into a heap string, or returns NULL. */
static char *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    struct buf b;
    buf_init(&b, max);
    char tmp[8192];
    size_t n;
    bool ok = true;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        if (buf_append(&b, tmp, n) != RL_OK) {
            ok = false;
            break;
        }
    }
    fclose(f);
    if (!ok) {
        buf_free(&b);
        return NULL;
    }
    if (!b.p) {
        buf_append(&b, "", 0);
    }
    return buf_steal(&b, len);
}

/*
 * Rewrites each ${...} on a line as $<...> before YAML sees the text: the
 * braces are YAML flow indicators, so `keys: [${KEY}]` would not parse.
 * Same length, so line and column numbers stay right; scalars are expanded
 * afterwards (config_expand knows both spellings).
 */
static void protect_vars(char *text)
{
    for (char *p = strstr(text, "${"); p; p = strstr(p + 2, "${")) {
        char *close = p + 2;
        while (*close && *close != '}' && *close != '\n') {
            close++;
        }
        if (*close == '}') {
            p[1] = '<';
            *close = '>';
        }
    }
}

/* Reads the .env beside path (same directory), or NULL. */
static char *read_dotenv(const char *path)
{
    const char *slash = strrchr(path, '/');
    char envpath[PATH_MAX];
    if (slash) {
        snprintf(envpath, sizeof(envpath), "%.*s/.env",
                 (int)(slash - path), path);
    } else {
        snprintf(envpath, sizeof(envpath), ".env");
    }
    return read_file(envpath, CONFIG_MAX_FILE, NULL);
}

static void walk(struct loader *ld, struct config *c)
{
    yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
    if (!root) {
        config_fail(ld, NULL, "(file)", "the file is empty");
        return;
    }
    if (!config_each_pair(ld, root, "(top)", top_pair, c)) {
        return;
    }
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
         pr < root->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(&ld->doc, pr->key);
        if (k && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, "models") == 0) {
            load_models(ld, c, yaml_document_get_node(&ld->doc, pr->value));
            break; /* a second models: was reported by each_pair */
        }
    }
    if (c->nmodels == 0) {
        config_fail(ld, root, "models",
                    "no models configured: add at least one");
    }
    check_dashboard(ld, c);
}

/* The line of the first NUL byte in text, or 0 for none. YAML is text:
 * a NUL would end it there, silently dropping the rest (fuzz_config). */
static size_t line_of_nul(const char *text, size_t len)
{
    const char *nul = memchr(text, '\0', len);
    if (!nul) {
        return 0;
    }
    size_t line = 1;
    for (const char *q = text; q < nul; q++) {
        line += *q == '\n';
    }
    return line;
}

enum rl_err config_load(const char *path, struct config **out,
                        struct buf *errors)
{
    enum rl_err result = RL_OK;
    struct config *c = rl_calloc(1, sizeof(*c));
    atomic_init(&c->refs, 1);
    c->path = rl_strdup(path);
    set_defaults(c);
    struct loader ld = {.path = path, .errors = errors};
    buf_init(&ld.scratch, CONFIG_MAX_VALUE);
    size_t len = 0;
    char *text = read_file(path, CONFIG_MAX_FILE, &len);
    if (!text) {
        buf_printf(errors, "%s: cannot read the file: %s\n", path,
                   errno ? strerror(errno) : "over 1 MiB");
        result = RL_E_IO;
        goto out;
    }
    size_t nul_line = line_of_nul(text, len);
    if (nul_line) {
        buf_printf(errors, "%s:%zu: (file): a NUL byte: the file is not "
                   "text\n", path, nul_line);
        result = RL_E_CONFIG;
        goto out;
    }
    ld.dotenv = read_dotenv(path);
    protect_vars(text);
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text,
                                 strlen(text));
    if (!yaml_parser_load(&parser, &ld.doc)) {
        buf_printf(errors, "%s:%zu: (yaml): %s\n", path,
                   parser.problem_mark.line + 1,
                   parser.problem ? parser.problem : "syntax error");
        yaml_parser_delete(&parser);
        result = RL_E_CONFIG;
        goto out;
    }
    yaml_parser_delete(&parser);
    walk(&ld, c);
    yaml_document_delete(&ld.doc);
    if (ld.nerrors) {
        result = RL_E_CONFIG;
    }
out:
    free(text);
    free(ld.dotenv);
    buf_free(&ld.scratch);
    if (result != RL_OK) {
        config_unref(c);
        c = NULL;
    }
    *out = c;
    return result;
}

struct config *config_ref(struct config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void config_unref(struct config *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1,
                                        memory_order_acq_rel) != 1) {
        return;
    }
    for (size_t i = 0; i < c->nproviders; i++) {
        free(c->providers[i].name);
        free(c->providers[i].kind);
        free(c->providers[i].base_url);
        free(c->providers[i].api_key);
    }
    for (size_t i = 0; i < c->nmodels; i++) {
        free(c->models[i].name);
        free(c->models[i].upstream);
        free(c->models[i].fallbacks);
    }
    free(c->key_sha256);
    free(c->key_prefix);
    free(c->providers);
    free(c->models);
    free(c->path);
    free(c->listen_host);
    free(c->log_file);
    free(c->store);
    free(c->redis);
    free(c->admin_key);
    free(c->dashboard_host);
    free(c->dashboard_dir);
    free(c->cache.model);
    free(c);
}

const struct model_cfg *config_model(const struct config *cfg,
                                     const char *name, size_t len)
{
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const char *n = cfg->models[i].name;
        if (n && strlen(n) == len && memcmp(n, name, len) == 0) {
            return &cfg->models[i];
        }
    }
    return NULL;
}
