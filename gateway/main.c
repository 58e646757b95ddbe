/*
 * parley-gateway: wires config, log, TLS context, listeners and the router
 * link into one libev loop; the reaper frees closed connections once per
 * loop turn (conn.h).
 */
#include "conn.h"
#include "gateway.h"
#include "idle.h"
#include "listener.h"
#include "log.h"
#include "cpu_sched.h"
#include "sasl.h"
#include "tls.h"
#include "upstream.h"
#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static void usage(void)
{
    fprintf(stderr, "usage: parley-gateway -c CONFIG [-n NAME]\n");
    exit(64);
}

static void on_reap(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_reap(w->data);
}

static void on_flush(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_flush_all(w->data);
    /* Writing may have produced OP_ACKEDs: send them before sleeping. */
    upstream_flush(w->data);
}

static void close_for_shutdown(struct conn *c, void *arg)
{
    (void)arg;
    conn_close(c, "system-shutdown", NULL, "closed");
}

static void on_stop_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    struct gateway *gw = w->data;
    static ev_timer stop;

    if (gw->is_stopping)
        return;
    gw->is_stopping = 1;
    log_info("signal %d: closing %zu connections and stopping", w->signum, gw->nconns);
    listener_close_all(gw);
    conn_foreach(gw, close_for_shutdown, NULL);
    /* Let the stream errors and OP_CLOSED messages go out. */
    ev_timer_init(&stop, on_stop_timer, 0.3, 0.0);
    ev_timer_start(loop, &stop);
}

int main(int argc, char **argv)
{
    const char *conf_path = NULL;
    char *name = NULL;
    struct config *conf;
    char *err = NULL;
    struct gateway gw;
    enum log_level level;
    int opt, rc = 1;

    while ((opt = getopt(argc, argv, "c:n:")) != -1) {
        if (opt == 'c')
            conf_path = optarg;
        else if (opt == 'n')
            name = xstrdup(optarg);
        else
            usage();
    }
    if (!conf_path || optind != argc)
        usage();
    if (!name)
        name = xasprintf("gateway-%d", (int)getpid());
    log_init(name, LOGL_INFO);
    if (config_load(conf_path, &conf, &err) < 0) {
        log_error("config %s", err);
        free(err);
        free(name);
        return 1;
    }
    if (log_level_from_name(conf->log_level, &level) == 0)
        log_set_level(level);
    cpu_sched_apply(conf->cpu_scheduling); /* before ZeroMQ starts its thread */
    signal(SIGPIPE, SIG_IGN);

    memset(&gw, 0, sizeof(gw));
    gw.conf = conf;
    gw.name = name;
    gw.loop = ev_default_loop(EVFLAG_AUTO);
    gw.zctx = zmq_ctx_new();
    conn_init_table(&gw);
    sasl_set_fake_iterations((unsigned)conf->scram_iterations);

    gw.tls = tls_ctx_new(conf->gateway.tls_cert, conf->gateway.tls_key);
    if (!gw.tls) {
        log_error("TLS is required and could not be set up; not starting");
        goto out;
    }
    if (upstream_open(&gw) < 0)
        goto out;
    if (conf->gateway.starttls_port &&
        listener_open(&gw, conf->gateway.bind_address, conf->gateway.starttls_port, 0) < 0)
        goto out;
    if (conf->gateway.tls_port && listener_open(&gw, conf->gateway.bind_address, conf->gateway.tls_port, 1) < 0)
        goto out;

    /* Lowest priority: runs after the router link's own prepare watcher has
     * handed over everything it drained, just before the loop sleeps. */
    ev_prepare_init(&gw.flusher, on_flush);
    ev_set_priority(&gw.flusher, EV_MINPRI);
    gw.flusher.data = &gw;
    ev_prepare_start(gw.loop, &gw.flusher);
    idle_sweep_start(&gw);
    ev_check_init(&gw.reaper, on_reap);
    gw.reaper.data = &gw;
    ev_check_start(gw.loop, &gw.reaper);
    ev_signal_init(&gw.sigint, on_signal, SIGINT);
    ev_signal_init(&gw.sigterm, on_signal, SIGTERM);
    gw.sigint.data = gw.sigterm.data = &gw;
    ev_signal_start(gw.loop, &gw.sigint);
    ev_signal_start(gw.loop, &gw.sigterm);

    log_info("domain=%s gateway ready", conf->domain);
    ev_run(gw.loop, 0);
    rc = 0;
out:
    conn_foreach(&gw, close_for_shutdown, NULL);
    conn_flush_all(&gw);
    conn_reap(&gw);
    listener_close_all(&gw);
    upstream_close(&gw);
    if (gw.zctx)
        zmq_ctx_term(gw.zctx);
    SSL_CTX_free(gw.tls);
    free(gw.conn_buckets);
    config_free(conf);
    log_info("stopped");
    free(name);
    return rc;
}
