/*
 * waits.c - the attempts of a model still waiting for their first byte,
 * and what their waits say before any of them has ended.
 *
 * When a model slows down, the first sign is not a slow answer: it is
 * attempts that have waited longer than their plan expected and are still
 * waiting. The answers come back only later (a slow first token after the
 * slow time itself, a slow decode after the whole answer), and until then
 * the rings of latency.c say the model is as fast as ever. Each wait here
 * is a lower bound on one attempt's latency, known now.
 *
 * A model keeps up to ROUTING_WAITS_MAX waits in fixed slots: when each
 * began, the plan's prediction for it (a stream's first token, a
 * non-stream answer's end) and which of the two it is. A wait ends at the
 * attempt's first byte or its end, whichever comes first (the caller
 * says, with the token begin gave it). routing_waits_evidence() reads
 * them: the factor by which the k-th most overdue wait of each kind has
 * passed its prediction. One wait past its p90 is common (one in ten
 * attempts gets there); several at once are not, unless the model slowed
 * down.
 *
 * Plain functions over struct routing_waits: no lock, no clock (the
 * caller holds the entry's lock and passes the time). Begin and end are a
 * few instructions; the evidence is one comparison while no wait is
 * overdue and none is due yet (most plans), else one pass over the slots
 * in use (the attempts in flight on one model: a few dozen at most).
 */
#include <string.h>

#include "routing/engine.h"

/* Slots whose wait began longer ago than this are taken back: an attempt
 * whose end was never reported (it cannot wait longer than the
 * transport's timeouts) must not make its model look slow for ever. */
#define STALE_US (120ull * 1000000)

static uint32_t token_of(const struct routing_waits *w, int slot)
{
    return ((uint32_t)w->gen[slot] << 8) | (uint32_t)(slot + 1);
}

/* The slot of token, or -1 when it names no wait in use. */
static int slot_of(const struct routing_waits *w, uint32_t token)
{
    int slot = (int)(token & 0xff) - 1;
    if (slot < 0 || slot >= ROUTING_WAITS_MAX ||
        !(w->used & ((uint64_t)1 << slot)) || token_of(w, slot) != token) {
        return -1; /* not tracked, ended already, or taken back */
    }
    return slot;
}

uint32_t routing_waits_begin(struct routing_waits *w, uint64_t now_us,
                             uint64_t first_us, uint64_t total_us)
{
    if (!~w->used) {
        /* Full: take back the stale ones, if any. */
        for (int i = 0; i < ROUTING_WAITS_MAX; i++) {
            if (now_us - w->since_us[i] > STALE_US) {
                w->used &= ~((uint64_t)1 << i);
            }
        }
        if (!~w->used) {
            return 0; /* not tracked: its end will find nothing */
        }
    }
    int slot = __builtin_ctzll(~w->used);
    w->used |= (uint64_t)1 << slot;
    w->since_us[slot] = now_us;
    w->first_due_us[slot] = first_us ? now_us + first_us : 0;
    w->end_due_us[slot] = now_us + (total_us ? total_us : 1);
    w->due_us[slot] = first_us && first_us < total_us ? w->first_due_us[slot]
                                                      : w->end_due_us[slot];
    w->gen[slot]++;
    if (w->due_us[slot] < w->quiet_until_us) {
        w->quiet_until_us = w->due_us[slot];
    }
    return token_of(w, slot);
}

void routing_waits_first(struct routing_waits *w, uint32_t token)
{
    int slot = slot_of(w, token);
    if (slot >= 0) {
        w->first_due_us[slot] = 0;
        w->due_us[slot] = w->end_due_us[slot];
    }
}

void routing_waits_end(struct routing_waits *w, uint32_t token)
{
    int slot = slot_of(w, token);
    if (slot >= 0) {
        w->used &= ~((uint64_t)1 << slot);
    }
}

/* Inserts r into the descending top[0..k), keeping the k largest. */
static void keep_top(uint32_t *top, int k, uint32_t r)
{
    int i = k - 1;
    if (r <= top[i]) {
        return;
    }
    while (i > 0 && top[i - 1] < r) {
        top[i] = top[i - 1];
        i--;
    }
    top[i] = r;
}

/* By how much wait i, begun at since, has passed due (now_us past it), in
 * percent of what was predicted for it. */
static uint32_t overdue_pct(uint64_t since, uint64_t due, uint64_t now_us)
{
    uint64_t r = (now_us - since) * 100 / (due > since ? due - since : 1);
    return r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
}

void routing_waits_evidence(struct routing_waits *w, uint64_t now_us, int k,
                            uint32_t *first_pct, uint32_t *total_pct)
{
    *first_pct = 100;
    *total_pct = 100;
    if (now_us < w->quiet_until_us) {
        return; /* nothing overdue, and nothing due yet */
    }
    uint32_t first[ROUTING_WAITS_MAX];
    uint32_t total[ROUTING_WAITS_MAX];
    k = k < 1 ? 1 : k > ROUTING_WAITS_MAX ? ROUTING_WAITS_MAX : k;
    memset(first, 0, (size_t)k * sizeof(first[0])); /* k is small: 2 */
    memset(total, 0, (size_t)k * sizeof(total[0]));
    bool overdue = false;
    uint64_t quiet = UINT64_MAX;
    for (uint64_t m = w->used; m; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (now_us < w->due_us[i]) {
            quiet = w->due_us[i] < quiet ? w->due_us[i] : quiet;
            continue; /* the common case: not due yet */
        }
        if (now_us - w->since_us[i] > STALE_US) {
            continue; /* its end was lost: taken back when needed */
        }
        overdue = true;
        uint64_t f = w->first_due_us[i];
        if (f && now_us > f) {
            keep_top(first, k, overdue_pct(w->since_us[i], f, now_us));
        }
        if (now_us > w->end_due_us[i]) {
            keep_top(total, k,
                     overdue_pct(w->since_us[i], w->end_due_us[i], now_us));
        }
    }
    /* Overdue ones are looked at again by every plan; else none until the
     * next is due (a wait that begins sooner says so). */
    w->quiet_until_us = overdue ? 0 : quiet;
    *first_pct = first[k - 1] > 100 ? first[k - 1] : 100;
    *total_pct = total[k - 1] > 100 ? total[k - 1] : 100;
}
