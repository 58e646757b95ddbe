/* Message Carbons (XEP-0280, urn:xmpp:carbons:2); see carbons.c. */
#ifndef PARLEY_ROUTER_CARBONS_H
#define PARLEY_ROUTER_CARBONS_H

#include <stdint.h>

#include "router.h"

struct envelope;
struct session;
struct user;

#define NS_CARBONS "urn:xmpp:carbons:2"

/* Whether a message (OP_STANZA) is copied at all (C1, C2 in carbons.c). */
int carbons_is_eligible(const struct envelope *env);
/* Copies a message `from` sent to its user's other enabled sessions. */
void carbons_sent(struct router *r, const struct session *from, const struct envelope *env);
/* Copies a message delivered to some of u's sessions (those marked with
 * mark) to u's other enabled sessions. */
void carbons_received(struct router *r, const struct user *u, const struct envelope *env, uint64_t mark);
/* <iq type='set'><enable|disable xmlns='urn:xmpp:carbons:2'/></iq>. */
void carbons_iq(struct router *r, struct session *from, const struct envelope *env);

#endif
