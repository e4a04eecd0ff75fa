/*
 * logwriter.c - make bench-logwriter: the request log writer's insert path
 * (store_pg.insert: a batch in one COPY, plus its rollup, in one
 * transaction) from the library objects, against the PostgreSQL of
 * DATABASE_URL, in batches of 2000 rows as the writer sends them. Prints
 * rows per second. It says what the store costs, not the gateway: run it
 * against a flat log (RELAY_MIGRATIONS of every migration but 008) and a
 * partitioned one (all migrations) to compare (docs/decisions.md, 27).
 *
 * BENCH_ROWS (default 200000) rows, ts spread over the last hour, ids
 * unique per run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store.h"
#include "util/clock.h"

#define BATCH 2000

static void row_at(struct store_row *r, int64_t ts_us, const char *run,
                   long i)
{
    memset(r, 0, sizeof(*r));
    r->ts_us = ts_us;
    snprintf(r->request_id, sizeof(r->request_id), "req_%.10s%014ld", run,
             i % 100000000000000L);
    store_copy_text(r->key_prefix, sizeof(r->key_prefix), "glw_abcd");
    store_copy_text(r->key_id, sizeof(r->key_id), "key_0123456789abcdef");
    store_copy_text(r->model_requested, sizeof(r->model_requested), "auto");
    store_copy_text(r->model, sizeof(r->model), i % 3 ? "small" : "large");
    store_copy_text(r->provider, sizeof(r->provider), "fake");
    store_copy_text(r->cache_status, sizeof(r->cache_status), "miss");
    store_copy_text(r->route, sizeof(r->route), "small: 120ms $0.000012");
    store_copy_text(r->attempt_log, sizeof(r->attempt_log),
                    "[{\"model\":\"small\",\"outcome\":\"ok\",\"status\":200,"
                    "\"ms\":120,\"hedge\":false}]");
    r->status = i % 50 ? 200 : 429;
    r->attempts = 1;
    r->prompt_tokens = 20 + i % 100;
    r->completion_tokens = 12;
    r->cost_nusd = 1234 + i % 7;
    r->latency_us = 100000 + (uint64_t)(i % 5000) * 10;
    r->upstream_us = r->latency_us - 300;
    r->overhead_us = 300;
    r->stream = i % 2;
}

int main(void)
{
    const char *url = getenv("DATABASE_URL");
    if (!url || !*url) {
        fprintf(stderr, "bench-logwriter: set DATABASE_URL\n");
        return 2;
    }
    long n = getenv("BENCH_ROWS") ? strtol(getenv("BENCH_ROWS"), NULL, 10)
                                  : 200000;
    char err[1024] = "";
    struct store_conn *c = store_pg.connect(url, err, sizeof(err));
    int napplied = 0;
    if (!c || store_migrate(&store_pg, c, &napplied, err, sizeof(err)) !=
                  RL_OK) {
        fprintf(stderr, "bench-logwriter: %s\n", err);
        return 1;
    }
    struct store_maintenance m;
    store_partitions_maintain(&store_pg, c, (int64_t)(clock_wall_ms() / 1000),
                              0, &m, err, sizeof(err));
    char run[11];
    snprintf(run, sizeof(run), "%010lld",
             (long long)(clock_wall_ms() % 10000000000LL));
    struct store_row *rows = calloc(BATCH, sizeof(*rows));
    int64_t now_us = (int64_t)clock_wall_ms() * 1000;
    uint64_t t0 = clock_now_us();
    for (long done = 0; done < n;) {
        size_t k = n - done < BATCH ? (size_t)(n - done) : BATCH;
        for (size_t j = 0; j < k; j++) {
            long i = done + (long)j;
            row_at(&rows[j], now_us - 3600000000LL + i * 3600000000LL / n,
                   run, i);
        }
        if (store_pg.insert(c, rows, k, err, sizeof(err)) != RL_OK) {
            fprintf(stderr, "bench-logwriter: insert: %s\n", err);
            return 1;
        }
        done += (long)k;
    }
    double s = (double)(clock_now_us() - t0) / 1e6;
    printf("logwriter: %ld rows in %.2f s: %.0f rows/s (%.1f us/row), "
           "batches of %d, COPY + rollup\n", n, s, n / s, s * 1e6 / n,
           BATCH);
    free(rows);
    store_pg.disconnect(c);
    return 0;
}
