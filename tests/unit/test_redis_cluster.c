/*
 * test_redis_cluster.c - unit tests of Redis Cluster support in
 * src/redis/: the pure parts (slots.c: CRC16 slots and hash tags, where a
 * command's key is, MOVED/ASK replies, the slot map from CLUSTER SLOTS
 * and after a MOVED, the ?cluster= URL forms), then the client against a
 * real three-master cluster started by scripts/redis-cluster.sh in a temp
 * folder (this binary fails, not skips, when it cannot start): keys
 * spread over the masters and read back, a MOVED after a slot migrated,
 * an ASK during a migration, TRYAGAIN retried until the migration ends,
 * NOSCRIPT loading a script on each node, auto-detection of a cluster from
 * one address.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "redis/internal.h"
#include "redis_harness.h"
#include "redis_seen.h"

/* ---- slots --------------------------------------------------------- */

static void test_crc16_and_slots_match_the_cluster_specification(void **s)
{
    (void)s;
    assert_int_equal(redis_crc16("123456789", 9), 0x31c3);
    assert_int_equal(redis_key_slot("123456789", 9), 12739);
    assert_int_equal(redis_key_slot("foo", 3), 12182);
    assert_int_equal(redis_key_slot("", 0), 0);
}

static void test_keys_sharing_a_hash_tag_share_a_slot(void **s)
{
    (void)s;
    const char *a = "{user1000}.following";
    const char *b = "{user1000}.followers";
    assert_int_equal(redis_key_slot(a, strlen(a)),
                     redis_key_slot(b, strlen(b)));
    assert_int_equal(redis_key_slot(a, strlen(a)),
                     redis_key_slot("user1000", 8));
    /* An empty first tag hashes the whole key; only the first tag counts;
     * an unclosed '{' hashes the whole key. */
    assert_int_equal(redis_key_slot("foo{}{bar}", 10),
                     redis_crc16("foo{}{bar}", 10) & 16383);
    assert_int_not_equal(redis_key_slot("foo{}{bar}", 10),
                         redis_key_slot("bar", 3));
    assert_int_equal(redis_key_slot("foo{{bar}}zap", 13),
                     redis_key_slot("{bar", 4));
    assert_int_equal(redis_key_slot("foo{bar}{zap}", 13),
                     redis_key_slot("bar", 3));
    assert_int_equal(redis_key_slot("{abc", 4),
                     redis_crc16("{abc", 4) & 16383);
    /* Relay's own keys: one API key's limits in one slot. */
    const char *w = "relay:{k:42}:w";
    const char *sp = "relay:{k:42}:spent:d20260101";
    assert_int_equal(redis_key_slot(w, strlen(w)),
                     redis_key_slot(sp, strlen(sp)));
    assert_int_equal(redis_key_slot(w, strlen(w)),
                     redis_key_slot("k:42", 4));
}

static void test_the_key_of_a_command_is_found_for_routing(void **s)
{
    (void)s;
    const char *key;
    size_t len;
    const char *get[] = {"GET", "a"};
    assert_true(redis_command_key(2, get, NULL, &key, &len));
    assert_memory_equal(key, "a", 1);
    const char *ev[] = {"EVALSHA", "abc", "2", "k1", "k2", "x"};
    assert_true(redis_command_key(6, ev, NULL, &key, &len));
    assert_int_equal(len, 2);
    assert_memory_equal(key, "k1", 2);
    const char *ev0[] = {"eval", "return 1", "0"};
    assert_false(redis_command_key(3, ev0, NULL, &key, &len));
    const char *ping[] = {"PING"};
    assert_false(redis_command_key(1, ping, NULL, &key, &len));
    const char *flush[] = {"script", "flush"};
    assert_false(redis_command_key(2, flush, NULL, &key, &len));
    const char *xr[] = {"XRANGE", "relay:{c:s}:sem", "-", "+"};
    assert_true(redis_command_key(4, xr, NULL, &key, &len));
    assert_int_equal(len, 15);
}

