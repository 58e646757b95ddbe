/*
 * Storage job broker; see jobs.h.
 *
 * Every job gets a router-unique id ("r<n>") that replaces the submitter's
 * id on the way to the worker and is swapped back on the way out, so ids
 * from different submitters never collide. A job lives in exactly one of
 * two places: the FIFO of queued jobs (no worker free or none connected) or
 * the in-flight table, keyed by that id, with the worker it went to.
 *
 * Order per user: all jobs of one user (the "user" field) go to the same
 * worker while any of them is pending (struct affinity), and a worker runs
 * and answers its jobs in arrival order, so one user's writes commit in the
 * order they were submitted (offline messages, quota counts). A job that
 * must wait (its worker is full, or it waits for a retry) holds back the
 * later jobs of its user, not everyone else's.
 *
 * A worker answers "unavailable" while its database is down: such a job is
 * queued again and retried with backoff until router.job_timeout_ms, so a
 * database restart loses nothing that was accepted (the queue is bounded
 * by router.job_queue_max; past it submitters get "unavailable" at once).
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

/* Jobs one worker holds at once: enough for it to batch writes, few enough
 * that a dead worker's share is quickly redone elsewhere. */
#define JOBS_PER_WORKER 64

struct job {
    char rid[24];              /* router id sent to the worker */
    char *orig_id;             /* submitter's "job" field, restored in the result */
    struct envelope *req;      /* kept until the result, for a redo */
    jobs_cb cb;
    void *ctx;
    double submitted;
    double not_before;         /* retry backoff: not dispatched before this */
    int retries;
    char *worker;              /* NULL while queued */
    uint64_t seq;              /* submission order */
    struct job *next;          /* queue link */
};

struct affinity {
    char *worker;              /* where this user's jobs go while any is pending */
    int pending;               /* this user's jobs queued or in flight */
};

struct worker {
    char *name;
    int64_t pid;
    double last_seen;
    int inflight;
    uint64_t done;
};

struct jobs {
    struct strmap workers;     /* name -> struct worker */
    struct strmap inflight;    /* rid -> struct job */
    struct strmap affinity;    /* user -> struct affinity */
    struct job *head, *tail;   /* queued */
    size_t queued;
    uint64_t retried;          /* "unavailable" answers retried, for status */
    uint64_t next_id;
};

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

/* Completes a job with a synthesized error result. */
static void fail(struct router *r, struct job *job, const char *error)
{
    struct envelope *res = envelope_new(OP_JOB_RESULT);
    envelope_set(res, ENV_JOB, job->orig_id);
    envelope_set(res, ENV_USER, envelope_get(job->req, ENV_USER));
    if (envelope_has_int(job->req, ENV_CONN))
        envelope_set_int(res, ENV_CONN, envelope_get_int(job->req, ENV_CONN, 0));
    envelope_set(res, ENV_ERROR, error);
    release(r->jobs, job);
    job->cb(r, res, job->ctx);
    envelope_free(res);
    job_free(job);
}

void jobs_free(struct jobs *j)
{
    struct strmap_entry *e;
    size_t it;
    if (!j)
        return;
    for (e = strmap_first(&j->workers, &it); e; e = strmap_next(&j->workers, e, &it)) {
        struct worker *w = e->value;
        free(w->name);
        free(w);
    }
    strmap_fini(&j->workers);
    /* Jobs still pending at shutdown are dropped with their contexts: the
     * callbacks' owners (gateways, parleyctl) time out on their own. */
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
    while (j->head) {
        struct job *job = j->head;
        j->head = job->next;
        free(job->ctx);
        job_free(job);
    }
    free(j);
}

