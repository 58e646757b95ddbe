/* XEP-0082 timestamps: parsing, formatting, round trips, rejections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "timestamp.h"

/* A UTC time with fraction parses to the exact microsecond. */
static void test_parse_utc_fraction(void **state)
{
    (void)state;
    int64_t us;
    assert_int_equal(timestamp_parse("2002-09-10T23:08:25.123456Z", &us), TIMESTAMP_OK);
    assert_true(us == 1031699305123456LL);
}

/* A numeric offset is applied: 01:00+01:00 is 00:00Z. */
static void test_parse_offset(void **state)
{
    (void)state;
    int64_t a, b;
    assert_int_equal(timestamp_parse("2020-01-01T01:00:00+01:00", &a), TIMESTAMP_OK);
    assert_int_equal(timestamp_parse("2020-01-01T00:00:00Z", &b), TIMESTAMP_OK);
    assert_true(a == b);
    assert_int_equal(timestamp_parse("2019-12-31T19:00:00-05:00", &a), TIMESTAMP_OK);
    assert_true(a == b);
}

/* A bare date is its midnight UTC. */
static void test_parse_date(void **state)
{
    (void)state;
    int64_t a, b;
    assert_int_equal(timestamp_parse("2021-03-04", &a), TIMESTAMP_OK);
    assert_int_equal(timestamp_parse("2021-03-04T00:00:00Z", &b), TIMESTAMP_OK);
    assert_true(a == b);
}

/* Missing zones, garbage and impossible dates are refused. */
static void test_parse_rejects(void **state)
{
    (void)state;
    int64_t us;
    assert_int_equal(timestamp_parse("2021-03-04T10:00:00", &us), TIMESTAMP_ERR_SYNTAX);
    assert_int_equal(timestamp_parse("yesterday", &us), TIMESTAMP_ERR_SYNTAX);
    assert_int_equal(timestamp_parse("2021-02-30T00:00:00Z", &us), TIMESTAMP_ERR_RANGE);
    assert_int_equal(timestamp_parse("2021-13-01", &us), TIMESTAMP_ERR_RANGE);
    assert_int_equal(timestamp_parse("2021-01-01T00:00:00Zjunk", &us), TIMESTAMP_ERR_SYNTAX);
    assert_int_equal(timestamp_parse(NULL, &us), TIMESTAMP_ERR_SYNTAX);
}

/* format then parse gives back the same microsecond. */
static void test_round_trip(void **state)
{
    (void)state;
    char buf[TIMESTAMP_MAX];
    int64_t in = 1700000000123456LL, out;
    timestamp_format(in, buf);
    assert_string_equal(buf, "2023-11-14T22:13:20.123456Z");
    assert_int_equal(timestamp_parse(buf, &out), TIMESTAMP_OK);
    assert_true(in == out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_utc_fraction),
        cmocka_unit_test(test_parse_offset),
        cmocka_unit_test(test_parse_date),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
