/*
 * parley-router: wires the config, the log, the three ZeroMQ sockets and
 * the heartbeat timer into one libev loop. Everything else lives in the
 * file named after it.
 */
#include "admin.h"
#include "archive.h"
#include "offline.h"
#include "offline_acks.h"
#include "envelope.h"
#include "gateways.h"
#include "jobs.h"
#include "log.h"
#include "cpu_sched.h"
#include "roster.h"
#include "route.h"
#include "router.h"
#include "sessions.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static void usage(void)
{
    fprintf(stderr, "usage: parley-router -c CONFIG\n");
    exit(64);
}

static void log_bad(const char *where, const char *peer, int rc)
{
    char safe[64];
    log_warn("%s=%s bad message dropped: %s", where, log_safe(peer, strlen(peer), safe, sizeof(safe)),
             envelope_error_string(rc));
}

static void on_gateway_sock(struct evzmq *z)
{
    struct router *r = z->data;
    const char *peer = r->gw_in.peer;
    struct envelope *env;
    int rc = envelope_recv(&r->gw_in, &env);

    if (rc == ENVELOPE_AGAIN)
        return;
    if (rc < 0) {
        log_bad("gateway", peer, rc);
        return;
    }
    if (gateways_on_message(r, peer, env)) {
        switch (env->op) {
        case OP_STANZA:
            route_stanza(r, peer, env);
            break;
        case OP_BIND:
            sessions_on_bind(r, peer, env);
            break;
        case OP_ANNOUNCE:
            sessions_on_announce(r, peer, env);
            break;
        case OP_CLOSED:
            sessions_on_closed(r, peer, env);
            break;
        case OP_JOB:
            gateways_on_job(r, peer, &env);
            break;
        case OP_ACKED:
            offline_on_acked(r, peer, env);
            break;
        case OP_UNDELIVERED:
            offline_on_undelivered(r, peer, env);
            break;
        default:
            log_warn("gateway=%s unexpected %s dropped", peer, envelope_op_name(env->op));
        }
    }
    envelope_free(env);
}

static void on_storage_sock(struct evzmq *z)
{
    struct router *r = z->data;
    const char *peer = r->st_in.peer;
    struct envelope *env;
    int rc = envelope_recv(&r->st_in, &env);

    if (rc == ENVELOPE_AGAIN)
        return;
    if (rc < 0) {
        log_bad("worker", peer, rc);
        return;
    }
    jobs_on_worker_message(r, peer, env);
    envelope_free(env);
}

static void on_admin_sock(struct evzmq *z)
{
    struct router *r = z->data;
    const char *peer = r->admin_in.peer;
    struct envelope *env;
    int rc = envelope_recv(&r->admin_in, &env);

    if (rc == ENVELOPE_AGAIN)
        return;
    if (rc < 0) {
        log_bad("admin", "parleyctl", rc);
        return;
    }
    admin_on_message(r, peer, env);
    envelope_free(env);
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct router *r = w->data;
    gateways_tick(r);
    sessions_tick(r);
    route_unpark(r, 0);
    roster_tick(r);
    archive_tick(r);
    jobs_tick(r);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    log_info("signal %d: shutting down", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

/* For ipc:// endpoints, makes the socket's directory owner-only. */
static void prepare_ipc_dir(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) != 0)
        return;
    char *path = xstrdup(endpoint + 6);
    char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        *slash = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            log_warn("cannot create %s: %s", path, strerror(errno));
    }
    free(path);
}

static void *bind_or_die(struct router *r, const char *endpoint, const char *what)
{
    prepare_ipc_dir(endpoint);
    void *s = evzmq_router_bind(r->zctx, endpoint);
    if (!s) {
        log_error("cannot bind the %s socket at %s: %s", what, endpoint, zmq_strerror(errno));
        exit(1);
    }
    log_info("%s socket at %s", what, endpoint);
    return s;
}

int main(int argc, char **argv)
{
    const char *conf_path = NULL;
    struct config *conf;
    char *err = NULL;
    struct router r;
    enum log_level level;
    int opt;

    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt == 'c')
            conf_path = optarg;
        else
            usage();
    }
    if (!conf_path || optind != argc)
        usage();
    log_init("router", LOGL_INFO);
    if (config_load(conf_path, &conf, &err) < 0) {
        log_error("config %s", err);
        free(err);
        return 1;
    }
    if (log_level_from_name(conf->log_level, &level) == 0)
        log_set_level(level);
    cpu_sched_apply(conf->cpu_scheduling); /* before ZeroMQ starts its thread */
    signal(SIGPIPE, SIG_IGN);

    memset(&r, 0, sizeof(r));
    r.conf = conf;
    r.loop = ev_default_loop(EVFLAG_AUTO);
    r.started = time(NULL);
    r.warm_until = ev_time() + conf->router.peer_timeout_ms / 1000.0;
    r.zctx = zmq_ctx_new();
    strmap_init(&r.gateways);
    sessions_init(&r);
    roster_init(&r);
    r.jobs = jobs_new(&r);
    r.gw_sock = bind_or_die(&r, conf->router.gateway_endpoint, "gateway");
    r.st_sock = bind_or_die(&r, conf->router.storage_endpoint, "storage");
    r.admin_sock = bind_or_die(&r, conf->router.admin_endpoint, "admin");
    envelope_reader_init(&r.gw_in, r.gw_sock, 1);
    envelope_reader_init(&r.st_in, r.st_sock, 1);
    envelope_reader_init(&r.admin_in, r.admin_sock, 1);
    r.gw_out = outbox_new(r.loop, r.gw_sock, "gateways");
    r.st_out = outbox_new(r.loop, r.st_sock, "storage workers");
    r.offline_acks = offline_acks_new(&r);
    evzmq_init(&r.gw_watch, r.loop, r.gw_sock, on_gateway_sock, &r);
    evzmq_init(&r.st_watch, r.loop, r.st_sock, on_storage_sock, &r);
    evzmq_init(&r.admin_watch, r.loop, r.admin_sock, on_admin_sock, &r);

    double hb = conf->router.heartbeat_ms / 1000.0;
    ev_timer_init(&r.heartbeat, on_heartbeat, hb, hb);
    r.heartbeat.data = &r;
    ev_timer_start(r.loop, &r.heartbeat);
    ev_signal_init(&r.sigint, on_signal, SIGINT);
    ev_signal_init(&r.sigterm, on_signal, SIGTERM);
    ev_signal_start(r.loop, &r.sigint);
    ev_signal_start(r.loop, &r.sigterm);

    log_info("domain=%s router ready", conf->domain);
    ev_run(r.loop, 0);

    offline_acks_free(r.offline_acks); /* its jobs are queued before the outboxes' last flush */
    evzmq_fini(&r.gw_watch);
    evzmq_fini(&r.st_watch);
    evzmq_fini(&r.admin_watch);
    outbox_free(r.gw_out);
    outbox_free(r.st_out);
    zmq_close(r.gw_sock);
    zmq_close(r.st_sock);
    zmq_close(r.admin_sock);
    zmq_ctx_term(r.zctx);
    route_unpark(&r, 1);
    jobs_free(r.jobs);
    roster_fini(&r);
    sessions_fini(&r);
    gateways_free_all(&r);
    config_free(conf);
    log_info("stopped");
    return 0;
}
