/*
 * script.c - the model-name script: `base?ttft_ms=200&status=503&first=1`.
 *
 * fake_script_parse() is pure: it turns the query part of a model name into a
 * struct script. The two pieces of shared state, the per-model-string
 * request counters behind `first` and the seeded PRNG behind `p`, sit
 * behind one mutex; they are touched only by requests whose script stages
 * a failure, so the healthy fast path never takes the lock.
 *
 * Read first: fake_script_parse(), then fake_script_failure_applies().
 */
#include "fakeprov.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/alloc.h"

/* ---------------------------------------------------------------------- */
/* Parsing                                                                */

/* Copies v into a NUL-terminated scratch for strtoll/strtod; false when it
 * does not fit (no valid value is that long). */
static bool to_cstr(struct str v, char *tmp, size_t n)
{
    if (v.len == 0 || v.len >= n) {
        return false;
    }
    memcpy(tmp, v.p, v.len);
    tmp[v.len] = '\0';
    return true;
}

static bool parse_int(struct str v, int64_t lo, int64_t hi, int64_t *out)
{
    char tmp[32];
    if (!to_cstr(v, tmp, sizeof(tmp))) {
        return false;
    }
    char *end = NULL;
    errno = 0;
    long long x = strtoll(tmp, &end, 10);
    if (errno != 0 || *end != '\0' || x < lo || x > hi) {
        return false;
    }
    *out = (int64_t)x;
    return true;
}

static bool parse_num(struct str v, double lo, double hi, double *out)
{
    char tmp[32];
    if (!to_cstr(v, tmp, sizeof(tmp))) {
        return false;
    }
    char *end = NULL;
    errno = 0;
    double x = strtod(tmp, &end);
    if (errno != 0 || *end != '\0' || !isfinite(x) || x < lo || x > hi) {
        return false;
    }
    *out = x;
    return true;
}

static const char *const fault_names[] = {
    [FAULT_NONE] = "none",
    [FAULT_RESET] = "reset",
    [FAULT_HANG] = "hang",
    [FAULT_STALL] = "stall",
    [FAULT_CUT] = "cut",
    [FAULT_MALFORMED] = "malformed",
    [FAULT_NODONE] = "nodone",
    [FAULT_SLOWHEADERS] = "slowheaders",
    [FAULT_SAFETY] = "safety",
    [FAULT_BLOCKED] = "blocked",
};

const char *fake_script_fault_name(enum fake_fault f)
{
    return fault_names[f];
}

static bool parse_fault(struct str v, enum fake_fault *out)
{
    for (size_t i = 0; i < sizeof(fault_names) / sizeof(*fault_names); i++) {
        if (str_eq_lit(v, fault_names[i])) {
            *out = (enum fake_fault)i;
            return true;
        }
    }
    return false;
}

/* Applies one key=value pair to sc; false when the key or value is bad. */
static bool apply_pair(struct script *sc, struct str k, struct str v)
{
    int64_t n = 0;
    if (str_eq_lit(k, "ttft_ms")) {
        return parse_int(v, 0, 3600000, &sc->ttft_ms);
    } else if (str_eq_lit(k, "tps")) {
        return parse_num(v, 0, 1e9, &sc->tps);
    } else if (str_eq_lit(k, "tokens")) {
        return parse_int(v, 0, FAKE_MAX_TOKENS, &sc->tokens);
    } else if (str_eq_lit(k, "status")) {
        /* 1xx is no final answer; 2xx means healthy. */
        bool ok = parse_int(v, 200, 599, &n);
        sc->status = n >= 300 ? (int)n : 0;
        return ok;
    } else if (str_eq_lit(k, "code")) {
        sc->code = v;
        return v.len > 0 && v.len < 128;
    } else if (str_eq_lit(k, "fault")) {
        return parse_fault(v, &sc->fault);
    } else if (str_eq_lit(k, "after")) {
        return parse_int(v, 0, FAKE_MAX_TOKENS, &sc->after);
    } else if (str_eq_lit(k, "first")) {
        return parse_int(v, 1, INT64_MAX / 2, &sc->first);
    } else if (str_eq_lit(k, "flap")) {
        return parse_int(v, 1, INT64_MAX / 2, &sc->flap);
    } else if (str_eq_lit(k, "p")) {
        return parse_num(v, 0, 1, &sc->p);
    } else if (str_eq_lit(k, "retry_after")) {
        return parse_int(v, 0, 86400, &sc->retry_after_s);
    } else if (str_eq_lit(k, "cached") || str_eq_lit(k, "cache_read")) {
        return parse_int(v, 0, 1000000000, &sc->cache_read);
    } else if (str_eq_lit(k, "cache_write")) {
        return parse_int(v, 0, 1000000000, &sc->cache_write);
    } else if (str_eq_lit(k, "usage")) {
        return parse_int(v, 0, 1, &sc->usage);
    } else if (str_eq_lit(k, "slow_ms")) {
        return parse_int(v, 0, 3600000, &sc->slow_ms);
    } else if (str_eq_lit(k, "slow_from")) {
        return parse_int(v, 1, INT64_MAX / 2, &sc->slow_from);
    } else if (str_eq_lit(k, "slow_to")) {
        return parse_int(v, 1, INT64_MAX / 2, &sc->slow_to);
    }
    return false;
}

