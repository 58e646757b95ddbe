/*
 * Storage job broker; see jobs.h.
 *
 * Every job gets a router-unique id ("r<n>", n its submission sequence)
 * that replaces the submitter's id on the way to the worker and is swapped
 * back on the way out, so ids from different submitters never collide.
 *
 * Where a job lives: in the queue of the worker it is assigned to, in the
 * in-flight table (keyed by that id) once sent, or, while no worker is
 * connected at all, in the broker's own queue. Every queue is kept in
 * submission order.
 *
 * J1  one user's jobs (the "user" field) go to the same worker while any of
 *     them is pending (struct affinity); a worker runs and answers its jobs
 *     in arrival order, so one user's writes commit in the order they were
 *     submitted (offline messages, quota counts). A user with nothing
 *     pending goes to the least busy worker.
 * J2  a worker holds at most JOBS_PER_WORKER jobs in flight: enough for it
 *     to fill a batch (storage's WORKER_BATCH_MAX; with 64, a burst ran
 *     in quarter-full transactions at 70 % of the rate), few enough that
 *     a dead worker's share is quickly redone elsewhere; the rest wait in
 *     its queue. Per message this is O(1): nothing scans a queue on the
 *     message path.
 * J3  a worker that goes silent, or says hello again from a new process,
 *     has its in-flight and queued jobs reassigned, in submission order
 *     (writes carry ids, so a redo is harmless).
 * J4  a worker answers "unavailable" while its database is down: the job
 *     goes back to the front of that worker's queue and is retried with
 *     backoff until router.job_timeout_ms, so a database restart loses
 *     nothing that was accepted. The total queue is bounded by
 *     router.job_queue_max; past it submitters get "unavailable" at once.
 * J5  a read someone is waiting for (a login's credentials, roster and
 *     offline list, a last-activity or archive query) of a user with
 *     nothing else pending goes to its worker's urgent queue, sent before
 *     the ordinary one: a login must not wait behind a burst of other
 *     users' writes (an offline store of 50,000 messages queues for
 *     seconds). That user has nothing else pending, so J1's order holds.
 *     Redone jobs (J3, J4) go back to the ordinary queue in order.
 */
#include "jobs.h"
#include "buf.h"
#include "envelope.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define JOBS_PER_WORKER 256                                                  /* J2 */

struct job {
    char rid[24];              /* router id sent to the worker */
    uint64_t seq;              /* submission order */
    char *orig_id;             /* submitter's "job" field, restored in the result */
    struct envelope *req;      /* kept until the result, for a redo */
    jobs_cb cb;
    void *ctx;
    double submitted;
    double not_before;         /* J4 backoff: not sent before this */
    int retries;
    int is_urgent;             /* J5 */
    char *worker;              /* set while in flight */
    struct job *next;          /* queue link */
};

/* A FIFO of jobs in submission order. */
struct queue {
    struct job *head, *tail;
    size_t len;
};

struct worker {
    char *name;
    int64_t pid;
    double last_seen;
    int inflight;
    uint64_t done;
    struct queue urgent;       /* J5: assigned reads, sent first */
    struct queue queue;        /* assigned, not yet sent */
};

struct affinity {                                                            /* J1 */
    char *worker;
    int pending;               /* this user's jobs queued or in flight */
};

struct jobs {
    struct strmap workers;     /* name -> struct worker */
    struct strmap inflight;    /* rid -> struct job */
    struct strmap affinity;    /* user -> struct affinity */
    struct queue unassigned;   /* while no worker is connected */
    size_t queued;             /* in every queue together */
    uint64_t retried;          /* J4 retries, for status */
    struct log_limit full_log;
    uint64_t next_seq;
};

/* ---- queues ----------------------------------------------------------- */

static void queue_push(struct queue *q, struct job *job)
{
    job->next = NULL;
    if (q->tail)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
    q->len++;
}

/* Inserts job at its place by submission order (for redone jobs). */
static void queue_insert(struct queue *q, struct job *job)
{
    struct job **link = &q->head;
    while (*link && (*link)->seq < job->seq)
        link = &(*link)->next;
    job->next = *link;
    *link = job;
    if (!job->next)
        q->tail = job;
    q->len++;
}

