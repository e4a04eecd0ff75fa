/*
 * auth.h - step 1 of a request: who is calling.
 */
#ifndef RL_AUTH_H
#define RL_AUTH_H

#include "util/err.h"
#include "util/str.h"

struct config;

/* Who a request comes from. */
struct auth_result {
    char key_prefix[16]; /* display prefix ("glw_7Qk2"), never the key */
};

/*
 * Checks the Authorization header value against the configured keys by
 * comparing SHA-256 hashes in constant time. Returns RL_OK and fills out,
 * or RL_E_UNAUTHORIZED.
 */
enum rl_err auth_check(const struct config *cfg, struct str authorization,
                       struct auth_result *out);

#endif
