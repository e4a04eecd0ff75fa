/*
 * test_arena.c - unit tests of src/util/arena.c: the request arena.
 */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "util/arena.h"

static void test_allocations_are_aligned_for_any_type(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 256);
    const size_t sizes[] = {1, 3, 7, 8, 9, 15, 16, 17, 33, 100, 1, 2};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        void *p = arena_alloc(&a, sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
        memset(p, 0xab, sizes[i]); /* writable: ASan checks the bounds */
    }
    arena_free(&a);
}

static void test_allocations_do_not_overlap(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 128);
    unsigned char *ps[64];
    for (int i = 0; i < 64; i++) {
        ps[i] = arena_alloc(&a, 24);
        memset(ps[i], i, 24);
    }
    for (int i = 0; i < 64; i++) {
        for (int j = 0; j < 24; j++) {
            assert_int_equal(ps[i][j], i);
        }
    }
    arena_free(&a);
}

static void test_an_allocation_larger_than_a_block_gets_its_own(
    void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 64);
    char *small = arena_alloc(&a, 16);
    memset(small, 's', 16);
    size_t big_len = 1u << 20;
    char *big = arena_alloc(&a, big_len);
    assert_non_null(big);
    assert_int_equal((uintptr_t)big % alignof(max_align_t), 0);
    memset(big, 'b', big_len);
    char *after = arena_alloc(&a, 16);
    memset(after, 'a', 16);
    assert_int_equal(small[15], 's');
    assert_int_equal(big[0], 'b');
    assert_int_equal(big[big_len - 1], 'b');
    arena_free(&a);
}

static void test_a_zero_byte_allocation_is_valid(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 0); /* 0: the default block size */
    assert_true(a.block_size > 0);
    void *p = arena_alloc(&a, 0);
    assert_non_null(p);
    arena_free(&a);
}

static void test_strndup_copies_and_terminates(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 64);
    const char src[] = "hello, world";
    char *s = arena_strndup(&a, src, 5);
    assert_string_equal(s, "hello");
    char *empty = arena_strndup(&a, src, 0);
    assert_string_equal(empty, "");
    char *whole = arena_strdup_str(&a, STR_LIT("sized view"));
    assert_string_equal(whole, "sized view");
    /* A copy longer than a block. */
    char longer[300];
    memset(longer, 'L', sizeof(longer));
    char *l = arena_strndup(&a, longer, sizeof(longer));
    assert_int_equal(strlen(l), sizeof(longer));
    assert_string_equal(s, "hello"); /* earlier copies are intact */
    arena_free(&a);
}

static void test_free_then_reuse(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 64);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 50; i++) {
            memset(arena_alloc(&a, 40), round, 40);
        }
        arena_free(&a);
        assert_null(a.head);
    }
    arena_free(&a); /* twice is harmless */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allocations_are_aligned_for_any_type),
        cmocka_unit_test(test_allocations_do_not_overlap),
        cmocka_unit_test(
            test_an_allocation_larger_than_a_block_gets_its_own),
        cmocka_unit_test(test_a_zero_byte_allocation_is_valid),
        cmocka_unit_test(test_strndup_copies_and_terminates),
        cmocka_unit_test(test_free_then_reuse),
    };
    return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
