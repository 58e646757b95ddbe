/*
 * Unit tests for gateway/sasl.c: full SCRAM-SHA-1 (RFC 5802 §5) and
 * SCRAM-SHA-256 (RFC 7677 §3) exchanges with the printed messages, unknown
 * users, every malformed-message path, authzid rules, PLAIN, and calls made
 * in the wrong state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"
#include "sasl.h"
#include "scram.h"

struct exchange {
    enum sasl_mech mech;
    const char *salt_b64, *server_nonce;
    const char *client_first, *server_first, *client_final, *server_final;
};

static const struct exchange rfc5802 = {
    SASL_SCRAM_SHA1, "QSXCR+Q6sek8bf92", "3rfcNHYJY1ZVvWVs7j",
    "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
};

static const struct exchange rfc7677 = {
    SASL_SCRAM_SHA256, "W22ZaJ0SNY7soEsUEjb6gQ==", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
};

/* The stored credential for password "pencil" with the exchange's salt. */
static struct scram_cred cred_for(const struct exchange *x)
{
    struct scram_cred c;
    unsigned char *salt;
    size_t len;

    assert_int_equal(base64_decode(x->salt_b64, strlen(x->salt_b64), &salt, &len), 0);
    assert_int_equal(scram_cred_from_password(sasl_cred_hash(x->mech), "pencil", salt, len, 4096, &c), 0);
    free(salt);
    return c;
}

/* Calls fn-like steps with a string message and frees *out unless kept. */
static int start_str(struct sasl *s, const char *msg, char **kept)
{
    unsigned char *out;
    size_t len;
    int rc = sasl_start(s, (const unsigned char *)msg, strlen(msg), &out, &len);
    if (kept)
        *kept = (char *)out;
    else
        free(out);
    return rc;
}

static int step_str(struct sasl *s, const char *msg, char **kept)
{
    unsigned char *out;
    size_t len;
    int rc = sasl_step(s, (const unsigned char *)msg, strlen(msg), &out, &len);
    if (kept)
        *kept = (char *)out;
    else
        free(out);
    return rc;
}

static int creds(struct sasl *s, const struct scram_cred *c, char **kept)
{
    unsigned char *out;
    size_t len;
    int rc = sasl_set_creds(s, c, &out, &len);
    if (kept)
        *kept = (char *)out;
    else
        free(out);
    return rc;
}

/* A SCRAM exchange of x brought up to the client-final-message. */
static struct sasl *scram_at_final(const struct exchange *x, const char *client_first)
{
    struct sasl *s = sasl_new(x->mech, 0);
    struct scram_cred c = cred_for(x);

    sasl_set_nonce_for_test(s, x->server_nonce);
    assert_int_equal(start_str(s, client_first, NULL), SASL_NEED_CREDS);
    assert_int_equal(creds(s, &c, NULL), SASL_CONTINUE);
    return s;
}

/* Runs x in full and checks every server message against the RFC text. */
static void run_exchange(const struct exchange *x)
{
    struct sasl *s = sasl_new(x->mech, 0);
    struct scram_cred c = cred_for(x);
    char *out;

    sasl_set_nonce_for_test(s, x->server_nonce);
    assert_int_equal(start_str(s, x->client_first, &out), SASL_NEED_CREDS);
    assert_null(out);
    assert_string_equal(sasl_authcid(s), "user");
    assert_null(sasl_authzid(s));
    assert_int_equal(creds(s, &c, &out), SASL_CONTINUE);
    assert_string_equal(out, x->server_first);
    free(out);
    assert_int_equal(step_str(s, x->client_final, &out), SASL_OK);
    assert_string_equal(out, x->server_final);
    free(out);
    sasl_free(s);
}

