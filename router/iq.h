/* Queries the server answers itself; see iq.c. */
#ifndef PARLEY_ROUTER_IQ_H
#define PARLEY_ROUTER_IQ_H

#include "router.h"

struct envelope;
struct session;

/* An iq get/set addressed to the server, to the sender's own account
 * (bare == NULL or the sender's bare JID) or to another account's bare JID. */
void iq_handle(struct router *r, struct session *from, const struct envelope *env, const char *bare);

/* The features this server supports, as advertised by disco#info. */
extern const char *const iq_features[];

#endif
