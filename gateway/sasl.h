/*
 * Server side of the SASL mechanisms the gateway offers (RFC 6120 §6):
 * SCRAM-SHA-256 (RFC 7677), SCRAM-SHA-1 (RFC 5802) and PLAIN (RFC 4616, TLS
 * only). A pure state machine: no I/O and no base64; stream.c decodes the
 * <auth/>/<response/> text, feeds the raw bytes here, and encodes *out into
 * <challenge/> or <success/>. Credentials arrive asynchronously from storage,
 * so the exchange pauses at SASL_NEED_CREDS until sasl_set_creds().
 *
 *   sasl_start ──(empty initial response)──▶ CONTINUE, empty challenge ─▶ sasl_step ─┐
 *        │                                                                            │
 *        └──────────────────────────────▶ NEED_CREDS ◀────────────────────────────────┘
 *                                             │ sasl_set_creds
 *                 SCRAM: CONTINUE (server-first) ─▶ sasl_step ─▶ OK ("v=...") | error
 *                 PLAIN: OK | NOT_AUTHORIZED
 *
 * Any error is final: later calls on the same object return SASL_ERR_STATE.
 */
#ifndef PARLEY_SASL_H
#define PARLEY_SASL_H

#include <stddef.h>

#include "scram.h"

enum sasl_mech { SASL_SCRAM_SHA256, SASL_SCRAM_SHA1, SASL_PLAIN };

enum {
    SASL_CONTINUE = 1,        /* *out holds a challenge to send (never NULL; may be 0 bytes) */
    SASL_NEED_CREDS = 2,      /* fetch credentials for sasl_authcid() and call sasl_set_creds() */
    SASL_OK = 0,              /* authenticated; *out may hold additional data for <success/> (SCRAM server-final "v=...") */
    SASL_ERR_MALFORMED = -1,  /* -> <malformed-request/> */
    SASL_ERR_NOT_AUTHORIZED = -2, /* wrong password or unknown user -> <not-authorized/> */
    SASL_ERR_INVALID_AUTHZID = -3, /* authzid given and not equal to authcid's bare JID -> <invalid-authzid/> */
    SASL_ERR_ENCRYPTION_REQUIRED = -4, /* PLAIN without TLS */
    SASL_ERR_STATE = -5,      /* step called in a wrong state */
    SASL_ERR_TEMPORARY = -6,  /* RAND_bytes failed, or the stored credentials are unusable
                               * (wrong hash, bad salt/iterations) -> <temporary-auth-failure/> */
};

/* Every call with out/out_len sets *out to a heap buffer the caller frees
 * (NUL-terminated past *out_len) or to NULL with *out_len 0. */

struct sasl *sasl_new(enum sasl_mech mech, int has_tls);   /* caller owns */
void sasl_free(struct sasl *s);                              /* wipes secrets (OPENSSL_cleanse); NULL ok */
int sasl_mech_from_name(const char *name, enum sasl_mech *out); /* "SCRAM-SHA-256","SCRAM-SHA-1","PLAIN"; -1 unknown */
const char *sasl_mech_name(enum sasl_mech m);
/* Which stored credential a mechanism needs (PLAIN verifies against SHA-256 creds). */
enum scram_hash sasl_cred_hash(enum sasl_mech m);

/* Optional, before sasl_start: the domain the client authenticates to. With
 * it, an authzid must be exactly authcid@domain (after nodeprep/nameprep);
 * without it, any domain is accepted and only the localpart is compared. */
void sasl_set_domain(struct sasl *s, const char *domain);

/* Client's initial response (may be empty). PLAIN without TLS -> SASL_ERR_ENCRYPTION_REQUIRED. Normally returns SASL_NEED_CREDS
 * after parsing the username (SCRAM client-first-message: gs2 header "n,," or "y,," accepted, "p=" channel binding refused as malformed
 * since we don't offer -PLUS yet; a=authzid allowed if it names the same user; PLAIN: authzid\0authcid\0passwd).
 * An empty initial response (len 0: none was sent, RFC 6120 §6.4.2) returns SASL_CONTINUE with an empty challenge; the client's
 * message then comes through sasl_step, which returns SASL_NEED_CREDS (or an error) in its place. */
int sasl_start(struct sasl *s, const unsigned char *in, size_t len, unsigned char **out, size_t *out_len);
const char *sasl_authcid(const struct sasl *s);   /* the username as sent (SCRAM: "=2C"/"=3D" decoded), valid after SASL_NEED_CREDS; else NULL */
const char *sasl_authzid(const struct sasl *s);   /* the authzid as sent, NULL if none; valid after SASL_NEED_CREDS */
/* Credentials arrived (cred NULL = no such user: continue with a fake, deterministic salt derived from the username and a server secret
 * so an attacker can't tell unknown users from wrong passwords, and fail at the proof). SCRAM: returns SASL_CONTINUE with server-first-message
 * (r=client nonce+server nonce from RAND_bytes, s=salt b64, i=iterations). PLAIN: verifies the password against the stored keys
 * (derive with the stored salt/iterations, compare stored_key with CRYPTO_memcmp) and returns SASL_OK or SASL_ERR_NOT_AUTHORIZED.
 * cred is copied; the caller may wipe its own copy afterwards. */
int sasl_set_creds(struct sasl *s, const struct scram_cred *cred, unsigned char **out, size_t *out_len);
/* Next client response (SCRAM client-final-message: check c= matches the gs2 header, r= nonce matches, verify p= proof: ClientSignature, ClientKey, H(ClientKey)==StoredKey).
 * Returns SASL_OK with out = "v=<server signature b64>" or an error. After an empty initial response, this is also where the
 * client-first-message or PLAIN message arrives (see sasl_start). */
int sasl_step(struct sasl *s, const unsigned char *in, size_t len, unsigned char **out, size_t *out_len);

/* Process-wide secret for the fake salts of unknown users; set once at startup (any length; only its SHA-256 is kept).
 * Without it a random one is made at first use, so fake salts change with each restart. */
void sasl_set_secret(const unsigned char *secret, size_t len);
/* Process-wide iteration count shown for unknown users (default SCRAM_MIN_ITERATIONS); set it to what accounts are created
 * with, or unknown users stand out. Clamped to 1..SCRAM_MAX_ITERATIONS. */
void sasl_set_fake_iterations(unsigned iterations);
/* Test hook: use nonce (printable, no ',') as the server nonce instead of random bytes. */
void sasl_set_nonce_for_test(struct sasl *s, const char *nonce);

#endif
