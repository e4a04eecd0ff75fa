/*
 * test_redis_client.c - unit tests of src/redis/: URL parsing (pure) and
 * the client against a real redis-server this binary starts on a free
 * 127.0.0.1 port (it fails, not skips, when the server cannot start).
 *
 * Covered: FIFO pipelining, AUTH and SELECT at connect, commands while
 * down fail at once, a stalled server (SIGSTOP) breaks the connection
 * within the command timeout and the client reconnects after SIGCONT,
 * EVALSHA falls back to EVAL after SCRIPT FLUSH, redis_free fails what is
 * pending exactly once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "redis/internal.h"
#include "redis/redis.h"
#include "redis_harness.h"
#include "redis_seen.h"

static struct harness_redis srv;

static int setup(void **state)
{
    (void)state;
    if (!harness_redis_start(&srv)) {
        fprintf(stderr, "cannot start %s\n", HARNESS_REDIS_BIN);
        return -1; /* a failed group setup fails every test */
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    harness_redis_stop(&srv);
    return 0;
}

/* ---- URL parsing --------------------------------------------------- */

static void test_a_plain_url_gives_host_and_default_port(void **state)
{
    (void)state;
    struct redis_url u;
    assert_int_equal(redis_url_parse("redis://localhost", &u, NULL, 0),
                     RL_OK);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_string_equal(u.password, "");
    assert_int_equal(u.db, 0);
}

static void test_password_port_and_db_are_all_read(void **state)
{
    (void)state;
    struct redis_url u;
    assert_int_equal(redis_url_parse("redis://:s3cr:t@10.0.0.2:6380/4", &u,
                                     NULL, 0),
                     RL_OK);
    assert_string_equal(u.host, "10.0.0.2");
    assert_int_equal(u.port, 6380);
    assert_string_equal(u.password, "s3cr:t");
    assert_int_equal(u.db, 4);
    assert_int_equal(redis_url_parse("redis://default:pw@h/", &u, NULL, 0),
                     RL_OK);
    assert_string_equal(u.password, "pw");
    assert_int_equal(u.db, 0);
    assert_int_equal(redis_url_parse("redis://[::1]:7000/2", &u, NULL, 0),
                     RL_OK);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 2);
}

static void test_bad_urls_are_config_errors_with_a_message(void **state)
{
    (void)state;
    const char *bad[] = {
        "http://h:1",       "rediss://h",     "redis://",
        "redis://h:0",      "redis://h:70000", "redis://h:12x",
        "redis://h/db",     "redis://h?x=1",  "redis://pw@h",
        "redis://[::1",     "redis://:6379",  NULL,
    };
    for (int i = 0; i < 12; i++) {
        struct redis_url u;
        char msg[128] = "";
        assert_int_equal(redis_url_parse(bad[i], &u, msg, sizeof(msg)),
                         RL_E_CONFIG);
        assert_true(strncmp(msg, "redis URL: ", 11) == 0);
    }
}

/* ---- the client ---------------------------------------------------- */

static struct redis *connect_to(uv_loop_t *loop, const char *url)
{
    struct redis *r = redis_new(loop, url, NULL);
    assert_non_null(r);
    assert_true(harness_run_until(loop, client_up, r, 2000));
    return r;
}

