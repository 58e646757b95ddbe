/* XEP-0198 stream management and resumption on a connection; see sm.c. */
#ifndef PARLEY_GATEWAY_SM_H
#define PARLEY_GATEWAY_SM_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "sm_queue.h"

#define NS_SM "urn:xmpp:sm:3"

struct conn;
struct stanza;

struct sm {
    struct sm_queue out;       /* stanzas sent to the client, not yet acknowledged */
    uint32_t h_in;             /* stanzas handled from the client (mod 2^32) */
    char *resume_id;           /* the previd a resume must name; NULL: not resumable */
    int max;                   /* seconds the session waits for a resume after a drop */
    int unrequested;           /* stanzas sent since our last <r/> */
    ev_timer ack_timer;        /* sends <r/> shortly after a stanza went out */
    struct conn *conn;         /* owner (changes when a resume moves the session) */
};

/* An element in the urn:xmpp:sm:3 namespace on an authenticated stream
 * (<enable/>, <resume/>, <r/>, <a/>); takes ownership of s. May close c. */
void sm_on_element(struct conn *c, struct stanza *s);
/* A stanza from the client was handled (counted when SM is on). */
void sm_on_stanza_in(struct conn *c);
/* conn_write_stanza with SM on: counts and queues a copy of the bytes and
 * writes them when the stream is attached. May close c (sm.max_queue). */
void sm_on_stanza_out(struct conn *c, const char *data, size_t len, const char *ack);

/* Whether the reaper should detach c rather than free it: SM resumption
 * is on, the connection was lost (c->is_lost) and the gateway runs on. */
int sm_may_detach(const struct conn *c);
/* c was just detached (conn.c): arms the resume deadline on c->timer. */
void sm_on_detach(struct conn *c);
/* c->timer fired on a detached session: it ends (as a drop). */
void sm_on_resume_timeout(struct conn *c);
/* The session ends for good (conn_free, before OP_CLOSED): every
 * unacknowledged message goes back to its sender as an error; frees c->sm.
 * No-op without SM. */
void sm_end(struct conn *c);

#endif
