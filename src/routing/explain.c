/*
 * explain.c - the x-relay-route header (and the request log's route):
 * what the plan chose and why each other candidate was passed over, with
 * the figures the plan had for it.
 *
 *   chosen=mistral-small 967ms $0.00015; gpt-4o-mini 1612ms $0.00024:
 *   dearer; gemini-flash-lite 1700ms $0.00012: 1700ms > 1650ms; tiny:
 *   not allowed
 *
 * One item per candidate: its name, its predicted latency (the figure the
 * bar compares: "ttft 480ms" for a stream bound by its first-token
 * target, else the total) and its predicted cost, when the plan predicted
 * it, then its reason. The reasons are written by routing.c and
 * candidates.c into routing_candidate.why as "name: reason"; this file
 * only assembles. No printf: it runs for every request (util/fmt.h).
 */
#include <string.h>

#include "config/config.h"
#include "routing/routing.h"
#include "util/fmt.h"

/* Writes cost nusd as dollars with two significant digits: $0.000012.
 * Powers of ten are looked up, not divided out: this runs for every
 * candidate of every request. */
static void put_usd(struct fmt *f, int64_t nusd)
{
    static const int64_t pow10[] = {
        1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
        1000000000,
    };
    if (nusd <= 0) {
        fmt_str(f, "$0");
        return;
    }
    if (nusd >= 1000000000) {
        fmt_str(f, "$");
        fmt_u64(f, (uint64_t)(nusd / 1000000000), 0);
        fmt_str(f, ".");
        fmt_u64(f, (uint64_t)(nusd % 1000000000 / 10000000), 2);
        return;
    }
    unsigned d = 2; /* digits of nusd, at least the two kept */
    while (d < 9 && nusd >= pow10[d]) {
        d++;
    }
    fmt_str(f, "$0.");
    fmt_u64(f, (uint64_t)(nusd / pow10[d - 2]), 11 - d);
}

/* Writes c's predicted latency (the bar's figure) and cost. */
static void put_figures(struct fmt *f, const struct routing_plan *plan,
                        const struct routing_candidate *c)
{
    fmt_str(f, plan->ttft_bound ? " ttft " : " ");
    fmt_u64(f, plan->ttft_bound ? c->ttft_ms : c->total_ms, 0);
    fmt_str(f, "ms ");
    put_usd(f, c->cost_nusd);
}

/* Appends item to out (used bytes *at) unless it would pass len - 4, then
 * "..." once. Returns false once full. */
static bool append_item(char *out, size_t len, size_t *at, const char *item)
{
    size_t n = strlen(item);
    size_t sep = *at ? 2 : 0;
    if (*at + sep + n + 4 > len) {
        if (*at + 4 <= len) {
            memcpy(out + *at, "...", 4);
            *at += 3;
        }
        return false;
    }
    if (sep) {
        memcpy(out + *at, "; ", 2);
    }
    memcpy(out + *at + sep, item, n + 1);
    *at += sep + n;
    return true;
}

/* Writes the item of passed-over candidate c into item (cap bytes): its
 * name, its figures when predicted, its reason (c->why after the name). */
static void passed_over(const struct routing_plan *plan,
                        const struct routing_candidate *c, char *item,
                        size_t cap)
{
    struct fmt f;
    fmt_init(&f, item, cap);
    size_t n = strlen(c->model->name);
    const char *reason = c->why;
    if (strncmp(c->why, c->model->name, n) == 0 && c->why[n] == ':') {
        reason = c->why + n;
        fmt_str(&f, c->model->name);
        if (c->predicted) {
            put_figures(&f, plan, c);
        }
    }
    fmt_str(&f, reason);
}

size_t routing_explain(const struct routing_plan *plan, char *out,
                       size_t len)
{
    size_t at = 0;
    if (len == 0) {
        return 0;
    }
    out[0] = '\0';
    char item[200];
    if (plan->norder > 0) {
        const struct routing_candidate *c = &plan->cand[0];
        struct fmt f;
        fmt_init(&f, item, sizeof(item));
        fmt_str(&f, "chosen=");
        fmt_str(&f, c->model->name);
        put_figures(&f, plan, c);
        fmt_str(&f, c->long_shot ? " long shot" : c->probe ? " probe" : "");
        fmt_str(&f, c->explore ? " explore" : "");
        fmt_str(&f, c->bargain ? " bargain" : "");
        if (!append_item(out, len, &at, item)) {
            return at;
        }
    }
    if (plan->target_missed &&
        !append_item(out, len, &at, "target missed")) {
        return at;
    }
    for (size_t i = 0; i < plan->ncand; i++) {
        if (plan->cand[i].why[0]) {
            passed_over(plan, &plan->cand[i], item, sizeof(item));
            if (!append_item(out, len, &at, item)) {
                break;
            }
        }
    }
    return at;
}
