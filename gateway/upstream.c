/*
 * The router link: a DEALER socket named after the gateway, heartbeats both
 * ways, and the dispatch of what the router sends (envelope.h).
 *
 * Router restarts (U1-U3): no client is disconnected and nothing a client
 * sends while the router is away is lost.
 *   U1  a socket monitor tells us at once when the link drops; from then
 *       on everything but heartbeats is held here, in order, up to
 *       gateway.router_buffer_bytes (over that, the newest is refused and
 *       counted), because ZeroMQ would hand it to the new router before
 *       that router knows our sessions
 *   U2  a restarted router answers our heartbeat with OP_UNKNOWN_PEER: we
 *       say hello, re-announce every bound session with its presence,
 *       re-send the bind and credential requests that were in flight,
 *       then release what we held
 *   U3  if the same router answers (a short blip), we release at once
 */
#include "upstream.h"
#include "auth.h"
#include "bind.h"
#include "conn.h"
#include "envelope.h"
#include "log.h"
#include "outbox.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* Queued in the outbox: it leaves with the rest of this loop turn's
 * envelopes in one message (envelope.h). */
static void send_now(struct gateway *gw, struct envelope **e)
{
    outbox_put(gw->up.out, NULL, e);
}

void upstream_flush(struct gateway *gw)
{
    if (gw->up.out)
        (void)outbox_flush(gw->up.out); /* failures are logged by the outbox */
}

void upstream_send(struct gateway *gw, struct envelope **e)
{
    struct upstream *up = &gw->up;
    size_t bytes;

    if (up->is_connected) {
        send_now(gw, e);
        return;
    }
    /* U1 */
    bytes = (*e)->payload_len + 256;
    if (up->held_bytes + bytes > (size_t)gw->conf->gateway.router_buffer_bytes) {
        if (up->held_dropped++ % 1000 == 0)
            log_warn("router away and %zu bytes held; refusing %s (%llu refused so far)", up->held_bytes,
                     envelope_op_name((*e)->op), (unsigned long long)up->held_dropped);
        envelope_free(*e);
        *e = NULL;
        return;
    }
    struct upstream_held *h = xcalloc(1, sizeof(*h));
    h->env = *e;
    h->bytes = bytes;
    *e = NULL;
    if (up->held_tail)
        up->held_tail->next = h;
    else
        up->held = h;
    up->held_tail = h;
    up->held_bytes += bytes;
}

static void release_held(struct gateway *gw)
{
    struct upstream *up = &gw->up;
    size_t n = 0;

    up->is_connected = 1;
    while (up->held) {
        struct upstream_held *h = up->held;
        up->held = h->next;
        send_now(gw, &h->env);
        free(h);
        n++;
    }
    up->held_tail = NULL;
    up->held_bytes = 0;
    if (n)
        log_info("router link restored; %zu held messages sent", n);
}

static void send_hello(struct gateway *gw)
{
    struct envelope *e = envelope_new(OP_HELLO);
    envelope_set(e, ENV_NAME, gw->name);
    envelope_set(e, ENV_ROLE, "gateway");
    envelope_set_int(e, ENV_PID, getpid());
    send_now(gw, &e);
}

static void announce_one(struct conn *c, void *arg)
{
    (void)arg;
    /* A detached session (XEP-0198, sm.c) is still a session to the router. */
    if ((c->state != CONN_BOUND && c->state != CONN_DETACHED) || !c->full)
        return;
    struct envelope *e = envelope_new(OP_ANNOUNCE);
    envelope_set_int(e, ENV_CONN, (int64_t)c->id);
    envelope_set(e, ENV_FULL, c->full);
    envelope_set(e, ENV_USER, c->user_id);
    if (c->device_class)
        envelope_set(e, ENV_CLASS, c->device_class->name);
    envelope_set_int(e, ENV_SINCE, (int64_t)c->bound_at);
    envelope_set_int(e, ENV_AVAIL, c->is_available);
    if (c->is_available) {
        envelope_set_int(e, ENV_PRIO, c->priority);
        if (c->presence)
            envelope_set_payload(e, c->presence, strlen(c->presence));
    }
    send_now(c->gw, &e);
}

/* U2: requests the old router took with it are asked again. Only those
 * sent directly: held ones are still here and go out after this. */