/* ---- MOVED, ASK and the map ---------------------------------------- */

static void test_moved_and_ask_replies_are_parsed(void **s)
{
    (void)s;
    struct redis_redirect r;
    const char *m = "MOVED 3999 127.0.0.1:6381";
    assert_true(redis_redirect_parse(m, strlen(m), &r));
    assert_int_equal(r.kind, REDIS_REDIRECT_MOVED);
    assert_int_equal(r.slot, 3999);
    assert_string_equal(r.host, "127.0.0.1");
    assert_int_equal(r.port, 6381);
    const char *a = "ASK 16383 ::1:7002";
    assert_true(redis_redirect_parse(a, strlen(a), &r));
    assert_int_equal(r.kind, REDIS_REDIRECT_ASK);
    assert_int_equal(r.slot, 16383);
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.port, 7002);
    const char *e = "MOVED 0 :7000"; /* Redis 7: endpoint unknown */
    assert_true(redis_redirect_parse(e, strlen(e), &r));
    assert_string_equal(r.host, "");
    assert_int_equal(r.port, 7000);
    const char *h = "MOVED 12 redis-2.internal:6379";
    assert_true(redis_redirect_parse(h, strlen(h), &r));
    assert_string_equal(r.host, "redis-2.internal");
    const char *bad[] = {
        "MOVED 16384 h:1", "MOVED x h:1", "MOVED 1 h", "MOVED 1 h:0",
        "MOVED 1 h:70000", "ASK", "NOSCRIPT No matching script",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "moved 1 h:1", "MOVED  1 h:1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(redis_redirect_parse(bad[i], strlen(bad[i]), &r));
    }
}

/* Parses RESP text into a reply (hiredis' reader, as the client does). */
static redisReply *resp(const char *text)
{
    redisReader *rd = redisReaderCreate();
    redisReaderFeed(rd, text, strlen(text));
    void *out = NULL;
    assert_int_equal(redisReaderGetReply(rd, &out), REDIS_OK);
    redisReaderFree(rd);
    assert_non_null(out);
    return out;
}

static void test_cluster_slots_builds_the_map_and_moved_updates_it(void **s)
{
    (void)s;
    static struct redis_slotmap m;
    redis_slotmap_init(&m);
    assert_int_equal(redis_slotmap_uncovered(&m), 16384);
    /* Two masters (one with a replica) and one whose host is left out. */
    redisReply *r = resp(
        "*3\r\n"
        "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
        "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nr1\r\n"
        "*3\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n"
        "$2\r\nid\r\n"
        "*3\r\n:10923\r\n:16383\r\n*3\r\n$0\r\n\r\n:7002\r\n$2\r\nid\r\n");
    assert_true(redis_slotmap_from_reply(&m, r, "10.1.1.1"));
    freeReplyObject(r);
    assert_int_equal(redis_slotmap_uncovered(&m), 0);
    assert_int_equal(m.naddrs, 3); /* the replica is not a master */
    assert_string_equal(m.addrs[m.owner[0]].host, "127.0.0.1");
    assert_int_equal(m.addrs[m.owner[0]].port, 7000);
    assert_int_equal(m.addrs[m.owner[5460]].port, 7000);
    assert_int_equal(m.addrs[m.owner[5461]].port, 7001);
    assert_string_equal(m.addrs[m.owner[16383]].host, "10.1.1.1");
    assert_int_equal(m.addrs[m.owner[16383]].port, 7002);
    /* MOVED to a known master, then to a new one. */
    struct redis_redirect rd;
    const char *mv = "MOVED 100 127.0.0.1:7001";
    assert_true(redis_redirect_parse(mv, strlen(mv), &rd));
    assert_int_equal(redis_slotmap_moved(&m, &rd, "x"), m.owner[5461]);
    assert_int_equal(m.addrs[m.owner[100]].port, 7001);
    assert_int_equal(m.addrs[m.owner[99]].port, 7000);
    const char *mv2 = "MOVED 101 :7009";
    assert_true(redis_redirect_parse(mv2, strlen(mv2), &rd));
    assert_int_equal(redis_slotmap_moved(&m, &rd, "127.0.0.9"), 3);
    assert_string_equal(m.addrs[m.owner[101]].host, "127.0.0.9");
    assert_int_equal(m.naddrs, 4);
    /* A malformed reply changes nothing; a partial one leaves holes. */
    r = resp("*1\r\n*3\r\n:5\r\n:2\r\n*2\r\n$1\r\nh\r\n:1\r\n");
    assert_false(redis_slotmap_from_reply(&m, r, "x"));
    freeReplyObject(r);
    assert_int_equal(m.addrs[m.owner[101]].port, 7009);
    r = resp("*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$1\r\nh\r\n:70000\r\n");
    assert_false(redis_slotmap_from_reply(&m, r, "x"));
    freeReplyObject(r);
    r = resp("-ERR This instance has cluster support disabled\r\n");
    assert_false(redis_slotmap_from_reply(&m, r, "x"));
    freeReplyObject(r);
    r = resp("*1\r\n*3\r\n:0\r\n:99\r\n*2\r\n$1\r\nh\r\n:1\r\n");
    assert_true(redis_slotmap_from_reply(&m, r, "x"));
    freeReplyObject(r);
    assert_int_equal(redis_slotmap_uncovered(&m), 16384 - 100);
    assert_string_equal(m.addrs[m.owner[0]].host, "h");
    redis_slotmap_free(&m);
}

