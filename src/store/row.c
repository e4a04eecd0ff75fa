/*
 * row.c - one request_log row as text: the journal's JSON line, the COPY
 * line, the timestamp format both engines store, and cutting strings to
 * the row's fixed sizes at a UTF-8 boundary.
 *
 * Encoding is by hand (it may run on the event loop when the queue is
 * full); decoding uses jansson (it runs on the writer thread, at replay).
 * The COPY line is what pg.c streams to PostgreSQL.
 */
#include "store/store.h"

#include <jansson.h>
#include <string.h>
#include <time.h>

void store_copy_text(char *dst, size_t n, const char *src)
{
    if (!src) {
        src = "";
    }
    size_t len = strlen(src);
    if (len >= n) {
        len = n - 1;
        /* Back off continuation bytes (10xxxxxx) so a character is never
         * cut in half: PostgreSQL refuses invalid UTF-8. */
        while (len > 0 && ((unsigned char)src[len] & 0xC0) == 0x80) {
            len--;
        }
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

void store_ts_format(int64_t ts_us, char out[32])
{
    time_t secs = (time_t)(ts_us / 1000000);
    long frac = (long)(ts_us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t k = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, 32 - k, ".%06ldZ", frac);
}

/* ---------------------------------------------------------------------
 * The journal line
 * ------------------------------------------------------------------- */

static void put_text(struct buf *b, const char *key, const char *v)
{
    buf_append(b, ",\"", 2);
    buf_append_cstr(b, key);
    buf_append(b, "\":\"", 3);
    buf_append_json_escaped(b, v, strlen(v));
    buf_append(b, "\"", 1);
}

static void put_int(struct buf *b, const char *key, int64_t v)
{
    buf_append(b, ",\"", 2);
    buf_append_cstr(b, key);
    buf_append(b, "\":", 2);
    buf_append_i64(b, v);
}

static void put_bool(struct buf *b, const char *key, bool v)
{
    buf_append(b, ",\"", 2);
    buf_append_cstr(b, key);
    buf_append_cstr(b, v ? "\":true" : "\":false");
}

enum rl_err store_row_encode(const struct store_row *row, struct buf *b)
{
    size_t mark = b->len;
    buf_append_cstr(b, "{\"v\":1");
    put_int(b, "ts_us", row->ts_us);
    put_text(b, "request_id", row->request_id);
    put_text(b, "key_prefix", row->key_prefix);
    put_text(b, "key_id", row->key_id);
    put_text(b, "route", row->route);
    put_text(b, "attempt_log", row->attempt_log);
    put_text(b, "model_requested", row->model_requested);
    put_text(b, "model", row->model);
    put_text(b, "provider", row->provider);
    put_int(b, "status", row->status);
    put_text(b, "error_type", row->error_type);
    put_text(b, "error_code", row->error_code);
    put_bool(b, "stream", row->stream);
    put_int(b, "prompt_tokens", row->prompt_tokens);
    put_int(b, "completion_tokens", row->completion_tokens);
    put_int(b, "cached_tokens", row->cached_tokens);
    put_int(b, "cache_write_tokens", row->cache_write_tokens);
    put_int(b, "reasoning_tokens", row->reasoning_tokens);
    put_bool(b, "usage_estimated", row->usage_estimated);
    put_int(b, "cost_nusd", row->cost_nusd);
    put_int(b, "savings_nusd", row->savings_nusd);
    put_text(b, "cache_status", row->cache_status);
    if (row->has_similarity) {
        /* Similarity is a cosine in [-1, 1]: a millionth is ample. Kept
         * in range, so that the conversion cannot overflow. */
        double sim = row->cache_similarity;
        sim = sim > 1 ? 1 : sim >= -1 ? sim : -1;
        buf_append_cstr(b, ",\"cache_similarity\":");
        buf_append_fixed(b, (int64_t)(sim * 1e6), 6);
    } else {
        buf_append_cstr(b, ",\"cache_similarity\":null");
    }
    put_int(b, "latency_us", (int64_t)row->latency_us);
    put_int(b, "ttft_us", (int64_t)row->ttft_us);
    put_int(b, "upstream_us", (int64_t)row->upstream_us);
    put_int(b, "overhead_us", (int64_t)row->overhead_us);
    put_int(b, "attempts", row->attempts);
    put_bool(b, "client_gone", row->client_gone);
    if (buf_append(b, "}", 1) != RL_OK) {
        b->len = mark; /* the cap was hit somewhere: drop the partial line */
        return RL_E_CAP;
    }
    return RL_OK;
}

/* ---------------------------------------------------------------------
 * The COPY line (PostgreSQL's text format)
 * ------------------------------------------------------------------- */

/* Appends s with COPY text escapes: backslash, tab, newline and carriage
 * return are the bytes that would end a field or a line. */
static void put_copy_text(struct buf *b, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\'   ? "\\\\"
                          : *s == '\t' ? "\\t"
                          : *s == '\n' ? "\\n"
                          : *s == '\r' ? "\\r"
                                       : NULL;
        if (esc) {
            buf_append(b, run, (size_t)(s - run));
            buf_append(b, esc, 2);
            run = s + 1;
        }
    }
    buf_append(b, run, (size_t)(s - run));
}

/* A tab, then the field: text escaped, or \N for "" when empty_null. */
static void copy_text(struct buf *b, const char *s, bool empty_null)
{
    buf_append(b, "\t", 1);
    if (empty_null && !s[0]) {
        buf_append(b, "\\N", 2);
    } else {
        put_copy_text(b, s);
    }
}

static void copy_int(struct buf *b, int64_t v)
{
    buf_append(b, "\t", 1);
    buf_append_i64(b, v);
}

static void copy_bool(struct buf *b, bool v)
{
    buf_append(b, v ? "\tt" : "\tf", 2);
}

/* The longest COPY line: every text byte escaped (2 x 1824), 17 numbers
 * of at most 20 digits and a sign, the timestamp, the similarity (64),
 * tabs and the newline. Reserved first, so no append can fail halfway. */
#define COPY_LINE_MAX 4608

enum rl_err store_row_copy_line(const struct store_row *row, struct buf *b)
{
    if (buf_reserve(b, COPY_LINE_MAX) != RL_OK) {
        return RL_E_CAP;
    }
    char ts[32];
    store_ts_format(row->ts_us, ts);
    buf_append_cstr(b, ts);
    copy_text(b, row->request_id, false);
    copy_text(b, row->key_prefix, false);
    copy_text(b, row->model_requested, false);
    copy_text(b, row->model, false);
    copy_text(b, row->provider, false);
    copy_int(b, row->status);
    copy_text(b, row->error_type, true);
    copy_text(b, row->error_code, true);
    copy_bool(b, row->stream);
    copy_int(b, row->prompt_tokens);
    copy_int(b, row->completion_tokens);
    copy_int(b, row->cached_tokens);
    copy_int(b, row->cache_write_tokens);
    copy_int(b, row->reasoning_tokens);
    copy_bool(b, row->usage_estimated);
    copy_int(b, row->cost_nusd);
    copy_int(b, row->savings_nusd);
    copy_text(b, row->cache_status[0] ? row->cache_status : "miss", false);
    if (row->has_similarity) {
        char sim[64];
        snprintf(sim, sizeof(sim), "\t%.6f", row->cache_similarity);
        buf_append_cstr(b, sim);
    } else {
        buf_append(b, "\t\\N", 3);
    }
    copy_int(b, (int64_t)row->latency_us);
    copy_int(b, (int64_t)row->ttft_us);
    copy_int(b, (int64_t)row->upstream_us);
    copy_int(b, (int64_t)row->overhead_us);
    copy_int(b, row->attempts);
    copy_bool(b, row->client_gone);
    copy_text(b, row->key_id, false);
    copy_text(b, row->route, false);
    copy_text(b, row->attempt_log, false);
    return buf_append(b, "\n", 1);
}

/* ---------------------------------------------------------------------
 * Decoding the journal line
 * ------------------------------------------------------------------- */

static bool get_text(json_t *o, const char *key, char *dst, size_t n)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) {
        return false;
    }
    store_copy_text(dst, n, json_string_value(v));
    return true;
}

