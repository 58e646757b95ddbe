/*
 * The message interceptor point (the seed's PacketInterceptor): every
 * routed message between users passes here twice, once as it comes in
 * (incoming, not yet processed) and once after routing (processed), with
 * what routing decided. Archiving is the first interceptor; others (audit,
 * filters) are added to the table in intercept.c.
 */
#ifndef PARLEY_ROUTER_INTERCEPT_H
#define PARLEY_ROUTER_INTERCEPT_H

#include <stddef.h>
#include <stdint.h>

#include "router.h"

struct envelope;
struct session;

struct intercept_msg {
    const struct session *from;
    const struct envelope *env;    /* header and payload as the sender sent it */
    const char *to_user;           /* recipient's bare JID (local) */
    const char *id;                /* server-assigned id (stanza-id), or NULL */
    int64_t stamp;                 /* when the server received it, unix µs */
    const char *xml;               /* payload as delivered (with stanza-id) */
    size_t len;
    int delivered;                 /* resources reached (processed only) */
    int is_stored;                 /* handed to offline storage (processed only) */
};

void intercept_message(struct router *r, const struct intercept_msg *m, int incoming, int processed);

#endif
