/*
 * ZeroMQ sockets driven by libev; see evzmq.h for why a prepare watcher is
 * needed next to the io watcher.
 */
#include "evzmq.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

/* Messages handled per wakeup before giving other watchers a turn. */
#define EVZMQ_BATCH 512

int evzmq_readable(void *sock)
{
    int events = 0;
    size_t sz = sizeof(events);
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &events, &sz) < 0)
        return 0;
    return events & ZMQ_POLLIN;
}

static void drain(struct evzmq *z)
{
    int n = 0;
    while (z->sock && evzmq_readable(z->sock)) {
        if (n++ == EVZMQ_BATCH) {
            ev_idle_start(z->loop, &z->idle);
            return;
        }
        z->cb(z);
    }
    ev_idle_stop(z->loop, &z->idle);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    drain(w->data);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    drain(w->data);
}

static void on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    drain(w->data);
}

void evzmq_init(struct evzmq *z, struct ev_loop *loop, void *sock, evzmq_cb cb, void *data)
{
    int fd = -1;
    size_t sz = sizeof(fd);

    z->loop = loop;
    z->sock = sock;
    z->cb = cb;
    z->data = data;
    (void)zmq_getsockopt(sock, ZMQ_FD, &fd, &sz); /* cannot fail on a live socket */
    ev_io_init(&z->io, on_io, fd, EV_READ);
    z->io.data = z;
    ev_prepare_init(&z->prepare, on_prepare);
    z->prepare.data = z;
    ev_idle_init(&z->idle, on_idle);
    z->idle.data = z;
    ev_io_start(loop, &z->io);
    ev_prepare_start(loop, &z->prepare);
}

void evzmq_fini(struct evzmq *z)
{
    if (!z->loop)
        return;
    ev_io_stop(z->loop, &z->io);
    ev_prepare_stop(z->loop, &z->prepare);
    ev_idle_stop(z->loop, &z->idle);
    z->loop = NULL;
}

static void tune(void *s)
{
    int linger = 0;
    /* Generous queues: a burst of routed messages must not hit the
     * high-water mark (envelope_send never blocks and would drop). */
    int hwm = 1000000;
    (void)zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    (void)zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm));
    (void)zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof(hwm));
}

void *evzmq_router_bind(void *ctx, const char *endpoint)
{
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1;
    if (!s)
        return NULL;
    tune(s);
    /* Report unroutable identities instead of dropping silently. */
    (void)zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    /* A restarted peer reuses its name: the new connection takes over. */
    (void)zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &one, sizeof(one));
    /* ipc sockets are created owner-only: inter-process sockets are not
     * open to the world (the directory should be 0700 as well). */
    mode_t old = umask(077);
    int rc = zmq_bind(s, endpoint);
    umask(old);
    if (rc < 0) {
        int e = errno;
        zmq_close(s);
        errno = e;
        return NULL;
    }
    return s;
}

void *evzmq_dealer_connect(void *ctx, const char *endpoint, const char *identity)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s)
        return NULL;
    tune(s);
    if (identity)
        (void)zmq_setsockopt(s, ZMQ_ROUTING_ID, identity, strlen(identity));
    if (zmq_connect(s, endpoint) < 0) {
        int e = errno;
        zmq_close(s);
        errno = e;
        return NULL;
    }
    return s;
}