static bool get_int(json_t *o, const char *key, int64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) {
        return false;
    }
    *out = (int64_t)json_integer_value(v);
    return true;
}

static bool get_bool(json_t *o, const char *key, bool *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v)) {
        return false;
    }
    *out = json_is_true(v);
    return true;
}

static bool decode_numbers(json_t *o, struct store_row *row)
{
    int64_t status = 0;
    int64_t attempts = 0;
    int64_t lat = 0;
    int64_t ttft = 0;
    int64_t up = 0;
    int64_t over = 0;
    bool ok = get_int(o, "ts_us", &row->ts_us) &&
              get_int(o, "status", &status) &&
              get_int(o, "prompt_tokens", &row->prompt_tokens) &&
              get_int(o, "completion_tokens", &row->completion_tokens) &&
              get_int(o, "cached_tokens", &row->cached_tokens) &&
              get_int(o, "cache_write_tokens", &row->cache_write_tokens) &&
              get_int(o, "reasoning_tokens", &row->reasoning_tokens) &&
              get_int(o, "cost_nusd", &row->cost_nusd) &&
              get_int(o, "savings_nusd", &row->savings_nusd) &&
              get_int(o, "latency_us", &lat) &&
              get_int(o, "ttft_us", &ttft) &&
              get_int(o, "upstream_us", &up) &&
              get_int(o, "overhead_us", &over) &&
              get_int(o, "attempts", &attempts);
    row->status = (int32_t)status;
    row->attempts = (int32_t)attempts;
    row->latency_us = (uint64_t)lat;
    row->ttft_us = (uint64_t)ttft;
    row->upstream_us = (uint64_t)up;
    row->overhead_us = (uint64_t)over;
    /* A cosine is in [-1, 1]; anything else is not one of ours and is
     * taken as no similarity (1e300 overflowed the encoder's conversion to
     * millionths, undefined behaviour; fuzz_journal). */
    json_t *sim = json_object_get(o, "cache_similarity");
    double v = json_is_number(sim) ? json_number_value(sim) : 2;
    row->has_similarity = v >= -1 && v <= 1;
    row->cache_similarity = row->has_similarity ? v : 0;
    return ok;
}

