/*
 * Stream negotiation of a parley-bench client, as a standard client does
 * it (RFC 6120 §4-§7, RFC 6121 §2.1.3, §4.2): stream header, STARTTLS,
 * SASL (SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN), stream restart, resource
 * bind, the legacy session if the server insists, roster get, initial
 * presence. The client counts as online when a ping to its own bare JID,
 * sent right after the presence, is answered: by then the server has
 * processed the presence (one stream is handled in order), so a message
 * to this account is delivered rather than stored.
 */
#ifndef PARLEY_BENCH_LOGIN_H
#define PARLEY_BENCH_LOGIN_H

#include "worker.h"

/* TCP is up: starts TLS (direct) or sends the stream header. */
void login_connected(struct client *c);
/* TLS is up: sends the stream header. */
void login_tls_done(struct client *c);

/* Longest bare JID we build: prefix (63) + index (20) + @ + domain (255), NUL. */
#define LOGIN_JID_MAX 400

/* Writes the bare JID of run account a to out (size outsz). */
void login_jid(const struct worker *w, uint32_t account, char *out, size_t outsz);

#endif
