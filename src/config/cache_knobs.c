/*
 * cache_knobs.c - the cache: section of relay.yaml (docs/cache.md), each
 * field with its default in config_cache_knobs_default() and its range
 * checked here. docs/configuration.md lists them.
 */
#include <stdlib.h>
#include <string.h>

#include "config/loader.h"
#include "util/alloc.h"

void config_cache_knobs_default(struct cache_knobs *k)
{
    *k = (struct cache_knobs){
        .enabled = false,
        .scope_global = false,
        .ttl_s = 3600,
        .memory_bytes = (size_t)64 << 20,
        .max_entry_bytes = (size_t)1 << 20,
        .max_temperature = 0.7,
        .redis_timeout_ms = 100,
        .model = NULL,
        .threshold = 0.70,
        .near_miss_guard = true,
        .max_entries = 100000,
        .encoder_threads = 0,
        .encoder_queue = 64,
        .embed_timeout_ms = 250,
        .sync_ms = 200,
    };
}

static void scope(struct loader *ld, yaml_node_t *v, struct cache_knobs *k)
{
    const char *s = config_scalar(ld, v, "cache.scope");
    if (s && strcmp(s, "key") == 0) {
        k->scope_global = false;
    } else if (s && strcmp(s, "global") == 0) {
        k->scope_global = true;
    } else if (s) {
        config_fail(ld, v, "cache.scope", "\"%s\" is not key or global", s);
    }
}

static void temperature(struct loader *ld, yaml_node_t *v,
                        struct cache_knobs *k)
{
    const char *s = config_scalar(ld, v, "cache.max_temperature");
    if (!s) {
        return;
    }
    char *end = NULL;
    double t = strtod(s, &end);
    if (end == s || *end || !(t >= 0 && t <= 2)) {
        config_fail(ld, v, "cache.max_temperature",
                    "\"%s\" is not a number from 0 to 2", s);
        return;
    }
    k->max_temperature = t;
}

static void threshold(struct loader *ld, yaml_node_t *v,
                      struct cache_knobs *k)
{
    const char *s = config_scalar(ld, v, "cache.threshold");
    if (!s) {
        return;
    }
    char *end = NULL;
    double t = strtod(s, &end);
    if (end == s || *end || !(t > 0 && t <= 1)) {
        config_fail(ld, v, "cache.threshold",
                    "\"%s\" is not a cosine similarity above 0 and at "
                    "most 1", s);
        return;
    }
    k->threshold = t;
}

static void model(struct loader *ld, yaml_node_t *v, struct cache_knobs *k)
{
    const char *s = config_scalar(ld, v, "cache.model");
    if (!s) {
        return;
    }
    free(k->model);
    k->model = s[0] ? rl_strdup(s) : NULL;
}

/* The semantic part's sizes and times; false: not one of them. */
static bool semantic_knob(struct loader *ld, const char *key, yaml_node_t *v,
                          struct cache_knobs *k)
{
    int64_t n;
    if (strcmp(key, "encoder_threads") == 0) {
        if (config_scalar_int(ld, v, "cache.encoder_threads", 0, 64, &n)) {
            k->encoder_threads = (int)n;
        }
    } else if (strcmp(key, "encoder_queue") == 0) {
        if (config_scalar_int(ld, v, "cache.encoder_queue", 1, 100000,
                              &n)) {
            k->encoder_queue = (size_t)n;
        }
    } else if (strcmp(key, "embed_timeout_ms") == 0) {
        if (config_scalar_int(ld, v, "cache.embed_timeout_ms", 1, 60000,
                              &n)) {
            k->embed_timeout_ms = (uint64_t)n;
        }
    } else if (strcmp(key, "sync_ms") == 0) {
        if (config_scalar_int(ld, v, "cache.sync_ms", 10, 60000, &n)) {
            k->sync_ms = (uint64_t)n;
        }
    } else {
        return false;
    }
    return true;
}

void config_cache_section(struct loader *ld, const char *key,
                          yaml_node_t *kn, yaml_node_t *v, void *ctx)
{
    struct cache_knobs *k = &((struct config *)ctx)->cache;
    int64_t n;
    if (strcmp(key, "enabled") == 0) {
        config_scalar_bool(ld, v, "cache.enabled", &k->enabled);
    } else if (strcmp(key, "scope") == 0) {
        scope(ld, v, k);
    } else if (strcmp(key, "ttl_s") == 0) {
        if (config_scalar_int(ld, v, "cache.ttl_s", 1, 86400 * 365, &n)) {
            k->ttl_s = (uint64_t)n;
        }
    } else if (strcmp(key, "memory_bytes") == 0) {
        if (config_scalar_int(ld, v, "cache.memory_bytes", 0,
                              (int64_t)1 << 40, &n)) {
            k->memory_bytes = (size_t)n;
        }
    } else if (strcmp(key, "max_entry_bytes") == 0) {
        if (config_scalar_int(ld, v, "cache.max_entry_bytes", 1024,
                              (int64_t)64 << 20, &n)) {
            k->max_entry_bytes = (size_t)n;
        }
    } else if (strcmp(key, "max_temperature") == 0) {
        temperature(ld, v, k);
    } else if (strcmp(key, "redis_timeout_ms") == 0) {
        if (config_scalar_int(ld, v, "cache.redis_timeout_ms", 1, 10000,
                              &n)) {
            k->redis_timeout_ms = (uint64_t)n;
        }
    } else if (strcmp(key, "model") == 0) {
        model(ld, v, k);
    } else if (strcmp(key, "threshold") == 0) {
        threshold(ld, v, k);
    } else if (strcmp(key, "near_miss_guard") == 0) {
        config_scalar_bool(ld, v, "cache.near_miss_guard",
                           &k->near_miss_guard);
    } else if (strcmp(key, "max_entries") == 0) {
        if (config_scalar_int(ld, v, "cache.max_entries", 1, 100000000,
                              &n)) {
            k->max_entries = (size_t)n;
        }
    } else if (!semantic_knob(ld, key, v, k)) {
        config_fail(ld, kn, "cache", "unknown field \"%s\" (enabled, scope, "
                    "ttl_s, memory_bytes, max_entry_bytes, max_temperature, "
                    "redis_timeout_ms, model, threshold, near_miss_guard, "
                    "max_entries, encoder_threads, encoder_queue, "
                    "embed_timeout_ms, sync_ms)", key);
    }
}