static struct job *queue_pop(struct queue *q)
{
    struct job *job = q->head;
    if (!job)
        return NULL;
    q->head = job->next;
    if (!q->head)
        q->tail = NULL;
    q->len--;
    job->next = NULL;
    return job;
}

/* ---- lifecycle -------------------------------------------------------- */

struct jobs *jobs_new(struct router *r)
{
    struct jobs *j = xcalloc(1, sizeof(*j));
    (void)r;
    strmap_init(&j->workers);
    strmap_init(&j->inflight);
    strmap_init(&j->affinity);
    return j;
}

static void job_free(struct job *job)
{
    free(job->orig_id);
    envelope_free(job->req);
    free(job->worker);
    free(job);
}

/* Jobs still pending at shutdown are dropped with their contexts: their
 * owners (gateways, parleyctl) time out on their own. */
static void drop_queue(struct queue *q)
{
    struct job *job;
    while ((job = queue_pop(q))) {
        free(job->ctx);
        job_free(job);
    }
}

void jobs_free(struct jobs *j)
{
    struct strmap_entry *e;
    size_t it;
    if (!j)
        return;
    for (e = strmap_first(&j->workers, &it); e; e = strmap_next(&j->workers, e, &it)) {
        struct worker *w = e->value;
        drop_queue(&w->urgent);
        drop_queue(&w->queue);
        free(w->name);
        free(w);
    }
    strmap_fini(&j->workers);
    for (e = strmap_first(&j->inflight, &it); e; e = strmap_next(&j->inflight, e, &it)) {
        struct job *job = e->value;
        free(job->ctx);
        job_free(job);
    }
    strmap_fini(&j->inflight);
    for (e = strmap_first(&j->affinity, &it); e; e = strmap_next(&j->affinity, e, &it)) {
        struct affinity *a = e->value;
        free(a->worker);
        free(a);
    }
    strmap_fini(&j->affinity);
    drop_queue(&j->unassigned);
    free(j);
}

/* The job is done (answered or failed): its user's affinity may end. */
static void release(struct jobs *j, const struct job *job)
{
    const char *user = envelope_get(job->req, ENV_USER);
    struct affinity *a = user ? strmap_get(&j->affinity, user) : NULL;
    if (a && --a->pending <= 0) {
        strmap_del(&j->affinity, user);
        free(a->worker);
        free(a);
    }
}

static void complete(struct router *r, struct job *job, const struct envelope *res)
{
    release(r->jobs, job);
    job->cb(r, res, job->ctx);
    job_free(job);
}

/* Completes a job with a synthesized error result. */
static void fail(struct router *r, struct job *job, const char *error)
{
    struct envelope *res = envelope_new(OP_JOB_RESULT);
    envelope_set(res, ENV_JOB, job->orig_id);
    envelope_set(res, ENV_USER, envelope_get(job->req, ENV_USER));
    if (envelope_has_int(job->req, ENV_CONN))
        envelope_set_int(res, ENV_CONN, envelope_get_int(job->req, ENV_CONN, 0));
    envelope_set(res, ENV_ERROR, error);
    complete(r, job, res);
    envelope_free(res);
}

/* ---- assignment and sending ------------------------------------------- */

/* J1: the worker a job goes to, or NULL when none is connected. */
static struct worker *target(struct jobs *j, const struct job *job)
{
    const char *user = envelope_get(job->req, ENV_USER);
    struct affinity *a = user ? strmap_get(&j->affinity, user) : NULL;
    struct worker *w = a && a->worker ? strmap_get(&j->workers, a->worker) : NULL;
    struct strmap_entry *e;
    size_t it;

    if (w)
        return w;
    for (e = strmap_first(&j->workers, &it); e; e = strmap_next(&j->workers, e, &it)) {
        struct worker *c = e->value;
        if (!w || c->inflight + c->queue.len < w->inflight + w->queue.len)
            w = c;
    }
    if (w && a) {
        free(a->worker);
        a->worker = xstrdup(w->name);
    }
    return w;
}

static void send_to(struct router *r, struct worker *w, struct job *job)
{
    /* The request is kept for a redo (it carries the router's id, see
     * jobs_submit), so a copy goes out. Queued for this loop turn's message to the worker. Should that send
     * fail, the worker is gone: the job stays in flight and is redone when
     * the worker is dropped (J3). */
    outbox_put_copy(r->st_out, w->name, job->req);
}

