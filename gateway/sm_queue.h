/*
 * The arithmetic of XEP-0198 acknowledgements, without I/O or logging: the
 * count of stanzas sent to the client and the queue of those it has not
 * acknowledged yet. sm.c owns one per stream-managed connection and does the
 * writing; this file only keeps the books, so it can be tested alone.
 *
 * Rules (XEP-0198), cited where applied:
 *   Q1  h counts stanzas, starting at 0 when stream management is enabled,
 *       and wraps to 0 after 2^32 - 1 (§4): all counter arithmetic is on
 *       uint32_t, where C's unsigned wrap-around is the rule itself
 *   Q2  an acknowledgement h says the peer handled every stanza up to and
 *       including number h: the queue keeps exactly the sent - h newest
 *   Q3  an h that acknowledges stanzas never sent (more than are waiting,
 *       which also catches an h lower than a previous one) is the peer's
 *       error (§4, <handled-count-too-high/>); the queue is left unchanged
 */
#ifndef PARLEY_GATEWAY_SM_QUEUE_H
#define PARLEY_GATEWAY_SM_QUEUE_H

#include <stddef.h>
#include <stdint.h>

enum {
    SM_QUEUE_OK = 0,
    SM_QUEUE_ERR_RANGE = -1,   /* Q3: h outside [last acknowledged, sent] */
    SM_QUEUE_ERR_SYNTAX = -2,  /* h is not a decimal number in 0..2^32-1 */
};

struct sm_item {
    char *data;                /* the exact bytes written for the stanza */
    size_t len;
    char *ack;                 /* the router's OP_DELIVER ack to report once acked, or NULL */
    struct sm_item *next;
};

struct sm_queue {
    struct sm_item *head, *tail; /* oldest first */
    uint32_t sent;             /* stanzas sent, mod 2^32 (Q1) */
    uint32_t acked;            /* the peer's last valid h */
    size_t len;                /* items waiting: always sent - acked */
    size_t bytes;              /* sum of their lengths */
};

void sm_queue_init(struct sm_queue *q);
void sm_queue_fini(struct sm_queue *q);   /* frees every item */

/* Counts one sent stanza and keeps it; takes ownership of data (heap). */
void sm_queue_push(struct sm_queue *q, char *data, size_t len);

/* Same, with the router's ack id for the stanza (taken; may be NULL). */
void sm_queue_push_ack(struct sm_queue *q, char *data, size_t len, char *ack);

/* The peer's h (Q2, Q3): drops what it acknowledged. SM_QUEUE_OK (an h
 * equal to the last is a no-op) or SM_QUEUE_ERR_RANGE. */
int sm_queue_ack(struct sm_queue *q, uint32_t h);
/* The same, calling acked(ud, ack) for each dropped item that has an ack,
 * oldest first. */
int sm_queue_ack_each(struct sm_queue *q, uint32_t h, void (*acked)(void *ud, const char *ack), void *ud);
/* The oldest item's ack (borrowed) or NULL. */
const char *sm_queue_head_ack(const struct sm_queue *q);

/* Removes the oldest item and returns its data (caller owns) with *len
 * set, or NULL when empty. The counters do not change: used when the
 * stream ends for good and what is left must go somewhere else. */
char *sm_queue_pop(struct sm_queue *q, size_t *len);

/* Parses an 'h' attribute: decimal digits only, no sign or spaces, at most
 * 4294967295. SM_QUEUE_OK with *out set, or SM_QUEUE_ERR_SYNTAX. */
int sm_queue_parse_h(const char *text, uint32_t *out);

#endif
