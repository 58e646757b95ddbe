/* The admin socket (parleyctl); see admin.c. */
#ifndef PARLEY_ROUTER_ADMIN_H
#define PARLEY_ROUTER_ADMIN_H

#include "router.h"

struct envelope;

/* One OP_ADMIN request from the parleyctl whose socket identity is peer. */
void admin_on_message(struct router *r, const char *peer, const struct envelope *env);

#endif
