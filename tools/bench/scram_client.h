/*
 * Client side of SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802 §3, §5, §7; RFC 7677)
 * for parley-bench: builds client-first and client-final, checks the server
 * signature. The key math is common/scram.c's; this file only adds the
 * client's messages. No I/O, no channel binding (gs2 header "n,,").
 *
 * Every bench account has the same password and, when we create the
 * accounts, the same salt, so the expensive Hi() is done once per process:
 * struct scram_keycache remembers the keys of the last (hash, salt,
 * iterations) and is reused as long as the server sends the same ones.
 */
#ifndef PARLEY_BENCH_SCRAM_CLIENT_H
#define PARLEY_BENCH_SCRAM_CLIENT_H

#include <stddef.h>

#include "scram.h"

enum {
    SCRAM_CLIENT_ERR_FORMAT = -20,    /* server message not parseable, or an m= extension */
    SCRAM_CLIENT_ERR_NONCE = -21,     /* server nonce does not extend ours */
    SCRAM_CLIENT_ERR_ITERATIONS = -22,/* i= missing, zero or above SCRAM_MAX_ITERATIONS */
    SCRAM_CLIENT_ERR_SERVER = -23,    /* server-final: e=error, or v= not the expected signature */
    SCRAM_CLIENT_ERR_STATE = -24,     /* called out of order */
};

struct scram_keycache {
    int is_valid;
    enum scram_hash hash;
    unsigned char salt[SCRAM_MAX_SALT];
    size_t salt_len;
    unsigned iterations;
    unsigned char client_key[SCRAM_MAX_HASH];
    unsigned char server_key[SCRAM_MAX_HASH];
};

struct scram_client {
    enum scram_hash hash;
    char *client_first_bare;      /* "n=user,r=nonce" */
    char *nonce;                  /* our nonce */
    unsigned char server_signature[SCRAM_MAX_HASH];
    int has_final;                /* client-final built; server_signature valid */
};

/* Starts an exchange for user (escaped here per RFC 5802 §5.1) with client
 * nonce cnonce (printable, no ','). Returns the client-first-message
 * "n,,n=user,r=cnonce" (caller frees); sc is then owned by the caller until
 * scram_client_fini. */
char *scram_client_first(struct scram_client *sc, enum scram_hash h, const char *user, const char *cnonce);

/* Given the server-first-message (NUL-terminated), computes the proof for
 * password (SASLprep'd here) and sets *out to the client-final-message
 * (caller frees). Derives keys through cache (may be NULL), which it
 * refreshes on a miss. Returns 0, a SCRAM_CLIENT_ERR_* or SCRAM_ERR_*. */
int scram_client_final(struct scram_client *sc, const char *server_first, const char *password,
                       struct scram_keycache *cache, char **out);

/* Checks the server-final-message "v=..." (NUL-terminated). 0 or
 * SCRAM_CLIENT_ERR_SERVER / SCRAM_CLIENT_ERR_STATE. */
int scram_client_verify(const struct scram_client *sc, const char *server_final);

/* Frees what sc holds; sc may be reused after scram_client_first. */
void scram_client_fini(struct scram_client *sc);

#endif