/* mechanism names map both ways; PLAIN verifies against SHA-256 creds. */
static void test_mech_names(void **state)
{
    enum sasl_mech m;
    (void)state;

    assert_int_equal(sasl_mech_from_name("SCRAM-SHA-256", &m), 0);
    assert_int_equal(m, SASL_SCRAM_SHA256);
    assert_int_equal(sasl_mech_from_name("SCRAM-SHA-1", &m), 0);
    assert_int_equal(m, SASL_SCRAM_SHA1);
    assert_int_equal(sasl_mech_from_name("PLAIN", &m), 0);
    assert_int_equal(m, SASL_PLAIN);
    assert_int_equal(sasl_mech_from_name("DIGEST-MD5", &m), -1);
    assert_int_equal(sasl_mech_from_name("plain", &m), -1);
    assert_string_equal(sasl_mech_name(SASL_SCRAM_SHA1), "SCRAM-SHA-1");
    assert_int_equal(sasl_cred_hash(SASL_SCRAM_SHA1), SCRAM_SHA1);
    assert_int_equal(sasl_cred_hash(SASL_SCRAM_SHA256), SCRAM_SHA256);
    assert_int_equal(sasl_cred_hash(SASL_PLAIN), SCRAM_SHA256);
    sasl_free(NULL);
}

/* RFC 5802 §5 SCRAM-SHA-1 exchange, message for message. */
static void test_scram_sha1_rfc5802(void **state)
{
    (void)state;
    run_exchange(&rfc5802);
}

/* RFC 7677 §3 SCRAM-SHA-256 exchange, message for message. */
static void test_scram_sha256_rfc7677(void **state)
{
    (void)state;
    run_exchange(&rfc7677);
}

/* a proof off by one character is not authorized. */
static void test_scram_wrong_proof(void **state)
{
    struct sasl *s = scram_at_final(&rfc5802, rfc5802.client_first);
    char *out;
    (void)state;

    assert_int_equal(step_str(s, "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=w0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", &out),
                     SASL_ERR_NOT_AUTHORIZED);
    assert_null(out);
    sasl_free(s);
}

/* an unknown user gets a well-formed challenge, then not-authorized even with a proof the RFC password would give. */
static void test_scram_unknown_user(void **state)
{
    struct sasl *s = sasl_new(SASL_SCRAM_SHA1, 0);
    char *out, *salt_b64;
    unsigned char *salt;
    size_t salt_len;
    (void)state;

    sasl_set_nonce_for_test(s, rfc5802.server_nonce);
    assert_int_equal(start_str(s, rfc5802.client_first, NULL), SASL_NEED_CREDS);
    assert_int_equal(creds(s, NULL, &out), SASL_CONTINUE);
    assert_true(strncmp(out, "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=", 47) == 0);
    salt_b64 = out + 47;
    size_t b64_len = strcspn(salt_b64, ",");
    assert_string_equal(salt_b64 + b64_len, ",i=4096");
    assert_int_equal(base64_decode(salt_b64, b64_len, &salt, &salt_len), 0);
    assert_int_equal(salt_len, SCRAM_SALT_LEN);
    free(salt);
    free(out);
    assert_int_equal(step_str(s, rfc5802.client_final, NULL), SASL_ERR_NOT_AUTHORIZED);
    sasl_free(s);
}

/* The server-first-message an unknown user gets in a fresh exchange. */
static char *fake_challenge(enum sasl_mech mech, const char *client_first)
{
    struct sasl *s = sasl_new(mech, 0);
    char *out;

    sasl_set_nonce_for_test(s, "N");
    assert_int_equal(start_str(s, client_first, NULL), SASL_NEED_CREDS);
    assert_int_equal(creds(s, NULL, &out), SASL_CONTINUE);
    sasl_free(s);
    return out;
}