static void close_client(uv_loop_t *loop, struct redis *r)
{
    redis_free(r);
    harness_run_for(loop, 5);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Sends argv and runs the loop until the reply; returns what was seen. */
static struct seen run_cmd(uv_loop_t *loop, struct redis *r, int argc,
                           const char **argv)
{
    struct seen s = {0};
    assert_int_equal(redis_command(r, argc, argv, NULL, on_reply, &s), RL_OK);
    assert_int_equal(s.calls, 0); /* never from inside redis_command */
    assert_true(harness_run_until(loop, seen_called, &s, 2000));
    return s;
}

static struct seen fifo[100];

static bool all_fifo_answered(void *arg)
{
    (void)arg;
    return fifo[99].calls > 0;
}

static void test_pipelined_commands_are_answered_in_order(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct redis *r = connect_to(&loop, srv.url);
    const char *del[] = {"DEL", "fifo"};
    run_cmd(&loop, r, 2, del);
    memset(fifo, 0, sizeof(fifo));
    const char *incr[] = {"INCR", "fifo"};
    for (int i = 0; i < 100; i++) {
        assert_int_equal(redis_command(r, 2, incr, NULL, on_reply, &fifo[i]),
                         RL_OK);
    }
    assert_true(harness_run_until(&loop, all_fifo_answered, NULL, 2000));
    for (int i = 0; i < 100; i++) {
        assert_int_equal(fifo[i].calls, 1);
        assert_int_equal(fifo[i].integer, i + 1);
    }
    struct redis_stats st;
    redis_stats_get(r, &st);
    assert_int_equal(st.commands, 101);
    assert_int_equal(st.failures, 0);
    close_client(&loop, r);
}

static void test_commands_of_one_loop_iteration_go_out_in_one_write(
    void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct redis *r = connect_to(&loop, srv.url);
    struct redis_script sc;
    redis_script_init(&sc, "return 7");
    struct seen first = {0};
    assert_int_equal(redis_eval(r, &sc, 0, NULL, NULL, 0, NULL, NULL,
                                on_reply, &first),
                     RL_OK);
    assert_true(harness_run_until(&loop, seen_called, &first, 2000));
    assert_int_equal(first.integer, 7); /* the script is known from here */
    struct redis_stats before;
    redis_stats_get(r, &before);
    memset(fifo, 0, sizeof(fifo));
    const char *ping[] = {"PING"};
    for (int i = 0; i < 100; i++) {
        enum rl_err err =
            i % 2 ? redis_command(r, 1, ping, NULL, on_reply, &fifo[i])
                  : redis_eval(r, &sc, 0, NULL, NULL, 0, NULL, NULL,
                               on_reply, &fifo[i]);
        assert_int_equal(err, RL_OK);
    }
    assert_true(harness_run_until(&loop, all_fifo_answered, NULL, 2000));
    for (int i = 0; i < 100; i++) {
        assert_int_equal(fifo[i].calls, 1);
        assert_int_equal(fifo[i].err, RL_OK);
        if (i % 2) {
            assert_string_equal(fifo[i].str, "PONG");
        } else {
            assert_int_equal(fifo[i].integer, 7);
        }
    }
    struct redis_stats st;
    redis_stats_get(r, &st);
    assert_int_equal(st.writes - before.writes, 1);
    close_client(&loop, r);
}

static void test_password_and_db_from_the_url_are_used(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct redis *plain = connect_to(&loop, srv.url);
    const char *set0[] = {"SET", "where", "db0"};
    run_cmd(&loop, plain, 3, set0);
    const char *pw[] = {"CONFIG", "SET", "requirepass", "hunter2"};
    run_cmd(&loop, plain, 4, pw);
    char url[128];
    snprintf(url, sizeof(url), "redis://:hunter2@127.0.0.1:%d/3", srv.port);
    struct redis *r = connect_to(&loop, url);
    const char *get[] = {"GET", "where"};
    struct seen s = run_cmd(&loop, r, 2, get);
    assert_int_equal(s.type, REDIS_REPLY_NIL); /* db 3, not db 0 */
    const char *nopw[] = {"CONFIG", "SET", "requirepass", ""};
    s = run_cmd(&loop, r, 4, nopw);
    assert_string_equal(s.str, "OK");
    redis_free(r);
    redis_free(plain);
    harness_run_for(&loop, 5);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_commands_while_not_connected_fail_at_once(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", harness_free_port());
    struct redis *r = redis_new(&loop, url, NULL);
    assert_non_null(r);
    struct seen s = {0};
    const char *ping[] = {"PING"};
    assert_int_equal(redis_command(r, 1, ping, NULL, on_reply, &s), RL_E_IO);
    harness_run_for(&loop, 350); /* refused, backoff, refused again */
    assert_false(redis_up(r));
    assert_int_equal(redis_command(r, 1, ping, NULL, on_reply, &s), RL_E_IO);
    assert_int_equal(s.calls, 0);
    struct redis_stats st;
    redis_stats_get(r, &st);
    assert_true(st.reconnects >= 1);
    assert_true(st.reconnects <= 4); /* backoff, not a tight loop */
    close_client(&loop, r);
}

static void test_a_stalled_server_times_out_and_the_client_reconnects(
    void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct redis *r = connect_to(&loop, srv.url);
    kill(srv.pid, SIGSTOP);
    struct seen a = {0};
    struct seen b = {0};
    const char *ping[] = {"PING"};
    uv_update_time(&loop);
    uint64_t t0 = uv_now(&loop);
    assert_int_equal(redis_command(r, 1, ping, NULL, on_reply, &a), RL_OK);
    assert_int_equal(redis_command(r, 1, ping, NULL, on_reply, &b), RL_OK);
    assert_true(harness_run_until(&loop, seen_called, &b, 1000));
    uint64_t waited = uv_now(&loop) - t0;
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.err, RL_E_UPSTREAM_TIMEOUT);
    assert_int_equal(b.err, RL_E_UPSTREAM_TIMEOUT);
    assert_true(waited >= REDIS_COMMAND_TIMEOUT_MS);
    assert_true(waited < REDIS_COMMAND_TIMEOUT_MS + 40);
    assert_false(redis_up(r));
    kill(srv.pid, SIGCONT);
    assert_true(harness_run_until(&loop, client_up, r, 3000));
    struct seen c = run_cmd(&loop, r, 1, ping);
    assert_string_equal(c.str, "PONG");
    struct redis_stats st;
    redis_stats_get(r, &st);
    assert_int_equal(st.timeouts, 1);
    close_client(&loop, r);
}

static void test_eval_falls_back_to_the_script_text_after_a_flush(
    void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct redis *r = connect_to(&loop, srv.url);
    const char *flush[] = {"SCRIPT", "FLUSH"};
    run_cmd(&loop, r, 2, flush);
    struct redis_script sc;
    redis_script_init(&sc, "return tonumber(ARGV[1]) + #KEYS");
    assert_int_equal(strlen(sc.sha1_hex), 40);
    for (int round = 0; round < 2; round++) {
        struct seen s = {0};
        const char *keys[] = {"a", "b"};
        const char *args[] = {"40"};
        assert_int_equal(redis_eval(r, &sc, 2, keys, NULL, 1, args, NULL,
                                    on_reply, &s),
                         RL_OK);
        assert_true(harness_run_until(&loop, seen_called, &s, 2000));
        assert_int_equal(s.err, RL_OK);
        assert_int_equal(s.type, REDIS_REPLY_INTEGER);
        assert_int_equal(s.integer, 42);
    }
    close_client(&loop, r);
}

static void test_free_fails_each_pending_command_exactly_once(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct redis *r = connect_to(&loop, srv.url);
    struct seen s[3] = {{0}};
    const char *ping[] = {"PING"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(redis_command(r, 1, ping, NULL, on_reply, &s[i]),
                         RL_OK);
    }
    redis_free(r);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s[i].calls, 1);
        assert_int_equal(s[i].err, RL_E_SHUTTING_DOWN);
    }
    harness_run_for(&loop, 5);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s[i].calls, 1);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* hiredis allocated what an aggregate declared: "*1555555555" was a 12 GB
 * calloc (fuzz_redis); past 2^20 elements the reply is malformed. */
