/*
 * The worker loop: a DEALER socket to the router, heartbeats, and jobs.
 *
 * Liveness (envelope.h "Liveness"): HELLO at start, HEARTBEAT every
 * router.heartbeat_ms, HELLO again on OP_UNKNOWN_PEER. When the router has
 * been silent for router.peer_timeout_ms (it died or restarted and lost us),
 * we warn once and send HELLO instead of HEARTBEAT at every tick until it
 * answers, so a restarted router learns about us without waiting for a
 * heartbeat to bounce.
 *
 * Jobs run synchronously inside the read callback: a worker is a separate
 * process precisely so that it may block on the database. The heartbeat
 * timer cannot fire during a job, so after each batch we send a heartbeat
 * ourselves if one is due: a long queue of jobs must not make the router
 * think we died.
 *
 * Batching: evzmq calls us once per queued envelope. An OP_JOB is not run
 * at once but kept, and the kept jobs run together (batch.c) as soon as the
 * socket has nothing more queued or WORKER_BATCH_MAX are kept. A lone job
 * thus runs immediately, while a burst that queued up during the previous
 * batch becomes one transaction. evzmq's own check and ours read the same
 * ZMQ_EVENTS, so kept jobs never wait for a message that is not there.
 */
#include "worker.h"
#include "backend.h"
#include "batch.h"
#include "config.h"
#include "envelope.h"
#include "log.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* Queued: the results of a batch leave together, right after it (flush). */
static void send_env(struct storage *st, struct envelope *e)
{
    outbox_put(st->out, NULL, &e);
}

static void send_hello(struct storage *st)
{
    struct envelope *e = envelope_new(OP_HELLO);
    envelope_set(e, ENV_NAME, st->name);
    envelope_set(e, ENV_ROLE, "storage");
    envelope_set_int(e, ENV_PID, (int64_t)getpid());
    send_env(st, e);
    st->last_beat = ev_now(st->loop);
}

static void send_beat(struct storage *st)
{
    ev_tstamp now = ev_now(st->loop);

    if (now - st->last_heard > st->conf->router.peer_timeout_ms / 1000.0) {
        if (!st->router_lost)
            log_warn("name=%s router silent for %d ms; saying hello with every heartbeat until it answers",
                     st->name, st->conf->router.peer_timeout_ms);
        st->router_lost = 1;
        send_hello(st);
        return;
    }
    send_env(st, envelope_new(OP_HEARTBEAT));
    st->last_beat = now;
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    send_beat(w->data);
}

/* After a batch: the loop's clock is stale and the timer may be overdue. */
static void beat_if_due(struct storage *st)
{
    ev_now_update(st->loop);
    if (ev_now(st->loop) - st->last_beat >= st->conf->router.heartbeat_ms / 1000.0)
        send_beat(st);
}

static void on_result(void *ctx, struct envelope *res)
{
    send_env(ctx, res);
}

/* Runs and empties the kept jobs. */
static void flush(struct storage *st)
{
    size_t n = st->nbatch;

    if (n == 0)
        return;
    batch_run(st->backend, st->batch, n, on_result, st);
    (void)outbox_flush(st->out); /* failures are logged by the outbox */
    for (size_t i = 0; i < n; i++)
        envelope_free(st->batch[i]);
    st->nbatch = 0;
    beat_if_due(st);
    /* The batch may have taken long; what we read just before it counts
     * as heard "now" so the silence check starts from the batch's end. */
    st->last_heard = ev_now(st->loop);
}

static void on_message(struct storage *st)
{
    struct envelope *e;
    int rc = envelope_recv(&st->reader, &e);

    if (rc == ENVELOPE_AGAIN)
        return;
    if (rc < 0) {
        log_warn("router: dropped a message: %s", envelope_error_string(rc));
        return;
    }
    st->last_heard = ev_now(st->loop);
    if (st->router_lost) {
        log_info("name=%s router is back", st->name);
        st->router_lost = 0;
    }
    switch (e->op) {
    case OP_HELLO:
        log_info("name=%s router acknowledged hello", st->name);
        break;
    case OP_HEARTBEAT:
        break;
    case OP_UNKNOWN_PEER:
        log_info("name=%s router does not know us; saying hello", st->name);
        send_hello(st);
        break;
    case OP_JOB:
        st->batch[st->nbatch++] = e;
        return;
    default:
        log_warn("router: unexpected %s; dropped", envelope_op_name(e->op));
        break;
    }
    envelope_free(e);
}

static void on_router(struct evzmq *z)
{
    struct storage *st = z->data;

    on_message(st);
    if (st->nbatch == WORKER_BATCH_MAX || (st->nbatch > 0 && !st->reader.in_message && !evzmq_readable(st->sock)))
        flush(st);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    log_info("signal %d: shutting down", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

int worker_open(struct storage *st)
{
    const char *endpoint = st->conf->storage.router_endpoint;
    double beat = st->conf->router.heartbeat_ms / 1000.0;

    st->loop = ev_default_loop(0);
    st->zctx = zmq_ctx_new();
    if (!st->zctx) {
        log_error("zmq_ctx_new: %s", zmq_strerror(errno));
        return -1;
    }
    st->sock = evzmq_dealer_connect(st->zctx, endpoint, st->name);
    if (!st->sock) {
        log_error("router endpoint %s: %s", endpoint, zmq_strerror(errno));
        zmq_ctx_term(st->zctx);
        st->zctx = NULL;
        return -1;
    }
    envelope_reader_init(&st->reader, st->sock, 0);
    st->out = outbox_new(st->loop, st->sock, "router");
    evzmq_init(&st->z, st->loop, st->sock, on_router, st);
    ev_timer_init(&st->heartbeat, on_heartbeat, beat, beat);
    st->heartbeat.data = st;
    ev_timer_start(st->loop, &st->heartbeat);
    ev_signal_init(&st->sigterm, on_signal, SIGTERM);
    ev_signal_start(st->loop, &st->sigterm);
    ev_signal_init(&st->sigint, on_signal, SIGINT);
    ev_signal_start(st->loop, &st->sigint);

    ev_now_update(st->loop);
    st->last_heard = ev_now(st->loop);
    send_hello(st);
    log_info("name=%s connected to router at %s (backend %s)", st->name, endpoint, st->backend->ops->name);
    return 0;
}

void worker_run(struct storage *st)
{
    ev_run(st->loop, 0);
}

void worker_close(struct storage *st)
{
    if (!st->zctx)
        return;
    /* Jobs read but not run (a signal came between two reads): their
     * results can still go out; the router would otherwise re-dispatch. */
    flush(st);
    ev_timer_stop(st->loop, &st->heartbeat);
    ev_signal_stop(st->loop, &st->sigterm);
    ev_signal_stop(st->loop, &st->sigint);
    evzmq_fini(&st->z);
    outbox_free(st->out);
    st->out = NULL;
    zmq_close(st->sock);
    zmq_ctx_term(st->zctx);
    ev_loop_destroy(st->loop);
    st->sock = NULL;
    st->zctx = NULL;
    st->loop = NULL;
}
