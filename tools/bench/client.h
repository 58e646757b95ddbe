/*
 * One client connection of parley-bench: the socket (bound to a source
 * address on 127.0.0.0/8 so one host can open many connections), TLS,
 * output buffering, and feeding what arrives to the XML stream parser.
 * What the stanzas mean is login.c's and traffic.c's business.
 *
 * Closing is a request: client_fail() may be called from inside a parser
 * callback; the connection is torn down when the I/O callback returns, so
 * no callback runs on freed memory (STYLE.md "Ownership and lifecycle").
 */
#ifndef PARLEY_BENCH_CLIENT_H
#define PARLEY_BENCH_CLIENT_H

#include <stddef.h>

#include "worker.h"

/* Most bytes we queue for one client before refusing more (traffic.c then
 * counts a message as skipped instead of growing without bound). */
#define CLIENT_MAX_OUT (256 * 1024)

/* Starts connecting c (state CLIENT_IDLE) to its port from its source
 * address; the outcome arrives through login_connected() or
 * worker_on_closed(). */
void client_open(struct client *c);

/* Queues len bytes and writes what the socket takes now. */
void client_send(struct client *c, const char *data, size_t len);
void client_send_str(struct client *c, const char *s);

/* Starts the TLS handshake (direct TLS, or after <proceed/>); on success
 * login_tls_done() runs. */
void client_start_tls(struct client *c);

/* Requests the close of c for reason why; idempotent. The close happens
 * when the current I/O callback returns (or at once outside of one). */
void client_fail(struct client *c, enum fail_reason why);

/* Closes c now without counting a failure (end of run). */
void client_close(struct client *c);

#endif
