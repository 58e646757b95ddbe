/*
 * The storage job broker: requests from the router itself, from gateways
 * (credentials) and from parleyctl are dispatched over the connected storage
 * workers, least-loaded first; replies are matched by id asynchronously and
 * nothing here ever blocks. A worker that goes silent has its in-flight jobs
 * dispatched again (workers make every write idempotent by id).
 */
#ifndef PARLEY_ROUTER_JOBS_H
#define PARLEY_ROUTER_JOBS_H

#include "router.h"

struct envelope;
struct buf;

/* Called exactly once per submitted job, with the worker's OP_JOB_RESULT
 * (its "job" field restored to the submitter's id) or a synthesized one with
 * error "unavailable". The callee may not keep result. */
typedef void (*jobs_cb)(struct router *r, const struct envelope *result, void *ctx);

struct jobs *jobs_new(struct router *r);
void jobs_free(struct jobs *j);

/* Consumes *req (an OP_JOB with "what"); *req is NULL afterwards. cb may be
 * called before this returns (queue full, router shutting down). */
void jobs_submit(struct router *r, struct envelope **req, jobs_cb cb, void *ctx);

/* A message on the storage socket from worker `name`. */
void jobs_on_worker_message(struct router *r, const char *name, struct envelope *env);

/* Heartbeats, worker expiry, job timeouts; called every heartbeat. */
void jobs_tick(struct router *r);

/* Status rows (TSV) for the admin socket, one per worker. */
void jobs_status(struct router *r, struct buf *out);
size_t jobs_queued(const struct router *r);
uint64_t jobs_retried(const struct router *r);

#endif