static void resend_one(struct conn *c, void *arg)
{
    (void)arg;
    if (c->state == CONN_CLOSING || !c->is_request_sent)
        return;
    if (c->pending_bind && c->state == CONN_AUTHED && c->pending_full) {
        struct envelope *e = envelope_new(OP_BIND);
        envelope_set_int(e, ENV_CONN, (int64_t)c->id);
        envelope_set(e, ENV_ID, c->pending_bind);
        envelope_set(e, ENV_FULL, c->pending_full);
        envelope_set(e, ENV_USER, c->user_id);
        if (c->device_class)
            envelope_set(e, ENV_CLASS, c->device_class->name);
        send_now(c->gw, &e);
    } else if (c->pending_job && c->user_id) {
        struct envelope *e = envelope_new(OP_JOB);
        envelope_set(e, ENV_WHAT, "cred_get");
        envelope_set(e, ENV_JOB, c->pending_job);
        envelope_set_int(e, ENV_CONN, (int64_t)c->id);
        envelope_set(e, ENV_USER, c->user_id);
        send_now(c->gw, &e);
    }
}

static void on_router_msg(struct evzmq *z)
{
    struct gateway *gw = z->data;
    struct envelope *env;
    struct conn *c;
    int rc = envelope_recv(&gw->up.reader, &env);

    if (rc == ENVELOPE_AGAIN)
        return;
    if (rc < 0) {
        log_warn("router sent a bad message: %s", envelope_error_string(rc));
        return;
    }
    gw->up.last_heard = ev_now(gw->loop);
    if (!gw->up.is_router_alive) {
        gw->up.is_router_alive = 1;
        log_info("router is back");
    }
    c = envelope_has_int(env, ENV_CONN) ? conn_find(gw, (uint64_t)envelope_get_int(env, ENV_CONN, 0)) : NULL;
    switch (env->op) {
    case OP_HELLO:
    case OP_HEARTBEAT:
        if (!gw->up.is_connected)
            release_held(gw);                                               /* U3 */
        break;
    case OP_UNKNOWN_PEER:
        /* U2. Several may come (one per heartbeat queued while away);
         * repeats are harmless: the router ignores a known announce. */
        log_info("router does not know us (it restarted); saying hello and re-announcing sessions");
        send_hello(gw);
        conn_foreach(gw, announce_one, NULL);
        conn_foreach(gw, resend_one, NULL);
        release_held(gw);
        break;
    case OP_DELIVER:
        /* Bound, or with stream management also detached or closing: then
         * it is queued, for a resume or to go back to its sender (sm.c). */
        if (c && c->full && c->state >= CONN_BOUND && env->payload)
            conn_write_stanza_ack(c, env->payload, env->payload_len, envelope_get(env, ENV_ACK));
        else
            log_debug("conn=%lld gone; delivery dropped", (long long)envelope_get_int(env, ENV_CONN, 0));
        break;
    case OP_BIND_RESULT:
        if (c)
            bind_on_result(c, env);
        break;
    case OP_JOB_RESULT:
        if (c)
            auth_on_creds(c, env);
        break;
    case OP_KICK:
        if (c && str_eq(c->full, envelope_get(env, ENV_FULL))) {
            const char *cond = envelope_get(env, ENV_ERROR);
            log_info("conn=%llu jid=%s kicked by the router: %s", (unsigned long long)c->id, c->full,
                     cond ? cond : "policy-violation");
            conn_close(c, cond ? cond : "policy-violation", envelope_get(env, ENV_TEXT), "kicked");
        }
        break;
    default:
        log_warn("router sent unexpected %s; dropped", envelope_op_name(env->op));
    }
    envelope_free(env);
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct gateway *gw = w->data;
    double silent = ev_now(loop) - gw->up.last_heard;
    struct envelope *e;

    if (gw->up.is_router_alive && silent > gw->conf->router.peer_timeout_ms / 1000.0) {
        gw->up.is_router_alive = 0;
        log_warn("router silent for %.1f s; keeping clients connected and waiting for it", silent);
    }
    e = envelope_new(OP_HEARTBEAT);
    send_now(gw, &e);
}

static void on_monitor(struct evzmq *z)
{
    struct gateway *gw = z->data;
    zmq_msg_t m;
    uint16_t event = 0;

    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, gw->up.monitor, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return;
    }
    if (zmq_msg_size(&m) >= 2)
        memcpy(&event, zmq_msg_data(&m), sizeof(event));
    while (zmq_msg_more(&m)) {          /* the endpoint frame */
        zmq_msg_close(&m);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, gw->up.monitor, 0) < 0)
            break;
    }
    zmq_msg_close(&m);
    if (event == ZMQ_EVENT_DISCONNECTED && gw->up.is_connected) {
        gw->up.is_connected = 0;                                            /* U1 */
        log_warn("router link lost; keeping clients connected and holding what they send");
    }
}

static int open_monitor(struct gateway *gw)
{
    char ep[64];
    snprintf(ep, sizeof(ep), "inproc://router-monitor-%d", (int)getpid());
    if (zmq_socket_monitor(gw->up.sock, ep, ZMQ_EVENT_DISCONNECTED) < 0)
        return -1;
    gw->up.monitor = zmq_socket(gw->zctx, ZMQ_PAIR);
    if (!gw->up.monitor || zmq_connect(gw->up.monitor, ep) < 0)
        return -1;
    evzmq_init(&gw->up.monitor_watch, gw->loop, gw->up.monitor, on_monitor, gw);
    return 0;
}

