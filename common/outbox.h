/*
 * Batched sending of envelopes on one ZeroMQ socket (envelope.h: "Why
 * several envelopes per message"). Envelopes put during one event-loop turn
 * leave as one ZeroMQ message per peer just before the loop sleeps, or
 * earlier when a peer's batch is full. Everything a process sends on a
 * socket must go through its outbox: a direct envelope_send would overtake
 * what is queued.
 *
 * A send that fails at flush time (the peer is gone on a ROUTER socket, or
 * the high-water mark is reached) drops that peer's batch and logs it, rate
 * limited. Senders that must not lose work keep it until the peer answers
 * (the router's job broker redoes jobs of a worker that went away; the
 * gateway holds envelopes while the router link is down).
 */
#ifndef PARLEY_OUTBOX_H
#define PARLEY_OUTBOX_H

#include <ev.h>
#include <stddef.h>

struct envelope;
struct outbox;

/* what names the link in log lines ("gateways", "router"). The outbox
 * flushes from a lowest-priority prepare watcher on loop. Caller owns. */
struct outbox *outbox_new(struct ev_loop *loop, void *sock, const char *what);
/* Sends what is queued, then frees. NULL ok. */
void outbox_free(struct outbox *o);

/* Queues *e for peer (a ROUTER socket's destination identity; NULL on a
 * DEALER) and consumes it: *e is NULL afterwards. */
void outbox_put(struct outbox *o, const char *peer, struct envelope **e);

/* Queues a copy of e for peer; e stays the caller's. For senders that keep
 * what they sent (the router's job broker keeps a request for a redo). */
void outbox_put_copy(struct outbox *o, const char *peer, const struct envelope *e);

/* Sends everything queued now. Returns the number of envelopes dropped
 * because their send failed (already logged). */
size_t outbox_flush(struct outbox *o);

/* Envelopes queued and not yet sent. */
size_t outbox_pending(const struct outbox *o);

#endif
