/*
 * loader.h - inside the config folder only: the state of one load of
 * relay.yaml and the helpers that read and check its nodes, shared by
 * config.c (everything else) and routing_knobs.c (the routing:
 * section).
 */
#ifndef RL_CONFIG_LOADER_H
#define RL_CONFIG_LOADER_H

#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>

#include "config/config.h"

/* The state of one load: the document, the errors, the env. */
struct loader {
    yaml_document_t doc; /* the parsed file */
    const char *path;    /* for messages */
    struct buf *errors;  /* "file:line: field: message" lines */
    int nerrors;         /* lines appended to errors */
    char *dotenv;        /* contents of .env beside the file, or NULL */
    struct buf scratch;  /* expansion of the current scalar */
    const char *section; /* the routing.* section being read */
};

/* Appends "file:line: field: message" for node (NULL: line 1) to the
 * load's errors and counts it. */
void config_fail(struct loader *ld, yaml_node_t *node, const char *field,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Returns the expanded text of a scalar node, valid until the next call,
 * or NULL (with an error naming field) when node is not a scalar. */
const char *config_scalar(struct loader *ld, yaml_node_t *node,
                          const char *field);

/* Reads a whole number from lo to hi into *out, or reports field. */
bool config_scalar_int(struct loader *ld, yaml_node_t *node,
                       const char *field, int64_t lo, int64_t hi,
                       int64_t *out);

/* Reads true or false into *out, or reports field. */
bool config_scalar_bool(struct loader *ld, yaml_node_t *node,
                        const char *field, bool *out);

/* Calls visit(ld, key, value, ctx) for each pair of a mapping node. */
typedef void (*pair_fn)(struct loader *ld, const char *key,
                        yaml_node_t *knode, yaml_node_t *value, void *ctx);

/* Visits each pair of map, reporting duplicate keys; false (reported)
 * when map is not a mapping. */
bool config_each_pair(struct loader *ld, yaml_node_t *map, const char *field,
                      pair_fn visit, void *ctx);

/* The routing: section's pairs (routing_knobs.c). ctx is the struct config. */
void config_routing_section(struct loader *ld, const char *key,
                            yaml_node_t *k, yaml_node_t *v, void *ctx);

/* The cache: section's pairs (cache_knobs.c). ctx is the struct config. */
void config_cache_section(struct loader *ld, const char *key,
                          yaml_node_t *k, yaml_node_t *v, void *ctx);

#endif
