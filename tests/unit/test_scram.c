/*
 * Unit tests for common/scram.c: the RFC 5802 §5 (SHA-1) and RFC 7677 §3
 * (SHA-256) examples as printed, RFC 6070 PBKDF2 vectors for Hi(), the
 * storage form, generation and SASLprep (RFC 4013 §3 examples).
 * StoredKey/ServerKey expectations were computed independently (Python
 * hashlib) and reproduce the RFCs' printed proofs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"
#include "scram.h"

struct vector {
    enum scram_hash hash;
    const char *salt_b64, *client_nonce, *server_nonce;
    const char *stored_b64, *server_b64, *proof_b64, *signature_b64;
};

static const struct vector rfc5802 = {
    SCRAM_SHA1, "QSXCR+Q6sek8bf92", "fyko+d2lbbFgONRv9qkxdawL", "3rfcNHYJY1ZVvWVs7j",
    "6dlGYMOdZcOPutkcNY8U2g7vK9Y=", "D+CSWLOshSulAsxiupA+qs2/fTE=",
    "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

static const struct vector rfc7677 = {
    SCRAM_SHA256, "W22ZaJ0SNY7soEsUEjb6gQ==", "rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=", "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
    "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

static void cred_for(const struct vector *v, struct scram_cred *c)
{
    unsigned char *salt;
    size_t salt_len;

    assert_int_equal(base64_decode(v->salt_b64, strlen(v->salt_b64), &salt, &salt_len), 0);
    assert_int_equal(scram_cred_from_password(v->hash, "pencil", salt, salt_len, 4096, c), 0);
    free(salt);
}

static void assert_b64(const unsigned char *raw, size_t len, const char *want)
{
    char *got = base64_encode(raw, len);
    assert_string_equal(got, want);
    free(got);
}

/* AuthMessage of the RFC examples: user "user", gs2 header "n,,". */
static char *auth_message(const struct vector *v)
{
    char *s = NULL;
    assert_true(asprintf(&s, "n=user,r=%s,r=%s%s,s=%s,i=4096,c=biws,r=%s%s",
                         v->client_nonce, v->client_nonce, v->server_nonce, v->salt_b64,
                         v->client_nonce, v->server_nonce) > 0);
    return s;
}

/* Computes ClientProof the client's way (K1, K2, K3, K5, K6) from the password. */
static void client_proof(const struct vector *v, unsigned char *proof)
{
    size_t hlen = scram_hash_len(v->hash);
    unsigned char *salt, salted[SCRAM_MAX_HASH], client_key[SCRAM_MAX_HASH];
    unsigned char stored[SCRAM_MAX_HASH], sig[SCRAM_MAX_HASH];
    size_t salt_len;
    char *auth = auth_message(v);

    assert_int_equal(base64_decode(v->salt_b64, strlen(v->salt_b64), &salt, &salt_len), 0);
    assert_int_equal(scram_hi(v->hash, "pencil", 6, salt, salt_len, 4096, salted), 0);
    scram_hmac(v->hash, salted, hlen, (const unsigned char *)"Client Key", 10, client_key);
    scram_digest(v->hash, client_key, hlen, stored);
    scram_hmac(v->hash, stored, hlen, (const unsigned char *)auth, strlen(auth), sig);
    for (size_t i = 0; i < hlen; i++)
        proof[i] = client_key[i] ^ sig[i];
    free(salt);
    free(auth);
}

/* hash lengths and names. */
static void test_hash_len_name(void **state)
{
    (void)state;
    assert_int_equal(scram_hash_len(SCRAM_SHA1), 20);
    assert_int_equal(scram_hash_len(SCRAM_SHA256), 32);
    assert_string_equal(scram_hash_name(SCRAM_SHA1), "SHA-1");
    assert_string_equal(scram_hash_name(SCRAM_SHA256), "SHA-256");
}

