/* Routing of stanzas from bound sessions (RFC 6121 §8); see route.c. */
#ifndef PARLEY_ROUTER_ROUTE_H
#define PARLEY_ROUTER_ROUTE_H

#include "router.h"

struct envelope;

/* OP_STANZA from a gateway. */
void route_stanza(struct router *r, const char *gateway, const struct envelope *env);
/* Routes the stanzas parked after a start (W1) once that time is over;
 * with all set (shutdown) drops them instead. */
void route_unpark(struct router *r, int all);

#endif
