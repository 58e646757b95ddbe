/*
 * The storage worker's link to the router: one DEALER socket on the libev
 * loop, the HELLO/HEARTBEAT liveness protocol of envelope.h, and jobs run
 * in batches (batch.h), blocking, between heartbeats.
 */
#ifndef PARLEY_STORAGE_WORKER_H
#define PARLEY_STORAGE_WORKER_H

#include <ev.h>

#include "envelope.h"
#include "evzmq.h"
#include "outbox.h"

struct backend;
struct config;
struct envelope;

/* Jobs read from the socket in one wakeup before they run (batch.h). */
#define WORKER_BATCH_MAX 256

/* The process's state, made in main.c (STYLE.md "Ownership and lifecycle"). */
struct storage {
    const struct config *conf;     /* borrowed; outlives the worker */
    const char *name;              /* ZeroMQ identity and HELLO name; borrowed */
    struct backend *backend;       /* borrowed; open and migrated */
    struct ev_loop *loop;
    void *zctx;
    void *sock;                    /* DEALER to storage.router_endpoint */
    struct evzmq z;
    struct envelope_reader reader;
    struct outbox *out;            /* everything sent on sock goes through it */
    ev_timer heartbeat;
    ev_signal sigterm, sigint;
    ev_tstamp last_heard;          /* when the router last sent anything */
    ev_tstamp last_beat;           /* when we last sent HELLO or HEARTBEAT */
    int router_lost;               /* warned once that the router went quiet */
    struct envelope *batch[WORKER_BATCH_MAX];  /* OP_JOBs read, not yet run; owned */
    size_t nbatch;
};

/* Connects to the router and sends HELLO. st->conf, name and backend must be
 * set. 0, or -1 after logging (everything opened so far is closed again). */
int worker_open(struct storage *st);
/* Runs the loop until SIGTERM or SIGINT. */
void worker_run(struct storage *st);
/* Runs the jobs already read, then closes the socket and the ZeroMQ
 * context; the backend stays open. */
void worker_close(struct storage *st);

#endif
