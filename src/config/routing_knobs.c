/*
 * routing_knobs.c - the routing: section of relay.yaml: routing.defaults (the
 * targets a request without its own gets) and the engine's knobs
 * (routing.latency, routing.deadline, routing.hedge, routing.breaker),
 * each with its default in config_routing_knobs_default() and its range
 * checked here. docs/configuration.md lists them; docs/routing.md says
 * what they do.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config/loader.h"

void config_routing_knobs_default(struct routing_knobs *k)
{
    *k = (struct routing_knobs){
        .percentile = 90,
        .window = 32,
        .max_age_ms = 30000,
        .output_tokens_prior = 256,
        .safe_percentile = 97,
        .safe_extra_pct = 75,
        .bargain_percentile = 85,
        .bargain_ratio_pct = 300,
        .overdue_waits = 2,
        .explore_after_ms = 0,
        .first_token_margin_pct = 100,
        .first_token_margin_ms = 200,
        .hedge_margin_pct = 20,
        .hedge_margin_ms = 50,
        .breaker_failures = 5,
        .breaker_error_pct = 50,
        .breaker_min_requests = 10,
        .breaker_open_ms = 10000,
    };
}

static void routing_pair(struct loader *ld, const char *key, yaml_node_t *k,
                         yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    int64_t n;
    if (strcmp(key, "max_latency_ms") == 0) {
        if (config_scalar_int(ld, v, "routing.defaults.max_latency_ms", 1,
            600000,
                       &n)) {
            c->default_max_latency_ms = (int)n;
        }
    } else if (strcmp(key, "min_quality_tier") == 0) {
        if (config_scalar_int(ld, v, "routing.defaults.min_quality_tier", 0,
            100,
                       &n)) {
            c->default_min_quality_tier = (int)n;
        }
    } else if (strcmp(key, "max_ttft_ms") == 0) {
        if (config_scalar_int(ld, v, "routing.defaults.max_ttft_ms", 0, 600000,
                       &n)) {
            c->default_max_ttft_ms = (int)n;
        }
    } else if (strcmp(key, "hedge") == 0) {
        config_scalar_bool(ld, v, "routing.defaults.hedge", &c->default_hedge);
    } else {
        config_fail(ld, k, "routing.defaults", "unknown field \"%s\" "
             "(max_latency_ms, min_quality_tier, max_ttft_ms, hedge)", key);
    }
}

/* One whole-number knob of routing: its section, name, range and place. */
struct knob {
    const char *section; /* "latency" */
    const char *name;    /* "percentile" */
    int64_t lo;          /* smallest accepted */
    int64_t hi;          /* largest accepted */
    size_t offset;       /* in struct routing_knobs */
    int size;            /* sizeof the field: 4 (int) or 8 */
};

#define KNOB(sec, nm, field, lo, hi)                                       \
    {sec, nm, lo, hi, offsetof(struct routing_knobs, field),              \
     (int)sizeof(((struct routing_knobs *)0)->field)}

static const struct knob knobs[] = {
    KNOB("latency", "percentile", percentile, 50, 99),
    KNOB("latency", "window", window, 4, 64),
    KNOB("latency", "max_age_ms", max_age_ms, 1000, 86400000),
    KNOB("latency", "output_tokens_prior", output_tokens_prior, 1, 1000000),
    KNOB("latency", "explore_after_ms", explore_after_ms, 0, 86400000),
    KNOB("latency", "safe_percentile", safe_percentile, 50, 99),
    KNOB("latency", "safe_extra_pct", safe_extra_pct, 0, 1000),
    KNOB("latency", "bargain_percentile", bargain_percentile, 50, 99),
    KNOB("latency", "bargain_ratio_pct", bargain_ratio_pct, 0, 100000),
    KNOB("latency", "overdue_waits", overdue_waits, 0, 64),
    KNOB("deadline", "margin_pct", first_token_margin_pct, 0, 1000),
    KNOB("deadline", "margin_ms", first_token_margin_ms, 0, 600000),
    KNOB("hedge", "margin_pct", hedge_margin_pct, 0, 1000),
    KNOB("hedge", "margin_ms", hedge_margin_ms, 0, 600000),
    KNOB("breaker", "failures", breaker_failures, 1, 1000),
    KNOB("breaker", "error_pct", breaker_error_pct, 1, 100),
    KNOB("breaker", "min_requests", breaker_min_requests, 1, 64),
    KNOB("breaker", "open_ms", breaker_open_ms, 100, 3600000),
};

/* The names of a section's knobs, for the unknown-field message. */
static void knob_names(const char *section, char *out, size_t len)
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
        if (strcmp(knobs[i].section, section) == 0 && at < len) {
            int w = snprintf(out + at, len - at, "%s%s", at ? ", " : "",
                             knobs[i].name);
            at += w > 0 ? (size_t)w : 0;
        }
    }
}

static void knob_pair(struct loader *ld, const char *key, yaml_node_t *k,
                      yaml_node_t *v, void *ctx)
{
    struct config *c = ctx;
    const char *section = ld->section;
    char f[160];
    snprintf(f, sizeof(f), "routing.%s.%s", section, key);
    for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
        const struct knob *kb = &knobs[i];
        int64_t n;
        if (strcmp(kb->section, section) != 0 || strcmp(kb->name, key)) {
            continue;
        }
        if (config_scalar_int(ld, v, f, kb->lo, kb->hi, &n)) {
            char *dst = (char *)&c->routing + kb->offset;
            if (kb->size == 4) {
                int iv = (int)n;
                memcpy(dst, &iv, sizeof(iv));
            } else {
                memcpy(dst, &n, sizeof(n));
            }
        }
        return;
    }
    char names[200];
    knob_names(section, names, sizeof(names));
    snprintf(f, sizeof(f), "routing.%s", section);
    config_fail(ld, k, f, "unknown field \"%s\" (%s)", key, names);
}

void config_routing_section(struct loader *ld, const char *key,
                            yaml_node_t *k, yaml_node_t *v, void *ctx)
{
    if (strcmp(key, "defaults") == 0) {
        config_each_pair(ld, v, "routing.defaults", routing_pair, ctx);
        return;
    }
    const char *sections[] = {"latency", "deadline", "hedge", "breaker"};
    for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
        if (strcmp(key, sections[i]) == 0) {
            char f[64];
            snprintf(f, sizeof(f), "routing.%s", key);
            ld->section = sections[i];
            config_each_pair(ld, v, f, knob_pair, ctx);
            ld->section = NULL;
            return;
        }
    }
    config_fail(ld, k, "routing", "unknown field \"%s\" (defaults, latency, "
         "deadline, hedge, breaker)", key);
}

