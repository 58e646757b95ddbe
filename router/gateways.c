/*
 * Gateway registry and liveness. A gateway says OP_HELLO when it starts and
 * whenever we answer OP_UNKNOWN_PEER (we restarted); after router.
 * peer_timeout_ms of silence it is dropped and every session it held ends
 * as if its connection had dropped (sessions.c).
 */
#include "gateways.h"
#include "jobs.h"
#include "envelope.h"
#include "log.h"
#include "sessions.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static struct gateway_peer *find(struct router *r, const char *name)
{
    return strmap_get(&r->gateways, name);
}

struct gateway_peer *gateways_find(struct router *r, const char *name)
{
    return find(r, name);
}

void router_send_gateway(struct router *r, const char *gateway, struct envelope **env)
{
    outbox_put(r->gw_out, gateway, env); /* a failed send is logged by the outbox */
}

static void reply_op(struct router *r, const char *name, enum envelope_op op)
{
    struct envelope *e = envelope_new(op);
    router_send_gateway(r, name, &e);
}

/* Handles one envelope from a gateway. Returns 1 when the gateway is known
 * (after this message) and the caller should go on with it. */
int gateways_on_message(struct router *r, const char *name, const struct envelope *env)
{
    struct gateway_peer *g = find(r, name);
    double now = ev_now(r->loop);

    if (env->op == OP_HELLO) {
        if (!g) {
            g = xcalloc(1, sizeof(*g));
            g->name = xstrdup(name);
            g->since = time(NULL);
            strmap_put(&r->gateways, name, g);
            log_info("gateway=%s pid=%lld up", name, (long long)envelope_get_int(env, ENV_PID, 0));
        } else if (g->pid != envelope_get_int(env, ENV_PID, 0)) {
            /* The gateway restarted within the timeout: its old sessions
             * are gone with its old process. (The same process says hello
             * again after a link blip; its sessions stay.) */
            log_info("gateway=%s pid=%lld restarted; ending the old process's sessions", name,
                     (long long)envelope_get_int(env, ENV_PID, 0));
            sessions_end_gateway(r, name, "gateway restarted");
        }
        g->pid = envelope_get_int(env, ENV_PID, 0);
        g->last_seen = now;
        reply_op(r, name, OP_HELLO);
        return 0;
    }
    if (!g) {
        /* We restarted (or expired it): ask it to introduce itself. What it
         * sent is dropped; a gateway re-sends after announcing. */
        log_info("gateway=%s unknown, sent %s; asking for hello", name, envelope_op_name(env->op));
        reply_op(r, name, OP_UNKNOWN_PEER);
        return 0;
    }
    g->last_seen = now;
    if (env->op == OP_HEARTBEAT)
        return 0;
    return 1;
}

void gateways_tick(struct router *r)
{
    double now = ev_now(r->loop);
    double timeout = r->conf->router.peer_timeout_ms / 1000.0;
    struct strmap_entry *e;
    size_t it;
    char *dead[64];
    size_t ndead = 0;

    for (e = strmap_first(&r->gateways, &it); e; e = strmap_next(&r->gateways, e, &it)) {
        struct gateway_peer *g = e->value;
        if (now - g->last_seen > timeout) {
            if (ndead < 64)
                dead[ndead++] = g->name;
            continue;
        }
        reply_op(r, g->name, OP_HEARTBEAT);
    }
    for (size_t i = 0; i < ndead; i++) {
        struct gateway_peer *g = strmap_del(&r->gateways, dead[i]);
        log_warn("gateway=%s pid=%lld silent for over %d ms; ending its sessions", g->name,
                 (long long)g->pid, r->conf->router.peer_timeout_ms);
        sessions_end_gateway(r, g->name, "gateway lost");
        free(g->name);
        free(g);
    }
}

void gateways_free_all(struct router *r)
{
    struct strmap_entry *e;
    size_t it;
    for (e = strmap_first(&r->gateways, &it); e; e = strmap_next(&r->gateways, e, &it)) {
        struct gateway_peer *g = e->value;
        free(g->name);
        free(g);
    }
    strmap_fini(&r->gateways);
}

/* A gateway's storage job ride: only credential lookups are allowed, for
 * the connection that is authenticating; the answer goes straight back. */
static void on_gateway_job(struct router *r, const struct envelope *res, void *ctx)
{
    char *gateway = ctx;
    struct envelope *out = envelope_copy(res);
    router_send_gateway(r, gateway, &out);
    free(gateway);
}

void gateways_on_job(struct router *r, const char *name, struct envelope **env)
{
    if (!str_eq(envelope_get(*env, ENV_WHAT), "cred_get")) {
        log_warn("gateway=%s asked for storage job %s; only cred_get is allowed", name,
                 envelope_get(*env, ENV_WHAT) ? envelope_get(*env, ENV_WHAT) : "(none)");
        return;
    }
    jobs_submit(r, env, on_gateway_job, xstrdup(name));
}
