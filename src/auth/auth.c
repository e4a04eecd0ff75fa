/*
 * auth.c - bearer keys, compared as SHA-256 hashes in constant time.
 *
 * The keys are the static ones of relay.yaml's auth.keys; only their hashes
 * are held in memory. Keys kept in the store (created with `relay keys`)
 * plug in here next, behind the same function.
 */
#include "auth/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>

#include "config/config.h"

#define AUTH_MAX_KEY 512

enum rl_err auth_check(const struct config *cfg, struct str authorization,
                       struct auth_result *out)
{
    struct str v = str_trim(authorization);
    if (v.len < 7 || strncasecmp(v.p, "Bearer ", 7) != 0) {
        return RL_E_UNAUTHORIZED;
    }
    struct str key = str_trim((struct str){v.p + 7, v.len - 7});
    if (key.len == 0 || key.len > AUTH_MAX_KEY) {
        return RL_E_UNAUTHORIZED;
    }
    unsigned char hash[32];
    SHA256((const unsigned char *)key.p, key.len, hash);
    /* Every configured hash is compared, so the time taken does not say
     * which key came closest. */
    int found = -1;
    for (size_t i = 0; i < cfg->nkeys; i++) {
        if (CRYPTO_memcmp(hash, cfg->key_sha256[i], sizeof(hash)) == 0) {
            found = (int)i;
        }
    }
    if (found < 0) {
        return RL_E_UNAUTHORIZED;
    }
    memcpy(out->key_prefix, cfg->key_prefix[found], sizeof(out->key_prefix));
    return RL_OK;
}