enum rl_err fake_script_parse(struct str model, struct script *out, char *err,
                              size_t errlen)
{
    *out = (struct script){
        .base = model, .ttft_ms = -1, .tps = -1, .tokens = -1,
        .after = -1, .p = 1.0, .retry_after_s = 1, .usage = 1,
    };
    const char *q = memchr(model.p, '?', model.len);
    if (!q) {
        return RL_OK;
    }
    out->base.len = (size_t)(q - model.p);
    const char *p = q + 1;
    const char *end = model.p + model.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        struct str pair = {p, (size_t)(stop - p)};
        p = amp ? amp + 1 : end;
        if (pair.len == 0) {
            continue; /* tolerate "a=1&&b=2" and a trailing '&' */
        }
        const char *eq = memchr(pair.p, '=', pair.len);
        struct str k = {pair.p, eq ? (size_t)(eq - pair.p) : pair.len};
        struct str v = {eq ? eq + 1 : pair.p + pair.len,
                        eq ? pair.len - k.len - 1 : 0};
        if (!apply_pair(out, k, v)) {
            snprintf(err, errlen, "fake script: bad key or value in '%.*s'",
                     (int)(pair.len > 64 ? 64 : pair.len), pair.p);
            return RL_E_INVALID_REQUEST;
        }
    }
    return RL_OK;
}

bool fake_script_has_failure(const struct script *sc)
{
    return sc->status != 0 || sc->fault != FAULT_NONE;
}

/* ---------------------------------------------------------------------- */
/* Shared state: `first` counters and the PRNG, under one mutex.          */

#define COUNTER_BUCKETS 1024
#define COUNTER_MAX 100000 /* distinct strings kept before starting over */

struct counter {
    struct counter *next; /* next in the bucket */
    uint64_t seen;        /* requests seen with this exact model string */
    size_t len;           /* bytes in name */
    char name[];          /* the model string, not NUL-terminated */
};

static pthread_mutex_t state_mu = PTHREAD_MUTEX_INITIALIZER;
static struct counter *buckets[COUNTER_BUCKETS];
static size_t ncounters;
static uint64_t prng_state = 1;

static void counters_clear(void)
{
    for (size_t i = 0; i < COUNTER_BUCKETS; i++) {
        struct counter *c = buckets[i];
        while (c) {
            struct counter *next = c->next;
            free(c);
            c = next;
        }
        buckets[i] = NULL;
    }
    ncounters = 0;
}

/* Returns how many requests of model were seen, this one included. Call
 * with state_mu held. */
static uint64_t counter_bump(struct str model)
{
    uint64_t h = fake_text_fnv1a(TEXT_FNV_OFFSET, model.p, model.len);
    struct counter **slot = &buckets[h % COUNTER_BUCKETS];
    for (struct counter *c = *slot; c; c = c->next) {
        if (c->len == model.len && memcmp(c->name, model.p, c->len) == 0) {
            return ++c->seen;
        }
    }
    if (ncounters >= COUNTER_MAX) {
        counters_clear(); /* a runaway test; never grow without bound */
    }
    struct counter *c = rl_malloc(sizeof(*c) + model.len);
    c->seen = 1;
    c->len = model.len;
    memcpy(c->name, model.p, model.len);
    c->next = *slot;
    *slot = c;
    ncounters++;
    return 1;
}

/* splitmix64: one 64-bit draw. Call with state_mu held. */
static uint64_t prng_next(void)
{
    uint64_t z = (prng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

bool fake_script_failure_applies(const struct script *sc, struct str model)
{
    if (!fake_script_has_failure(sc)) {
        return false;
    }
    if (sc->first == 0 && sc->flap == 0 && sc->p >= 1.0) {
        return true;
    }
    pthread_mutex_lock(&state_mu);
    bool applies = true;
    uint64_t seen = sc->first > 0 || sc->flap > 0 ? counter_bump(model) : 0;
    if (sc->first > 0) {
        applies = seen <= (uint64_t)sc->first;
    }
    if (sc->flap > 0) {
        /* Stretches of flap requests, failing first: 1..N fail, N+1..2N
         * are healthy, and so on. */
        applies = applies && (seen - 1) / (uint64_t)sc->flap % 2 == 0;
    }
    if (applies && sc->p < 1.0) {
        /* 53 random bits as a double in [0, 1). */
        double u = (double)(prng_next() >> 11) / 9007199254740992.0;
        applies = u < sc->p;
    }
    pthread_mutex_unlock(&state_mu);
    return applies;
}

int64_t fake_script_slow_ms(const struct script *sc, struct str model)
{
    if (sc->slow_ms == 0) {
        return 0;
    }
    /* Its own counter: the name with a prefix no model string has. */
    char name[512];
    size_t n = model.len < sizeof(name) - 6 ? model.len : sizeof(name) - 6;
    memcpy(name, "\x01slow", 5);
    memcpy(name + 5, model.p, n);
    pthread_mutex_lock(&state_mu);
    uint64_t k = counter_bump((struct str){name, n + 5});
    pthread_mutex_unlock(&state_mu);
    uint64_t from = sc->slow_from > 0 ? (uint64_t)sc->slow_from : 1;
    bool slow = k >= from && (sc->slow_to == 0 || k <= (uint64_t)sc->slow_to);
    return slow ? sc->slow_ms : 0;
}

void fake_script_reset(uint64_t seed)
{
    pthread_mutex_lock(&state_mu);
    counters_clear();
    prng_state = seed;
    pthread_mutex_unlock(&state_mu);
}
