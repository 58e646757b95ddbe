/*
 * Envelopes queued per peer as ready ZeroMQ frames, sent as one multipart
 * message per peer; see outbox.h for the contract.
 */
#include "outbox.h"
#include "buf.h"
#include "envelope.h"
#include "evzmq.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* A batch is sent early when it reaches this many envelopes or bytes, so
 * one message stays small enough for the receiver to interleave it with
 * its other work, and a burst does not pile up in our memory first. */
#define OUTBOX_BATCH_ENVELOPES 256
#define OUTBOX_BATCH_BYTES (256 * 1024)

struct outbox_peer {
    char *name;            /* owned; NULL on a DEALER */
    zmq_msg_t *frames;     /* headers and payloads, in order */
    size_t nframes, cap;
    size_t envelopes, bytes;
};

struct outbox {
    void *sock;
    struct ev_loop *loop;
    ev_prepare flusher;
    ev_idle rewake;        /* one more loop turn: see readable_after_send */
    char *what;
    /* Peers with something queued this turn. Entries past npeers keep their
     * frame arrays for reuse: the array grows to the largest number of
     * peers written in one turn, not to every peer ever seen. */
    struct outbox_peer *peers;
    size_t npeers, cap;
    size_t pending;
    struct buf hdr;        /* scratch for encoding headers */
    struct log_limit fail_log;
};

static void on_rewake(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w);
}

/*
 * ZMQ_FD is edge-triggered and a zmq_send may consume the edge of input
 * that arrived meanwhile (evzmq.h). Sends made by callbacks are covered by
 * evzmq's prepare watcher, but ours run after it, just before the loop
 * would sleep: if input is waiting now, keep the loop from sleeping for one
 * turn so that evzmq's prepare watcher sees it.
 */
static void readable_after_send(struct outbox *o)
{
    if (evzmq_readable(o->sock))
        ev_idle_start(o->loop, &o->rewake);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    outbox_flush(w->data);
}

struct outbox *outbox_new(struct ev_loop *loop, void *sock, const char *what)
{
    struct outbox *o = xcalloc(1, sizeof(*o));
    o->sock = sock;
    o->loop = loop;
    o->what = xstrdup(what);
    buf_init(&o->hdr);
    /* Lowest priority: after the loop's other prepare watchers (the ZeroMQ
     * readers) have handled their input and queued what it caused. */
    ev_prepare_init(&o->flusher, on_prepare);
    ev_set_priority(&o->flusher, EV_MINPRI);
    o->flusher.data = o;
    ev_prepare_start(loop, &o->flusher);
    ev_idle_init(&o->rewake, on_rewake);
    return o;
}

void outbox_free(struct outbox *o)
{
    if (!o)
        return;
    outbox_flush(o);
    ev_prepare_stop(o->loop, &o->flusher);
    ev_idle_stop(o->loop, &o->rewake);
    for (size_t i = 0; i < o->cap; i++) {
        free(o->peers[i].name);
        free(o->peers[i].frames);
    }
    free(o->peers);
    buf_fini(&o->hdr);
    free(o->what);
    free(o);
}

static struct outbox_peer *find_peer(struct outbox *o, const char *name)
{
    for (size_t i = o->npeers; i-- > 0;) {
        struct outbox_peer *p = &o->peers[i];
        if (name ? (p->name && strcmp(p->name, name) == 0) : !p->name)
            return p;
    }
    if (o->npeers == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 4;
        o->peers = xrealloc(o->peers, cap * sizeof(*o->peers));
        memset(o->peers + o->cap, 0, (cap - o->cap) * sizeof(*o->peers));
        o->cap = cap;
    }
    struct outbox_peer *p = &o->peers[o->npeers++];
    free(p->name);
    p->name = name ? xstrdup(name) : NULL;
    return p;
}

static zmq_msg_t *next_frame(struct outbox_peer *p)
{
    if (p->nframes == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->frames = xrealloc(p->frames, p->cap * sizeof(*p->frames));
    }
    return &p->frames[p->nframes++];
}

static void free_payload(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Sends p's frames as one message; returns the envelopes dropped. */
static size_t send_peer(struct outbox *o, struct outbox_peer *p)
{
    size_t i = 0, dropped = 0;
    int failed = 0;

    if (p->name && zmq_send(o->sock, p->name, strlen(p->name), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        failed = 1;
    /* Once the first part is queued ZeroMQ takes the rest atomically, so
     * only the first send can fail. */
    for (; !failed && i < p->nframes; i++) {
        int flags = (i + 1 < p->nframes ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT;
        if (zmq_msg_send(&p->frames[i], o->sock, flags) < 0)
            failed = 1;
    }
    if (failed) {
        int err = errno;
        unsigned long skipped;
        for (size_t k = i ? i - 1 : 0; k < p->nframes; k++)
            zmq_msg_close(&p->frames[k]);
        dropped = p->envelopes;
        if (log_limit_ok(&o->fail_log, &skipped))
            log_warn("%s: send to %s failed: %s; %zu envelopes dropped (%lu similar not logged)", o->what,
                     p->name ? p->name : "peer", zmq_strerror(err), dropped, skipped);
    }
    o->pending -= p->envelopes;
    p->nframes = p->envelopes = p->bytes = 0;
    return dropped;
}

/* Queues e's header and, when owned_payload is set, that buffer as the
 * payload frame without a copy; otherwise a copy of e's payload. */
static void put(struct outbox *o, const char *peer, const struct envelope *e, char *owned_payload)
{
    struct outbox_peer *p = find_peer(o, peer);
    zmq_msg_t *m;

    buf_reset(&o->hdr);
    envelope_encode(e, &o->hdr);
    m = next_frame(p);
    zmq_msg_init_size(m, o->hdr.len);
    memcpy(zmq_msg_data(m), o->hdr.data, o->hdr.len);
    p->bytes += o->hdr.len;
    if (e->payload) {
        m = next_frame(p);
        if (owned_payload) {
            zmq_msg_init_data(m, owned_payload, e->payload_len, free_payload, NULL);
        } else {
            zmq_msg_init_size(m, e->payload_len);
            memcpy(zmq_msg_data(m), e->payload, e->payload_len);
        }
        p->bytes += e->payload_len;
    }
    p->envelopes++;
    o->pending++;
    if (p->envelopes >= OUTBOX_BATCH_ENVELOPES || p->bytes >= OUTBOX_BATCH_BYTES)
        (void)send_peer(o, p);
}

void outbox_put(struct outbox *o, const char *peer, struct envelope **e)
{
    struct envelope *env = *e;

    *e = NULL;
    put(o, peer, env, env->payload);
    env->payload = NULL; /* now the frame's */
    envelope_free(env);
}

void outbox_put_copy(struct outbox *o, const char *peer, const struct envelope *e)
{
    put(o, peer, e, NULL);
}

size_t outbox_flush(struct outbox *o)
{
    size_t dropped = 0;
    if (!o->pending) {
        o->npeers = 0;
        return 0;
    }
    for (size_t i = 0; i < o->npeers; i++)
        if (o->peers[i].nframes)
            dropped += send_peer(o, &o->peers[i]);
    o->npeers = 0;
    readable_after_send(o);
    return dropped;
}

size_t outbox_pending(const struct outbox *o)
{
    return o->pending;
}