static void test_cluster_urls_are_read_and_db_other_than_0_refused(void **s)
{
    (void)s;
    struct redis_url u;
    char msg[160] = "";
    assert_int_equal(redis_url_parse("redis://h:7000/0?cluster=yes", &u, msg,
                                     sizeof(msg)),
                     RL_OK);
    assert_int_equal(u.cluster, REDIS_CLUSTER_YES);
    assert_int_equal(u.nseeds, 1);
    assert_int_equal(redis_url_parse("redis://:pw@a:1,b,[::1]:3", &u, msg,
                                     sizeof(msg)),
                     RL_OK);
    assert_int_equal(u.cluster, REDIS_CLUSTER_YES); /* several: a cluster */
    assert_int_equal(u.nseeds, 3);
    assert_string_equal(u.seeds[1].host, "b");
    assert_int_equal(u.seeds[1].port, 6379);
    assert_string_equal(u.seeds[2].host, "::1");
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.host, "a");
    assert_int_equal(redis_url_parse("redis://h/3", &u, NULL, 0), RL_OK);
    assert_int_equal(u.cluster, REDIS_CLUSTER_AUTO);
    assert_int_equal(redis_url_parse("redis://h?cluster=no", &u, NULL, 0),
                     RL_OK);
    assert_int_equal(u.cluster, REDIS_CLUSTER_NO);
    assert_int_equal(redis_url_parse("redis://h:1/2?cluster=yes", &u, msg,
                                     sizeof(msg)),
                     RL_E_CONFIG);
    assert_non_null(strstr(msg, "only database 0"));
    assert_int_equal(redis_url_parse("redis://a,b/1", &u, msg, sizeof(msg)),
                     RL_E_CONFIG);
    assert_int_equal(redis_url_parse("redis://a,b?cluster=no", &u, msg,
                                     sizeof(msg)),
                     RL_E_CONFIG);
    assert_int_equal(redis_url_parse("redis://a?cluster=maybe", &u, msg,
                                     sizeof(msg)),
                     RL_E_CONFIG);
    assert_int_equal(redis_url_parse("redis://a,", &u, msg, sizeof(msg)),
                     RL_E_CONFIG);
    assert_int_equal(redis_url_parse("redis://1,2,3,4,5,6,7,8,9", &u, msg,
                                     sizeof(msg)),
                     RL_E_CONFIG);
}

