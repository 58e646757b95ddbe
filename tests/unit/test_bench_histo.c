/*
 * Unit tests for tools/bench/histo.c: bucket geometry, nearest-rank
 * percentiles against a sorted list, merging, and the edges (empty, huge).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../../tools/bench/histo.h"

/* Every value falls in a bucket whose bounds contain it, with buckets contiguous. */
static void test_bucket_bounds_contain_value(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 100000; v += 7) {
        size_t i = histo_bucket_of(v);
        assert_true(histo_bucket_low(i) <= v);
        assert_true(v <= histo_bucket_high(i));
    }
    for (size_t i = 1; i < HISTO_BUCKETS; i++)
        assert_int_equal(histo_bucket_low(i), histo_bucket_high(i - 1) + 1);
}

/* Small values (below 128 ns) are exact. */
static void test_small_values_exact(void **state)
{
    (void)state;
    for (uint64_t v = 0; v < 128; v++) {
        assert_int_equal(histo_bucket_low(histo_bucket_of(v)), v);
        assert_int_equal(histo_bucket_high(histo_bucket_of(v)), v);
    }
}

/* A bucket is at most 1/64 of its lower bound wide. */
static void test_relative_error_bounded(void **state)
{
    (void)state;
    for (size_t i = 128; i < HISTO_BUCKETS; i++) {
        uint64_t lo = histo_bucket_low(i), hi = histo_bucket_high(i);
        assert_true((double)(hi - lo + 1) <= (double)lo / 64.0 + 1e-9);
    }
}

/* Values past the top land in the last bucket instead of overflowing. */
static void test_huge_value_clamped(void **state)
{
    (void)state;
    assert_int_equal(histo_bucket_of(UINT64_MAX), HISTO_BUCKETS - 1);
    assert_int_equal(histo_bucket_of(HISTO_MAX_NS), HISTO_BUCKETS - 1);
    struct histo *h = malloc(sizeof(*h));
    histo_init(h);
    histo_add(h, UINT64_MAX);
    assert_int_equal(h->max, UINT64_MAX);
    assert_int_equal(h->counts[HISTO_BUCKETS - 1], 1);
    free(h);
}

/* An empty histogram reports 0 for every percentile and the mean. */
static void test_empty_is_zero(void **state)
{
    (void)state;
    struct histo *h = malloc(sizeof(*h));
    histo_init(h);
    assert_int_equal(histo_percentile(h, 50), 0);
    assert_int_equal(histo_percentile(h, 100), 0);
    assert_true(histo_mean(h) == 0.0);
    free(h);
}

/* Percentiles of 1..100 us follow nearest rank within the bucket precision. */
static void test_percentiles_nearest_rank(void **state)
{
    (void)state;
    struct histo *h = malloc(sizeof(*h));
    histo_init(h);
    for (uint64_t i = 1; i <= 100; i++)
        histo_add(h, i * 1000);
    const double ps[] = { 50, 90, 99 };
    const uint64_t want[] = { 50000, 90000, 99000 };
    for (size_t k = 0; k < 3; k++) {
        uint64_t got = histo_percentile(h, ps[k]);
        assert_true(got >= want[k]);
        assert_true((double)got <= (double)want[k] * (1.0 + 1.0 / 64));
        assert_true(got < want[k] + 1000);   /* not the next value */
    }
    assert_int_equal(histo_percentile(h, 100), 100000);
    assert_int_equal(histo_percentile(h, 0), 1000);
    assert_true(histo_mean(h) == 50500.0);
    free(h);
}

/* A single value is every percentile, exactly (clamped to min and max). */
static void test_single_value_exact(void **state)
{
    (void)state;
    struct histo *h = malloc(sizeof(*h));
    histo_init(h);
    histo_add(h, 123456789);
    assert_int_equal(histo_percentile(h, 1), 123456789);
    assert_int_equal(histo_percentile(h, 99.9), 123456789);
    free(h);
}

/* Merging two halves gives the histogram of the whole. */
static void test_merge_equals_whole(void **state)
{
    (void)state;
    struct histo *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)), *all = malloc(sizeof(*all));
    histo_init(a);
    histo_init(b);
    histo_init(all);
    for (uint64_t v = 1; v < 200000; v = v * 3 / 2 + 1) {
        histo_add((v & 1) ? a : b, v);
        histo_add(all, v);
    }
    histo_merge(a, b);
    assert_int_equal(a->n, all->n);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_memory_equal(a->counts, all->counts, sizeof(a->counts));
    assert_int_equal(histo_percentile(a, 90), histo_percentile(all, 90));
    free(a);
    free(b);
    free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_bounds_contain_value),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_relative_error_bounded),
        cmocka_unit_test(test_huge_value_clamped),
        cmocka_unit_test(test_empty_is_zero),
        cmocka_unit_test(test_percentiles_nearest_rank),
        cmocka_unit_test(test_single_value_exact),
        cmocka_unit_test(test_merge_equals_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
