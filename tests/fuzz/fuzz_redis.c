/*
 * fuzz_redis.c - what a Redis server (or something posing as one) sends
 * on a connection: the RESP bytes go, in reads of a few bytes, to hiredis's
 * reader as src/redis/node.c makes (redis_reader_new: aggregates bounded)
 * and feeds it, and each reply to the code of Relay's that reads replies: a -MOVED/-ASK redirection and the slot map
 * it updates (redis/slots.c), a CLUSTER SLOTS answer (the whole map), the
 * rate limiter's reserve answer (limits/redis.c), and an exact cache
 * entry's value (cache.c) with the completion it holds replayed as stream
 * chunks (cache/entry.c).
 *
 * Contracts checked besides "no crash, no leak, no undefined behaviour":
 * a redirection names a slot in 0..16383 and a NUL-terminated host; a
 * refused CLUSTER SLOTS leaves the map as it was, an accepted one points
 * every slot at a known address or at nobody, and the uncovered count
 * agrees; a reserve answer taken has every outcome in range; a cache hit's
 * completion lies inside the value, and every chunk replayed from it is
 * one well-formed JSON object.
 */
#include <hiredis/hiredis.h>

#include "cache/cache.h"
#include "cache/internal.h"
#include "fuzz.h"
#include "limits/internal.h"
#include "redis/internal.h"

static struct redis_slotmap map;
static uint16_t before[REDIS_SLOTS];

static void check_map(const struct redis_slotmap *m)
{
    FUZZ_CHECK(m->naddrs <= REDIS_ADDRS_MAX);
    int nobody = 0;
    for (int s = 0; s < REDIS_SLOTS; s++) {
        FUZZ_CHECK(m->owner[s] == REDIS_NO_NODE || m->owner[s] < m->naddrs);
        nobody += m->owner[s] == REDIS_NO_NODE;
    }
    FUZZ_CHECK(redis_slotmap_uncovered(m) == nobody);
    for (size_t i = 0; i < m->naddrs; i++) {
        FUZZ_CHECK(memchr(m->addrs[i].host, '\0', sizeof(m->addrs[i].host)));
    }
}

static void redirect(const redisReply *r)
{
    struct redis_redirect rd;
    if (!redis_redirect_parse(r->str, r->len, &rd)) {
        return;
    }
    FUZZ_CHECK(rd.slot >= 0 && rd.slot < REDIS_SLOTS);
    FUZZ_CHECK(memchr(rd.host, '\0', sizeof(rd.host)));
    int at = redis_slotmap_moved(&map, &rd, "10.0.0.1");
    FUZZ_CHECK(at < 0 || map.owner[rd.slot] == at);
    FUZZ_CHECK(map.naddrs <= REDIS_ADDRS_MAX);
    FUZZ_CHECK(at < 0 || memchr(map.addrs[at].host, '\0',
                                sizeof(map.addrs[at].host)));
}

/* The whole map is checked only for an array: anything else is refused
 * before it is looked at (and 16384 slots per reply would be most of the
 * time spent). */
static void slots(const redisReply *r)
{
    size_t naddrs = map.naddrs;
    if (r->type != REDIS_REPLY_ARRAY) {
        FUZZ_CHECK(!redis_slotmap_from_reply(&map, r, "10.0.0.2"));
        FUZZ_CHECK(map.naddrs == naddrs);
        return;
    }
    memcpy(before, map.owner, sizeof(before));
    if (!redis_slotmap_from_reply(&map, r, "10.0.0.2")) {
        FUZZ_CHECK(memcmp(before, map.owner, sizeof(before)) == 0);
        FUZZ_CHECK(map.naddrs == naddrs);
        return;
    }
    check_map(&map);
}

static void reserve(const redisReply *r)
{
    struct limits_raw raws[LIMITS_BATCH_MAX];
    int n = r->type == REDIS_REPLY_ARRAY && r->elements > 0
                ? (int)((r->elements - 1) / 7)
                : 1;
    if (n < 1 || n > LIMITS_BATCH_MAX) {
        n = 1;
    }
    if (!limits_redis_parse_reserve(r, n, raws)) {
        return;
    }
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(raws[i].outcome >= LIMITS_ADMITTED &&
                   raws[i].outcome <= LIMITS_OVER_BUDGET);
    }
}

static void on_chunk(void *ctx, struct str chunk)
{
    (void)ctx;
    if (!fuzz_is_object(chunk.p, chunk.len)) {
        fuzz_show("replayed chunk", chunk.p, chunk.len);
        FUZZ_CHECK(!"a replayed chunk is one JSON object");
    }
}

static void entry(const redisReply *r)
{
    struct str value = {r->str, r->len};
    struct cache_hit hit;
    char model[256];
    if (!cache_entry_decode(value, &hit, model, sizeof(model))) {
        return;
    }
    FUZZ_CHECK(hit.completion.p >= r->str &&
               hit.completion.p + hit.completion.len <= r->str + r->len);
    FUZZ_CHECK(hit.model == model && memchr(model, '\0', sizeof(model)));
    cache_replay(hit.completion, on_chunk, NULL);
}

static void look_at(const redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        redirect(r);
    }
    if (r->type == REDIS_REPLY_STRING) {
        entry(r);
    }
    slots(r);
    reserve(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in;
    size_t step = fuzz_split(data, &size, &in);
    if (!step) {
        return 0;
    }
    redis_slotmap_init(&map);
    redisReader *rd = redis_reader_new();
    bool broken = false;
    for (size_t off = 0; !broken && off < size; off += step) {
        size_t take = step < size - off ? step : size - off;
        if (redisReaderFeed(rd, in + off, take) != REDIS_OK) {
            break;
        }
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(rd, &reply) != REDIS_OK) {
                broken = true; /* node.c drops the connection */
                break;
            }
            if (!reply) {
                break;
            }
            look_at(reply);
            freeReplyObject(reply);
        }
    }
    redisReaderFree(rd);
    redis_slotmap_free(&map);
    free(in);
    return 0;
}