/* Hi() is PBKDF2-HMAC-SHA1 with dkLen 20: RFC 6070 vectors for c=1, 2, 4096. */
static void test_hi_rfc6070(void **state)
{
    static const struct { unsigned c; const char *hex; } v[] = {
        { 1, "0c60c80f961f0e71f3a9b524af6012062fe037a6" },
        { 2, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957" },
        { 4096, "4b007901b765489abead49d926f721d065a429c1" },
    };
    (void)state;

    for (size_t i = 0; i < 3; i++) {
        unsigned char out[20];
        char hex[41];
        assert_int_equal(scram_hi(SCRAM_SHA1, "password", 8, (const unsigned char *)"salt", 4, v[i].c, out), 0);
        for (size_t j = 0; j < 20; j++)
            snprintf(hex + 2 * j, 3, "%02x", out[j]);
        assert_string_equal(hex, v[i].hex);
    }
}

/* Hi() refuses zero iterations. */
static void test_hi_zero_iterations(void **state)
{
    unsigned char out[20];
    (void)state;
    assert_int_equal(scram_hi(SCRAM_SHA1, "p", 1, (const unsigned char *)"s", 1, 0, out), SCRAM_ERR_ITERATIONS);
}

/* RFC 5802 §5: keys derived from "pencil" give the printed proof and signature. */
static void test_rfc5802_example(void **state)
{
    struct scram_cred c;
    unsigned char proof[SCRAM_MAX_HASH], sig[SCRAM_MAX_HASH];
    char *auth = auth_message(&rfc5802);
    (void)state;

    cred_for(&rfc5802, &c);
    assert_b64(c.stored_key, 20, rfc5802.stored_b64);
    assert_b64(c.server_key, 20, rfc5802.server_b64);
    client_proof(&rfc5802, proof);
    assert_b64(proof, 20, rfc5802.proof_b64);
    scram_server_signature(&c, (const unsigned char *)auth, strlen(auth), sig);
    assert_b64(sig, 20, rfc5802.signature_b64);
    free(auth);
}

/* RFC 7677 §3: the SHA-256 example's proof and signature as printed. */
static void test_rfc7677_example(void **state)
{
    struct scram_cred c;
    unsigned char proof[SCRAM_MAX_HASH], sig[SCRAM_MAX_HASH];
    char *auth = auth_message(&rfc7677);
    (void)state;

    cred_for(&rfc7677, &c);
    assert_b64(c.stored_key, 32, rfc7677.stored_b64);
    assert_b64(c.server_key, 32, rfc7677.server_b64);
    client_proof(&rfc7677, proof);
    assert_b64(proof, 32, rfc7677.proof_b64);
    scram_server_signature(&c, (const unsigned char *)auth, strlen(auth), sig);
    assert_b64(sig, 32, rfc7677.signature_b64);
    free(auth);
}

/* scram_verify_proof accepts the RFC's printed proof and refuses a flipped bit. */
static void test_verify_proof(void **state)
{
    const struct vector *vs[] = { &rfc5802, &rfc7677 };
    (void)state;

    for (size_t i = 0; i < 2; i++) {
        struct scram_cred c;
        unsigned char *proof;
        size_t len;
        char *auth = auth_message(vs[i]);
        cred_for(vs[i], &c);
        assert_int_equal(base64_decode(vs[i]->proof_b64, strlen(vs[i]->proof_b64), &proof, &len), 0);
        assert_int_equal(scram_verify_proof(&c, (const unsigned char *)auth, strlen(auth), proof), 0);
        proof[len - 1] ^= 1;
        assert_int_equal(scram_verify_proof(&c, (const unsigned char *)auth, strlen(auth), proof), SCRAM_ERR_PROOF);
        free(proof);
        free(auth);
    }
}

/* from_password records hash, salt and iterations alongside the keys. */
static void test_cred_fields(void **state)
{
    struct scram_cred c;
    (void)state;

    cred_for(&rfc7677, &c);
    assert_int_equal(c.hash, SCRAM_SHA256);
    assert_int_equal(c.iterations, 4096);
    assert_int_equal(c.salt_len, 16);
    assert_b64(c.salt, c.salt_len, rfc7677.salt_b64);
}

/* from_password refuses an empty salt, an oversized salt and zero iterations. */
static void test_cred_bad_params(void **state)
{
    unsigned char salt[SCRAM_MAX_SALT + 1] = { 0 };
    struct scram_cred c;
    (void)state;

    assert_int_equal(scram_cred_from_password(SCRAM_SHA1, "pencil", salt, 0, 4096, &c), SCRAM_ERR_SALT);
    assert_int_equal(scram_cred_from_password(SCRAM_SHA1, "pencil", salt, SCRAM_MAX_SALT + 1, 4096, &c), SCRAM_ERR_SALT);
    assert_int_equal(scram_cred_from_password(SCRAM_SHA1, "pencil", salt, 16, 0, &c), SCRAM_ERR_ITERATIONS);
    assert_int_equal(scram_cred_from_password((enum scram_hash)7, "pencil", salt, 16, 4096, &c), SCRAM_ERR_HASH);
}

/* encode gives the documented storage form of the RFC 5802 credential. */
static void test_encode_format(void **state)
{
    struct scram_cred c;
    (void)state;

    cred_for(&rfc5802, &c);
    char *s = scram_cred_encode(&c);
    assert_string_equal(s, "4096$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=$D+CSWLOshSulAsxiupA+qs2/fTE=");
    free(s);
}

/* encode then decode gives back the same credential, for both hashes. */
static void test_encode_decode_round_trip(void **state)
{
    const struct vector *vs[] = { &rfc5802, &rfc7677 };
    (void)state;

    for (size_t i = 0; i < 2; i++) {
        struct scram_cred c, d;
        cred_for(vs[i], &c);
        char *s = scram_cred_encode(&c);
        assert_int_equal(scram_cred_decode(vs[i]->hash, s, &d), 0);
        assert_int_equal(d.hash, c.hash);
        assert_int_equal(d.iterations, c.iterations);
        assert_int_equal(d.salt_len, c.salt_len);
        assert_memory_equal(d.salt, c.salt, c.salt_len);
        assert_memory_equal(d.stored_key, c.stored_key, scram_hash_len(c.hash));
        assert_memory_equal(d.server_key, c.server_key, scram_hash_len(c.hash));
        free(s);
    }
}

/* decode rejects malformed storage strings with the specific code. */
static void test_decode_rejects(void **state)
{
    static const struct { const char *s; int rc; } bad[] = {
        { "", SCRAM_ERR_FORMAT },
        { "4096$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=", SCRAM_ERR_FORMAT },
        { "4096$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=$D+CSWLOshSulAsxiupA+qs2/fTE=$", SCRAM_ERR_FORMAT },
        { "x$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=$D+CSWLOshSulAsxiupA+qs2/fTE=", SCRAM_ERR_FORMAT },
        { "-1$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=$D+CSWLOshSulAsxiupA+qs2/fTE=", SCRAM_ERR_FORMAT },
        { "04096$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=$D+CSWLOshSulAsxiupA+qs2/fTE=", SCRAM_ERR_FORMAT },
        { "0$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=$D+CSWLOshSulAsxiupA+qs2/fTE=", SCRAM_ERR_FORMAT },
        { "99999999999$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=$D+CSWLOshSulAsxiupA+qs2/fTE=", SCRAM_ERR_FORMAT },
        { "4294967295$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkcNY8U2g7vK9Y=$D+CSWLOshSulAsxiupA+qs2/fTE=", SCRAM_ERR_ITERATIONS },
        { "4096$$6dlGYMOdZcOPutkcNY8U2g7vK9Y=$D+CSWLOshSulAsxiupA+qs2/fTE=", SCRAM_ERR_SALT },
        { "4096$QSXCR+Q6sek8bf9!$6dlGYMOdZcOPutkcNY8U2g7vK9Y=$D+CSWLOshSulAsxiupA+qs2/fTE=", SCRAM_ERR_FORMAT },
        { "4096$QSXCR+Q6sek8bf92$6dlGYMOdZcOPutkc$D+CSWLOshSulAsxiupA+qs2/fTE=", SCRAM_ERR_FORMAT },
        /* SHA-256 keys under the SHA-1 hash: wrong key length */
        { "4096$W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=$wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=", SCRAM_ERR_FORMAT },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct scram_cred c;
        assert_int_equal(scram_cred_decode(SCRAM_SHA1, bad[i].s, &c), bad[i].rc);
    }
}

/* generate makes a fresh 16-byte salt each time, and its keys re-derive from it. */
static void test_generate_distinct_salts(void **state)
{
    struct scram_cred a, b, again;
    (void)state;

    assert_int_equal(scram_cred_generate(SCRAM_SHA256, "pencil", 4096, &a), 0);
    assert_int_equal(scram_cred_generate(SCRAM_SHA256, "pencil", 4096, &b), 0);
    assert_int_equal(a.salt_len, SCRAM_SALT_LEN);
    assert_int_equal(b.salt_len, SCRAM_SALT_LEN);
    assert_memory_not_equal(a.salt, b.salt, SCRAM_SALT_LEN);
    assert_memory_not_equal(a.stored_key, b.stored_key, 32);
    assert_int_equal(scram_cred_from_password(SCRAM_SHA256, "pencil", a.salt, a.salt_len, 4096, &again), 0);
    assert_memory_equal(again.stored_key, a.stored_key, 32);
    assert_memory_equal(again.server_key, a.server_key, 32);
}

/* generate refuses fewer than 4096 iterations. */
static void test_generate_min_iterations(void **state)
{
    struct scram_cred c;
    (void)state;
    assert_int_equal(scram_cred_generate(SCRAM_SHA256, "pencil", 4095, &c), SCRAM_ERR_ITERATIONS);
    assert_int_equal(scram_cred_generate(SCRAM_SHA256, "pencil", 4096, &c), 0);
}

/* generate refuses a password that is empty after SASLprep. */
static void test_generate_empty_password(void **state)
{
    struct scram_cred c;
    (void)state;
    assert_int_equal(scram_cred_generate(SCRAM_SHA256, "", 4096, &c), SCRAM_ERR_PASSWORD);
    assert_int_equal(scram_cred_generate(SCRAM_SHA256, "\xc2\xad", 4096, &c), SCRAM_ERR_PASSWORD);
}

/* SASLprep: the RFC 4013 §3 examples that succeed. */
static void test_saslprep_examples(void **state)
{
    static const struct { const char *in, *out; } v[] = {
        { "I\xc2\xadX", "IX" },        /* SOFT HYPHEN mapped to nothing */
        { "user", "user" },
        { "USER", "USER" },            /* no case folding */
        { "\xc2\xaa", "a" },           /* FEMININE ORDINAL INDICATOR, NFKC */
        { "\xe2\x85\xa8", "IX" },      /* ROMAN NUMERAL NINE, NFKC */
        { "a\xc2\xa0" "b", "a b" },    /* NO-BREAK SPACE mapped to SPACE */
    };
    (void)state;

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *out;
        assert_int_equal(scram_saslprep(v[i].in, &out), 0);
        assert_string_equal(out, v[i].out);
        free(out);
    }
}