static int send_to(struct router *r, struct worker *w, struct job *job)
{
    /* The request is kept for a redo, so a copy goes out. */
    struct envelope *copy = envelope_copy(job->req);
    envelope_set(copy, ENV_JOB, job->rid);
    if (envelope_send(r->st_sock, w->name, &copy) < 0) {
        log_warn("worker=%s job=%s send failed: %s", w->name, job->rid, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

/* The worker a job must go to: its user's, or the least loaded for a
 * user with nothing in flight. NULL when no worker is connected. */
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
        if (!w || c->inflight < w->inflight)
            w = c;
    }
    if (w && a) {
        free(a->worker);
        a->worker = xstrdup(w->name);
    }
    return w;
}

/* Moves queued jobs to their workers while those have room. Scans the
 * queue in order; a job that must wait blocks only its own user's later
 * jobs (remembered in `blocked`, made only when needed). */
static void dispatch(struct router *r)
{
    struct jobs *j = r->jobs;
    struct job **link = &j->head, *prev = NULL;
    struct strmap blocked;
    int has_blocked = 0, scanned = 0;
    double now = ev_now(r->loop);

    while (*link && scanned++ < 4096) {
        struct job *job = *link;
        const char *user = envelope_get(job->req, ENV_USER);
        struct worker *w;

        if (user && has_blocked && strmap_get(&blocked, user))
            goto skip;
        w = target(j, job);
        if (!w)
            break; /* no worker connected */
        if (job->not_before > now || w->inflight >= JOBS_PER_WORKER || send_to(r, w, job) < 0) {
            if (!user)
                goto skip;
            if (!has_blocked) {
                strmap_init(&blocked);
                has_blocked = 1;
            }
            strmap_put(&blocked, user, (void *)1);
            goto skip;
        }
        *link = job->next;
        if (j->tail == job)
            j->tail = prev;
        j->queued--;
        job->next = NULL;
        job->worker = xstrdup(w->name);
        w->inflight++;
        strmap_put(&j->inflight, job->rid, job);
        continue;
skip:
        prev = job;
        link = &job->next;
    }
    if (has_blocked)
        strmap_fini(&blocked);
}

/* Puts a job back into the queue in submission order, so a retried or
 * redone job keeps its place before its user's later jobs. */
static void enqueue_ordered(struct jobs *j, struct job *job)
{
    struct job **link = &j->head;
    while (*link && (*link)->seq < job->seq)
        link = &(*link)->next;
    job->next = *link;
    *link = job;
    if (!job->next)
        j->tail = job;
    j->queued++;
}

void jobs_submit(struct router *r, struct envelope **req, jobs_cb cb, void *ctx)
{
    struct jobs *j = r->jobs;
    struct job *job = xcalloc(1, sizeof(*job));

    job->req = *req;
    *req = NULL;
    job->cb = cb;
    job->ctx = ctx;
    job->orig_id = xstrdup(envelope_get(job->req, ENV_JOB));
    job->submitted = ev_now(r->loop);
    job->seq = ++j->next_id;
    snprintf(job->rid, sizeof(job->rid), "r%" PRIu64, job->seq);

    if (j->queued >= (size_t)r->conf->router.job_queue_max) {
        log_warn("job=%s what=%s refused: storage queue full (%zu)", job->rid,
                 envelope_get(job->req, ENV_WHAT), j->queued);
        fail(r, job, "unavailable");
        return;
    }
    const char *user = envelope_get(job->req, ENV_USER);
    if (user) {
        struct affinity *a = strmap_get(&j->affinity, user);
        if (!a) {
            a = xcalloc(1, sizeof(*a));
            strmap_put(&j->affinity, user, a);
        }
        a->pending++;
    }
    job->next = NULL;
    if (j->tail)
        j->tail->next = job;
    else
        j->head = job;
    j->tail = job;
    j->queued++;
    dispatch(r);
}

static void requeue_worker(struct router *r, const char *name);

static void on_result(struct router *r, const char *name, struct envelope *env)
{
    struct jobs *j = r->jobs;
    const char *rid = envelope_get(env, ENV_JOB);
    struct job *job = rid ? strmap_del(&j->inflight, rid) : NULL;
    struct worker *w;

    if (!job) {
        /* A late answer to a job that timed out or was redone elsewhere
         * and already answered: harmless by the workers' id rule. */
        log_debug("worker=%s result for unknown job=%s dropped", name, rid ? rid : "(none)");
        return;
    }
    w = strmap_get(&j->workers, job->worker);
    if (w) {
        w->inflight--;
        w->done++;
    }
    if (str_eq(envelope_get(env, ENV_ERROR), "unavailable") &&
        ev_now(r->loop) - job->submitted < r->conf->router.job_timeout_ms / 1000.0) {
        /* The worker's database is down: try again later, in order. */
        double backoff = 0.1 * (1 << (job->retries < 5 ? job->retries : 5));
        if (job->retries++ == 0)
            log_warn("job=%s what=%s storage unavailable; retrying until it is back", job->rid,
                     envelope_get(job->req, ENV_WHAT));
        j->retried++;
        free(job->worker);
        job->worker = NULL;
        job->not_before = ev_now(r->loop) + backoff;
        enqueue_ordered(j, job);
        return;
    }
    envelope_set(env, ENV_JOB, job->orig_id);
    release(j, job);
    job->cb(r, env, job->ctx);
    job_free(job);
    dispatch(r);
}

void jobs_on_worker_message(struct router *r, const char *name, struct envelope *env)
{
    struct jobs *j = r->jobs;
    struct worker *w = strmap_get(&j->workers, name);
    struct envelope *reply;

    if (env->op == OP_HELLO) {
        if (!w) {
            w = xcalloc(1, sizeof(*w));
            w->name = xstrdup(name);
            strmap_put(&j->workers, name, w);
        } else if (w->pid != envelope_get_int(env, ENV_PID, 0)) {
            /* Restarted under the same name (systemd Restart=) before we
             * noticed it died: what the old process held is redone. */
            log_warn("worker=%s restarted (pid %lld -> %lld)", name, (long long)w->pid,
                     (long long)envelope_get_int(env, ENV_PID, 0));
            requeue_worker(r, name);
            w->inflight = 0;
        }
        w->pid = envelope_get_int(env, ENV_PID, 0);
        w->last_seen = ev_now(r->loop);
        log_info("worker=%s pid=%lld up", name, (long long)w->pid);
        reply = envelope_new(OP_HELLO);
        (void)envelope_send(r->st_sock, name, &reply); /* a lost hello is re-sent by the worker */
        dispatch(r);
        return;
    }
    if (!w) {
        log_info("worker=%s unknown, sent %s; asking for hello", name, envelope_op_name(env->op));
        reply = envelope_new(OP_UNKNOWN_PEER);
        (void)envelope_send(r->st_sock, name, &reply); /* it retries on its next heartbeat */
        if (env->op != OP_JOB_RESULT)
            return;
        /* A result from before our restart matches nothing; fall through
         * only to log it once below. */
        return;
    }
    w->last_seen = ev_now(r->loop);
    switch (env->op) {
    case OP_HEARTBEAT:
        return;
    case OP_JOB_RESULT:
        on_result(r, name, env);
        return;
    default:
        log_warn("worker=%s sent unexpected %s; dropped", name, envelope_op_name(env->op));
        return;
    }
}

/* Puts a lost worker's jobs back at the front of the queue, oldest first. */
static void requeue_worker(struct router *r, const char *name)
{
    struct jobs *j = r->jobs;
    struct strmap_entry *e;
    size_t it;
    struct job **lost = NULL;
    size_t n = 0, cap = 0;

    for (e = strmap_first(&j->inflight, &it); e; e = strmap_next(&j->inflight, e, &it)) {
        struct job *job = e->value;
        if (strcmp(job->worker, name) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            lost = xrealloc(lost, cap * sizeof(*lost));
        }
        lost[n++] = job;
    }
    for (size_t i = 0; i < n; i++) {
        strmap_del(&j->inflight, lost[i]->rid);
        free(lost[i]->worker);
        lost[i]->worker = NULL;
        enqueue_ordered(j, lost[i]);
    }
    if (n)
        log_warn("worker=%s lost with %zu jobs in flight; dispatching them again", name, n);
    free(lost);
}

static void expire_jobs(struct router *r)
{
    struct jobs *j = r->jobs;
    double limit = ev_now(r->loop) - r->conf->router.job_timeout_ms / 1000.0;
    struct strmap_entry *e;
    size_t it;
    struct job **old = NULL;
    size_t n = 0, cap = 0;

    for (e = strmap_first(&j->inflight, &it); e; e = strmap_next(&j->inflight, e, &it)) {
        struct job *job = e->value;
        if (job->submitted >= limit)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            old = xrealloc(old, cap * sizeof(*old));
        }
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
    /* Queued jobs are in submission order: expire from the head. */
    while (j->head && j->head->submitted < limit) {
        struct job *job = j->head;
        j->head = job->next;
        if (!j->head)
            j->tail = NULL;
        j->queued--;
        log_warn("job=%s what=%s timed out waiting for a storage worker", job->rid,
                 envelope_get(job->req, ENV_WHAT));
        fail(r, job, "unavailable");
    }
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
        (void)envelope_send(r->st_sock, w->name, &hb); /* a missed beat is tolerated by design */
    }
    for (size_t i = 0; i < ndead; i++) {
        struct worker *w = strmap_del(&j->workers, dead[i]);
        log_warn("worker=%s pid=%lld silent for over %d ms; dropped", w->name, (long long)w->pid,
                 r->conf->router.peer_timeout_ms);
        requeue_worker(r, w->name);
        free(w->name);
        free(w);
    }
    expire_jobs(r);
    dispatch(r);
}

void jobs_status(struct router *r, struct buf *out)
{
    struct jobs *j = r->jobs;
    struct strmap_entry *e;
    size_t it;
    double now = ev_now(r->loop);

    for (e = strmap_first(&j->workers, &it); e; e = strmap_next(&j->workers, e, &it)) {
        struct worker *w = e->value;
        buf_printf(out, "storage\t%s\t%lld\t%d\tinflight=%d done=%" PRIu64 "\n", w->name, (long long)w->pid,
                   (int)((now - w->last_seen) * 1000), w->inflight, w->done);
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
