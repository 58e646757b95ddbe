/*
 * Small edits to serialized stanzas without parsing them: the router adds
 * a child (stanza-id, delay) to messages on the hot path, where a parse and
 * re-serialize would cost more than the routing itself. The payloads come
 * from our own serializer (gateway forward.c or storage), so their shape
 * is known: "<message ...>...</message>" or "<message .../>".
 */
#ifndef PARLEY_ROUTER_PAYLOAD_H
#define PARLEY_ROUTER_PAYLOAD_H

#include <stddef.h>

struct buf;

/* Appends to out the message with child (serialized XML) added as its
 * last child. Returns 0, or -1 (out untouched) if it is not a <message/>. */
int payload_add_child(const char *xml, size_t len, const char *child, struct buf *out);
/* Appends the message with xmlns='jabber:client' declared on it, for
 * embedding in another namespace (<forwarded/>). -1 if not a <message/>. */
int payload_with_client_ns(const char *xml, size_t len, struct buf *out);

#endif
