/*
 * SCRAM client messages; see scram_client.h. The numbered derivations
 * K1-K7 are those of common/scram.h.
 */
#include "scram_client.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "base64.h"
#include "buf.h"
#include "util.h"

/* RFC 5802 §5.1: ',' and '=' in a username are sent as =2C and =3D. */
static void append_saslname(struct buf *b, const char *user)
{
    for (const char *p = user; *p; p++) {
        if (*p == ',')
            buf_append_str(b, "=2C");
        else if (*p == '=')
            buf_append_str(b, "=3D");
        else
            buf_append(b, p, 1);
    }
}

char *scram_client_first(struct scram_client *sc, enum scram_hash h, const char *user, const char *cnonce)
{
    struct buf b;

    memset(sc, 0, sizeof(*sc));
    sc->hash = h;
    sc->nonce = xstrdup(cnonce);
    buf_init(&b);
    buf_append_str(&b, "n=");
    append_saslname(&b, user);
    buf_append_str(&b, ",r=");
    buf_append_str(&b, cnonce);
    sc->client_first_bare = xstrdup(b.data);
    buf_fini(&b);
    return xasprintf("n,,%s", sc->client_first_bare);
}

/* Finds attribute "k=" at the start of s or after a ',' and returns its value
 * (up to the next ',') in *val and *len, or -1. */
static int find_attr(const char *s, char k, const char **val, size_t *len)
{
    for (const char *p = s; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (p[0] == k && p[1] == '=') {
            const char *end = strchr(p + 2, ',');
            *val = p + 2;
            *len = end ? (size_t)(end - (p + 2)) : strlen(p + 2);
            return 0;
        }
    }
    return -1;
}

static int derive_keys(struct scram_keycache *c, enum scram_hash h, const char *password,
                       const unsigned char *salt, size_t salt_len, unsigned iterations)
{
    unsigned char salted[SCRAM_MAX_HASH];
    size_t hl = scram_hash_len(h);
    char *prepped = NULL;
    int rc;

    if (c->is_valid && c->hash == h && c->iterations == iterations && c->salt_len == salt_len &&
        memcmp(c->salt, salt, salt_len) == 0)
        return 0;
    c->is_valid = 0;
    if ((rc = scram_saslprep(password, &prepped)) < 0)
        return rc;
    rc = scram_hi(h, prepped, strlen(prepped), salt, salt_len, iterations, salted);   /* K1 */
    OPENSSL_cleanse(prepped, strlen(prepped));
    free(prepped);
    if (rc < 0)
        return rc;
    scram_hmac(h, salted, hl, (const unsigned char *)"Client Key", 10, c->client_key);  /* K2 */
    scram_hmac(h, salted, hl, (const unsigned char *)"Server Key", 10, c->server_key);  /* K4 */
    OPENSSL_cleanse(salted, sizeof(salted));
    c->hash = h;
    memcpy(c->salt, salt, salt_len);
    c->salt_len = salt_len;
    c->iterations = iterations;
    c->is_valid = 1;
    return 0;
}

/* Parses i=: decimal, no sign or leading zero, 1..SCRAM_MAX_ITERATIONS. */
static int parse_iterations(const char *v, size_t len, unsigned *out)
{
    unsigned long n = 0;

    if (len == 0 || len > 10 || v[0] == '0')
        return SCRAM_CLIENT_ERR_ITERATIONS;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return SCRAM_CLIENT_ERR_ITERATIONS;
        n = n * 10 + (unsigned long)(v[i] - '0');
    }
    if (n > SCRAM_MAX_ITERATIONS)
        return SCRAM_CLIENT_ERR_ITERATIONS;
    *out = (unsigned)n;
    return 0;
}

