/*
 * Server side of SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN as a state machine
 * (sasl.h draws it). The math lives in common/scram.c; this file parses the
 * messages, holds the exchange's state and decides the outcome.
 *
 * Why not GNU SASL: gsasl asks for a user's credentials through a synchronous
 * callback in the middle of a step. Ours live in parley-storage and come back
 * through the router as an envelope some time later, and the gateway must
 * not block its event loop (every other connection) waiting for them. Here
 * the exchange simply pauses at SASL_NEED_CREDS and resumes in
 * sasl_set_creds() when the reply arrives.
 *
 * Rules, cited where applied:
 *  S1  RFC 5802 §7 gs2-cbind-flag: "n" (no channel binding) and "y" (client
 *      could bind but thinks we can't) are accepted; "p=" is refused as
 *      malformed because we don't offer -PLUS. Once -PLUS is offered, "y"
 *      must fail instead (§6: it would mean a downgrade).
 *  S2  RFC 5802 §5.1 "m=": a mandatory extension we don't know; we must fail.
 *  S3  saslname: "=2C" is ',', "=3D" is '=', any other '=' is malformed;
 *      never empty. No NUL anywhere in a SCRAM message.
 *  S4  client-final c= is base64 of the gs2 header exactly (no channel
 *      binding data without -PLUS).
 *  S5  client-final r= is exactly client nonce + server nonce.
 *  S6  p= comes last; AuthMessage := client-first-message-bare + "," +
 *      server-first-message + "," + client-final-message-without-proof.
 *  S7  Unknown users get a salt derived from the username and a server
 *      secret (stable across attempts, like a real one), the configured
 *      iteration count, and a full proof check that then fails, so the
 *      replies and the work done match a wrong password.
 *  S8  RFC 6120 §6.3.8: an authzid must be the authcid's own bare JID; we
 *      don't do proxy authorization.
 *  S9  RFC 4616 / RFC 6120 §13.8: PLAIN only under TLS; message is
 *      [authzid] NUL authcid NUL passwd with authcid and passwd non-empty.
 */
#include "sasl.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stringprep.h>

#include "base64.h"
#include "util.h"

/* Longest username, authzid or password we accept (RFC 4616 §2 asks for at
 * least 255 octets); bounds what reaches storage lookups and SASLprep. */
#define SASL_MAX_FIELD 1023
#define SERVER_NONCE_BYTES 18   /* 24 base64 characters, no padding */

enum sasl_state {
    ST_START,       /* sasl_start not called yet */
    ST_WAIT_FIRST,  /* empty initial response: the first message comes via sasl_step */
    ST_NEED_CREDS,  /* waiting for sasl_set_creds */
    ST_WAIT_FINAL,  /* SCRAM: server-first sent, waiting for client-final */
    ST_DONE,        /* authenticated */
    ST_FAILED,      /* any error: every later call is SASL_ERR_STATE */
};

struct sasl {
    enum sasl_mech mech;
    int has_tls;
    enum sasl_state state;
    char *domain;            /* optional, for S8 */
    char *authcid;
    char *authzid;           /* NULL if none */
    char *password;          /* PLAIN: until verified, then wiped */
    char *gs2_header;        /* SCRAM: "n,," / "y,,a=...," as sent, for S4 */
    char *client_first_bare; /* SCRAM: for S6 */
    char *nonce;             /* SCRAM: client nonce, then client + server nonce */
    char *server_first;      /* SCRAM: for S6 */
    char *test_nonce;
    struct scram_cred cred;  /* real, or fake (S7) */
    int is_fake;
};

/* Process-wide on purpose: the fake-salt secret must be the same for every
 * connection (else an unknown user's salt would change between attempts and
 * give it away), it is set once by main.c before the loop starts, and
 * threading it through sasl_new would change a signature the gateway
 * already uses. The gateway is single-threaded, so no lock. */
static unsigned char fake_secret[32];
static int has_fake_secret;
static unsigned fake_iterations = SCRAM_MIN_ITERATIONS;

static void wipe_free(char *p)
{
    if (p) {
        OPENSSL_cleanse(p, strlen(p));
        free(p);
    }
}

