/*
 * keygen.c - what an API key looks like, and making one.
 *
 * A key is "glw_" and 40 base62 characters (about 238 bits) from the OS
 * CSPRNG. Bytes are mapped to characters by rejection: only bytes below
 * 248 = 4 * 62 are used, so each of the 62 characters comes from exactly
 * four byte values and none is more likely than another (a plain b % 62
 * would favour the first 8). Only the key's SHA-256 and its display prefix
 * ("glw_" + first 4 characters) are ever stored.
 */
#include "auth/auth.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static const char base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

size_t auth_base62_take(const unsigned char *bytes, size_t nbytes, char *out,
                        size_t nout)
{
    size_t k = 0;
    for (size_t i = 0; i < nbytes && k < nout; i++) {
        if (bytes[i] < AUTH_BASE62_LIMIT) {
            out[k++] = base62[bytes[i] % 62];
        }
    }
    return k;
}

/* Fills buf from getrandom, which blocks only before the OS pool is
 * ready at boot. */
static bool os_random(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = getrandom(buf + got, n - got, 0);
        if (k <= 0) {
            return false;
        }
        got += (size_t)k;
    }
    return true;
}

void auth_sha256_hex(const char *p, size_t len, char out[65])
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)p, len, h);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = "0123456789abcdef"[h[i] >> 4];
        out[2 * i + 1] = "0123456789abcdef"[h[i] & 15];
    }
    out[64] = '\0';
}

bool auth_key_well_formed(const char *s, size_t len)
{
    if (len != AUTH_KEY_LEN || memcmp(s, AUTH_KEY_PREFIX, 4) != 0) {
        return false;
    }
    for (size_t i = 4; i < len; i++) {
        if (!memchr(base62, s[i], 62)) {
            return false;
        }
    }
    return true;
}

enum rl_err auth_key_generate(struct auth_new_key *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->key, AUTH_KEY_PREFIX, 4);
    size_t have = 0;
    unsigned char bytes[64];
    /* 40 characters want about 41 bytes (8 in 256 are dropped): 64 bytes
     * a draw, drawn again in the rare case they were not enough. */
    while (have < AUTH_KEY_RANDOM_CHARS) {
        if (!os_random(bytes, sizeof(bytes))) {
            return RL_E_IO;
        }
        have += auth_base62_take(bytes, sizeof(bytes), out->key + 4 + have,
                                 AUTH_KEY_RANDOM_CHARS - have);
    }
    out->key[AUTH_KEY_LEN] = '\0';
    snprintf(out->prefix, sizeof(out->prefix), "%.8s", out->key);
    auth_sha256_hex(out->key, AUTH_KEY_LEN, out->sha256_hex);
    unsigned char idb[8];
    if (!os_random(idb, sizeof(idb))) {
        return RL_E_IO;
    }
    memcpy(out->id, "key_", 4);
    for (int i = 0; i < 8; i++) {
        out->id[4 + 2 * i] = "0123456789abcdef"[idb[i] >> 4];
        out->id[5 + 2 * i] = "0123456789abcdef"[idb[i] & 15];
    }
    out->id[20] = '\0';
    explicit_bzero(bytes, sizeof(bytes));
    return RL_OK;
}