int scram_client_final(struct scram_client *sc, const char *server_first, const char *password,
                       struct scram_keycache *cache, char **out)
{
    struct scram_keycache local = { 0 };
    const char *r, *s, *i;
    size_t rlen, slen, ilen;
    unsigned char *salt = NULL;
    size_t salt_len = 0;
    unsigned iterations;
    size_t hl = scram_hash_len(sc->hash);
    int rc;

    *out = NULL;
    if (!sc->client_first_bare || sc->has_final)
        return SCRAM_CLIENT_ERR_STATE;
    if (server_first[0] == 'm')
        return SCRAM_CLIENT_ERR_FORMAT;   /* RFC 5802 §5.1: an unknown mandatory extension */
    if (strncmp(server_first, "r=", 2) != 0 || find_attr(server_first, 'r', &r, &rlen) < 0 ||
        find_attr(server_first, 's', &s, &slen) < 0 || find_attr(server_first, 'i', &i, &ilen) < 0)
        return SCRAM_CLIENT_ERR_FORMAT;
    size_t nlen = strlen(sc->nonce);
    if (rlen <= nlen || memcmp(r, sc->nonce, nlen) != 0)
        return SCRAM_CLIENT_ERR_NONCE;
    if ((rc = parse_iterations(i, ilen, &iterations)) < 0)
        return rc;
    if (base64_decode(s, slen, &salt, &salt_len) < 0 || salt_len < 1 || salt_len > SCRAM_MAX_SALT) {
        free(salt);
        return SCRAM_CLIENT_ERR_FORMAT;
    }
    if (!cache)
        cache = &local;
    rc = derive_keys(cache, sc->hash, password, salt, salt_len, iterations);
    free(salt);
    if (rc < 0)
        return rc;

    struct buf without_proof, auth;
    unsigned char stored[SCRAM_MAX_HASH], sig[SCRAM_MAX_HASH], proof[SCRAM_MAX_HASH];
    buf_init(&without_proof);
    buf_append_str(&without_proof, "c=biws,r=");   /* biws = base64("n,,") */
    buf_append(&without_proof, r, rlen);
    buf_init(&auth);
    buf_printf(&auth, "%s,%s,%s", sc->client_first_bare, server_first, without_proof.data);

    scram_digest(sc->hash, cache->client_key, hl, stored);                                          /* K3 */
    scram_hmac(sc->hash, stored, hl, (const unsigned char *)auth.data, auth.len, sig);              /* K5 */
    for (size_t k = 0; k < hl; k++)
        proof[k] = cache->client_key[k] ^ sig[k];                                                   /* K6 */
    scram_hmac(sc->hash, cache->server_key, hl, (const unsigned char *)auth.data, auth.len,
               sc->server_signature);                                                               /* K7 */
    char *p64 = base64_encode(proof, hl);
    *out = xasprintf("%s,p=%s", without_proof.data, p64);
    free(p64);
    buf_fini(&without_proof);
    buf_fini(&auth);
    OPENSSL_cleanse(&local, sizeof(local));
    sc->has_final = 1;
    return 0;
}

int scram_client_verify(const struct scram_client *sc, const char *server_final)
{
    const char *v;
    size_t vlen;
    unsigned char *sig = NULL;
    size_t sig_len = 0;
    int rc = SCRAM_CLIENT_ERR_SERVER;

    if (!sc->has_final)
        return SCRAM_CLIENT_ERR_STATE;
    if (strncmp(server_final, "v=", 2) != 0 || find_attr(server_final, 'v', &v, &vlen) < 0)
        return SCRAM_CLIENT_ERR_SERVER;
    if (base64_decode(v, vlen, &sig, &sig_len) == 0 && sig_len == scram_hash_len(sc->hash) &&
        CRYPTO_memcmp(sig, sc->server_signature, sig_len) == 0)
        rc = 0;
    free(sig);
    return rc;
}

void scram_client_fini(struct scram_client *sc)
{
    free(sc->client_first_bare);
    free(sc->nonce);
    memset(sc, 0, sizeof(*sc));
}
