/*
 * libev <-> ZeroMQ glue. ZMQ_FD is edge-triggered and is only a hint: it
 * signals that ZMQ_EVENTS must be re-read, and a zmq_send can consume the
 * edge without a message being read. So besides the io watcher we re-check
 * ZMQ_EVENTS in a prepare watcher before every blocking poll; whatever is
 * readable is handed to the callback, in batches, before the loop sleeps.
 */
#ifndef PARLEY_EVZMQ_H
#define PARLEY_EVZMQ_H

#include <ev.h>

struct evzmq;
/* Called while the socket has input; must read at most one message (it may
 * read zero, e.g. when it decides to stop). */
typedef void (*evzmq_cb)(struct evzmq *z);

struct evzmq {
    ev_io io;
    ev_prepare prepare;
    ev_idle idle;          /* keeps the loop from sleeping when a batch was cut short */
    struct ev_loop *loop;
    void *sock;
    evzmq_cb cb;
    void *data;            /* the owner's context */
};

/* Starts watching sock. z is embedded in its owner and must stay put. */
void evzmq_init(struct evzmq *z, struct ev_loop *loop, void *sock, evzmq_cb cb, void *data);
void evzmq_fini(struct evzmq *z);

/* Whether a message (or the rest of one) is waiting on sock: ZMQ_EVENTS
 * has POLLIN. Also consumes ZMQ_FD's edge, see above. */
int evzmq_readable(void *sock);

/* Socket helpers: create, set linger/HWM/identity, bind or connect. NULL on
 * failure with errno set (callers log with the endpoint). identity may be NULL. */
void *evzmq_router_bind(void *ctx, const char *endpoint);
void *evzmq_dealer_connect(void *ctx, const char *endpoint, const char *identity);

#endif
