/*
 * The router link: a DEALER socket named after the gateway, heartbeats both
 * ways, and the dispatch of what the router sends (envelope.h).
 *
 * When the router restarts it answers our next message with
 * OP_UNKNOWN_PEER; we say hello again and re-announce every bound session
 * with its presence, so no client is disconnected by a router restart.
 */
#include "upstream.h"
#include "auth.h"
#include "bind.h"
#include "conn.h"
#include "envelope.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

void upstream_send(struct gateway *gw, struct envelope **e)
{
    enum envelope_op op = (*e)->op;
    if (envelope_send(gw->up.sock, NULL, e) < 0)
        log_warn("router send %s failed: %s", envelope_op_name(op), zmq_strerror(errno));
}

static void send_hello(struct gateway *gw)
{
    struct envelope *e = envelope_new(OP_HELLO);
    envelope_set(e, ENV_NAME, gw->name);
    envelope_set(e, ENV_ROLE, "gateway");
    envelope_set_int(e, ENV_PID, getpid());
    upstream_send(gw, &e);
}

static void announce_one(struct conn *c, void *arg)
{
    (void)arg;
    if (c->state != CONN_BOUND || !c->full)
        return;
    struct envelope *e = envelope_new(OP_ANNOUNCE);
    envelope_set_int(e, ENV_CONN, (int64_t)c->id);
    envelope_set(e, ENV_FULL, c->full);
    envelope_set(e, ENV_USER, c->user_id);
    envelope_set_int(e, ENV_SINCE, (int64_t)c->bound_at);
    envelope_set_int(e, ENV_AVAIL, c->is_available);
    if (c->is_available) {
        envelope_set_int(e, ENV_PRIO, c->priority);
        if (c->presence)
            envelope_set_payload(e, c->presence, strlen(c->presence));
    }
    upstream_send(c->gw, &e);
}

static void on_router_msg(struct evzmq *z)
{
    struct gateway *gw = z->data;
    struct envelope *env;
    struct conn *c;
    int rc = envelope_recv(gw->up.sock, NULL, &env);

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
        break;
    case OP_UNKNOWN_PEER:
        log_info("router does not know us (it restarted); saying hello and re-announcing sessions");
        send_hello(gw);
        conn_foreach(gw, announce_one, NULL);
        break;
    case OP_DELIVER:
        if (c && c->state == CONN_BOUND && env->payload)
            conn_write(c, env->payload, env->payload_len);
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
    upstream_send(gw, &e);
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
    evzmq_init(&gw->up.watch, gw->loop, gw->up.sock, on_router_msg, gw);
    ev_timer_init(&gw->up.heartbeat, on_heartbeat, hb, hb);
    gw->up.heartbeat.data = gw;
    ev_timer_start(gw->loop, &gw->up.heartbeat);
    gw->up.last_heard = ev_now(gw->loop);
    gw->up.is_router_alive = 1;
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
    zmq_close(gw->up.sock);
    gw->up.sock = NULL;
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
                           const char *user_id)
{
    struct envelope *e = envelope_new(OP_BIND);
    envelope_set_int(e, ENV_CONN, (int64_t)conn);
    envelope_set(e, ENV_ID, id);
    envelope_set(e, ENV_FULL, full);
    envelope_set(e, ENV_USER, user_id);
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
