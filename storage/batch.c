/*
 * Running a drained batch of jobs (batch.h).
 *
 * Order: results go out in the order the jobs came in, and a job runs only
 * after everything before it has committed, so per user (whose writes the
 * router sends one at a time anyway, envelope.h) the worker behaves as if
 * it ran the jobs one by one. Reads and the account jobs are not put into
 * the write transaction: a read must not see writes that might still roll
 * back, so it cuts the run of writes in two.
 *
 * A write that is refused before it reaches the database (bad-request) is
 * answered in its place in the order without cutting the run.
 */
#include "batch.h"
#include "backend.h"
#include "envelope.h"
#include "jobs.h"
#include "log.h"
#include "util.h"

#include <stdlib.h>

/* The writes jobs[i..end) as one transaction; their results to done. */
static void run_writes(struct backend *b, struct envelope *const *jobs, size_t i, size_t end, batch_done_fn done,
                       void *ctx)
{
    size_t n = end - i, nw = 0;
    struct backend_write *w = xcalloc(n, sizeof(*w));
    struct envelope **early = xcalloc(n, sizeof(*early));
    size_t *slot = xcalloc(n, sizeof(*slot));

    for (size_t k = 0; k < n; k++) {
        early[k] = jobs_prepare(jobs[i + k], &w[nw]);
        if (!early[k])
            slot[k] = nw++;
    }
    if (nw > 0) {
        int rc;
        b->job = "batch";
        rc = b->ops->write(b, w, nw);
        b->job = "-";
        log_debug("batch of %zu jobs in one transaction: %s", nw, rc == BACKEND_OK ? "committed" : "failed");
    }
    for (size_t k = 0; k < n; k++)
        done(ctx, early[k] ? early[k] : jobs_finish(jobs[i + k], &w[slot[k]]));
    free(slot);
    free(early);
    free(w);
}

void batch_run(struct backend *b, struct envelope *const *jobs, size_t n, batch_done_fn done, void *ctx)
{
    size_t i = 0;

    while (i < n) {
        size_t end = i;
        while (end < n && jobs_is_batched(jobs[end]))
            end++;
        if (end == i) {
            done(ctx, jobs_run(b, jobs[i]));
            i++;
            continue;
        }
        run_writes(b, jobs, i, end, done, ctx);
        i = end;
    }
}
