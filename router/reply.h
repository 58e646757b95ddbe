/*
 * What the router writes to a session itself: stanza errors (RFC 6120
 * §8.3) and iq results for queries it answers on the server's or the
 * account's behalf. One place turns a condition into the error on the wire.
 */
#ifndef PARLEY_ROUTER_REPLY_H
#define PARLEY_ROUTER_REPLY_H

#include <stddef.h>

#include "router.h"

struct envelope;
struct session;

/* Delivers payload (copied) to one session. */
void reply_deliver(struct router *r, const struct session *s, const char *xml, size_t len);

/*
 * Bounces the stanza of an OP_STANZA envelope back to its sender session
 * with <error type='etype'><condition/></error>. Never answers an error
 * with an error (RFC 6120 §8.3.1). etype: "cancel", "modify", "wait", "auth".
 */
void reply_error(struct router *r, const struct session *sender, const struct envelope *env,
                 const char *condition, const char *etype);

/* Sends <iq type='result'> answering env's iq, with inner XML (may be NULL). */
void reply_iq_result(struct router *r, const struct session *sender, const struct envelope *env,
                     const char *inner);

#endif
