/*
 * slots.c - the pure parts of Redis Cluster support: the CRC16 slot of a
 * key (with the hash-tag rule), where a command's key is, MOVED and ASK
 * replies, and the slot map built from CLUSTER SLOTS. No I/O, no loop:
 * client.c routes with these, tests/unit/test_redis_cluster.c checks them.
 *
 * The rules are those of the Redis Cluster specification
 * (https://redis.io/docs/reference/cluster-spec/): 16384 slots, the slot
 * of a key is CRC16(key) mod 16384, and a key holding "{...}" with at
 * least one byte between its first '{' and the next '}' hashes only that
 * part, so that keys sharing a tag share a slot. Read redis_key_slot()
 * and redis_slotmap_from_reply() first.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "redis/internal.h"
#include "util/alloc.h"

/* ---------------------------------------------------------------------
 * CRC16 and slots
 * ------------------------------------------------------------------- */

static uint16_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* The table of the XModem CRC16 (polynomial 0x1021), one entry per
 * byte value: the remainder of that byte shifted in. */
static void crc_init(void)
{
    for (unsigned b = 0; b < 256; b++) {
        uint16_t c = (uint16_t)(b << 8);
        for (int i = 0; i < 8; i++) {
            c = (uint16_t)(c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1);
        }
        crc_table[b] = c;
    }
}

uint16_t redis_crc16(const char *p, size_t len)
{
    pthread_once(&crc_once, crc_init);
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)p[i];
        crc = (uint16_t)((crc << 8) ^ crc_table[((crc >> 8) ^ b) & 0xff]);
    }
    return crc;
}

int redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open + 1 - key);
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    return redis_crc16(key, len) & (REDIS_SLOTS - 1);
}

/* True when the n bytes at p are word, whatever the case. */
static bool word_is(const char *p, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

bool redis_command_key(int argc, const char **argv, const size_t *lens,
                       const char **key, size_t *len)
{
    static const char *const keyless[] = {
        "PING",   "ECHO",    "TIME",   "INFO",     "AUTH",   "SELECT",
        "HELLO",  "CLUSTER", "SCRIPT", "FUNCTION", "CONFIG", "CLIENT",
        "COMMAND", "DBSIZE", "FLUSHALL", "FLUSHDB", "READONLY",
        "READWRITE", "ASKING", "ROLE", "QUIT", "LASTSAVE", "WAIT",
    };
    if (argc < 1) {
        return false;
    }
    size_t n0 = lens ? lens[0] : strlen(argv[0]);
    for (size_t i = 0; i < sizeof(keyless) / sizeof(keyless[0]); i++) {
        if (word_is(argv[0], n0, keyless[i])) {
            return false;
        }
    }
    int at = 1;
    if (word_is(argv[0], n0, "EVAL") || word_is(argv[0], n0, "EVALSHA") ||
        word_is(argv[0], n0, "EVAL_RO") ||
        word_is(argv[0], n0, "EVALSHA_RO") || word_is(argv[0], n0, "FCALL")) {
        if (argc < 4) {
            return false;
        }
        size_t nl = lens ? lens[2] : strlen(argv[2]);
        if (nl == 0 || nl > 6 || strspn(argv[2], "0123456789") < nl ||
            (nl == 1 && argv[2][0] == '0')) {
            return false; /* numkeys 0, or not a number */
        }
        at = 3;
    }
    if (argc <= at) {
        return false;
    }
    *key = argv[at];
    *len = lens ? lens[at] : strlen(argv[at]);
    return true;
}

/* ---------------------------------------------------------------------
 * MOVED and ASK
 * ------------------------------------------------------------------- */

bool redis_redirect_parse(const char *s, size_t len,
                          struct redis_redirect *out)
{
    memset(out, 0, sizeof(*out));
    size_t skip;
    if (len > 6 && memcmp(s, "MOVED ", 6) == 0) {
        out->kind = REDIS_REDIRECT_MOVED;
        skip = 6;
    } else if (len > 4 && memcmp(s, "ASK ", 4) == 0) {
        out->kind = REDIS_REDIRECT_ASK;
        skip = 4;
    } else {
        return false;
    }
    const char *p = s + skip;
    const char *end = s + len;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    long slot = 0;
    if (!sp ||
        !redis_parse_num(p, (size_t)(sp - p), 0, REDIS_SLOTS - 1, &slot)) {
        return false;
    }
    const char *hp = sp + 1;
    const char *colon = NULL;
    for (const char *q = hp; q < end; q++) {
        if (*q == ':') {
            colon = q;
        }
    }
    long port = 0;
    if (!colon || !redis_parse_num(colon + 1, (size_t)(end - colon - 1), 1,
                                   65535, &port)) {
        return false;
    }
    const char *h = hp;
    size_t hl = (size_t)(colon - hp);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof(out->host) || memchr(h, ' ', hl)) {
        return false;
    }
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    out->slot = (int)slot;
    out->port = (uint16_t)port;
    return true;
}

