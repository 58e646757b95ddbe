/*
 * SCRAM key derivation and checks (RFC 5802 §3, RFC 7677), and the storage
 * form of a credential. Rules K1-K7 are numbered in scram.h. Every
 * intermediate secret (salted password, client key, prepped password) is
 * wiped with OPENSSL_cleanse before its memory is released or reused.
 */
#include "scram.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stringprep.h>

#include "base64.h"
#include "util.h"

static const EVP_MD *hash_md(enum scram_hash h)
{
    switch (h) {
    case SCRAM_SHA1:
        return EVP_sha1();
    case SCRAM_SHA256:
        return EVP_sha256();
    }
    return NULL;
}

size_t scram_hash_len(enum scram_hash h)
{
    switch (h) {
    case SCRAM_SHA1:
        return 20;
    case SCRAM_SHA256:
        return 32;
    }
    return 0;
}

const char *scram_hash_name(enum scram_hash h)
{
    switch (h) {
    case SCRAM_SHA1:
        return "SHA-1";
    case SCRAM_SHA256:
        return "SHA-256";
    }
    return NULL;
}

int scram_saslprep(const char *in, char **out)
{
    /* Flags 0 allow unassigned code points (RFC 4013 §2.5 "queries"): a
     * password set by an older client must still match after Unicode adds
     * characters. libidn also rejects invalid UTF-8 here. */
    *out = NULL;
    if (stringprep_profile(in, out, "SASLprep", 0) != STRINGPREP_OK) {
        free(*out);
        *out = NULL;
        return SCRAM_ERR_PREP;
    }
    return 0;
}

void scram_hmac(enum scram_hash h, const unsigned char *key, size_t key_len, const unsigned char *data, size_t len, unsigned char *out)
{
    const EVP_MD *md = hash_md(h);
    unsigned int out_len = 0;

    /* Only SHA-1/SHA-256 with short keys reach here; a failure means a
     * broken libcrypto, and carrying on would compare garbage. */
    if (!md || key_len > INT_MAX || !HMAC(md, key, (int)key_len, data, len, out, &out_len))
        abort();
}

void scram_digest(enum scram_hash h, const unsigned char *data, size_t len, unsigned char *out)
{
    const EVP_MD *md = hash_md(h);

    if (!md || !EVP_Digest(data, len, out, NULL, md, NULL))
        abort(); /* as in scram_hmac */
}

int scram_hi(enum scram_hash h, const char *password, size_t pwlen, const unsigned char *salt, size_t salt_len, unsigned iterations, unsigned char *out)
{
    const EVP_MD *md = hash_md(h);

    if (!md)
        return SCRAM_ERR_HASH;
    if (iterations < 1 || iterations > SCRAM_MAX_ITERATIONS)
        return SCRAM_ERR_ITERATIONS;
    if (pwlen > INT_MAX || salt_len > INT_MAX)
        return SCRAM_ERR_CRYPTO;
    /* Hi() is PBKDF2 with HMAC as PRF and dkLen = hLen (RFC 5802 §2.2). */
    if (!PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, (int)salt_len, (int)iterations,
                           md, (int)scram_hash_len(h), out))
        return SCRAM_ERR_CRYPTO;
    return 0;
}

int scram_cred_from_password(enum scram_hash h, const char *password, const unsigned char *salt, size_t salt_len, unsigned iterations, struct scram_cred *out)
{
    unsigned char salted[SCRAM_MAX_HASH];
    unsigned char client_key[SCRAM_MAX_HASH];
    char *prepped = NULL;
    size_t hlen = scram_hash_len(h);
    int rc;

    memset(out, 0, sizeof(*out));
    if (!hlen)
        return SCRAM_ERR_HASH;
    if (salt_len < 1 || salt_len > SCRAM_MAX_SALT)
        return SCRAM_ERR_SALT;
    if (iterations < 1 || iterations > SCRAM_MAX_ITERATIONS)
        return SCRAM_ERR_ITERATIONS;
    rc = scram_saslprep(password, &prepped);
    if (rc < 0)
        return rc;

    rc = scram_hi(h, prepped, strlen(prepped), salt, salt_len, iterations, salted); /* K1 */
    if (rc < 0)
        goto out;
    scram_hmac(h, salted, hlen, (const unsigned char *)"Client Key", 10, client_key); /* K2 */
    scram_digest(h, client_key, hlen, out->stored_key);                                  /* K3 */
    scram_hmac(h, salted, hlen, (const unsigned char *)"Server Key", 10, out->server_key); /* K4 */
    out->hash = h;
    memcpy(out->salt, salt, salt_len);
    out->salt_len = salt_len;
    out->iterations = iterations;
out:
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(prepped, strlen(prepped));
    free(prepped);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int scram_cred_generate(enum scram_hash h, const char *password, unsigned iterations, struct scram_cred *out)
{
    unsigned char salt[SCRAM_SALT_LEN];
    char *prepped = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!scram_hash_len(h))
        return SCRAM_ERR_HASH;
    if (iterations < SCRAM_MIN_ITERATIONS || iterations > SCRAM_MAX_ITERATIONS)
        return SCRAM_ERR_ITERATIONS;
    /* RFC 4616 §2 requires a non-empty password, and a password SASLprep maps
     * to nothing (only soft hyphens, say) is no password. Refused only here:
     * verification of existing rows goes through scram_cred_from_password. */
    rc = scram_saslprep(password, &prepped);
    if (rc < 0)
        return rc;
    int is_empty = prepped[0] == '\0';
    OPENSSL_cleanse(prepped, strlen(prepped));
    free(prepped);
    if (is_empty)
        return SCRAM_ERR_PASSWORD;

    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return SCRAM_ERR_CRYPTO;
    return scram_cred_from_password(h, password, salt, sizeof(salt), iterations, out);
}

