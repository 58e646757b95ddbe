/*
 * One client connection: socket, TLS, buffers and lifecycle.
 *
 * A connection ends in two steps (STYLE.md): conn_close() is a request that
 * sends the stream error and </stream:stream>, stops reading and lets the
 * output drain; the memory is freed later by the reaper at the end of the
 * loop turn, so no callback (expat's included) ever runs on freed memory.
 */
#ifndef PARLEY_GATEWAY_CONN_H
#define PARLEY_GATEWAY_CONN_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "buf.h"
#include "gateway.h"

struct stanza;
struct xml_parser;
struct sasl;
struct sm;

enum conn_state {
    CONN_CONNECTED,            /* TCP up, no TLS yet (or plain allowed) */
    CONN_SECURED,              /* TLS negotiated, not authenticated */
    CONN_AUTHED,               /* SASL succeeded, not bound */
    CONN_BOUND,                /* resource bound: stanzas flow to the router */
    CONN_CLOSING,              /* stream closed or failed: draining output */
    CONN_DETACHED,             /* XEP-0198: socket lost, session kept for resumption (sm.c) */
};

struct out_ack {                /* an ack to report once out_done passes end */
    uint64_t end;
    char *ack;
    struct out_ack *next;
};

struct held {                   /* a stanza held while waiting for the router */
    struct stanza *s;
    struct held *next;
};

struct conn {
    uint64_t id;
    int fd;
    struct gateway *gw;
    enum conn_state state;
    SSL *ssl;
    ev_io rio, wio;
    ev_timer timer;            /* handshake deadline; once bound the idle check (idle.c); detached,
                                * the resume deadline (sm.c); closing, the drain deadline */
    struct buf out;
    uint64_t out_total;        /* bytes ever queued in out */
    uint64_t out_done;         /* bytes ever written from out */
    struct out_ack *acks, *acks_tail;
    struct xml_parser *xml;
    char stream_id[20];

    unsigned is_direct_tls : 1;
    unsigned is_loopback : 1;
    unsigned is_header_sent : 1;   /* our stream header for the current stream */
    unsigned is_waiting : 1;       /* router answer pending: stanzas are held */
    unsigned is_reaped : 1;
    unsigned want_restart_tls : 1; /* start TLS once <proceed/> is written */
    unsigned is_tls_restart : 1;   /* the parser restart was for <starttls/> */
    unsigned is_close_reported : 1;/* OP_CLOSED sent to the router */
    unsigned is_available : 1;     /* last broadcast presence was available */
    unsigned is_lost : 1;          /* the peer vanished (EOF, socket error, idle timeout) rather
                                    * than a close by either side: an SM session may resume */

    struct sasl *sasl;
    int sasl_mech;             /* enum sasl_mech of the exchange */
    ev_timer delay;            /* A3 in auth.c: slowed-down failures */
    int auth_failures;
    char *pending_job;         /* id of the cred_get in flight */
    char *pending_bind;        /* id of the bind iq in flight */
    char *pending_full;        /* what that bind asked for */
    unsigned is_request_sent : 1; /* the pending request went to the router (not held) */
    char *user_id;             /* bare JID after SASL */
    const struct config_device_class *device_class; /* from the login name; borrowed from the config */
    char *full;                /* full JID after bind */
    char *close_reason;        /* for OP_CLOSED: closed | dropped | error | kicked */
    double bound_at;
    int priority;              /* of the last broadcast available presence */
    char *presence;            /* that presence, serialized, for re-announcing */

    struct held *held, *held_tail;
    int nheld;

    double last_activity;      /* ev_now() of the last bytes read (idle.c) */
    double ping_at;            /* when our idle ping went out; 0 when none is pending */
    uint32_t ping_seq;         /* numbers our pings' ids */
    struct sm *sm;             /* XEP-0198 state once enabled, else NULL (sm.c) */

    unsigned is_dirty : 1;     /* on gw->dirty */
    unsigned is_parser_asleep : 1; /* idle.c I5: xml_hibernate()d */
    struct conn *dirty_next;
    struct conn *hnext;        /* bucket chain in gateway */
    struct conn *reap_next;
};

/* Takes ownership of fd (accepted, non-blocking). */
struct conn *conn_new(struct gateway *gw, int fd, int is_direct_tls, int is_loopback);
struct conn *conn_find(struct gateway *gw, uint64_t id);

/* Queues bytes for the client. They are written when the loop turn ends
 * (conn_flush_all), so what one turn queues for a connection, say a batch
 * of messages from the router, goes out in one write and one TLS record. */
void conn_write(struct conn *c, const char *data, size_t len);
/* Writes out every connection's queued output; run by a prepare watcher
 * of the lowest priority, so after everything else in the loop turn. */
void conn_flush_all(struct gateway *gw);
void conn_write_str(struct conn *c, const char *s);
/* Writes a stanza (message, presence, iq) for the client. With stream
 * management on it is also counted and kept until acknowledged (sm.c), and
 * kept even while the session is detached or closing; otherwise the same
 * as conn_write. */
void conn_write_stanza(struct conn *c, const char *data, size_t len);
/* The same for a delivery the router wants acknowledged: ack (copied) is
 * reported with OP_ACKED once the client acknowledged it (stream
 * management) or, without stream management, once it was written. */
void conn_write_stanza_ack(struct conn *c, const char *data, size_t len, const char *ack);

/* Starts TLS on the socket (direct TLS, or after <proceed/> is written). */
void conn_start_tls(struct conn *c);

/*
 * Ends the connection. condition is a stream error (RFC 6120 §4.9.3, e.g.
 * "not-well-formed") or NULL for a clean close; text is optional; reason
 * goes to the router and the log. Idempotent.
 */
void conn_close(struct conn *c, const char *condition, const char *text, const char *reason);

/* Frees every connection closed during this loop turn; a lost connection
 * whose session may be resumed is detached instead (CONN_DETACHED: socket,
 * TLS and parser freed, session kept until sm.c ends it). */
void conn_reap(struct gateway *gw);
/* Resumption (sm.c): c takes over old's connection id, under which the
 * router knows the session, and old gets a fresh id nobody uses. */
void conn_take_id(struct conn *c, struct conn *old);
void conn_init_table(struct gateway *gw);
/* Iteration over live connections (for re-announcing sessions). */
void conn_foreach(struct gateway *gw, void (*fn)(struct conn *c, void *arg), void *arg);

/* Holding stanzas while the router decides (bind, credentials). */
void conn_wait(struct conn *c);
void conn_resume(struct conn *c);

#endif
