/*
 * health.c - a circuit breaker per model and per provider.
 *
 * Closed: attempts flow, and their outcomes are counted. It opens when
 * breaker_failures attempts in a row failed, or when breaker_error_pct of
 * the last breaker_min_requests attempts failed. Open: the plan skips it
 * ("x: circuit open") for breaker_open_ms, doubled after each failed
 * probe (up to 16 times). Then half-open: one plan at a time gets it as a
 * probe; the probe's success closes it, its failure opens it again. An
 * upstream Retry-After (429 or 5xx) closes the model to everyone until it
 * has passed, whatever the counts say.
 *
 * Observations only record; the thresholds are weighed when a plan asks
 * (routing_health_admit), which has the configuration's knobs at hand.
 * Plain functions over struct routing_health: the caller holds the
 * entry's lock and passes the time; routing_health_log_change() is the
 * one that writes a line, called by routing.c after the lock, once per
 * change of state.
 */
#include "routing/engine.h"

#include <string.h>

#include "util/buf.h"
#include "util/log.h"

#define MAX_BACKOFF_SHIFT 4

bool routing_outcome_is_provider_fault(enum routing_outcome kind)
{
    return kind == ROUTING_OBS_TIMEOUT || kind == ROUTING_OBS_5XX ||
           kind == ROUTING_OBS_CONNECT || kind == ROUTING_OBS_CUT;
}

/* Failures among the n newest outcomes. */
static int failures_in(uint64_t outcomes, int n)
{
    uint64_t mask = n >= 64 ? UINT64_MAX : ((uint64_t)1 << n) - 1;
    return __builtin_popcountll(outcomes & mask);
}

static void open_now(struct routing_health *h, const struct routing_knobs *k)
{
    int shift = h->nopens < MAX_BACKOFF_SHIFT ? h->nopens : MAX_BACKOFF_SHIFT;
    h->state = ROUTING_OPEN;
    h->open_until_us = h->last_failure_us +
                       (k->breaker_open_ms << shift) * 1000;
    h->nopens++;
    h->consecutive = 0;
    h->outcomes = 0;
    h->noutcomes = 0;
    h->probe_since_us = 0;
}

static bool over_threshold(const struct routing_health *h,
                           const struct routing_knobs *k)
{
    if (h->consecutive >= k->breaker_failures) {
        return true;
    }
    int n = k->breaker_min_requests;
    if (h->noutcomes < n) {
        return false;
    }
    return failures_in(h->outcomes, n) * 100 >= k->breaker_error_pct * n;
}

enum routing_admit routing_health_admit(struct routing_health *h,
                                        const struct routing_knobs *k,
                                        uint64_t now_us, bool take_probe)
{
    if (h->retry_until_us > now_us) {
        return ROUTING_REFUSE_OPEN;
    }
    if (h->state == ROUTING_CLOSED && over_threshold(h, k)) {
        open_now(h, k);
    }
    if (h->state == ROUTING_OPEN && h->open_until_us == 0) {
        open_now(h, k); /* a failed probe: a longer open period */
    }
    if (h->state == ROUTING_OPEN) {
        if (now_us < h->open_until_us) {
            return ROUTING_REFUSE_OPEN;
        }
        h->state = ROUTING_HALF_OPEN;
        h->probe_since_us = 0;
    }
    if (h->state == ROUTING_CLOSED) {
        return ROUTING_ADMIT;
    }
    /* Half-open: one probe at a time; a probe never heard of again frees
     * its slot after an open period. */
    if (h->probe_since_us &&
        now_us - h->probe_since_us < k->breaker_open_ms * 1000) {
        return ROUTING_REFUSE_PROBING;
    }
    if (take_probe) {
        h->probe_since_us = now_us ? now_us : 1;
    }
    return ROUTING_ADMIT_PROBE;
}

bool routing_health_probe_early(struct routing_health *h,
                                const struct routing_knobs *k,
                                uint64_t now_us)
{
    enum routing_admit a = routing_health_admit(h, k, now_us, true);
    if (a == ROUTING_ADMIT || a == ROUTING_ADMIT_PROBE) {
        return true;
    }
    if (a != ROUTING_REFUSE_OPEN || h->retry_until_us > now_us) {
        return false; /* a probe is out, or the upstream said to wait */
    }
    h->state = ROUTING_HALF_OPEN;
    h->probe_since_us = now_us ? now_us : 1;
    return true;
}

void routing_health_observe(struct routing_health *h, uint64_t now_us,
                            const struct routing_obs *o)
{
    if (o->kind == ROUTING_OBS_ABANDONED) {
        h->probe_since_us = 0; /* inconclusive: the next plan probes */
        return;
    }
    bool failed = o->kind != ROUTING_OBS_OK;
    if (o->retry_after_s &&
        (o->kind == ROUTING_OBS_429 || o->kind == ROUTING_OBS_5XX)) {
        uint64_t until = now_us + (uint64_t)o->retry_after_s * 1000000;
        h->retry_until_us =
            until > h->retry_until_us ? until : h->retry_until_us;
    }
    if (h->state == ROUTING_HALF_OPEN) {
        h->probe_since_us = 0;
        if (failed) {
            h->last_failure_us = now_us;
            h->state = ROUTING_OPEN;
            h->open_until_us = 0; /* set by the next admit, with knobs */
        } else {
            *h = (struct routing_health){.retry_until_us = h->retry_until_us};
        }
        return;
    }
    if (h->state == ROUTING_OPEN) {
        return; /* a straggler from before it opened */
    }
    h->outcomes = (h->outcomes << 1) | (failed ? 1u : 0u);
    h->noutcomes += h->noutcomes < 64;
    if (failed) {
        h->consecutive++;
        h->last_failure_us = now_us;
    } else {
        h->consecutive = 0;
    }
}

static const char *state_name(enum routing_breaker s)
{
    switch (s) {
    case ROUTING_OPEN: return "open";
    case ROUTING_HALF_OPEN: return "half_open";
    default: return "closed";
    }
}

void routing_health_log_change(const char *name, enum routing_breaker from,
                               enum routing_breaker to)
{
    if (from == to) {
        return;
    }
    enum log_level level = to == ROUTING_OPEN ? LOG_WARN : LOG_INFO;
    if (!log_enabled(level)) {
        return;
    }
    const char *msg = to == ROUTING_OPEN        ? "circuit breaker opened"
                      : to == ROUTING_HALF_OPEN ? "circuit breaker half-open"
                                                : "circuit breaker closed";
    struct buf esc;
    buf_init(&esc, 512);
    buf_append_json_escaped(&esc, name + 2, strlen(name + 2));
    log_write(level, msg, "\"%s\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"",
              name[0] == 'p' ? "provider" : "model", esc.p ? esc.p : "",
              state_name(from), state_name(to));
    buf_free(&esc);
}