/* J2: sends from the worker's queues while it has room, urgent first (J5). */
static void dispatch_worker(struct router *r, struct worker *w)
{
    struct jobs *j = r->jobs;
    double now = ev_now(r->loop);

    while (w->inflight < JOBS_PER_WORKER) {
        struct queue *q = w->urgent.head ? &w->urgent : &w->queue;
        struct job *job = q->head;
        if (!job || job->not_before > now)
            break;
        send_to(r, w, job);
        queue_pop(q);
        j->queued--;
        job->worker = xstrdup(w->name);
        w->inflight++;
        strmap_put(&j->inflight, job->rid, job);
    }
}

/* Puts a queued job (not counted in j->queued yet) where it belongs. */
static void assign(struct router *r, struct job *job, int in_order)
{
    struct jobs *j = r->jobs;
    struct worker *w = target(j, job);
    struct queue *q = w ? (job->is_urgent && !in_order ? &w->urgent : &w->queue) : &j->unassigned;

    if (in_order)
        queue_insert(q, job);
    else
        queue_push(q, job);
    j->queued++;
    if (w)
        dispatch_worker(r, w);
}

static void dispatch_all(struct router *r)
{
    struct jobs *j = r->jobs;
    struct strmap_entry *e;
    size_t it;
    struct job *job;

    if (j->workers.count) {
        while ((job = queue_pop(&j->unassigned))) {
            j->queued--;
            assign(r, job, 1);
        }
    }
    for (e = strmap_first(&j->workers, &it); e; e = strmap_next(&j->workers, e, &it))
        dispatch_worker(r, e->value);
}

/* J5: the jobs whose answer a client is waiting for (envelope.h). */
static int is_read(const char *what)
{
    static const char *const reads[] = { "cred_get", "roster_get", "offline_get", "last_get", "archive_query" };
    for (size_t i = 0; i < sizeof(reads) / sizeof(reads[0]); i++)
        if (str_eq(what, reads[i]))
            return 1;
    return 0;
}

void jobs_submit(struct router *r, struct envelope **req, jobs_cb cb, void *ctx)
{
    struct jobs *j = r->jobs;
    struct job *job = xcalloc(1, sizeof(*job));
    const char *user;

    job->req = *req;
    *req = NULL;
    job->cb = cb;
    job->ctx = ctx;
    job->orig_id = xstrdup(envelope_get(job->req, ENV_JOB));
    job->submitted = ev_now(r->loop);
    job->seq = ++j->next_seq;
    snprintf(job->rid, sizeof(job->rid), "r%" PRIu64, job->seq);
    /* Workers see the router's id; the requester's is put back on the
     * result (complete). */
    envelope_set(job->req, ENV_JOB, job->rid);

    user = envelope_get(job->req, ENV_USER);
    if (user) {
        struct affinity *a = strmap_get(&j->affinity, user);
        if (!a) {
            a = xcalloc(1, sizeof(*a));
            strmap_put(&j->affinity, user, a);
        }
        a->pending++;
        job->is_urgent = a->pending == 1 && is_read(envelope_get(job->req, ENV_WHAT));   /* J5 */
    }
    if (j->queued >= (size_t)r->conf->router.job_queue_max) {                 /* J4 */
        unsigned long skipped;
        if (log_limit_ok(&j->full_log, &skipped))
            log_warn("job=%s what=%s refused: storage queue full (%zu; %lu more refused in the last second)",
                     job->rid, envelope_get(job->req, ENV_WHAT), j->queued, skipped);
        fail(r, job, "unavailable");
        return;
    }
    assign(r, job, 0);
}

/* ---- answers and workers ---------------------------------------------- */