/* ---------------------------------------------------------------------
 * The slot map
 * ------------------------------------------------------------------- */

void redis_slotmap_init(struct redis_slotmap *m)
{
    for (int i = 0; i < REDIS_SLOTS; i++) {
        m->owner[i] = REDIS_NO_NODE;
    }
    m->addrs = NULL;
    m->naddrs = 0;
    m->capaddrs = 0;
}

void redis_slotmap_free(struct redis_slotmap *m)
{
    free(m->addrs);
    m->addrs = NULL;
    m->naddrs = m->capaddrs = 0;
}

int redis_slotmap_addr(struct redis_slotmap *m, const char *host,
                       uint16_t port)
{
    size_t hl = strlen(host);
    if (hl >= sizeof(m->addrs[0].host)) {
        return -1;
    }
    for (size_t i = 0; i < m->naddrs; i++) {
        if (m->addrs[i].port == port && strcmp(m->addrs[i].host, host) == 0) {
            return (int)i;
        }
    }
    if (m->naddrs == REDIS_ADDRS_MAX) {
        return -1;
    }
    if (m->naddrs == m->capaddrs) {
        m->capaddrs = m->capaddrs ? 2 * m->capaddrs : 8;
        m->addrs = rl_realloc(m->addrs, m->capaddrs * sizeof(*m->addrs));
    }
    struct redis_addr *a = &m->addrs[m->naddrs];
    memcpy(a->host, host, hl + 1);
    a->port = port;
    return (int)m->naddrs++;
}

int redis_slotmap_moved(struct redis_slotmap *m,
                        const struct redis_redirect *r,
                        const char *self_host)
{
    int at = redis_slotmap_addr(m, r->host[0] ? r->host : self_host,
                                r->port);
    if (at >= 0) {
        m->owner[r->slot] = (uint16_t)at;
    }
    return at;
}

/* The master of one CLUSTER SLOTS entry, checked: its host (self_host
 * when the reply leaves it out) into host, its port; false when e is not
 * [start, end, [host, port, ...], ...] with start <= end < 16384. */
static bool entry_check(const redisReply *e, const char *self_host,
                        char *host, size_t host_len, uint16_t *port)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER ||
        e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_ARRAY ||
        e->element[2]->elements < 2) {
        return false;
    }
    long long lo = e->element[0]->integer;
    long long hi = e->element[1]->integer;
    const redisReply *h = e->element[2]->element[0];
    const redisReply *p = e->element[2]->element[1];
    if (lo < 0 || hi < lo || hi >= REDIS_SLOTS ||
        p->type != REDIS_REPLY_INTEGER || p->integer <= 0 ||
        p->integer > 65535) {
        return false;
    }
    const char *src = self_host;
    size_t len = strlen(self_host);
    if (h->type == REDIS_REPLY_STRING && h->len > 0 &&
        !(h->len == 1 && h->str[0] == '?')) {
        src = h->str;
        len = h->len;
    } else if (h->type != REDIS_REPLY_STRING && h->type != REDIS_REPLY_NIL) {
        return false;
    }
    if (len >= host_len || memchr(src, '\0', len)) {
        return false;
    }
    memcpy(host, src, len);
    host[len] = '\0';
    *port = (uint16_t)p->integer;
    return true;
}

bool redis_slotmap_from_reply(struct redis_slotmap *m,
                              const struct redisReply *reply,
                              const char *self_host)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        return false;
    }
    char host[256];
    uint16_t port;
    for (size_t i = 0; i < reply->elements; i++) {
        if (!entry_check(reply->element[i], self_host, host, sizeof(host),
                         &port)) {
            return false;
        }
    }
    for (int s = 0; s < REDIS_SLOTS; s++) {
        m->owner[s] = REDIS_NO_NODE;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        entry_check(e, self_host, host, sizeof(host), &port);
        int at = redis_slotmap_addr(m, host, port);
        if (at < 0) {
            continue; /* over REDIS_ADDRS_MAX: those slots stay unserved */
        }
        for (long long s = e->element[0]->integer;
             s <= e->element[1]->integer; s++) {
            m->owner[s] = (uint16_t)at;
        }
    }
    return true;
}

int redis_slotmap_uncovered(const struct redis_slotmap *m)
{
    int n = 0;
    for (int s = 0; s < REDIS_SLOTS; s++) {
        n += m->owner[s] == REDIS_NO_NODE;
    }
    return n;
}