/* fake salts are stable per user, differ between users, hashes and secrets. */
static void test_scram_fake_salt_stable(void **state)
{
    (void)state;
    sasl_set_secret((const unsigned char *)"secret one", 10);
    char *a1 = fake_challenge(SASL_SCRAM_SHA256, "n,,n=alice,r=x");
    char *a2 = fake_challenge(SASL_SCRAM_SHA256, "n,,n=alice,r=x");
    char *b = fake_challenge(SASL_SCRAM_SHA256, "n,,n=bob,r=x");
    char *a_sha1 = fake_challenge(SASL_SCRAM_SHA1, "n,,n=alice,r=x");
    sasl_set_secret((const unsigned char *)"secret two", 10);
    char *a3 = fake_challenge(SASL_SCRAM_SHA256, "n,,n=alice,r=x");

    assert_string_equal(a1, a2);
    assert_string_not_equal(a1, b);
    assert_string_not_equal(a1, a_sha1);
    assert_string_not_equal(a1, a3);
    free(a1);
    free(a2);
    free(b);
    free(a_sha1);
    free(a3);
}

/* the iteration count shown to unknown users follows sasl_set_fake_iterations. */
static void test_scram_fake_iterations(void **state)
{
    (void)state;
    sasl_set_fake_iterations(10000);
    char *out = fake_challenge(SASL_SCRAM_SHA256, "n,,n=alice,r=x");
    sasl_set_fake_iterations(SCRAM_MIN_ITERATIONS);
    size_t len = strlen(out);
    assert_true(len > 8);
    assert_string_equal(out + len - 8, ",i=10000");
    free(out);
}

/* without the test hook the server nonce is random: extends the client's, differs each time. */
static void test_scram_random_nonce(void **state)
{
    struct scram_cred c = cred_for(&rfc7677);
    char *out[2];
    (void)state;

    for (int i = 0; i < 2; i++) {
        struct sasl *s = sasl_new(SASL_SCRAM_SHA256, 0);
        assert_int_equal(start_str(s, rfc7677.client_first, NULL), SASL_NEED_CREDS);
        assert_int_equal(creds(s, &c, &out[i]), SASL_CONTINUE);
        assert_true(strncmp(out[i], "r=rOprNGfwEbeRWgbNEkqO", 22) == 0);
        assert_true(strchr(out[i], ',') - out[i] >= 22 + 24);
        sasl_free(s);
    }
    assert_string_not_equal(out[0], out[1]);
    free(out[0]);
    free(out[1]);
}

/* a client-final whose r= is not the combined nonce is malformed. */
static void test_scram_nonce_mismatch(void **state)
{
    static const char *finals[] = {
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7X,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7jj,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    };
    (void)state;

    for (size_t i = 0; i < 3; i++) {
        struct sasl *s = scram_at_final(&rfc5802, rfc5802.client_first);
        assert_int_equal(step_str(s, finals[i], NULL), SASL_ERR_MALFORMED);
        sasl_free(s);
    }
}

/* c= that is not base64 of our gs2 header, or not base64 at all, is malformed. */
static void test_scram_bad_channel_binding(void **state)
{
    static const char *finals[] = {
        "c=eSws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", /* "y,," */
        "c=biws!,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "c=,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    };
    (void)state;

    for (size_t i = 0; i < 3; i++) {
        struct sasl *s = scram_at_final(&rfc5802, rfc5802.client_first);
        assert_int_equal(step_str(s, finals[i], NULL), SASL_ERR_MALFORMED);
        sasl_free(s);
    }
}