static void test_an_aggregate_is_bounded_before_it_is_allocated(void **state)
{
    (void)state;
    redisReader *rd = redis_reader_new();
    const char *ok = "*3\r\n:1\r\n*1\r\n$2\r\nab\r\n:3\r\n";
    assert_int_equal(redisReaderFeed(rd, ok, strlen(ok)), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_OK);
    assert_non_null(reply);
    assert_int_equal(((redisReply *)reply)->elements, 3);
    freeReplyObject(reply);
    /* 2^20 + 1: refused at once, nothing waited for. */
    const char *big = "*1048577\r\n";
    assert_int_equal(redisReaderFeed(rd, big, strlen(big)), REDIS_OK);
    reply = NULL;
    assert_int_equal(redisReaderGetReply(rd, &reply), REDIS_ERR);
    assert_null(reply);
    redisReaderFree(rd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_plain_url_gives_host_and_default_port),
        cmocka_unit_test(test_password_port_and_db_are_all_read),
        cmocka_unit_test(test_bad_urls_are_config_errors_with_a_message),
        cmocka_unit_test(test_pipelined_commands_are_answered_in_order),
        cmocka_unit_test(
            test_commands_of_one_loop_iteration_go_out_in_one_write),
        cmocka_unit_test(test_password_and_db_from_the_url_are_used),
        cmocka_unit_test(test_commands_while_not_connected_fail_at_once),
        cmocka_unit_test(
            test_a_stalled_server_times_out_and_the_client_reconnects),
        cmocka_unit_test(
            test_eval_falls_back_to_the_script_text_after_a_flush),
        cmocka_unit_test(test_free_fails_each_pending_command_exactly_once),
        cmocka_unit_test(test_an_aggregate_is_bounded_before_it_is_allocated),
    };
    return cmocka_run_group_tests_name("redis_client", tests, setup,
                                       teardown);
}