char *scram_cred_encode(const struct scram_cred *c)
{
    size_t hlen = scram_hash_len(c->hash);
    char *salt = base64_encode(c->salt, c->salt_len);
    char *stored = base64_encode(c->stored_key, hlen);
    char *server = base64_encode(c->server_key, hlen);
    char *s = xasprintf("%u$%s$%s$%s", c->iterations, salt, stored, server);

    free(salt);
    free(stored);
    free(server);
    return s;
}

/* Decimal without sign, leading zero or overflow, in 1..SCRAM_MAX_ITERATIONS. */
static int parse_iterations(const char *s, size_t len, unsigned *out)
{
    unsigned long long v = 0;

    if (len == 0 || len > 10 || s[0] == '0')
        return SCRAM_ERR_FORMAT;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SCRAM_ERR_FORMAT;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > SCRAM_MAX_ITERATIONS)
        return SCRAM_ERR_ITERATIONS;
    *out = (unsigned)v;
    return 0;
}

/* Decodes one base64 field into dst; its decoded length must lie in min..max. */
static int decode_field(const char *s, size_t len, unsigned char *dst, size_t min, size_t max, size_t *dst_len, int range_err)
{
    unsigned char *raw;
    size_t raw_len;

    if (base64_decode(s, len, &raw, &raw_len) < 0)
        return SCRAM_ERR_FORMAT;
    int rc = raw_len < min || raw_len > max ? range_err : 0;
    if (rc == 0) {
        memcpy(dst, raw, raw_len);
        *dst_len = raw_len;
    }
    free(raw);
    return rc;
}

int scram_cred_decode(enum scram_hash h, const char *s, struct scram_cred *out)
{
    size_t hlen = scram_hash_len(h);
    const char *field[4];
    size_t flen[4];
    size_t n = 0, key_len;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!hlen)
        return SCRAM_ERR_HASH;
    /* Exactly four '$'-separated fields; base64 never contains '$'. */
    for (const char *p = s;; p++) {
        if (*p == '$' || *p == '\0') {
            if (n == 4)
                return SCRAM_ERR_FORMAT;
            field[n] = s;
            flen[n] = (size_t)(p - s);
            n++;
            if (*p == '\0')
                break;
            s = p + 1;
        }
    }
    if (n != 4)
        return SCRAM_ERR_FORMAT;

    out->hash = h;
    if ((rc = parse_iterations(field[0], flen[0], &out->iterations)) < 0 ||
        (rc = decode_field(field[1], flen[1], out->salt, 1, SCRAM_MAX_SALT, &out->salt_len, SCRAM_ERR_SALT)) < 0 ||
        (rc = decode_field(field[2], flen[2], out->stored_key, hlen, hlen, &key_len, SCRAM_ERR_FORMAT)) < 0 ||
        (rc = decode_field(field[3], flen[3], out->server_key, hlen, hlen, &key_len, SCRAM_ERR_FORMAT)) < 0) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    return 0;
}

int scram_verify_proof(const struct scram_cred *c, const unsigned char *auth_msg, size_t auth_len, const unsigned char *proof)
{
    unsigned char client_key[SCRAM_MAX_HASH];
    unsigned char stored_key[SCRAM_MAX_HASH];
    size_t hlen = scram_hash_len(c->hash);

    if (!hlen)
        return SCRAM_ERR_HASH;
    scram_hmac(c->hash, c->stored_key, hlen, auth_msg, auth_len, client_key); /* K5 */
    for (size_t i = 0; i < hlen; i++)                                         /* K6 reversed */
        client_key[i] ^= proof[i];
    scram_digest(c->hash, client_key, hlen, stored_key);                      /* K3 */
    int rc = CRYPTO_memcmp(stored_key, c->stored_key, hlen) == 0 ? 0 : SCRAM_ERR_PROOF;
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(stored_key, sizeof(stored_key));
    return rc;
}

void scram_server_signature(const struct scram_cred *c, const unsigned char *auth_msg, size_t auth_len, unsigned char *out)
{
    scram_hmac(c->hash, c->server_key, scram_hash_len(c->hash), auth_msg, auth_len, out); /* K7 */
}
