/*
 * auth.c - step 1: the bearer key, found by its SHA-256 among the static
 * keys of relay.yaml (auth.keys) and the store's keys (the key cache), and
 * confirmed with a constant-time compare of the hashes.
 *
 * Static keys have no limits (bootstrap, tests). A store key brings its
 * limits, budget, allowed models and routing defaults; the variable-size
 * part (models) is copied into the request's arena. Why a key was refused
 * is kept so the 401 can say it; the key itself never leaves this file.
 * The timing of a lookup depends on the hash, never on how close a guess
 * came to a real key.
 *
 * SHA-256 through OpenSSL 3's one-shot call costs some 6k instructions (it
 * looks the digest up each time), more than the rest of the step: each
 * worker thread remembers the hashes of the keys it saw last, found again
 * by a constant-time compare of the whole (padded) key.
 */
#include "auth/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "auth/keycache.h"
#include "config/config.h"

#define AUTH_MAX_KEY 512
#define MEMO_SLOTS 16     /* per worker thread */
#define MEMO_KEY_BYTES 64 /* longer keys are hashed every time */

struct memo_slot {
    unsigned char key[MEMO_KEY_BYTES]; /* zero-padded */
    size_t len;                        /* 0: empty */
    unsigned char sha256[32];
};

static __thread struct memo_slot memo[MEMO_SLOTS];

/* Sets hash to SHA-256(key), from the thread's memo when it has it. */
static void key_hash(struct str key, unsigned char hash[32])
{
    if (key.len > MEMO_KEY_BYTES) {
        SHA256((const unsigned char *)key.p, key.len, hash);
        return;
    }
    unsigned char padded[MEMO_KEY_BYTES] = {0};
    memcpy(padded, key.p, key.len);
    uint32_t h = 2166136261u; /* FNV-1a picks the slot */
    for (size_t i = 0; i < key.len; i++) {
        h = (h ^ padded[i]) * 16777619u;
    }
    struct memo_slot *m = &memo[h % MEMO_SLOTS];
    if (m->len == key.len &&
        CRYPTO_memcmp(m->key, padded, sizeof(padded)) == 0) {
        memcpy(hash, m->sha256, 32);
        return;
    }
    SHA256(padded, key.len, hash);
    memcpy(m->key, padded, sizeof(padded));
    memcpy(m->sha256, hash, 32);
    m->len = key.len;
}

/* Whether every byte of key is a visible ASCII character. */
static bool printable(struct str key)
{
    for (size_t i = 0; i < key.len; i++) {
        if ((unsigned char)key.p[i] <= ' ' || (unsigned char)key.p[i] > '~') {
            return false;
        }
    }
    return true;
}

/* Finds the bearer key in the header value; sets *why when there is
 * none. */
static bool bearer(struct str authorization, struct str *key,
                   enum auth_refusal *why)
{
    struct str v = str_trim(authorization);
    if (v.len == 0) {
        *why = AUTH_MISSING;
        return false;
    }
    if (v.len == 6 && strncasecmp(v.p, "Bearer", 6) == 0) {
        *why = AUTH_MALFORMED; /* "Bearer" and no key */
        return false;
    }
    if (v.len < 7 || strncasecmp(v.p, "Bearer ", 7) != 0) {
        *why = AUTH_NOT_BEARER;
        return false;
    }
    *key = str_trim((struct str){v.p + 7, v.len - 7});
    if (key->len == 0 || key->len > AUTH_MAX_KEY || !printable(*key)) {
        *why = AUTH_MALFORMED;
        return false;
    }
    return true;
}

/* Every configured hash is compared, so the time taken does not say which
 * static key came closest. */
static int find_static(const struct config *cfg, const unsigned char h[32])
{
    int found = -1;
    for (size_t i = 0; i < cfg->nkeys; i++) {
        if (CRYPTO_memcmp(h, cfg->key_sha256[i], 32) == 0) {
            found = (int)i;
        }
    }
    return found;
}

static void from_cache(const struct keycache_key *k, struct arena *arena,
                       struct auth_result *out)
{
    out->from_store = true;
    memcpy(out->key_id, k->id, sizeof(out->key_id));
    memcpy(out->name, k->name, sizeof(out->name));
    memcpy(out->key_prefix, k->prefix, sizeof(out->key_prefix));
    out->rpm = k->rpm;
    out->tpm = k->tpm;
    out->max_concurrent = k->max_concurrent;
    out->budget_nusd = k->budget_nusd;
    out->budget_period = k->budget_period;
    out->spent_nusd = k->spent_nusd;
    out->routing = k->routing;
    out->cache_threshold = k->cache_threshold;
    out->cache_any_temperature = k->cache_any_temperature;
    if (k->nmodels) {
        const char **m = arena_alloc(arena, k->nmodels * sizeof(*m));
        for (size_t i = 0; i < k->nmodels; i++) {
            m[i] = arena_strndup(arena, k->models[i], strlen(k->models[i]));
        }
        out->models = m;
        out->nmodels = k->nmodels;
    }
}

enum rl_err auth_check(const struct config *cfg, struct str authorization,
                       struct arena *arena, struct auth_result *out)
{
    memset(out, 0, sizeof(*out));
    out->routing.hedge = -1;
    struct str key;
    if (!bearer(authorization, &key, &out->refusal)) {
        return RL_E_UNAUTHORIZED;
    }
    unsigned char hash[32];
    key_hash(key, hash);
    int found = find_static(cfg, hash);
    if (found >= 0) {
        snprintf(out->name, sizeof(out->name), "auth.keys");
        memcpy(out->key_prefix, cfg->key_prefix[found],
               sizeof(out->key_prefix));
        return RL_OK;
    }
    const struct keycache_key *k = keycache_lookup(hash);
    if (!k) {
        out->refusal = AUTH_UNKNOWN;
        return RL_E_UNAUTHORIZED;
    }
    if (k->revoked) {
        out->refusal = AUTH_REVOKED;
        return RL_E_UNAUTHORIZED;
    }
    from_cache(k, arena, out);
    return RL_OK;
}

void auth_refusal_message(enum auth_refusal refusal, char *out, size_t n)
{
    const char *msg;
    switch (refusal) {
    case AUTH_MISSING:
        msg = "Missing API key. Send it as Authorization: Bearer <key>.";
        break;
    case AUTH_NOT_BEARER:
        msg = "The Authorization header must be Bearer <key>.";
        break;
    case AUTH_MALFORMED:
        msg = "Malformed API key: it must be one word of visible "
              "characters after Bearer (Relay keys are glw_ and 40 "
              "letters and digits).";
        break;
    case AUTH_REVOKED:
        msg = "This API key has been revoked. Ask for a new one (relay "
              "keys create).";
        break;
    default:
        msg = "Incorrect API key provided. Check the key, or create one "
              "with relay keys create.";
        break;
    }
    snprintf(out, n, "%s", msg);
}

bool auth_model_allowed(const struct auth_result *who,
                        const char *model_name)
{
    if (!who || who->nmodels == 0 || !model_name ||
        strcmp(model_name, "auto") == 0) {
        return true;
    }
    for (size_t i = 0; i < who->nmodels; i++) {
        if (strcmp(who->models[i], model_name) == 0) {
            return true;
        }
    }
    return false;
}
