/*
 * url.c - parsing redis:// URLs, a pure function apart from the client so
 * that `relay config check` and the tests can call it alone.
 *
 * Accepted: redis://[[user]:password@]host[:port][,host[:port]...][/db]
 * [?cluster=yes|no|auto]. TLS (rediss://), Unix sockets and any other
 * query parameter are refused, not guessed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis/internal.h"

/* Writes a message and returns RL_E_CONFIG. */
static enum rl_err fail(char *msg, size_t msg_len, const char *what)
{
    if (msg && msg_len) {
        snprintf(msg, msg_len, "redis URL: %s", what);
    }
    return RL_E_CONFIG;
}

bool redis_parse_num(const char *p, size_t n, long lo, long hi, long *out)
{
    if (n == 0 || n > 9) {
        return false;
    }
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        v = v * 10 + (p[i] - '0');
    }
    if (v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

/* Splits "host[:port]" or "[v6][:port]" of n bytes at p into out. */
static enum rl_err parse_hostport(const char *p, size_t n,
                                  struct redis_seed *out, char *msg,
                                  size_t msg_len)
{
    const char *host = p;
    size_t hlen = n;
    const char *port = NULL;
    size_t plen = 0;
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);
        if (!close) {
            return fail(msg, msg_len, "unclosed '[' in the host");
        }
        host = p + 1;
        hlen = (size_t)(close - host);
        size_t rest = n - (size_t)(close + 1 - p);
        if (rest > 0) {
            if (close[1] != ':') {
                return fail(msg, msg_len, "junk after ']' in the host");
            }
            port = close + 2;
            plen = rest - 1;
        }
    } else {
        const char *colon = memchr(p, ':', n);
        if (colon) {
            hlen = (size_t)(colon - p);
            port = colon + 1;
            plen = n - hlen - 1;
        }
    }
    if (hlen == 0) {
        return fail(msg, msg_len, "no host");
    }
    if (hlen >= sizeof(out->host)) {
        return fail(msg, msg_len, "host name too long");
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    long v = 6379;
    if (port && !redis_parse_num(port, plen, 1, 65535, &v)) {
        return fail(msg, msg_len, "the port is not a number in 1..65535");
    }
    out->port = (uint16_t)v;
    return RL_OK;
}

/* Reads the addresses, comma-separated, of the n bytes at p. */
static enum rl_err parse_seeds(const char *p, size_t n, struct redis_url *out,
                               char *msg, size_t msg_len)
{
    const char *end = p + n;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        if (out->nseeds == REDIS_SEEDS_MAX) {
            return fail(msg, msg_len, "more than 8 addresses");
        }
        enum rl_err err = parse_hostport(p, (size_t)(stop - p),
                                         &out->seeds[out->nseeds], msg,
                                         msg_len);
        if (err != RL_OK) {
            return err;
        }
        out->nseeds++;
        if (!comma) {
            break;
        }
        p = comma + 1;
    }
    memcpy(out->host, out->seeds[0].host, sizeof(out->host));
    out->port = out->seeds[0].port;
    return RL_OK;
}

/* Reads "cluster=yes|no|auto" (the only parameter) of the n bytes at q. */
static enum rl_err parse_query(const char *q, size_t n, struct redis_url *out,
                               char *msg, size_t msg_len)
{
    static const struct {
        const char *text;
        enum redis_cluster_mode mode;
    } modes[] = {
        {"cluster=yes", REDIS_CLUSTER_YES}, {"cluster=1", REDIS_CLUSTER_YES},
        {"cluster=no", REDIS_CLUSTER_NO},   {"cluster=0", REDIS_CLUSTER_NO},
        {"cluster=auto", REDIS_CLUSTER_AUTO},
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strlen(modes[i].text) == n && memcmp(q, modes[i].text, n) == 0) {
            out->cluster = modes[i].mode;
            return RL_OK;
        }
    }
    return fail(msg, msg_len, "the only query parameter is cluster=yes, "
                              "cluster=no or cluster=auto");
}

enum rl_err redis_url_parse(const char *url, struct redis_url *out,
                            char *msg, size_t msg_len)
{
    memset(out, 0, sizeof(*out));
    if (!url || strncmp(url, "redis://", 8) != 0) {
        return fail(msg, msg_len, "must start with redis://");
    }
    const char *p = url + 8;
    const char *end = p + strlen(p);
    if (strchr(p, '#')) {
        return fail(msg, msg_len, "a '#' fragment is not supported");
    }
    const char *at = strrchr(p, '@');
    const char *query = strchr(at ? at : p, '?');
    if (query) {
        enum rl_err err = parse_query(query + 1, (size_t)(end - query - 1),
                                      out, msg, msg_len);
        if (err != RL_OK) {
            return err;
        }
        end = query;
    }
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) {
            return fail(msg, msg_len, "user without ':password' before '@'");
        }
        size_t plen = (size_t)(at - colon - 1);
        if (plen >= sizeof(out->password)) {
            return fail(msg, msg_len, "password too long");
        }
        memcpy(out->password, colon + 1, plen);
        out->password[plen] = '\0';
        p = at + 1;
    }
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *hp_end = slash ? slash : end;
    enum rl_err err = parse_seeds(p, (size_t)(hp_end - p), out, msg,
                                  msg_len);
    if (err != RL_OK) {
        return err;
    }
    if (slash && slash + 1 < end) {
        long db = 0;
        if (!redis_parse_num(slash + 1, (size_t)(end - slash - 1), 0,
                             1000000, &db)) {
            return fail(msg, msg_len, "the database after '/' is not a "
                                      "number");
        }
        out->db = (int)db;
    }
    if (out->nseeds > 1 && out->cluster == REDIS_CLUSTER_NO) {
        return fail(msg, msg_len, "several addresses are the seeds of a "
                                  "Redis Cluster: not with cluster=no");
    }
    if (out->nseeds > 1) {
        out->cluster = REDIS_CLUSTER_YES;
    }
    if (out->db != 0 && out->cluster == REDIS_CLUSTER_YES) {
        return fail(msg, msg_len, "Redis Cluster has only database 0: "
                                  "remove the /db or make it /0");
    }
    return RL_OK;
}
