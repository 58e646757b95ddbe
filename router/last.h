/* XEP-0012 Last Activity; see last.c. */
#ifndef PARLEY_ROUTER_LAST_H
#define PARLEY_ROUTER_LAST_H

#include "router.h"

struct envelope;
struct session;

#define NS_LAST "jabber:iq:last"

/* iq get jabber:iq:last to the server or to a bare JID of this domain. */
void last_iq(struct router *r, struct session *from, const struct envelope *env, const char *bare);

#endif
