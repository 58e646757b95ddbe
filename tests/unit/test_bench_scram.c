/*
 * Unit tests for tools/bench/scram_client.c against the exchanges printed
 * in RFC 7677 §3 (SCRAM-SHA-256) and RFC 5802 §5 (SCRAM-SHA-1), plus the
 * checks a client owes the server's messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../tools/bench/scram_client.h"

#define SF256 "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define CF256 "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define V256 "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
#define SF1 "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
#define CF1 "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
#define V1 "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="

/* RFC 7677 §3: client-first, client-final and the server signature as printed. */
static void test_rfc7677_exchange(void **state)
{
    (void)state;
    struct scram_client sc;
    char *first = scram_client_first(&sc, SCRAM_SHA256, "user", "rOprNGfwEbeRWgbNEkqO");
    assert_string_equal(first, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    char *final;
    assert_int_equal(scram_client_final(&sc, SF256, "pencil", NULL, &final), 0);
    assert_string_equal(final, CF256);
    assert_int_equal(scram_client_verify(&sc, V256), 0);
    free(first);
    free(final);
    scram_client_fini(&sc);
}

/* RFC 5802 §5: the SCRAM-SHA-1 exchange as printed. */
static void test_rfc5802_exchange(void **state)
{
    (void)state;
    struct scram_client sc;
    char *first = scram_client_first(&sc, SCRAM_SHA1, "user", "fyko+d2lbbFgONRv9qkxdawL");
    assert_string_equal(first, "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    char *final;
    assert_int_equal(scram_client_final(&sc, SF1, "pencil", NULL, &final), 0);
    assert_string_equal(final, CF1);
    assert_int_equal(scram_client_verify(&sc, V1), 0);
    free(first);
    free(final);
    scram_client_fini(&sc);
}

/* The key cache gives the same proof on a hit and is refreshed on a new salt. */
static void test_keycache_reused_and_refreshed(void **state)
{
    (void)state;
    struct scram_keycache cache = { 0 };
    for (int round = 0; round < 2; round++) {
        struct scram_client sc;
        char *final;
        free(scram_client_first(&sc, SCRAM_SHA256, "user", "rOprNGfwEbeRWgbNEkqO"));
        assert_int_equal(scram_client_final(&sc, SF256, "pencil", &cache, &final), 0);
        /* Round 1 fills the cache; round 2 must use it, so a key we spoiled shows. */
        if (round == 0)
            assert_string_equal(final, CF256);
        else
            assert_string_not_equal(final, CF256);
        assert_true(cache.is_valid);
        cache.client_key[0] ^= 1;
        free(final);
        scram_client_fini(&sc);
    }
    /* Same cache, another hash and salt: must not reuse the SHA-256 keys. */
    struct scram_client sc;
    char *final;
    free(scram_client_first(&sc, SCRAM_SHA1, "user", "fyko+d2lbbFgONRv9qkxdawL"));
    assert_int_equal(scram_client_final(&sc, SF1, "pencil", &cache, &final), 0);
    assert_string_equal(final, CF1);
    free(final);
    scram_client_fini(&sc);
}

/* ',' and '=' in the username are escaped (RFC 5802 §5.1). */
static void test_username_escaped(void **state)
{
    (void)state;
    struct scram_client sc;
    char *first = scram_client_first(&sc, SCRAM_SHA256, "a,b=c", "n0nce");
    assert_string_equal(first, "n,,n=a=2Cb=3Dc,r=n0nce");
    free(first);
    scram_client_fini(&sc);
}

/* A server nonce that does not start with ours is refused. */
static void test_nonce_must_extend_ours(void **state)
{
    (void)state;
    struct scram_client sc;
    char *final;
    free(scram_client_first(&sc, SCRAM_SHA256, "user", "abc"));
    assert_int_equal(scram_client_final(&sc, "r=abd123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "pencil", NULL, &final),
                     SCRAM_CLIENT_ERR_NONCE);
    assert_null(final);
    scram_client_fini(&sc);
    free(scram_client_first(&sc, SCRAM_SHA256, "user", "abc"));
    assert_int_equal(scram_client_final(&sc, "r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "pencil", NULL, &final),
                     SCRAM_CLIENT_ERR_NONCE);
    scram_client_fini(&sc);
}

/* Malformed server-first messages: missing fields, bad salt, extensions, bad counts. */
static void test_server_first_malformed(void **state)
{
    (void)state;
    const struct { const char *msg; int rc; } cases[] = {
        { "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", SCRAM_CLIENT_ERR_FORMAT },
        { "r=abcdef,i=4096", SCRAM_CLIENT_ERR_FORMAT },
        { "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==", SCRAM_CLIENT_ERR_FORMAT },
        { "m=ext,r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", SCRAM_CLIENT_ERR_FORMAT },
        { "r=abcdef,s=not base64!,i=4096", SCRAM_CLIENT_ERR_FORMAT },
        { "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", SCRAM_CLIENT_ERR_ITERATIONS },
        { "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=04096", SCRAM_CLIENT_ERR_ITERATIONS },
        { "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999", SCRAM_CLIENT_ERR_ITERATIONS },
        { "r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=12x", SCRAM_CLIENT_ERR_ITERATIONS },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct scram_client sc;
        char *final;
        free(scram_client_first(&sc, SCRAM_SHA256, "user", "abc"));
        assert_int_equal(scram_client_final(&sc, cases[i].msg, "pencil", NULL, &final), cases[i].rc);
        assert_null(final);
        scram_client_fini(&sc);
    }
}

/* A wrong, truncated or error server-final fails verification. */
static void test_server_final_wrong(void **state)
{
    (void)state;
    struct scram_client sc;
    char *final;
    free(scram_client_first(&sc, SCRAM_SHA256, "user", "rOprNGfwEbeRWgbNEkqO"));
    assert_int_equal(scram_client_final(&sc, SF256, "pencil", NULL, &final), 0);
    free(final);
    assert_int_equal(scram_client_verify(&sc, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5="), SCRAM_CLIENT_ERR_SERVER);
    assert_int_equal(scram_client_verify(&sc, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5n"), SCRAM_CLIENT_ERR_SERVER);
    assert_int_equal(scram_client_verify(&sc, "e=invalid-proof"), SCRAM_CLIENT_ERR_SERVER);
    /* With the wrong password the signature we expect differs from the RFC's. */
    scram_client_fini(&sc);
    free(scram_client_first(&sc, SCRAM_SHA256, "user", "rOprNGfwEbeRWgbNEkqO"));
    assert_int_equal(scram_client_final(&sc, SF256, "pen", NULL, &final), 0);
    assert_string_not_equal(final, CF256);
    free(final);
    assert_int_equal(scram_client_verify(&sc, V256), SCRAM_CLIENT_ERR_SERVER);
    scram_client_fini(&sc);
}

/* Out of order: final twice, verify before final. */
static void test_out_of_order(void **state)
{
    (void)state;
    struct scram_client sc;
    char *final;
    free(scram_client_first(&sc, SCRAM_SHA256, "user", "rOprNGfwEbeRWgbNEkqO"));
    assert_int_equal(scram_client_verify(&sc, V256), SCRAM_CLIENT_ERR_STATE);
    assert_int_equal(scram_client_final(&sc, SF256, "pencil", NULL, &final), 0);
    free(final);
    assert_int_equal(scram_client_final(&sc, SF256, "pencil", NULL, &final), SCRAM_CLIENT_ERR_STATE);
    scram_client_fini(&sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7677_exchange),
        cmocka_unit_test(test_rfc5802_exchange),
        cmocka_unit_test(test_keycache_reused_and_refreshed),
        cmocka_unit_test(test_username_escaped),
        cmocka_unit_test(test_nonce_must_extend_ours),
        cmocka_unit_test(test_server_first_malformed),
        cmocka_unit_test(test_server_final_wrong),
        cmocka_unit_test(test_out_of_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
