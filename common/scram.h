/*
 * SCRAM math of RFC 5802 (SCRAM-SHA-1) and RFC 7677 (SCRAM-SHA-256), plus
 * the storage form of credentials. No I/O and no protocol state: the SASL
 * exchange lives in gateway/sasl.c, the users table in storage/. Passwords
 * are SASLprep'd (RFC 4013) before Hi(), as RFC 5802 §2.2 requires.
 *
 * Key derivation (RFC 5802 §3), numbered here and cited in scram.c:
 *   K1  SaltedPassword  := Hi(Normalize(password), salt, i)
 *   K2  ClientKey       := HMAC(SaltedPassword, "Client Key")
 *   K3  StoredKey       := H(ClientKey)
 *   K4  ServerKey       := HMAC(SaltedPassword, "Server Key")
 *   K5  ClientSignature := HMAC(StoredKey, AuthMessage)
 *   K6  ClientProof     := ClientKey XOR ClientSignature
 *   K7  ServerSignature := HMAC(ServerKey, AuthMessage)
 */
#ifndef PARLEY_SCRAM_H
#define PARLEY_SCRAM_H

#include <stddef.h>

enum scram_hash { SCRAM_SHA1, SCRAM_SHA256 };

#define SCRAM_MAX_HASH 32
#define SCRAM_MAX_SALT 64
#define SCRAM_SALT_LEN 16            /* what scram_cred_generate makes */
#define SCRAM_MIN_ITERATIONS 4096    /* RFC 7677 §4 minimum; enforced on generation */
/* Upper bound on a stored count: PLAIN runs Hi() inside the gateway's event
 * loop, so a corrupt row must not stall it for minutes. */
#define SCRAM_MAX_ITERATIONS 10000000u

enum {
    SCRAM_ERR_PREP = -1,        /* password failed SASLprep (prohibited character, bidi, bad UTF-8) */
    SCRAM_ERR_ITERATIONS = -2,  /* iteration count out of range */
    SCRAM_ERR_SALT = -3,        /* salt empty or longer than SCRAM_MAX_SALT */
    SCRAM_ERR_FORMAT = -4,      /* storage form not parseable */
    SCRAM_ERR_CRYPTO = -5,      /* libcrypto failed (PBKDF2, RAND_bytes) */
    SCRAM_ERR_HASH = -6,        /* not a known enum scram_hash */
    SCRAM_ERR_PROOF = -7,       /* client proof does not match the stored key */
    SCRAM_ERR_PASSWORD = -8,    /* empty password (after SASLprep) on generation */
};

struct scram_cred {                  /* what storage keeps for one hash; never the password */
    enum scram_hash hash;
    unsigned char salt[SCRAM_MAX_SALT]; size_t salt_len;
    unsigned iterations;
    unsigned char stored_key[SCRAM_MAX_HASH];
    unsigned char server_key[SCRAM_MAX_HASH];
};

size_t scram_hash_len(enum scram_hash h);                  /* 20 or 32; 0 for an unknown value */
const char *scram_hash_name(enum scram_hash h);            /* "SHA-1" / "SHA-256"; NULL for an unknown value */

/* SASLprep (RFC 4013, stored-string rules relaxed to query rules as libidn's
 * flags 0 do) of a NUL-terminated UTF-8 string. Returns 0 and *out (caller
 * wipes and frees), or SCRAM_ERR_PREP with *out NULL. */
int scram_saslprep(const char *in, char **out);

/* Derives salted password, client key, stored key and server key (K1-K4) from
 * a password after SASLprep. Accepts any count in 1..SCRAM_MAX_ITERATIONS, so
 * it can re-derive stored credentials (PLAIN). 0 or SCRAM_ERR_*; *out is
 * zeroed first and holds nothing useful on failure. */
int scram_cred_from_password(enum scram_hash h, const char *password, const unsigned char *salt, size_t salt_len, unsigned iterations, struct scram_cred *out);
/* Same with a fresh random SCRAM_SALT_LEN-byte salt (RAND_bytes). Refuses
 * iterations below SCRAM_MIN_ITERATIONS and an empty password. */
int scram_cred_generate(enum scram_hash h, const char *password, unsigned iterations, struct scram_cred *out);

/* Encodes/decodes the storage form "<iterations>$<salt b64>$<stored_key b64>$<server_key b64>"
 * (one string per hash, what the users table and the wire carry). The hash is
 * not part of the string: the column or field it sits in names it. */
char *scram_cred_encode(const struct scram_cred *c);       /* caller frees */
/* 0 or SCRAM_ERR_FORMAT (shape, base64, key length), SCRAM_ERR_ITERATIONS,
 * SCRAM_ERR_SALT, SCRAM_ERR_HASH. Iterations: decimal, no sign or leading zero. */
int scram_cred_decode(enum scram_hash h, const char *s, struct scram_cred *out);

/* K5-K6 checked the server's way: recovers ClientKey from proof (hash_len
 * bytes) and compares H(ClientKey) with c->stored_key in constant time.
 * 0 or SCRAM_ERR_PROOF. */
int scram_verify_proof(const struct scram_cred *c, const unsigned char *auth_msg, size_t auth_len, const unsigned char *proof);
/* K7 into out (hash_len bytes). */
void scram_server_signature(const struct scram_cred *c, const unsigned char *auth_msg, size_t auth_len, unsigned char *out);

/* Low-level pieces exposed for tests. No SASLprep here: password is taken as
 * given. scram_hi returns 0 or SCRAM_ERR_CRYPTO / SCRAM_ERR_HASH /
 * SCRAM_ERR_ITERATIONS. The void ones abort if libcrypto fails, which it
 * cannot do for these fixed digests short of a broken installation. */
int scram_hi(enum scram_hash h, const char *password, size_t pwlen, const unsigned char *salt, size_t salt_len, unsigned iterations, unsigned char *out);
void scram_hmac(enum scram_hash h, const unsigned char *key, size_t key_len, const unsigned char *data, size_t len, unsigned char *out);
void scram_digest(enum scram_hash h, const unsigned char *data, size_t len, unsigned char *out);

#endif
