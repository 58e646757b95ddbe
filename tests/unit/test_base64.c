/*
 * Unit tests for common/base64.c: RFC 4648 §10 vectors both ways, and the
 * strictness base64.h promises (no whitespace, no stray padding, canonical
 * padding bits).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"

static const struct { const char *raw, *b64; } rfc4648[] = {
    { "", "" },
    { "f", "Zg==" },
    { "fo", "Zm8=" },
    { "foo", "Zm9v" },
    { "foob", "Zm9vYg==" },
    { "fooba", "Zm9vYmE=" },
    { "foobar", "Zm9vYmFy" },
};

/* Decodes s expecting failure, and checks *out is left NULL. */
static void assert_rejected(const char *s, size_t len)
{
    unsigned char *out = (unsigned char *)"sentinel";
    size_t out_len = 99;

    assert_int_equal(base64_decode(s, len, &out, &out_len), BASE64_ERR_INVALID);
    assert_null(out);
    assert_int_equal(out_len, 0);
}

/* encode: every RFC 4648 §10 vector. */
static void test_encode_rfc4648(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        char *s = base64_encode((const unsigned char *)rfc4648[i].raw, strlen(rfc4648[i].raw));
        assert_string_equal(s, rfc4648[i].b64);
        free(s);
    }
}

/* decode: every RFC 4648 §10 vector, output NUL-terminated. */
static void test_decode_rfc4648(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        unsigned char *out;
        size_t len;
        assert_int_equal(base64_decode(rfc4648[i].b64, strlen(rfc4648[i].b64), &out, &len), 0);
        assert_int_equal(len, strlen(rfc4648[i].raw));
        assert_memory_equal(out, rfc4648[i].raw, len);
        assert_int_equal(out[len], '\0');
        free(out);
    }
}

/* encode of NULL with length 0 is "", and "" decodes from NULL too. */
static void test_empty_null(void **state)
{
    unsigned char *out;
    size_t len = 7;
    (void)state;

    char *s = base64_encode(NULL, 0);
    assert_string_equal(s, "");
    free(s);
    assert_int_equal(base64_decode(NULL, 0, &out, &len), 0);
    assert_non_null(out);
    assert_int_equal(len, 0);
    assert_int_equal(out[0], '\0');
    free(out);
}

/* every byte value survives a round trip, at every length up to 256. */
static void test_round_trip_binary(void **state)
{
    unsigned char raw[256];
    (void)state;

    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (unsigned char)(255 - i);
    for (size_t n = 0; n <= sizeof(raw); n++) {
        char *s = base64_encode(raw, n);
        unsigned char *out;
        size_t len;
        assert_int_equal(strlen(s), (n + 2) / 3 * 4);
        assert_int_equal(base64_decode(s, strlen(s), &out, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(out, raw, n);
        free(out);
        free(s);
    }
}

/* characters outside the alphabet are rejected, including URL-safe ones. */
static void test_reject_bad_chars(void **state)
{
    (void)state;
    assert_rejected("Zm9v!A==", 8);
    assert_rejected("Zm9-", 4);
    assert_rejected("Zm9_", 4);
    assert_rejected("Zm\xc3\xa9", 4);
}

/* whitespace anywhere is rejected. */
static void test_reject_whitespace(void **state)
{
    (void)state;
    assert_rejected(" Zm9v", 5);
    assert_rejected("Zm9v\n", 5);
    assert_rejected("Zm9v\r\nYmFy", 10);
    assert_rejected("Zm 9", 4);
}

/* a length that is not a multiple of 4 is rejected (padding is required). */
static void test_reject_bad_length(void **state)
{
    (void)state;
    assert_rejected("Zg", 2);
    assert_rejected("Zm8", 3);
    assert_rejected("Zg=", 3);
    assert_rejected("Zm9vY", 5);
}

/* '=' other than as the last one or two characters is rejected. */
static void test_reject_bad_padding(void **state)
{
    (void)state;
    assert_rejected("Zg==Zm9v", 8);
    assert_rejected("Z===", 4);
    assert_rejected("====", 4);
    assert_rejected("Zm=v", 4);
    assert_rejected("=m9v", 4);
}

/* non-zero bits under the padding are rejected (RFC 4648 §3.5). */
static void test_reject_noncanonical(void **state)
{
    (void)state;
    assert_rejected("Zh==", 4);
    assert_rejected("Zm9=", 4);
}

/* an embedded NUL counts as a bad character, not an end of input. */
static void test_reject_embedded_nul(void **state)
{
    (void)state;
    assert_rejected("Zm9v\0\0\0\0", 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_rfc4648),
        cmocka_unit_test(test_decode_rfc4648),
        cmocka_unit_test(test_empty_null),
        cmocka_unit_test(test_round_trip_binary),
        cmocka_unit_test(test_reject_bad_chars),
        cmocka_unit_test(test_reject_whitespace),
        cmocka_unit_test(test_reject_bad_length),
        cmocka_unit_test(test_reject_bad_padding),
        cmocka_unit_test(test_reject_noncanonical),
        cmocka_unit_test(test_reject_embedded_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
