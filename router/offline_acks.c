/*
 * Deletes of acknowledged offline messages, coalesced (offline.c O4).
 *
 * A login that drains a hundred stored messages gets a hundred acks back
 * from the gateway, one envelope each. A storage job per ack made the drain
 * cost a job (a broker entry, an envelope out and back, a row in a
 * worker's transaction) per message. Instead the ids acknowledged during
 * one event-loop turn wait here and leave at the end of the turn as one
 * offline_del per user, whose payload carries them all (envelope.h).
 *
 * Rules:
 *   A1  a user's pending ids are submitted at the end of the loop turn
 *       they came in (a prepare watcher that runs after the ZeroMQ readers
 *       and before the outboxes, so the jobs leave in that same turn), or
 *       at once when ACKS_PER_JOB are pending
 *   A2  before any other offline job of that user is submitted (a fetch
 *       for a new session, a store), the pending ids go first
 *       (offline_acks_flush_user): per user, the broker keeps submission
 *       order, so a fetch never returns a message already acknowledged
 *   A3  a delete that fails is logged; the message may come again at the
 *       next login, which O4 allows (never lost, at worst repeated)
 */
#include "offline_acks.h"
#include "buf.h"
#include "envelope.h"
#include "jobs.h"
#include "log.h"
#include "strmap.h"
#include "util.h"

#include <stdlib.h>

#define ACKS_PER_JOB 256                                                     /* A1 */

struct pending {
    char *user;
    struct buf ids;            /* "id\nid\n..." */
    size_t n;
    struct pending *prev, *next; /* in the order of their first ack */
};

struct offline_acks {
    struct router *r;
    struct strmap by_user;     /* user -> struct pending (owned through the list) */
    struct pending *head, *tail;
    ev_prepare flusher;
};

static void on_deleted(struct router *r, const struct envelope *res, void *ctx)
{
    (void)r;
    (void)ctx;
    if (envelope_get(res, ENV_ERROR))                                        /* A3 */
        log_warn("user=%s offline delete failed: %s (the messages may be delivered again)",
                 envelope_get(res, ENV_USER), envelope_get(res, ENV_ERROR));
}

static void submit(struct router *r, struct pending *p)
{
    struct envelope *job = envelope_new(OP_JOB);
    size_t len;
    char *ids;

    envelope_set(job, ENV_WHAT, "offline_del");
    envelope_set(job, ENV_JOB, "offline-del");
    envelope_set(job, ENV_USER, p->user);
    ids = buf_steal(&p->ids, &len);
    envelope_take_payload(job, ids, len);
    jobs_submit(r, &job, on_deleted, NULL);
}

/* Takes p off the list and the map and frees it. */
static void drop(struct offline_acks *a, struct pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        a->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        a->tail = p->prev;
    strmap_del(&a->by_user, p->user);
    buf_fini(&p->ids);
    free(p->user);
    free(p);
}

static void flush_all(struct offline_acks *a)
{
    while (a->head) {
        struct pending *p = a->head;
        submit(a->r, p);
        drop(a, p);
    }
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    flush_all(w->data);                                                      /* A1 */
}

struct offline_acks *offline_acks_new(struct router *r)
{
    struct offline_acks *a = xcalloc(1, sizeof(*a));
    a->r = r;
    strmap_init(&a->by_user);
    /* After the ZeroMQ readers (priority 0) queued this turn's acks, before
     * the outboxes (EV_MINPRI) send this turn's envelopes. */
    ev_prepare_init(&a->flusher, on_prepare);
    ev_set_priority(&a->flusher, EV_MINPRI + 1);
    a->flusher.data = a;
    ev_prepare_start(r->loop, &a->flusher);
    return a;
}

void offline_acks_free(struct offline_acks *a)
{
    if (!a)
        return;
    flush_all(a);
    ev_prepare_stop(a->r->loop, &a->flusher);
    strmap_fini(&a->by_user);
    free(a);
}

void offline_acks_add(struct router *r, const char *user, const char *id)
{
    struct offline_acks *a = r->offline_acks;
    struct pending *p = strmap_get(&a->by_user, user);

    if (!p) {
        p = xcalloc(1, sizeof(*p));
        p->user = xstrdup(user);
        buf_init(&p->ids);
        p->prev = a->tail;
        if (a->tail)
            a->tail->next = p;
        else
            a->head = p;
        a->tail = p;
        strmap_put(&a->by_user, user, p);
    }
    buf_append_str(&p->ids, id);
    buf_append(&p->ids, "\n", 1);
    if (++p->n >= ACKS_PER_JOB) {                                            /* A1 */
        submit(r, p);
        drop(a, p);
    }
}

void offline_acks_flush_user(struct router *r, const char *user)
{
    struct offline_acks *a = r->offline_acks;
    struct pending *p = strmap_get(&a->by_user, user);

    if (p) {                                                                 /* A2 */
        submit(r, p);
        drop(a, p);
    }
}
