/*
 * Batches: the jobs a worker drained from its socket in one wakeup, run so
 * that a burst of writes costs a few transactions rather than one each
 * (offline messages, archive entries and last activity arrive in bursts).
 * Knows nothing of sockets: the worker hands in envelopes and gets results
 * back through a callback.
 */
#ifndef PARLEY_STORAGE_BATCH_H
#define PARLEY_STORAGE_BATCH_H

#include <stddef.h>

struct backend;
struct envelope;

/* Receives one OP_JOB_RESULT, which it then owns. */
typedef void (*batch_done_fn)(void *ctx, struct envelope *res);

/*
 * Runs jobs[0..n) (OP_JOB envelopes, borrowed) and calls done once per job,
 * in arrival order, with its result. Each run of consecutive batched writes
 * (jobs_is_batched) goes to the backend as one transaction, and their
 * results are handed over only after it committed (or failed for good);
 * every other job runs on its own, after the writes before it committed.
 */
void batch_run(struct backend *b, struct envelope *const *jobs, size_t n, batch_done_fn done, void *ctx);

#endif
