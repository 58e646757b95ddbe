/*
 * Unit tests for tools/bench/stamp.c: the message body that carries run,
 * sender, sequence number and send time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../tools/bench/stamp.h"

/* Encoding gives the documented text. */
static void test_encode_text(void **state)
{
    (void)state;
    struct stamp s = { 7, 42, 1000, 123456789012345ULL };
    char out[128];
    int n = stamp_encode(&s, 0, out, sizeof(out));
    assert_string_equal(out, "pb1 7 42 1000 123456789012345");
    assert_int_equal(n, (int)strlen(out));
}

/* What encode writes, parse reads back, with and without padding, at the extremes. */
static void test_round_trip(void **state)
{
    (void)state;
    const struct stamp in[] = { { 0, 0, 0, 0 }, { UINT32_MAX, UINT32_MAX, UINT64_MAX, UINT64_MAX },
                                { 3, 99, 12, 5 } };
    for (size_t i = 0; i < 3; i++) {
        for (size_t pad = 0; pad < 40; pad += 13) {
            char out[256];
            struct stamp got;
            int n = stamp_encode(&in[i], pad, out, sizeof(out));
            assert_true(n > 0);
            assert_int_equal(stamp_parse(out, (size_t)n, &got), 0);
            assert_int_equal(got.run, in[i].run);
            assert_int_equal(got.sender, in[i].sender);
            assert_true(got.seq == in[i].seq);
            assert_true(got.t_ns == in[i].t_ns);
        }
    }
}

/* A buffer too small is refused rather than truncated. */
static void test_encode_too_small(void **state)
{
    (void)state;
    struct stamp s = { 1, 2, 3, 4 };
    char out[10];
    assert_int_equal(stamp_encode(&s, 0, out, sizeof(out)), STAMP_ERR_SPACE);
    char out2[20];
    assert_int_equal(stamp_encode(&s, 50, out2, sizeof(out2)), STAMP_ERR_SPACE);
}

/* Parse reads only len bytes: the text need not end in NUL. */
static void test_parse_uses_len(void **state)
{
    (void)state;
    const char text[] = "pb1 1 2 3 4garbage";
    struct stamp got;
    assert_int_equal(stamp_parse(text, 11, &got), 0);
    assert_true(got.t_ns == 4);
    assert_int_equal(stamp_parse(text, strlen(text), &got), STAMP_ERR_FORMAT);
}

/* Bodies that are not ours are refused. */
static void test_parse_rejects_foreign(void **state)
{
    (void)state;
    const char *bad[] = {
        "", "hello", "pb2 1 2 3 4", "pb1", "pb1 ", "pb1 1 2 3", "pb1 1 2 3 ", "pb1 1 2 3 4 ",
        "pb1 -1 2 3 4", "pb1 +1 2 3 4", "pb1 1  2 3 4", "pb1 4294967296 2 3 4",
        "pb1 1 2 18446744073709551616 4", "pb1 1 2 3 4 xxy", "pb1 a 2 3 4",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct stamp got;
        assert_int_equal(stamp_parse(bad[i], strlen(bad[i]), &got), STAMP_ERR_FORMAT);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_text),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_encode_too_small),
        cmocka_unit_test(test_parse_uses_len),
        cmocka_unit_test(test_parse_rejects_foreign),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
