/* Acknowledged offline messages, deleted in batches; see offline_acks.c. */
#ifndef PARLEY_ROUTER_OFFLINE_ACKS_H
#define PARLEY_ROUTER_OFFLINE_ACKS_H

#include "router.h"

struct offline_acks;

/* Starts the end-of-turn flush on r->loop. Caller (main.c) owns. */
struct offline_acks *offline_acks_new(struct router *r);
/* Submits what is pending, then frees. NULL ok. */
void offline_acks_free(struct offline_acks *a);

/* The stored message id of user was acknowledged: it is deleted with the
 * other ids of this loop turn. */
void offline_acks_add(struct router *r, const char *user, const char *id);
/* Submits user's pending deletes now, so that a job submitted after this
 * call runs after them (offline.c, before a fetch or a store). */
void offline_acks_flush_user(struct router *r, const char *user);

#endif