/* gs2 flag "y" is accepted (we offer no -PLUS) and its c= must then be "eSws". */
static void test_scram_gs2_y(void **state)
{
    struct sasl *s = scram_at_final(&rfc5802, "y,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    (void)state;

    /* The RFC proof covers "c=biws", so the right c= gives a valid shape and a wrong proof. */
    assert_int_equal(step_str(s, "c=eSws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", NULL),
                     SASL_ERR_NOT_AUTHORIZED);
    sasl_free(s);
}

/* malformed client-first-messages, including a "p=" gs2 flag, are refused at start. */
static void test_scram_malformed_first(void **state)
{
    static const char *bad[] = {
        "p=tls-unique,,n=user,r=abc",  /* channel binding we don't offer */
        "x,,n=user,r=abc",             /* unknown gs2 flag */
        "n,n=user,r=abc",              /* gs2 header missing its second comma */
        "n,,r=abc",                    /* no username */
        "n,,n=user",                   /* no nonce */
        "n,,n=user,r=",                /* empty nonce */
        "n,,n=,r=abc",                 /* empty username */
        "n,,n=us=2Xer,r=abc",          /* bad '=' escape */
        "n,,n=user=,r=abc",            /* truncated escape */
        "n,,m=ext,n=user,r=abc",       /* unknown mandatory extension */
        "n,,n=user,r=ab c",            /* nonce not printable */
        "n,,n=user,r=abc,",            /* empty extension */
        "n,,n=user,r=abc,1=x",         /* extension name not ALPHA */
        "n,a=,n=user,r=abc",           /* empty authzid */
        "n,a=user@example.org",        /* authzid without the rest */
        "",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sasl *s = sasl_new(SASL_SCRAM_SHA256, 0);
        /* "" is an empty initial response: CONTINUE, then the same text as a step */
        if (!bad[i][0]) {
            assert_int_equal(start_str(s, bad[i], NULL), SASL_CONTINUE);
            assert_int_equal(step_str(s, bad[i], NULL), SASL_ERR_MALFORMED);
        } else {
            assert_int_equal(start_str(s, bad[i], NULL), SASL_ERR_MALFORMED);
        }
        sasl_free(s);
    }
}

/* a NUL byte inside a SCRAM message is malformed. */
static void test_scram_nul_byte(void **state)
{
    struct sasl *s = sasl_new(SASL_SCRAM_SHA256, 0);
    unsigned char *out;
    size_t len;
    (void)state;

    assert_int_equal(sasl_start(s, (const unsigned char *)"n,,n=us\0er,r=abc", 16, &out, &len), SASL_ERR_MALFORMED);
    assert_null(out);
    sasl_free(s);
}

/* an extension after the nonce is accepted and ignored. */
static void test_scram_extension_ignored(void **state)
{
    struct sasl *s = sasl_new(SASL_SCRAM_SHA256, 0);
    (void)state;
    assert_int_equal(start_str(s, "n,,n=user,r=abc,x=whatever", NULL), SASL_NEED_CREDS);
    sasl_free(s);
}

/* "=2C" and "=3D" in the username decode to ',' and '='. */
static void test_scram_username_escapes(void **state)
{
    struct sasl *s = sasl_new(SASL_SCRAM_SHA256, 0);
    (void)state;
    assert_int_equal(start_str(s, "n,,n=a=2Cb=3Dc,r=abc", NULL), SASL_NEED_CREDS);
    assert_string_equal(sasl_authcid(s), "a,b=c");
    sasl_free(s);
}

/* malformed client-final-messages: missing fields, bad base64 or wrong length in p=, a NUL. */
static void test_scram_malformed_final(void **state)
{
    static const char *bad[] = {
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",                                  /* no proof */
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",          /* no c= */
        "c=biws,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",                                                /* no r= */
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts",    /* bad base64 */
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJ QyF0X+HI4Ts=",  /* whitespace */
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", /* 32 bytes for SHA-1 */
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=",                                /* empty proof */
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=,x=1", /* p= not last */
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", /* empty attribute */
        "",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sasl *s = scram_at_final(&rfc5802, rfc5802.client_first);
        assert_int_equal(step_str(s, bad[i], NULL), SASL_ERR_MALFORMED);
        sasl_free(s);
    }
}

/* an authzid naming the same user (any domain, or the configured one) is accepted. */
static void test_authzid_same_user(void **state)
{
    struct sasl *s = scram_at_final(&rfc7677, "n,a=user@example.org,n=user,r=rOprNGfwEbeRWgbNEkqO");
    (void)state;

    assert_string_equal(sasl_authzid(s), "user@example.org");
    sasl_free(s);

    s = sasl_new(SASL_SCRAM_SHA256, 0);
    sasl_set_domain(s, "example.org");
    assert_int_equal(start_str(s, "n,a=User@EXAMPLE.org,n=user,r=abc", NULL), SASL_NEED_CREDS);
    sasl_free(s);
}

/* an authzid naming another user, another domain, a full JID or no localpart is invalid-authzid. */
static void test_authzid_mismatch(void **state)
{
    static const char *bad[] = {
        "n,a=other@example.org,n=user,r=abc",
        "n,a=user@example.com,n=user,r=abc",   /* domain set to example.org below */
        "n,a=user@example.org/phone,n=user,r=abc",
        "n,a=example.org,n=user,r=abc",
        "n,a=user,n=user,r=abc",
        "n,a=user@,n=user,r=abc",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sasl *s = sasl_new(SASL_SCRAM_SHA256, 0);
        sasl_set_domain(s, "example.org");
        assert_int_equal(start_str(s, bad[i], NULL), SASL_ERR_INVALID_AUTHZID);
        sasl_free(s);
    }
}

/* SCRAM works after an empty initial response: empty challenge, then client-first via sasl_step. */
static void test_scram_empty_initial_response(void **state)
{
    struct sasl *s = sasl_new(SASL_SCRAM_SHA1, 0);
    struct scram_cred c = cred_for(&rfc5802);
    unsigned char *out;
    size_t len = 99;
    char *str;
    (void)state;

    sasl_set_nonce_for_test(s, rfc5802.server_nonce);
    assert_int_equal(sasl_start(s, NULL, 0, &out, &len), SASL_CONTINUE);
    assert_non_null(out);
    assert_int_equal(len, 0);
    free(out);
    assert_int_equal(step_str(s, rfc5802.client_first, NULL), SASL_NEED_CREDS);
    assert_int_equal(creds(s, &c, &str), SASL_CONTINUE);
    assert_string_equal(str, rfc5802.server_first);
    free(str);
    assert_int_equal(step_str(s, rfc5802.client_final, &str), SASL_OK);
    assert_string_equal(str, rfc5802.server_final);
    free(str);
    sasl_free(s);
}

/* stored credentials of the wrong hash are a temporary failure, not a pass. */
static void test_scram_wrong_hash_creds(void **state)
{
    struct sasl *s = sasl_new(SASL_SCRAM_SHA256, 0);
    struct scram_cred c = cred_for(&rfc5802); /* SHA-1 */
    (void)state;

    assert_int_equal(start_str(s, rfc7677.client_first, NULL), SASL_NEED_CREDS);
    assert_int_equal(creds(s, &c, NULL), SASL_ERR_TEMPORARY);
    sasl_free(s);
}

/* Runs PLAIN with msg (len bytes) against "pencil" creds (or an unknown user). */
static int plain_run(const char *msg, size_t len, int known)
{
    struct sasl *s = sasl_new(SASL_PLAIN, 1);
    struct scram_cred c;
    unsigned char *out;
    size_t out_len;
    int rc;

    assert_int_equal(scram_cred_generate(SCRAM_SHA256, "pencil", 4096, &c), 0);
    rc = sasl_start(s, (const unsigned char *)msg, len, &out, &out_len);
    assert_null(out);
    if (rc == SASL_NEED_CREDS) {
        rc = sasl_set_creds(s, known ? &c : NULL, &out, &out_len);
        assert_null(out);
    }
    sasl_free(s);
    return rc;
}

/* PLAIN with the right password succeeds, with or without a matching authzid. */
static void test_plain_ok(void **state)
{
    (void)state;
    assert_int_equal(plain_run("\0user\0pencil", 12, 1), SASL_OK);
    assert_int_equal(plain_run("user@example.org\0user\0pencil", 28, 1), SASL_OK);
}

/* PLAIN hands back the authcid as sent. */
static void test_plain_authcid(void **state)
{
    struct sasl *s = sasl_new(SASL_PLAIN, 1);
    unsigned char *out;
    size_t len;
    (void)state;

    assert_int_equal(sasl_start(s, (const unsigned char *)"\0Us=2Cer\0pw", 11, &out, &len), SASL_NEED_CREDS);
    assert_string_equal(sasl_authcid(s), "Us=2Cer");
    sasl_free(s);
}

/* PLAIN with a wrong password, or for an unknown user, is not authorized. */
static void test_plain_wrong(void **state)
{
    (void)state;
    assert_int_equal(plain_run("\0user\0pencil2", 13, 1), SASL_ERR_NOT_AUTHORIZED);
    assert_int_equal(plain_run("\0user\0Pencil", 12, 1), SASL_ERR_NOT_AUTHORIZED);
    assert_int_equal(plain_run("\0user\0pencil", 12, 0), SASL_ERR_NOT_AUTHORIZED);
    assert_int_equal(plain_run("\0user\0pen\x07" "cil", 13, 1), SASL_ERR_NOT_AUTHORIZED); /* fails SASLprep */
}

/* PLAIN applies SASLprep to the password. */
static void test_plain_saslprep(void **state)
{
    (void)state;
    assert_int_equal(plain_run("\0user\0pen\xc2\xad" "cil", 14, 1), SASL_OK);
}

/* PLAIN without TLS is refused before looking at the message. */
static void test_plain_no_tls(void **state)
{
    struct sasl *s = sasl_new(SASL_PLAIN, 0);
    unsigned char *out;
    size_t len;
    (void)state;

    assert_int_equal(sasl_start(s, (const unsigned char *)"\0user\0pencil", 12, &out, &len), SASL_ERR_ENCRYPTION_REQUIRED);
    assert_null(out);
    assert_null(sasl_authcid(s));
    sasl_free(s);
}

/* PLAIN messages without exactly two NULs, or with an empty authcid/password, are malformed. */
static void test_plain_malformed(void **state)
{
    (void)state;
    assert_int_equal(plain_run("user\0pencil", 11, 1), SASL_ERR_MALFORMED);
    assert_int_equal(plain_run("userpencil", 10, 1), SASL_ERR_MALFORMED);
    assert_int_equal(plain_run("\0user\0pencil\0", 13, 1), SASL_ERR_MALFORMED);
    assert_int_equal(plain_run("\0\0pencil", 8, 1), SASL_ERR_MALFORMED);
    assert_int_equal(plain_run("\0user\0", 6, 1), SASL_ERR_MALFORMED);
}

/* PLAIN with an authzid for another user is invalid-authzid. */
static void test_plain_authzid_mismatch(void **state)
{
    (void)state;
    assert_int_equal(plain_run("other@example.org\0user\0pencil", 29, 1), SASL_ERR_INVALID_AUTHZID);
}

/* PLAIN after an empty initial response takes its message through sasl_step. */
static void test_plain_empty_initial_response(void **state)
{
    struct sasl *s = sasl_new(SASL_PLAIN, 1);
    struct scram_cred c = cred_for(&rfc7677);
    unsigned char *out;
    size_t len;
    (void)state;

    assert_int_equal(sasl_start(s, NULL, 0, &out, &len), SASL_CONTINUE);
    free(out);
    assert_int_equal(sasl_step(s, (const unsigned char *)"\0user\0pencil", 12, &out, &len), SASL_NEED_CREDS);
    assert_int_equal(sasl_set_creds(s, &c, &out, &len), SASL_OK);
    sasl_free(s);
}

/* calls out of order are SASL_ERR_STATE. */
static void test_wrong_state(void **state)
{
    struct scram_cred c = cred_for(&rfc5802), c256 = cred_for(&rfc7677);
    struct sasl *s;
    unsigned char *out;
    size_t len;
    (void)state;

    s = sasl_new(SASL_SCRAM_SHA1, 0);                         /* step before start */
    assert_int_equal(step_str(s, rfc5802.client_final, NULL), SASL_ERR_STATE);
    sasl_free(s);

    s = sasl_new(SASL_SCRAM_SHA1, 0);                         /* creds before start */
    assert_int_equal(creds(s, &c, NULL), SASL_ERR_STATE);
    sasl_free(s);

    s = sasl_new(SASL_SCRAM_SHA1, 0);                         /* step while waiting for creds, start twice */
    assert_int_equal(start_str(s, rfc5802.client_first, NULL), SASL_NEED_CREDS);
    assert_int_equal(step_str(s, rfc5802.client_final, NULL), SASL_ERR_STATE);
    sasl_free(s);
    s = sasl_new(SASL_SCRAM_SHA1, 0);
    assert_int_equal(start_str(s, rfc5802.client_first, NULL), SASL_NEED_CREDS);
    assert_int_equal(start_str(s, rfc5802.client_first, NULL), SASL_ERR_STATE);
    sasl_free(s);

    s = scram_at_final(&rfc5802, rfc5802.client_first);      /* creds twice, then everything is dead */
    assert_int_equal(creds(s, &c, NULL), SASL_ERR_STATE);
    assert_int_equal(step_str(s, rfc5802.client_final, NULL), SASL_ERR_STATE);
    sasl_free(s);

    s = scram_at_final(&rfc5802, rfc5802.client_first);      /* step after success */
    assert_int_equal(step_str(s, rfc5802.client_final, NULL), SASL_OK);
    assert_int_equal(step_str(s, rfc5802.client_final, NULL), SASL_ERR_STATE);
    sasl_free(s);

    s = sasl_new(SASL_PLAIN, 1);                              /* step after PLAIN's success */
    assert_int_equal(sasl_start(s, (const unsigned char *)"\0user\0pencil", 12, &out, &len), SASL_NEED_CREDS);
    assert_int_equal(sasl_set_creds(s, &c256, &out, &len), SASL_OK);
    assert_int_equal(sasl_step(s, (const unsigned char *)"x", 1, &out, &len), SASL_ERR_STATE);
    assert_null(out);
    sasl_free(s);
}

/* after any error the exchange is over: a correct final message is refused. */
static void test_error_is_final(void **state)
{
    struct sasl *s = scram_at_final(&rfc5802, rfc5802.client_first);
    (void)state;

    assert_int_equal(step_str(s, "garbage", NULL), SASL_ERR_MALFORMED);
    assert_int_equal(step_str(s, rfc5802.client_final, NULL), SASL_ERR_STATE);
    sasl_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mech_names),
        cmocka_unit_test(test_scram_sha1_rfc5802),
        cmocka_unit_test(test_scram_sha256_rfc7677),
        cmocka_unit_test(test_scram_wrong_proof),
        cmocka_unit_test(test_scram_unknown_user),
        cmocka_unit_test(test_scram_fake_salt_stable),
        cmocka_unit_test(test_scram_fake_iterations),
        cmocka_unit_test(test_scram_random_nonce),
        cmocka_unit_test(test_scram_nonce_mismatch),
        cmocka_unit_test(test_scram_bad_channel_binding),
        cmocka_unit_test(test_scram_gs2_y),
        cmocka_unit_test(test_scram_malformed_first),
        cmocka_unit_test(test_scram_nul_byte),
        cmocka_unit_test(test_scram_extension_ignored),
        cmocka_unit_test(test_scram_username_escapes),
        cmocka_unit_test(test_scram_malformed_final),
        cmocka_unit_test(test_authzid_same_user),
        cmocka_unit_test(test_authzid_mismatch),
        cmocka_unit_test(test_scram_empty_initial_response),
        cmocka_unit_test(test_scram_wrong_hash_creds),
        cmocka_unit_test(test_plain_ok),
        cmocka_unit_test(test_plain_authcid),
        cmocka_unit_test(test_plain_wrong),
        cmocka_unit_test(test_plain_saslprep),
        cmocka_unit_test(test_plain_no_tls),
        cmocka_unit_test(test_plain_malformed),
        cmocka_unit_test(test_plain_authzid_mismatch),
        cmocka_unit_test(test_plain_empty_initial_response),
        cmocka_unit_test(test_wrong_state),
        cmocka_unit_test(test_error_is_final),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
