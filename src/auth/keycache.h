/*
 * keycache.h - the key cache as auth.c sees it (inside src/auth/ only).
 */
#ifndef RL_AUTH_KEYCACHE_H
#define RL_AUTH_KEYCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/auth.h"

/* One store key as the cache holds it. */
struct keycache_key {
    char id[32];                 /* "key_" + 16 hex */
    char name[64];               /* the operator's name for it */
    char prefix[16];             /* display prefix */
    bool revoked;                /* kept to tell revoked from unknown */
    int64_t rpm;                 /* requests per minute; 0: no limit */
    int64_t tpm;                 /* tokens per minute; 0: no limit */
    int64_t max_concurrent;      /* requests at once; 0: no limit */
    int64_t budget_nusd;         /* per period; 0: none */
    enum auth_period budget_period;
    int64_t spent_nusd;          /* this period, as last read */
    char **models;               /* allowed names; owned by the snapshot */
    size_t nmodels;              /* 0: all */
    struct auth_routing routing; /* defaults */
    double cache_threshold;      /* semantic cache; 0: the configured one */
    bool cache_any_temperature;  /* cached above cache.max_temperature */
};

/*
 * Returns the key whose SHA-256 is sha256, or NULL. Takes no lock shared
 * between threads unless the cache changed since this thread's last call.
 * The result belongs to the calling thread's snapshot: valid until its
 * next keycache call on this thread.
 */
const struct keycache_key *keycache_lookup(const unsigned char sha256[32]);

#endif