enum rl_err store_row_decode(const char *line, size_t len,
                             struct store_row *row)
{
    memset(row, 0, sizeof(*row));
    json_error_t jerr;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(o)) {
        json_decref(o);
        return RL_E_INVALID_JSON;
    }
    bool ok =
        get_text(o, "request_id", row->request_id, sizeof(row->request_id)) &&
        row->request_id[0] &&
        get_text(o, "key_prefix", row->key_prefix, sizeof(row->key_prefix)) &&
        get_text(o, "model_requested", row->model_requested,
                 sizeof(row->model_requested)) &&
        get_text(o, "model", row->model, sizeof(row->model)) &&
        get_text(o, "provider", row->provider, sizeof(row->provider)) &&
        get_text(o, "error_type", row->error_type, sizeof(row->error_type)) &&
        get_text(o, "error_code", row->error_code, sizeof(row->error_code)) &&
        get_text(o, "cache_status", row->cache_status,
                 sizeof(row->cache_status)) &&
        get_bool(o, "stream", &row->stream) &&
        get_bool(o, "usage_estimated", &row->usage_estimated) &&
        get_bool(o, "client_gone", &row->client_gone) &&
        decode_numbers(o, row);
    /* Lines journaled before key_id existed have none: "" is right. */
    get_text(o, "key_id", row->key_id, sizeof(row->key_id));
    /* Nor route and attempt_log before migration 006. */
    get_text(o, "route", row->route, sizeof(row->route));
    get_text(o, "attempt_log", row->attempt_log, sizeof(row->attempt_log));
    json_decref(o);
    return ok ? RL_OK : RL_E_INVALID_JSON;
}
