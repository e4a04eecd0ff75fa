/*
 * accounting.c - the end of every request: price it, write its one line to
 * the request log. Runs exactly once per request, from req_free().
 *
 * The line never holds the API key (only its display prefix) nor any
 * prompt or answer text.
 */
#include "accounting/accounting.h"

#include <inttypes.h>
#include <string.h>

#include "config/config.h"
#include "request.h"
#include "util/log.h"

/* Microseconds as milliseconds with three decimals. */
#define MS(us) (unsigned long long)((us) / 1000), (unsigned)((us) % 1000)

void accounting_finish(struct req *r)
{
    if (r->accounted) {
        return;
    }
    r->accounted = true;
    if (r->model && r->usage.present) {
        r->cost_nusd = price_cost_nusd(r->model, &r->usage);
    }
    uint64_t total = r->end_us > r->start_us ? r->end_us - r->start_us : 0;
    uint64_t overhead = total > r->upstream_us ? total - r->upstream_us : 0;
    /* Path and requested model come from the client: escape them. */
    struct buf path;
    struct buf asked;
    buf_init(&path, 1024);
    buf_init(&asked, 1024);
    buf_append(&path, "", 0);
    buf_append(&asked, "", 0);
    buf_append_json_escaped(&path, r->path, strlen(r->path));
    if (r->model_requested) {
        buf_append_json_escaped(&asked, r->model_requested,
                                strlen(r->model_requested));
    }
    const char *model = r->model ? r->model->name : "";
    const char *provider = r->model ? r->model->provider->name : "";
    log_write(LOG_INFO, "request",
              "\"request_id\":\"%s\",\"method\":\"%s\",\"path\":\"%s\","
              "\"status\":%d,\"key\":\"%s\",\"model_requested\":\"%s\","
              "\"model\":\"%s\",\"provider\":\"%s\",\"stream\":%s,"
              "\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
              ",\"cached_tokens\":%" PRId64 ",\"usage_reported\":%s,"
              "\"cost_usd\":%" PRId64 ".%09" PRId64 ",\"latency_ms\":%llu.%03u,"
              "\"ttft_ms\":%llu.%03u,\"upstream_ms\":%llu.%03u,"
              "\"overhead_ms\":%llu.%03u,\"attempts\":%d,"
              "\"error_type\":%s%s%s,\"error_code\":%s%s%s,"
              "\"client_gone\":%s",
              r->id, r->method, path.p, r->status, r->key_prefix, asked.p,
              model, provider,
              r->streamed ? "true" : "false", r->usage.prompt_tokens,
              r->usage.completion_tokens, r->usage.cached_tokens,
              r->usage.present ? "true" : "false",
              r->cost_nusd / 1000000000, r->cost_nusd % 1000000000,
              MS(total), MS(r->ttft_us), MS(r->upstream_us), MS(overhead),
              r->attempts, r->error_type ? "\"" : "",
              r->error_type ? r->error_type : "null",
              r->error_type ? "\"" : "", r->error_code ? "\"" : "",
              r->error_code ? r->error_code : "null",
              r->error_code ? "\"" : "", r->client_gone ? "true" : "false");
    buf_free(&path);
    buf_free(&asked);
}