/* SASLprep: prohibited characters, bidi violations and bad UTF-8 fail. */
static void test_saslprep_rejects(void **state)
{
    static const char *bad[] = {
        "\x07",                        /* RFC 4013 §3: prohibited control */
        "\xd8\xa7" "1",                /* RFC 4013 §3: bidi RandALCat then L/EN */
        "a\xff" "b",                   /* invalid UTF-8 */
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *out = (char *)"x";
        assert_int_equal(scram_saslprep(bad[i], &out), SCRAM_ERR_PREP);
        assert_null(out);
    }
}

/* from_password applies SASLprep: "I<SOFT HYPHEN>X" derives the keys of "IX". */
static void test_cred_uses_saslprep(void **state)
{
    const unsigned char salt[] = "0123456789abcdef";
    struct scram_cred a, b;
    (void)state;

    assert_int_equal(scram_cred_from_password(SCRAM_SHA256, "I\xc2\xadX", salt, 16, 4096, &a), 0);
    assert_int_equal(scram_cred_from_password(SCRAM_SHA256, "IX", salt, 16, 4096, &b), 0);
    assert_memory_equal(a.stored_key, b.stored_key, 32);
    assert_memory_equal(a.server_key, b.server_key, 32);
}

/* from_password fails with SCRAM_ERR_PREP on a prohibited character. */
static void test_cred_prep_error(void **state)
{
    const unsigned char salt[] = "0123456789abcdef";
    struct scram_cred c;
    (void)state;
    assert_int_equal(scram_cred_from_password(SCRAM_SHA256, "pen\x07" "cil", salt, 16, 4096, &c), SCRAM_ERR_PREP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_len_name),
        cmocka_unit_test(test_hi_rfc6070),
        cmocka_unit_test(test_hi_zero_iterations),
        cmocka_unit_test(test_rfc5802_example),
        cmocka_unit_test(test_rfc7677_example),
        cmocka_unit_test(test_verify_proof),
        cmocka_unit_test(test_cred_fields),
        cmocka_unit_test(test_cred_bad_params),
        cmocka_unit_test(test_encode_format),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_generate_distinct_salts),
        cmocka_unit_test(test_generate_min_iterations),
        cmocka_unit_test(test_generate_empty_password),
        cmocka_unit_test(test_saslprep_examples),
        cmocka_unit_test(test_saslprep_rejects),
        cmocka_unit_test(test_cred_uses_saslprep),
        cmocka_unit_test(test_cred_prep_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
