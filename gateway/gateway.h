/*
 * The gateway's state, made in main.c and passed to every gateway file.
 * A gateway holds client connections (TCP, TLS, XML streams, SASL, bind)
 * and forwards what bound clients send to the router; it never decides
 * where a stanza goes and never touches the database.
 */
#ifndef PARLEY_GATEWAY_H
#define PARLEY_GATEWAY_H

#include <ev.h>
#include <openssl/ssl.h>
#include <stdint.h>

#include "config.h"
#include "envelope.h"
#include "evzmq.h"
#include "outbox.h"

struct conn;
struct listener;

struct envelope;

struct upstream_held {         /* an envelope kept while the router is away */
    struct envelope *env;
    size_t bytes;
    struct upstream_held *next;
};

struct upstream {
    void *sock;                /* DEALER to the router */
    struct outbox *out;        /* everything sent on sock goes through it */
    struct envelope_reader reader;
    void *monitor;             /* PAIR receiving the DEALER's connect/disconnect events */
    struct evzmq watch, monitor_watch;
    ev_timer heartbeat;
    double last_heard;         /* ev_now() of the router's last message */
    int is_router_alive;       /* heard within router.peer_timeout_ms */
    int is_connected;          /* the link is up and the router knows us */
    struct upstream_held *held, *held_tail;
    size_t held_bytes;
    uint64_t held_dropped;
    uint64_t job_seq;
};

struct gateway {
    const struct config *conf;
    const char *name;          /* peer name, e.g. "gateway-1" */
    struct ev_loop *loop;
    void *zctx;
    SSL_CTX *tls;
    struct upstream up;
    struct listener *listeners;

    /* connections by id: chained buckets, see conn.c */
    struct conn **conn_buckets;
    size_t conn_nbuckets;
    size_t nconns;
    uint64_t next_conn_id;
    struct conn *reap_list;    /* closed, freed at the end of the loop turn */
    ev_check reaper;
    struct conn *dirty;        /* have output queued this loop turn */
    ev_prepare flusher;        /* writes it all before the loop sleeps (conn.c) */
    ev_timer sweep;            /* idle.c: lets idle connections' parsers sleep */

    ev_signal sigint, sigterm;
    int is_stopping;
};

#endif
