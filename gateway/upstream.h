/* The gateway's link to the router; see upstream.c. */
#ifndef PARLEY_GATEWAY_UPSTREAM_H
#define PARLEY_GATEWAY_UPSTREAM_H

#include <stdint.h>

#include "gateway.h"

struct conn;
struct envelope;

/* Connects to the router and says hello. 0, or -1 after logging. */
int upstream_open(struct gateway *gw);
void upstream_close(struct gateway *gw);

/* Sends and consumes *e. */
void upstream_send(struct gateway *gw, struct envelope **e);
/* Sends the envelopes queued this loop turn now (they also leave on their own
 * before the loop sleeps). */
void upstream_flush(struct gateway *gw);

/* Asks storage (through the router) for a user's SCRAM keys; returns the
 * job id the answer will carry (caller owns). */
char *upstream_request_creds(struct gateway *gw, uint64_t conn, const char *user_id);
void upstream_request_bind(struct gateway *gw, uint64_t conn, const char *id, const char *full,
                           const char *user_id, const char *device_class);
/* Reports OP_ACKED for a delivered stanza the client acknowledged. */
void upstream_acked(struct conn *c, const char *ack);
/* Hands a message the client never acknowledged back to the router for
 * offline storage (OP_UNDELIVERED), before the session's OP_CLOSED. */
void upstream_undelivered(struct conn *c, const char *xml, size_t len);
/* Tells the router a bound session's connection ended (once). */
void upstream_closed(struct conn *c);

#endif
