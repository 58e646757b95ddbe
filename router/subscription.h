/* Presence subscriptions between local users (RFC 6121 §3); see subscription.c. */
#ifndef PARLEY_ROUTER_SUBSCRIPTION_H
#define PARLEY_ROUTER_SUBSCRIPTION_H

#include "router.h"

struct envelope;
struct session;
struct roster;

/* A presence of type subscribe/subscribed/unsubscribe/unsubscribed from
 * session `from` to the local bare JID `to`. */
void subscription_on_presence(struct router *r, struct session *from, const struct envelope *env, const char *to);
/* The user of ro removed contact jid from the roster (RFC 6121 §2.5.2). */
void subscription_on_remove(struct router *r, struct roster *ro, const char *jid);
/* Sends the pending inbound requests of ro's user to session s (§3.1.3). */
void subscription_redeliver(struct router *r, struct roster *ro, struct session *s);

#endif
