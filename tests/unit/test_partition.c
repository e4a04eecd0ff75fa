/*
 * test_partition.c - unit tests of src/store/partition.c: the names and
 * bounds of request_log's day partitions in PostgreSQL, and which of them
 * retention drops. The SQL itself (store_partitions_maintain) runs against
 * a real PostgreSQL in tests/integration/test_partitions.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "store/store.h"

static void test_days_are_utc_days_counted_from_1970(void **state)
{
    (void)state;
    assert_int_equal(store_partition_day(0), 0);
    assert_int_equal(store_partition_day(86399), 0);
    assert_int_equal(store_partition_day(86400), 1);
    assert_int_equal(store_partition_day(-1), -1); /* floor, not toward 0 */
    assert_int_equal(store_partition_day(-86400), -1);
    assert_int_equal(store_partition_day(-86401), -2);
    /* 2026-12-01 00:00:00 UTC is 1796083200. */
    assert_int_equal(store_partition_day(1796083200), 20788);
    assert_int_equal(store_partition_day(1796083200 - 1), 20787);
}

static void test_a_day_names_its_partition_and_its_bounds(void **state)
{
    (void)state;
    char name[64];
    char bound[40];
    store_partition_name(20788, name, sizeof(name));
    assert_string_equal(name, "request_log_20261201");
    store_partition_bound(20788, bound, sizeof(bound));
    assert_string_equal(bound, "2026-12-01 00:00:00+00");
    static const struct {
        int64_t day;
        const char *name;
    } cases[] = {
        {0, "request_log_19700101"},
        {-1, "request_log_19691231"},
        {59, "request_log_19700301"},
        {11016, "request_log_20000229"}, /* a leap day of a 400 year */
        {11017, "request_log_20000301"},
        {47540, "request_log_21000228"}, /* 2100 has no Feb 29: */
        {47541, "request_log_21000301"},
        {20819, "request_log_20270101"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        store_partition_name(cases[i].day, name, sizeof(name));
        assert_string_equal(name, cases[i].name);
        struct store_partition p;
        assert_true(store_partition_parse(name, &p));
        assert_int_equal(p.from_day, cases[i].day);
        assert_int_equal(p.end_day, cases[i].day + 1);
        assert_false(p.unbounded_below);
    }
}

static void test_every_day_of_four_centuries_round_trips(void **state)
{
    (void)state;
    int64_t from = store_partition_day(-2208988800); /* 1900-01-01 */
    for (int64_t d = from; d < from + 146097; d++) {
        char name[64];
        store_partition_name(d, name, sizeof(name));
        struct store_partition p;
        if (!store_partition_parse(name, &p) || p.from_day != d) {
            fail_msg("day %lld: %s does not read back", (long long)d, name);
        }
    }
}

static void test_the_table_before_the_migration_holds_all_earlier_days(
    void **state)
{
    (void)state;
    struct store_partition p;
    assert_true(store_partition_parse("request_log_before_20261202", &p));
    assert_true(p.unbounded_below);
    assert_int_equal(p.end_day, 20789);
}

static void test_other_names_are_not_day_partitions(void **state)
{
    (void)state;
    static const char *const names[] = {
        "request_log_default", "request_log", "request_log_2026120",
        "request_log_202612011", "request_log_20261301",
        "request_log_20260231", "request_log_2026120a",
        "request_log_before_", "request_log_before_20261232",
        "request_rollup", "request_log_00000000", "",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct store_partition p;
        if (store_partition_parse(names[i], &p)) {
            fail_msg("'%s' read as a day partition", names[i]);
        }
    }
}

static void test_retention_drops_only_days_wholly_past_it(void **state)
{
    (void)state;
    int64_t today = 20788; /* 2026-12-01 */
    struct store_partition p;
    /* 30 days: 2026-11-01 (today - 30) is kept, 2026-10-31 goes. */
    assert_true(store_partition_parse("request_log_20261101", &p));
    assert_false(store_partition_expired(&p, today, 30));
    assert_true(store_partition_parse("request_log_20261031", &p));
    assert_true(store_partition_expired(&p, today, 30));
    /* Today and the days made ahead are never past any retention. */
    assert_true(store_partition_parse("request_log_20261201", &p));
    assert_false(store_partition_expired(&p, today, 1));
    assert_true(store_partition_parse("request_log_20261203", &p));
    assert_false(store_partition_expired(&p, today, 1));
    /* 0 keeps everything. */
    assert_true(store_partition_parse("request_log_19700101", &p));
    assert_false(store_partition_expired(&p, today, 0));
    /* The old table goes once its last day (the day before its name) is
     * past retention. */
    assert_true(store_partition_parse("request_log_before_20261102", &p));
    assert_false(store_partition_expired(&p, today, 30));
    assert_true(store_partition_parse("request_log_before_20261101", &p));
    assert_true(store_partition_expired(&p, today, 30));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days_are_utc_days_counted_from_1970),
        cmocka_unit_test(test_a_day_names_its_partition_and_its_bounds),
        cmocka_unit_test(test_every_day_of_four_centuries_round_trips),
        cmocka_unit_test(
            test_the_table_before_the_migration_holds_all_earlier_days),
        cmocka_unit_test(test_other_names_are_not_day_partitions),
        cmocka_unit_test(test_retention_drops_only_days_wholly_past_it),
    };
    return cmocka_run_group_tests_name("partition", tests, NULL, NULL);
}