static void on_result(struct router *r, struct worker *w, struct envelope *env)
{
    struct jobs *j = r->jobs;
    const char *rid = envelope_get(env, ENV_JOB);
    struct job *job = rid ? strmap_del(&j->inflight, rid) : NULL;
    struct worker *held_by;

    if (!job) {
        /* A late answer to a job that timed out or was redone elsewhere
         * and already answered: harmless by the workers' id rule. */
        log_debug("worker=%s result for unknown job=%s dropped", w->name, rid ? rid : "(none)");
        return;
    }
    held_by = strmap_get(&j->workers, job->worker);
    if (held_by) {
        held_by->inflight--;
        held_by->done++;
    }
    if (held_by && str_eq(envelope_get(env, ENV_ERROR), "unavailable") &&
        ev_now(r->loop) - job->submitted < r->conf->router.job_timeout_ms / 1000.0) {
        /* J4: the worker's database is down; try again later, in order. */
        if (job->retries++ == 0)
            log_warn("job=%s what=%s storage unavailable; retrying until it is back", job->rid,
                     envelope_get(job->req, ENV_WHAT));
        j->retried++;
        free(job->worker);
        job->worker = NULL;
        job->not_before = ev_now(r->loop) + 0.1 * (1 << (job->retries < 5 ? job->retries : 5));
        queue_insert(&held_by->queue, job);
        j->queued++;
        return; /* the tick sends it when the backoff is over */
    }
    envelope_set(env, ENV_JOB, job->orig_id);
    complete(r, job, env);
    if (held_by)
        dispatch_worker(r, held_by);
}

