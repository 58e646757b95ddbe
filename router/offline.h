/* Offline messages (XEP-0160); see offline.c. */
#ifndef PARLEY_ROUTER_OFFLINE_H
#define PARLEY_ROUTER_OFFLINE_H

#include <stddef.h>
#include <stdint.h>

#include "router.h"

struct envelope;
struct session;

/* A message (OP_STANZA from `from`) that reached no resource of user_id:
 * stored if it qualifies (O1), with xml the payload as it will be
 * delivered. */
void offline_store(struct router *r, struct session *from, const struct envelope *env, const char *user_id,
                   const char *id, int64_t stamp, const char *xml, size_t len);
/* Delivers the stored messages to a session that just became available
 * with non-negative priority (O3). */
void offline_deliver(struct router *r, struct session *s);
/* OP_ACKED from a gateway (O4). */
void offline_on_acked(struct router *r, const char *gateway, const struct envelope *env);
/* OP_UNDELIVERED from a gateway (O5). */
void offline_on_undelivered(struct router *r, const char *gateway, const struct envelope *env);

#endif