int upstream_open(struct gateway *gw)
{
    const char *ep = gw->conf->gateway.router_endpoint;
    double hb = gw->conf->router.heartbeat_ms / 1000.0;

    gw->up.sock = evzmq_dealer_connect(gw->zctx, ep, gw->name);
    if (!gw->up.sock) {
        log_error("cannot connect to the router at %s: %s", ep, zmq_strerror(errno));
        return -1;
    }
    envelope_reader_init(&gw->up.reader, gw->up.sock, 0);
    gw->up.out = outbox_new(gw->loop, gw->up.sock, "router link");
    evzmq_init(&gw->up.watch, gw->loop, gw->up.sock, on_router_msg, gw);
    if (open_monitor(gw) < 0) {
        log_error("cannot monitor the router link: %s", zmq_strerror(errno));
        return -1;
    }
    ev_timer_init(&gw->up.heartbeat, on_heartbeat, hb, hb);
    gw->up.heartbeat.data = gw;
    ev_timer_start(gw->loop, &gw->up.heartbeat);
    gw->up.last_heard = ev_now(gw->loop);
    gw->up.is_router_alive = 1;
    gw->up.is_connected = 1;
    send_hello(gw);
    log_info("router at %s", ep);
    return 0;
}

void upstream_close(struct gateway *gw)
{
    if (!gw->up.sock)
        return;
    ev_timer_stop(gw->loop, &gw->up.heartbeat);
    evzmq_fini(&gw->up.watch);
    if (gw->up.monitor) {
        evzmq_fini(&gw->up.monitor_watch);
        (void)zmq_socket_monitor(gw->up.sock, NULL, 0); /* stops the monitor */
        zmq_close(gw->up.monitor);
        gw->up.monitor = NULL;
    }
    outbox_free(gw->up.out); /* sends what is queued (e.g. the last OP_CLOSEDs) */
    gw->up.out = NULL;
    zmq_close(gw->up.sock);
    gw->up.sock = NULL;
    while (gw->up.held) {
        struct upstream_held *h = gw->up.held;
        gw->up.held = h->next;
        envelope_free(h->env);
        free(h);
    }
}

char *upstream_request_creds(struct gateway *gw, uint64_t conn, const char *user_id)
{
    char *job = xasprintf("c%" PRIu64, ++gw->up.job_seq);
    struct envelope *e = envelope_new(OP_JOB);
    envelope_set(e, ENV_WHAT, "cred_get");
    envelope_set(e, ENV_JOB, job);
    envelope_set_int(e, ENV_CONN, (int64_t)conn);
    envelope_set(e, ENV_USER, user_id);
    upstream_send(gw, &e);
    return job;
}

void upstream_request_bind(struct gateway *gw, uint64_t conn, const char *id, const char *full,
                           const char *user_id, const char *device_class)
{
    struct envelope *e = envelope_new(OP_BIND);
    envelope_set_int(e, ENV_CONN, (int64_t)conn);
    envelope_set(e, ENV_ID, id);
    envelope_set(e, ENV_FULL, full);
    envelope_set(e, ENV_USER, user_id);
    if (device_class)
        envelope_set(e, ENV_CLASS, device_class);
    upstream_send(gw, &e);
}

void upstream_closed(struct conn *c)
{
    if (!c->full || c->is_close_reported)
        return;
    c->is_close_reported = 1;
    struct envelope *e = envelope_new(OP_CLOSED);
    envelope_set_int(e, ENV_CONN, (int64_t)c->id);
    envelope_set(e, ENV_FULL, c->full);
    envelope_set(e, ENV_REASON, c->close_reason ? c->close_reason : "dropped");
    upstream_send(c->gw, &e);
}

void upstream_acked(struct conn *c, const char *ack)
{
    struct envelope *e;
    if (!c->full)
        return;
    e = envelope_new(OP_ACKED);
    envelope_set_int(e, ENV_CONN, (int64_t)c->id);
    envelope_set(e, ENV_FULL, c->full);
    envelope_set(e, ENV_ACK, ack);
    upstream_send(c->gw, &e);
}

void upstream_undelivered(struct conn *c, const char *xml, size_t len)
{
    struct envelope *e = envelope_new(OP_UNDELIVERED);
    envelope_set_int(e, ENV_CONN, (int64_t)c->id);
    envelope_set(e, ENV_FULL, c->full);
    envelope_set_payload(e, xml, len);
    upstream_send(c->gw, &e);
}