static int by_seq(const void *a, const void *b)
{
    const struct job *x = *(const struct job *const *)a, *y = *(const struct job *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* J3: everything worker w held, in flight or queued, is assigned again in
 * submission order. w must already be out of the workers table when it is
 * gone for good (so nothing is assigned back to it). */
static void reassign_worker(struct router *r, struct worker *w)
{
    struct jobs *j = r->jobs;
    struct strmap_entry *e;
    size_t it, n = 0, cap = 16;
    struct job **lost = xmalloc(cap * sizeof(*lost));
    struct job *job;

    for (e = strmap_first(&j->inflight, &it); e; e = strmap_next(&j->inflight, e, &it)) {
        job = e->value;
        if (strcmp(job->worker, w->name) != 0)
            continue;
        if (n == cap)
            lost = xrealloc(lost, (cap *= 2) * sizeof(*lost));
        lost[n++] = job;
    }
    for (size_t i = 0; i < n; i++) {
        strmap_del(&j->inflight, lost[i]->rid);
        free(lost[i]->worker);
        lost[i]->worker = NULL;
    }
    if (n)
        log_warn("worker=%s lost with %zu jobs in flight; dispatching them again", w->name, n);
    while ((job = queue_pop(&w->urgent)) || (job = queue_pop(&w->queue))) {
        j->queued--;
        if (n == cap)
            lost = xrealloc(lost, (cap *= 2) * sizeof(*lost));
        lost[n++] = job;
    }
    w->inflight = 0;
    qsort(lost, n, sizeof(*lost), by_seq);
    for (size_t i = 0; i < n; i++)
        assign(r, lost[i], 1);
    free(lost);
}

void jobs_on_worker_message(struct router *r, const char *name, struct envelope *env)
{
    struct jobs *j = r->jobs;
    struct worker *w = strmap_get(&j->workers, name);
    struct envelope *reply;

    if (env->op == OP_HELLO) {
        int64_t pid = envelope_get_int(env, ENV_PID, 0);
        if (!w) {
            w = xcalloc(1, sizeof(*w));
            w->name = xstrdup(name);
            strmap_put(&j->workers, name, w);
        } else if (w->pid != pid) {
            /* Restarted under the same name (systemd Restart=) before we
             * noticed it died: what the old process held is redone. */
            log_warn("worker=%s restarted (pid %lld -> %lld)", name, (long long)w->pid, (long long)pid);
            w->pid = pid;
            reassign_worker(r, w);
        }
        w->pid = pid;
        w->last_seen = ev_now(r->loop);
        log_info("worker=%s pid=%lld up", name, (long long)w->pid);
        reply = envelope_new(OP_HELLO);
        outbox_put(r->st_out, name, &reply); /* a lost hello is re-sent by the worker */
        dispatch_all(r);
        return;
    }
    if (!w) {
        log_info("worker=%s unknown, sent %s; asking for hello", name, envelope_op_name(env->op));
        reply = envelope_new(OP_UNKNOWN_PEER);
        outbox_put(r->st_out, name, &reply); /* it retries on its next heartbeat */
        return;
    }
    w->last_seen = ev_now(r->loop);
    switch (env->op) {
    case OP_HEARTBEAT:
        return;
    case OP_JOB_RESULT:
        on_result(r, w, env);
        return;
    default:
        log_warn("worker=%s sent unexpected %s; dropped", name, envelope_op_name(env->op));
        return;
    }
}

/* ---- time ------------------------------------------------------------- */

/* Fails every job of q submitted before limit (queues are in order). */
static void expire_queue(struct router *r, struct queue *q, double limit)
{
    while (q->head && q->head->submitted < limit) {
        struct job *job = queue_pop(q);
        r->jobs->queued--;
        log_warn("job=%s what=%s timed out waiting for storage", job->rid, envelope_get(job->req, ENV_WHAT));
        fail(r, job, "unavailable");
    }
}

static void expire_jobs(struct router *r)
{
    struct jobs *j = r->jobs;
    double limit = ev_now(r->loop) - r->conf->router.job_timeout_ms / 1000.0;
    struct strmap_entry *e;
    size_t it, n = 0, cap = 0;
    struct job **old = NULL;

    for (e = strmap_first(&j->inflight, &it); e; e = strmap_next(&j->inflight, e, &it)) {
        struct job *job = e->value;
        if (job->submitted >= limit)
            continue;
        if (n == cap)
            old = xrealloc(old, (cap = cap ? cap * 2 : 16) * sizeof(*old));
        old[n++] = job;
    }
    for (size_t i = 0; i < n; i++) {
        struct worker *w = strmap_get(&j->workers, old[i]->worker);
        strmap_del(&j->inflight, old[i]->rid);
        if (w)
            w->inflight--;
        log_warn("job=%s what=%s worker=%s timed out", old[i]->rid, envelope_get(old[i]->req, ENV_WHAT),
                 old[i]->worker);
        fail(r, old[i], "unavailable");
    }
    free(old);
    for (e = strmap_first(&j->workers, &it); e; e = strmap_next(&j->workers, e, &it)) {
        expire_queue(r, &((struct worker *)e->value)->urgent, limit);
        expire_queue(r, &((struct worker *)e->value)->queue, limit);
    }
    expire_queue(r, &j->unassigned, limit);
}

void jobs_tick(struct router *r)
{
    struct jobs *j = r->jobs;
    double now = ev_now(r->loop);
    double timeout = r->conf->router.peer_timeout_ms / 1000.0;
    struct strmap_entry *e;
    size_t it;
    char *dead[64];
    size_t ndead = 0;

    for (e = strmap_first(&j->workers, &it); e; e = strmap_next(&j->workers, e, &it)) {
        struct worker *w = e->value;
        if (now - w->last_seen > timeout) {
            if (ndead < 64)
                dead[ndead++] = w->name;
            continue;
        }
        struct envelope *hb = envelope_new(OP_HEARTBEAT);
        outbox_put(r->st_out, w->name, &hb); /* a missed beat is tolerated by design */
    }
    for (size_t i = 0; i < ndead; i++) {
        struct worker *w = strmap_del(&j->workers, dead[i]);
        log_warn("worker=%s pid=%lld silent for over %d ms; dropped", w->name, (long long)w->pid,
                 r->conf->router.peer_timeout_ms);
        reassign_worker(r, w);
        free(w->name);
        free(w);
    }
    expire_jobs(r);
    dispatch_all(r);
}

void jobs_status(struct router *r, struct buf *out)
{
    struct jobs *j = r->jobs;
    struct strmap_entry *e;
    size_t it;
    double now = ev_now(r->loop);

    for (e = strmap_first(&j->workers, &it); e; e = strmap_next(&j->workers, e, &it)) {
        struct worker *w = e->value;
        buf_printf(out, "storage\t%s\t%lld\t%d\tinflight=%d queued=%zu done=%" PRIu64 "\n", w->name,
                   (long long)w->pid, (int)((now - w->last_seen) * 1000), w->inflight, w->urgent.len + w->queue.len,
                   w->done);
    }
}

size_t jobs_queued(const struct router *r)
{
    return r->jobs->queued;
}

uint64_t jobs_retried(const struct router *r)
{
    return r->jobs->retried;
}
