/* Presence broadcast, probes and directed presence (RFC 6121 §4); see presence.c. */
#ifndef PARLEY_ROUTER_PRESENCE_H
#define PARLEY_ROUTER_PRESENCE_H

#include "router.h"

struct envelope;
struct session;

/* Presence without 'to' from a session (available, unavailable). */
void presence_on_broadcast(struct router *r, struct session *s, const struct envelope *env);
/* Presence with a local 'to' (directed, probe, subscription types). */
void presence_on_directed(struct router *r, struct session *s, const struct envelope *env, const char *to_jid,
                          const char *to_bare, int to_has_resource);
/* The session is ending; broadcasts unavailable for it unless it is being
 * replaced by a login with the same full JID. Call before it is freed. */
void presence_on_session_end(struct router *r, struct session *s);
/* Sends the current presence of every available session of `contact` to
 * every available session of `to_user` (after a subscription is approved). */
void presence_send_current(struct router *r, const char *contact, const char *to_user);
/* Sends unavailable presence from every session of `contact` to `to_user`. */
void presence_send_unavailable(struct router *r, const char *contact, const char *to_user);

#endif
