/*
 * The router's state, made in main.c and passed to every router file
 * (STYLE.md: one struct per process, no globals but signal flags).
 *
 * The router is the one place that knows who is online. It never does
 * socket I/O with clients and never blocks on the database: storage work
 * goes through the job broker (jobs.c) and comes back as callbacks.
 */
#ifndef PARLEY_ROUTER_H
#define PARLEY_ROUTER_H

#include <ev.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "envelope.h"
#include "evzmq.h"
#include "outbox.h"
#include "log.h"
#include "strmap.h"

struct envelope;

/* A stanza held while gateways re-announce their sessions (route.c W1). */
struct parked {
    char *gateway;
    struct envelope *env;
    struct parked *next;
};

struct router {
    const struct config *conf;
    struct ev_loop *loop;
    void *zctx;
    void *gw_sock;             /* ROUTER: gateways */
    void *st_sock;             /* ROUTER: storage workers */
    void *admin_sock;          /* ROUTER: parleyctl */
    struct evzmq gw_watch, st_watch, admin_watch;
    struct envelope_reader gw_in, st_in, admin_in;
    struct outbox *gw_out;     /* everything sent to gateways */
    struct outbox *st_out;     /* everything sent to storage workers */
    ev_timer heartbeat;        /* heartbeats out, peer expiry, job timeouts */
    ev_signal sigint, sigterm;
    time_t started;

    struct strmap gateways;    /* name -> struct gateway_peer */
    struct strmap sessions;    /* LoginID (full JID) -> struct session */
    struct strmap users;       /* UserID (bare JID) -> struct user */
    struct strmap rosters;     /* UserID -> struct roster (roster.c cache) */
    struct jobs *jobs;         /* storage broker */
    struct offline_acks *offline_acks; /* offline_acks.c: deletes waiting for the turn's end */
    struct bind_wait *replacing; /* kick_old binds waiting for the old session */

    uint64_t routed;           /* stanzas routed, for status */
    uint64_t fanout_seq;       /* route.c: marks the sessions one message reached */
    uint64_t resource_seq;     /* for server-generated resources */
    uint64_t session_seq;      /* sessions.c: bind order */
    double warm_until;         /* route.c: after a start, park stanzas for users not yet re-announced */
    struct parked *parked, *parked_tail;
    int64_t last_id_usec;      /* archive.c: last message id handed out */
    double last_retention;     /* archive.c: last retention purge */
    struct log_limit archive_fail_log;
};

/* Sends env (consumed) to a gateway by name, logging a failure once. */
void router_send_gateway(struct router *r, const char *gateway, struct envelope **env);

#endif