static void set_out(unsigned char **out, size_t *out_len, const char *data)
{
    *out = data ? (unsigned char *)xstrdup(data) : NULL;
    *out_len = data ? strlen(data) : 0;
}

/* Every error is final: the exchange cannot be resumed after a failure. */
static int fail(struct sasl *s, int rc)
{
    s->state = ST_FAILED;
    wipe_free(s->password);
    s->password = NULL;
    return rc;
}

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

struct sasl *sasl_new(enum sasl_mech mech, int has_tls)
{
    struct sasl *s = xcalloc(1, sizeof(*s));

    s->mech = mech;
    s->has_tls = has_tls;
    s->state = ST_START;
    return s;
}

void sasl_free(struct sasl *s)
{
    if (!s)
        return;
    free(s->domain);
    free(s->authcid);
    free(s->authzid);
    wipe_free(s->password);
    free(s->gs2_header);
    free(s->client_first_bare);
    free(s->nonce);
    free(s->server_first);
    free(s->test_nonce);
    OPENSSL_cleanse(&s->cred, sizeof(s->cred));
    free(s);
}

int sasl_mech_from_name(const char *name, enum sasl_mech *out)
{
    static const enum sasl_mech all[] = { SASL_SCRAM_SHA256, SASL_SCRAM_SHA1, SASL_PLAIN };

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (str_eq(name, sasl_mech_name(all[i]))) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

const char *sasl_mech_name(enum sasl_mech m)
{
    switch (m) {
    case SASL_SCRAM_SHA256:
        return "SCRAM-SHA-256";
    case SASL_SCRAM_SHA1:
        return "SCRAM-SHA-1";
    case SASL_PLAIN:
        return "PLAIN";
    }
    return NULL;
}

enum scram_hash sasl_cred_hash(enum sasl_mech m)
{
    return m == SASL_SCRAM_SHA1 ? SCRAM_SHA1 : SCRAM_SHA256;
}

void sasl_set_domain(struct sasl *s, const char *domain)
{
    free(s->domain);
    s->domain = xstrdup(domain);
}

const char *sasl_authcid(const struct sasl *s)
{
    return s->authcid;
}

const char *sasl_authzid(const struct sasl *s)
{
    return s->authzid;
}

void sasl_set_secret(const unsigned char *secret, size_t len)
{
    scram_digest(SCRAM_SHA256, secret, len, fake_secret);
    has_fake_secret = 1;
}

void sasl_set_fake_iterations(unsigned iterations)
{
    if (iterations < 1)
        iterations = 1;
    if (iterations > SCRAM_MAX_ITERATIONS)
        iterations = SCRAM_MAX_ITERATIONS;
    fake_iterations = iterations;
}

void sasl_set_nonce_for_test(struct sasl *s, const char *nonce)
{
    free(s->test_nonce);
    s->test_nonce = xstrdup(nonce);
}

/* S8. a and b are prepped with profile and compared; a failed prep never matches. */
static int prep_equal(const char *a, size_t a_len, const char *b, const char *profile)
{
    char *ta = xstrndup(a, a_len), *pa = NULL, *pb = NULL;
    int eq = stringprep_profile(ta, &pa, profile, 0) == STRINGPREP_OK &&
             stringprep_profile(b, &pb, profile, 0) == STRINGPREP_OK &&
             strcmp(pa, pb) == 0;

    free(ta);
    free(pa);
    free(pb);
    return eq;
}

/* S8: authzid, if any, must be localpart@domain naming authcid. */
static int check_authzid(const struct sasl *s)
{
    const char *z = s->authzid;
    const char *at;

    if (!z)
        return 0;
    at = strchr(z, '@');
    if (!at || at == z || !at[1] || strchr(z, '/'))
        return SASL_ERR_INVALID_AUTHZID;
    if (!prep_equal(z, (size_t)(at - z), s->authcid, "Nodeprep"))
        return SASL_ERR_INVALID_AUTHZID;
    if (s->domain && !prep_equal(at + 1, strlen(at + 1), s->domain, "Nameprep"))
        return SASL_ERR_INVALID_AUTHZID;
    return 0;
}

/* S3: decodes the saslname in [p, end) into a new string, or NULL if malformed. */
static char *saslname_decode(const char *p, const char *end)
{
    size_t len = (size_t)(end - p);
    char *out, *o;

    if (len == 0 || len > SASL_MAX_FIELD)
        return NULL;
    out = o = xmalloc(len + 1);
    while (p < end) {
        if (*p != '=') {
            *o++ = *p++;
        } else if (end - p >= 3 && p[1] == '2' && p[2] == 'C') {
            *o++ = ',';
            p += 3;
        } else if (end - p >= 3 && p[1] == '3' && p[2] == 'D') {
            *o++ = '=';
            p += 3;
        } else {
            free(out);
            return NULL;
        }
    }
    *o = '\0';
    return out;
}

/* RFC 5802 §7 printable: %x21-2B / %x2D-7E, at least one. */
static int is_nonce(const char *p, const char *end)
{
    if (p == end)
        return 0;
    for (; p < end; p++)
        if (*p < 0x21 || *p > 0x7e || *p == ',')
            return 0;
    return 1;
}

/* RFC 5802 §7 extensions: zero or more ",attr=value" in [p, end), attr one
 * ALPHA and value non-empty. We know none of them, so they are ignored. */
static int is_extensions(const char *p, const char *end)
{
    while (p < end) {
        const char *next = memchr(p + 1, ',', (size_t)(end - p - 1));
        if (!next)
            next = end;
        if (*p != ',' || next - p < 4 || p[2] != '=' ||
            !((p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z')))
            return 0;
        p = next;
    }
    return 1;
}

/* Parses the SCRAM client-first-message in m (NUL-terminated, no inner NUL). */
static int scram_parse_first(struct sasl *s, const char *m)
{
    const char *p = m, *end;

    if ((p[0] != 'n' && p[0] != 'y') || p[1] != ',')
        return SASL_ERR_MALFORMED; /* S1: "p=" lands here too */
    p += 2;
    if (has_prefix(p, "a=")) {
        end = strchr(p, ',');
        if (!end || !(s->authzid = saslname_decode(p + 2, end)))
            return SASL_ERR_MALFORMED;
        p = end;
    }
    if (*p++ != ',')
        return SASL_ERR_MALFORMED;
    s->gs2_header = xstrndup(m, (size_t)(p - m));
    s->client_first_bare = xstrdup(p);

    if (!has_prefix(p, "n="))
        return SASL_ERR_MALFORMED; /* S2: "m=" lands here too */
    end = strchr(p, ',');
    if (!end || !(s->authcid = saslname_decode(p + 2, end)))
        return SASL_ERR_MALFORMED;
    p = end + 1;
    if (!has_prefix(p, "r="))
        return SASL_ERR_MALFORMED;
    end = strchrnul(p + 2, ',');
    if (!is_nonce(p + 2, end))
        return SASL_ERR_MALFORMED;
    s->nonce = xstrndup(p + 2, (size_t)(end - p - 2));
    if (!is_extensions(end, end + strlen(end)))
        return SASL_ERR_MALFORMED;
    return 0;
}

/* S9: [authzid] NUL authcid NUL passwd. */
static int plain_parse(struct sasl *s, const unsigned char *in, size_t len)
{
    const char *z = (const char *)in, *end = z + len;
    const char *c = memchr(z, '\0', len);
    const char *p = c ? memchr(c + 1, '\0', (size_t)(end - c - 1)) : NULL;

    if (!p || memchr(p + 1, '\0', (size_t)(end - p - 1)))
        return SASL_ERR_MALFORMED;
    c++;
    p++;
    size_t zlen = (size_t)(c - 1 - z), clen = (size_t)(p - 1 - c), plen = (size_t)(end - p);
    if (clen == 0 || plen == 0 || zlen > SASL_MAX_FIELD || clen > SASL_MAX_FIELD || plen > SASL_MAX_FIELD)
        return SASL_ERR_MALFORMED;
    s->authzid = zlen ? xstrndup(z, zlen) : NULL;
    s->authcid = xstrndup(c, clen);
    s->password = xstrndup(p, plen);
    return 0;
}

/* The client's first message, from sasl_start or (after an empty initial
 * response) sasl_step. */
static int handle_first(struct sasl *s, const unsigned char *in, size_t len)
{
    int rc;

    if (len == 0) /* in may be NULL; no mechanism's first message is empty */
        return fail(s, SASL_ERR_MALFORMED);
    if (s->mech == SASL_PLAIN) {
        rc = plain_parse(s, in, len);
    } else {
        if (memchr(in, '\0', len)) /* S3 */
            return fail(s, SASL_ERR_MALFORMED);
        char *m = xstrndup((const char *)in, len);
        rc = scram_parse_first(s, m);
        free(m);
    }
    if (rc == 0)
        rc = check_authzid(s);
    if (rc < 0)
        return fail(s, rc);
    s->state = ST_NEED_CREDS;
    return SASL_NEED_CREDS;
}

int sasl_start(struct sasl *s, const unsigned char *in, size_t len, unsigned char **out, size_t *out_len)
{
    set_out(out, out_len, NULL);
    if (s->state != ST_START)
        return fail(s, SASL_ERR_STATE);
    if (s->mech == SASL_PLAIN && !s->has_tls) /* S9 */
        return fail(s, SASL_ERR_ENCRYPTION_REQUIRED);
    if (len == 0) {
        s->state = ST_WAIT_FIRST;
        set_out(out, out_len, "");
        return SASL_CONTINUE;
    }
    return handle_first(s, in, len);
}

/* S7: a stable fake credential for an unknown user. */
static int fake_cred(enum scram_hash h, const char *user, struct scram_cred *out)
{
    unsigned char mac[SCRAM_MAX_HASH];

    if (!has_fake_secret) {
        if (RAND_bytes(fake_secret, sizeof(fake_secret)) != 1)
            return SASL_ERR_TEMPORARY;
        has_fake_secret = 1;
    }
    char *label = xasprintf("salt %s %s", scram_hash_name(h), user);
    scram_hmac(SCRAM_SHA256, fake_secret, sizeof(fake_secret), (const unsigned char *)label, strlen(label), mac);
    free(label);

    memset(out, 0, sizeof(*out));
    out->hash = h;
    memcpy(out->salt, mac, SCRAM_SALT_LEN);
    out->salt_len = SCRAM_SALT_LEN;
    out->iterations = fake_iterations;
    /* Keys only need to be unguessable; is_fake fails the proof anyway. */
    scram_hmac(SCRAM_SHA256, fake_secret, sizeof(fake_secret), mac, sizeof(mac), mac);
    memcpy(out->stored_key, mac, SCRAM_MAX_HASH);
    memcpy(out->server_key, mac, SCRAM_MAX_HASH);
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

static int plain_verify(struct sasl *s)
{
    struct scram_cred derived;
    int rc = scram_cred_from_password(s->cred.hash, s->password, s->cred.salt, s->cred.salt_len,
                                      s->cred.iterations, &derived);

    if (rc == SCRAM_ERR_CRYPTO)
        rc = SASL_ERR_TEMPORARY;
    else if (rc < 0) /* SASLprep refused it: no stored password can match */
        rc = SASL_ERR_NOT_AUTHORIZED;
    else if (CRYPTO_memcmp(derived.stored_key, s->cred.stored_key, scram_hash_len(s->cred.hash)) != 0 || s->is_fake)
        rc = SASL_ERR_NOT_AUTHORIZED;
    OPENSSL_cleanse(&derived, sizeof(derived));
    if (rc < 0)
        return fail(s, rc);
    wipe_free(s->password);
    s->password = NULL;
    s->state = ST_DONE;
    return SASL_OK;
}

static int scram_server_first(struct sasl *s, unsigned char **out, size_t *out_len)
{
    char *server_nonce;

    if (s->test_nonce) {
        server_nonce = xstrdup(s->test_nonce);
    } else {
        unsigned char raw[SERVER_NONCE_BYTES];
        if (RAND_bytes(raw, sizeof(raw)) != 1)
            return fail(s, SASL_ERR_TEMPORARY);
        server_nonce = base64_encode(raw, sizeof(raw)); /* base64 has no ',' */
    }
    char *nonce = xasprintf("%s%s", s->nonce, server_nonce);
    char *salt = base64_encode(s->cred.salt, s->cred.salt_len);

    free(s->nonce);
    s->nonce = nonce;
    s->server_first = xasprintf("r=%s,s=%s,i=%u", nonce, salt, s->cred.iterations);
    free(salt);
    free(server_nonce);
    s->state = ST_WAIT_FINAL;
    set_out(out, out_len, s->server_first);
    return SASL_CONTINUE;
}

int sasl_set_creds(struct sasl *s, const struct scram_cred *cred, unsigned char **out, size_t *out_len)
{
    enum scram_hash want = sasl_cred_hash(s->mech);

    set_out(out, out_len, NULL);
    if (s->state != ST_NEED_CREDS)
        return fail(s, SASL_ERR_STATE);
    if (cred) {
        /* Storage's data is a peer's input: check it rather than assert. */
        if (cred->hash != want || cred->salt_len < 1 || cred->salt_len > SCRAM_MAX_SALT ||
            cred->iterations < 1 || cred->iterations > SCRAM_MAX_ITERATIONS)
            return fail(s, SASL_ERR_TEMPORARY);
        s->cred = *cred;
    } else {
        int rc = fake_cred(want, s->authcid, &s->cred);
        if (rc < 0)
            return fail(s, rc);
        s->is_fake = 1;
    }
    if (s->mech == SASL_PLAIN)
        return plain_verify(s);
    return scram_server_first(s, out, out_len);
}

/* Checks the client-final-message in m (NUL-terminated, no inner NUL). */
static int scram_check_final(struct sasl *s, const char *m, unsigned char **out, size_t *out_len)
{
    size_t hlen = scram_hash_len(s->cred.hash);
    const char *comma, *nonce, *nonce_end, *last;
    unsigned char *raw = NULL, sig[SCRAM_MAX_HASH];
    size_t raw_len;
    int rc = SASL_ERR_MALFORMED;

    if (!has_prefix(m, "c=") || !(comma = strchr(m, ',')) || !has_prefix(comma + 1, "r="))
        return rc;
    nonce = comma + 3;
    if (!(nonce_end = strchr(nonce, ',')))
        return rc; /* no proof */
    last = strrchr(m, ',');
    if (!has_prefix(last + 1, "p=") || !is_extensions(nonce_end, last))
        return rc; /* S6 */

    /* S4 */
    if (base64_decode(m + 2, (size_t)(comma - m - 2), &raw, &raw_len) < 0)
        return rc;
    int cb_ok = raw_len == strlen(s->gs2_header) && memcmp(raw, s->gs2_header, raw_len) == 0;
    free(raw);
    if (!cb_ok)
        return rc;
    /* S5 */
    if ((size_t)(nonce_end - nonce) != strlen(s->nonce) || memcmp(nonce, s->nonce, strlen(s->nonce)) != 0)
        return rc;
    if (base64_decode(last + 3, strlen(last + 3), &raw, &raw_len) < 0)
        return rc;
    if (raw_len != hlen)
        goto out;

    /* S6 */
    char *auth = xasprintf("%s,%s,%.*s", s->client_first_bare, s->server_first, (int)(last - m), m);
    rc = scram_verify_proof(&s->cred, (const unsigned char *)auth, strlen(auth), raw) == 0 && !s->is_fake
             ? SASL_OK : SASL_ERR_NOT_AUTHORIZED; /* S7: fake fails after the same work */
    if (rc == SASL_OK) {
        scram_server_signature(&s->cred, (const unsigned char *)auth, strlen(auth), sig);
        char *b64 = base64_encode(sig, hlen);
        char *v = xasprintf("v=%s", b64);
        set_out(out, out_len, v);
        free(v);
        free(b64);
    }
    free(auth);
out:
    free(raw);
    return rc;
}

int sasl_step(struct sasl *s, const unsigned char *in, size_t len, unsigned char **out, size_t *out_len)
{
    set_out(out, out_len, NULL);
    if (s->state == ST_WAIT_FIRST)
        return handle_first(s, in, len);
    if (s->state != ST_WAIT_FINAL)
        return fail(s, SASL_ERR_STATE);
    if (len == 0 || memchr(in, '\0', len)) /* S3; in may be NULL when len is 0 */
        return fail(s, SASL_ERR_MALFORMED);

    char *m = xstrndup((const char *)in, len);
    int rc = scram_check_final(s, m, out, out_len);
    free(m);
    if (rc < 0)
        return fail(s, rc);
    s->state = ST_DONE;
    return SASL_OK;
}