/* ---- a real cluster ------------------------------------------------ */

static char cdir[64];          /* the cluster's folder */
static int cports[3];          /* its masters */
static char curl[160];         /* redis://...?cluster=yes */

static int setup_cluster(void **state)
{
    (void)state;
    snprintf(cdir, sizeof(cdir), "/tmp/relay-cluster-test.XXXXXX");
    if (!mkdtemp(cdir)) {
        return -1;
    }
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "bash scripts/redis-cluster.sh start '%s' >'%s/out' 2>&1", cdir,
             cdir);
    if (system(cmd) != 0) {
        fprintf(stderr, "scripts/redis-cluster.sh start failed (%s/out)\n",
                cdir);
        return -1; /* a failed group setup fails every test */
    }
    for (int i = 0; i < 3; i++) {
        char path[96];
        snprintf(path, sizeof(path), "%s/node%d/port", cdir, i + 1);
        FILE *f = fopen(path, "r");
        if (!f || fscanf(f, "%d", &cports[i]) != 1) {
            return -1;
        }
        fclose(f);
    }
    snprintf(curl, sizeof(curl),
             "redis://127.0.0.1:%d,127.0.0.1:%d/0?cluster=yes", cports[0],
             cports[1]);
    return 0;
}

static int teardown_cluster(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "bash scripts/redis-cluster.sh stop '%s' >/dev/null 2>&1; "
             "rm -rf '%s'",
             cdir, cdir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct redis *open_client(uv_loop_t *loop, const char *url,
                                 uint64_t timeout_ms)
{
    struct redis_opts o = {.command_timeout_ms = timeout_ms};
    struct redis *r = redis_new(loop, url, &o);
    assert_non_null(r);
    assert_true(harness_run_until(loop, client_up, r, 3000));
    return r;
}

/* A plain connection to master i (cluster=no: no routing at all). */
static struct redis *open_node(uv_loop_t *loop, int i)
{
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d?cluster=no", cports[i]);
    return open_client(loop, url, 2000);
}

static struct seen run(uv_loop_t *loop, struct redis *r, int argc,
                       const char **argv)
{
    struct seen s = {0};
    assert_int_equal(redis_command(r, argc, argv, NULL, on_reply, &s), RL_OK);
    assert_true(harness_run_until(loop, seen_called, &s, 3000));
    return s;
}

static void close_all(uv_loop_t *loop, struct redis **v, int n)
{
    for (int i = 0; i < n; i++) {
        redis_free(v[i]);
    }
    harness_run_for(loop, 10);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* The master (0..2) that holds key: the one that answers EXISTS without
 * a redirection. */
static int owner_of(uv_loop_t *loop, struct redis **nodes, const char *key)
{
    for (int i = 0; i < 3; i++) {
        const char *argv[] = {"EXISTS", key};
        struct seen s = run(loop, nodes[i], 2, argv);
        if (s.type == REDIS_REPLY_INTEGER) {
            return i;
        }
    }
    fail_msg("no master serves %s", key);
    return -1;
}

static void node_id(uv_loop_t *loop, struct redis *n, char *out)
{
    const char *argv[] = {"CLUSTER", "MYID"};
    struct seen s = run(loop, n, 2, argv);
    assert_int_equal(s.type, REDIS_REPLY_STRING);
    snprintf(out, 64, "%.63s", s.str);
}

static void expect_ok(struct seen s)
{
    assert_int_equal(s.err, RL_OK);
    if (s.type == REDIS_REPLY_ERROR) {
        fail_msg("redis said %s", s.str);
    }
}

/* Starts moving key's slot from master from to master to (IMPORTING,
 * MIGRATING), moves the keys given, and with finish gives the slot to
 * its new master on every node. */
static void migrate(uv_loop_t *loop, struct redis **nodes, const char *key,
                    int from, int to, const char **keys, int nkeys,
                    bool start, bool finish)
{
    char ids[3][64];
    for (int i = 0; i < 3; i++) {
        node_id(loop, nodes[i], ids[i]);
    }
    char slot[16], port[16];
    snprintf(slot, sizeof(slot), "%d", redis_key_slot(key, strlen(key)));
    snprintf(port, sizeof(port), "%d", cports[to]);
    if (start) {
        const char *imp[] = {"CLUSTER", "SETSLOT", slot, "IMPORTING",
                             ids[from]};
        expect_ok(run(loop, nodes[to], 5, imp));
        const char *mig[] = {"CLUSTER", "SETSLOT", slot, "MIGRATING",
                             ids[to]};
        expect_ok(run(loop, nodes[from], 5, mig));
    }
    for (int k = 0; k < nkeys; k++) {
        const char *mv[] = {"MIGRATE", "127.0.0.1", port, keys[k], "0",
                            "5000"};
        expect_ok(run(loop, nodes[from], 6, mv));
    }
    if (finish) {
        int order[3] = {to, from, 3 - to - from};
        for (int i = 0; i < 3; i++) {
            const char *node[] = {"CLUSTER", "SETSLOT", slot, "NODE", ids[to]};
            expect_ok(run(loop, nodes[order[i]], 5, node));
        }
    }
}

/* A test's loop, a plain connection to each master (v[0..2]) and the
 * cluster client under test (v[3], also r). */
struct fx {
    uv_loop_t loop;
    struct redis *v[4];
    struct redis *r;
};

static void fx_open(struct fx *f)
{
    uv_loop_init(&f->loop);
    for (int i = 0; i < 3; i++) {
        f->v[i] = open_node(&f->loop, i);
    }
    f->r = f->v[3] = open_client(&f->loop, curl, 1000);
}

/* SETs key to value through the client; returns the master holding it. */
static int fx_set(struct fx *f, const char *key, const char *value)
{
    const char *set[] = {"SET", key, value};
    expect_ok(run(&f->loop, f->r, 3, set));
    return owner_of(&f->loop, f->v, key);
}

/* GETs key through the client and checks it reads value. */
static void fx_get(struct fx *f, const char *key, const char *value)
{
    const char *get[] = {"GET", key};
    struct seen s = run(&f->loop, f->r, 2, get);
    assert_int_equal(s.type, REDIS_REPLY_STRING);
    assert_string_equal(s.str, value);
}

static void fx_stats(struct fx *f, struct redis_stats *out)
{
    redis_stats_get(f->r, out);
}

static void test_keys_spread_over_the_masters_and_are_read_back(void **st)
{
    (void)st;
    struct fx f;
    fx_open(&f);
    assert_true(redis_is_cluster(f.r));
    int per[3] = {0, 0, 0};
    char keys[30][32];
    for (int i = 0; i < 30; i++) {
        snprintf(keys[i], sizeof(keys[i]), "spread:{%d}", i);
        per[fx_set(&f, keys[i], keys[i])]++;
    }
    assert_true(per[0] > 0 && per[1] > 0 && per[2] > 0);
    /* One iteration's commands: one write per master, in order each. */
    struct redis_stats before, after;
    fx_stats(&f, &before);
    static struct seen got[30];
    memset(got, 0, sizeof(got));
    for (int i = 0; i < 30; i++) {
        const char *get[] = {"GET", keys[i]};
        assert_int_equal(redis_command(f.r, 2, get, NULL, on_reply, &got[i]),
                         RL_OK);
    }
    assert_true(harness_run_until(&f.loop, seen_called, &got[29], 2000));
    harness_run_for(&f.loop, 20);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(got[i].calls, 1);
        assert_string_equal(got[i].str, keys[i]);
    }
    fx_stats(&f, &after);
    assert_int_equal(after.writes - before.writes, 3);
    assert_int_equal(after.moved, 0);
    assert_int_equal(after.failures, 0);
    close_all(&f.loop, f.v, 4);
}

static void test_a_moved_slot_is_followed_and_the_map_learns_it(void **st)
{
    (void)st;
    struct fx f;
    fx_open(&f);
    const char *key = "moved:{m}";
    int from = fx_set(&f, key, "here");
    int to = (from + 1) % 3;
    migrate(&f.loop, f.v, key, from, to, &key, 1, true, true);
    assert_int_equal(owner_of(&f.loop, f.v, key), to);
    struct redis_stats a;
    for (int round = 0; round < 2; round++) {
        fx_get(&f, key, "here");
        fx_stats(&f, &a);
        assert_int_equal(a.moved, 1); /* the second finds the map right */
    }
    assert_int_equal(a.failures, 0);
    close_all(&f.loop, f.v, 4);
}

static void test_an_ask_is_followed_and_leaves_the_map_alone(void **st)
{
    (void)st;
    struct fx f;
    fx_open(&f);
    const char *key = "ask:{a}";
    int from = fx_set(&f, key, "moving");
    int to = (from + 2) % 3;
    migrate(&f.loop, f.v, key, from, to, &key, 1, true, false);
    struct redis_stats a;
    for (int round = 1; round <= 2; round++) {
        fx_get(&f, key, "moving");
        fx_stats(&f, &a);
        assert_int_equal(a.asked, round);
        assert_int_equal(a.moved, 0);
    }
    migrate(&f.loop, f.v, key, from, to, NULL, 0, false, true);
    fx_get(&f, key, "moving");
    fx_stats(&f, &a);
    assert_int_equal(a.asked, 2);
    assert_int_equal(a.moved, 1);
    close_all(&f.loop, f.v, 4);
}

/* The client has been told TRYAGAIN at least once. */
static bool tried_again(void *arg)
{
    struct redis_stats a;
    fx_stats(arg, &a);
    return a.tryagain >= 1;
}

static void test_tryagain_is_retried_until_the_migration_ends(void **st)
{
    (void)st;
    struct fx f;
    fx_open(&f);
    const char *k1 = "try:{t}:1";
    const char *k2 = "try:{t}:2";
    int from = fx_set(&f, k1, "one");
    fx_set(&f, k2, "two");
    int to = (from + 1) % 3;
    migrate(&f.loop, f.v, k1, from, to, &k1, 1, true, false);
    /* Both keys in one script: the source has one of them: TRYAGAIN. */
    struct redis_script sc;
    redis_script_init(&sc, "return redis.call('GET', KEYS[2])");
    const char *keys[] = {k1, k2};
    struct seen s = {0};
    assert_int_equal(redis_eval(f.r, &sc, 2, keys, NULL, 0, NULL, NULL,
                                on_reply, &s),
                     RL_OK);
    /* A generous bound: the first TRYAGAIN comes back within a round
     * trip, later than that on a loaded machine. */
    assert_true(harness_run_until(&f.loop, tried_again, &f, 2000));
    struct redis_stats a;
    assert_int_equal(s.calls, 0);
    migrate(&f.loop, f.v, k1, from, to, &k2, 1, false, true);
    assert_true(harness_run_until(&f.loop, seen_called, &s, 2000));
    assert_int_equal(s.err, RL_OK);
    assert_int_equal(s.type, REDIS_REPLY_STRING);
    assert_string_equal(s.str, "two");
    fx_stats(&f, &a);
    assert_int_equal(a.moved, 1);
    close_all(&f.loop, f.v, 4);
}

static void test_scripts_are_loaded_on_each_master_they_run_on(void **st)
{
    (void)st;
    struct fx f;
    fx_open(&f);
    for (int i = 0; i < 3; i++) {
        const char *flush[] = {"SCRIPT", "FLUSH"};
        expect_ok(run(&f.loop, f.v[i], 2, flush));
    }
    struct redis_script sc;
    redis_script_init(&sc, "return KEYS[1]");
    bool done[3] = {false, false, false};
    for (int i = 0; i < 60 && !(done[0] && done[1] && done[2]); i++) {
        char key[32];
        snprintf(key, sizeof(key), "script:{%d}", i);
        const char *keys[] = {key};
        int o = owner_of(&f.loop, f.v, key);
        if (done[o]) {
            continue;
        }
        struct seen s = {0};
        assert_int_equal(redis_eval(f.r, &sc, 1, keys, NULL, 0, NULL, NULL,
                                    on_reply, &s),
                         RL_OK);
        assert_true(harness_run_until(&f.loop, seen_called, &s, 2000));
        assert_int_equal(s.err, RL_OK);
        assert_string_equal(s.str, key);
        done[o] = true;
    }
    /* SCRIPT EXISTS answers an array: read it with hiredis' own client. */
    for (int i = 0; i < 3; i++) {
        redisContext *c = redisConnect("127.0.0.1", cports[i]);
        assert_non_null(c);
        redisReply *e = redisCommand(c, "SCRIPT EXISTS %s", sc.sha1_hex);
        assert_non_null(e);
        assert_int_equal(e->type, REDIS_REPLY_ARRAY);
        assert_int_equal(e->element[0]->integer, 1);
        freeReplyObject(e);
        redisFree(c);
    }
    close_all(&f.loop, f.v, 4);
}

static void test_one_address_without_a_mode_is_found_to_be_a_cluster(
    void **st)
{
    (void)st;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", cports[2]);
    struct redis *v[1];
    struct redis *r = v[0] = open_client(&loop, url, 1000);
    assert_true(redis_is_cluster(r));
    for (int i = 0; i < 20; i++) {
        char key[32];
        snprintf(key, sizeof(key), "auto:{%d}", i);
        const char *set[] = {"SET", key, "x"};
        expect_ok(run(&loop, r, 3, set));
    }
    struct redis_stats a;
    redis_stats_get(r, &a);
    assert_int_equal(a.moved, 0);
    assert_int_equal(a.failures, 0);
    close_all(&loop, v, 1);
}

static void test_a_database_other_than_0_on_a_cluster_never_comes_up(
    void **st)
{
    (void)st;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/2", cports[0]);
    struct redis *v[1];
    struct redis *r = v[0] = redis_new(&loop, url, NULL);
    assert_non_null(r);
    assert_false(harness_run_until(&loop, client_up, r, 300));
    close_all(&loop, v, 1);
}

int main(void)
{
    (void)harness_redis_start; /* this binary runs a cluster instead */
    (void)harness_redis_stop;
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_crc16_and_slots_match_the_cluster_specification),
        cmocka_unit_test(test_keys_sharing_a_hash_tag_share_a_slot),
        cmocka_unit_test(test_the_key_of_a_command_is_found_for_routing),
        cmocka_unit_test(test_moved_and_ask_replies_are_parsed),
        cmocka_unit_test(
            test_cluster_slots_builds_the_map_and_moved_updates_it),
        cmocka_unit_test(
            test_cluster_urls_are_read_and_db_other_than_0_refused),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_keys_spread_over_the_masters_and_are_read_back),
        cmocka_unit_test(test_a_moved_slot_is_followed_and_the_map_learns_it),
        cmocka_unit_test(test_an_ask_is_followed_and_leaves_the_map_alone),
        cmocka_unit_test(test_tryagain_is_retried_until_the_migration_ends),
        cmocka_unit_test(test_scripts_are_loaded_on_each_master_they_run_on),
        cmocka_unit_test(
            test_one_address_without_a_mode_is_found_to_be_a_cluster),
        cmocka_unit_test(
            test_a_database_other_than_0_on_a_cluster_never_comes_up),
    };
    int failed = cmocka_run_group_tests_name("slots", pure, NULL, NULL);
    failed += cmocka_run_group_tests_name("cluster", live, setup_cluster,
                                          teardown_cluster);
    return failed ? 1 : 0;
}
