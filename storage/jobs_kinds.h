/*
 * The job kinds, one function each, for the table in jobs.c; internal to
 * storage/jobs*.c. A run function executes a job that is not batched and
 * fills its result; a prepare function checks a batched job and fills the
 * kind's fields of a backend_write (jobs.c has set job and user). Both
 * return BACKEND_OK, a BACKEND_ERR_* code, or a JOBS_ERR_* code that jobs.c
 * logs and answers as "bad-request".
 */
#ifndef PARLEY_STORAGE_JOBS_KINDS_H
#define PARLEY_STORAGE_JOBS_KINDS_H

#include "backend.h"

struct envelope;

typedef int (*jobs_run_fn)(struct backend *b, const struct envelope *job, struct envelope *res);
typedef int (*jobs_prepare_fn)(const struct envelope *job, struct backend_write *w);

/* jobs.c: appends ` name='value'` with value escaped for an attribute. */
struct buf;
void jobs_attr(struct buf *out, const char *name, const char *value);

/* jobs_roster.c */
int jobs_roster_get(struct backend *b, const struct envelope *job, struct envelope *res);
int jobs_roster_put(const struct envelope *job, struct backend_write *w);
int jobs_roster_del(const struct envelope *job, struct backend_write *w);
int jobs_roster_pending_put(const struct envelope *job, struct backend_write *w);
int jobs_roster_pending_del(const struct envelope *job, struct backend_write *w);

/* jobs_offline.c */
int jobs_offline_put(const struct envelope *job, struct backend_write *w);
int jobs_offline_del(const struct envelope *job, struct backend_write *w);
int jobs_offline_get(struct backend *b, const struct envelope *job, struct envelope *res);

/* jobs_last.c */
int jobs_last_set(const struct envelope *job, struct backend_write *w);
int jobs_last_get(struct backend *b, const struct envelope *job, struct envelope *res);

/* jobs_archive.c */
int jobs_archive_put(const struct envelope *job, struct backend_write *w);
int jobs_archive_query(struct backend *b, const struct envelope *job, struct envelope *res);
int jobs_archive_purge(struct backend *b, const struct envelope *job, struct envelope *res);

#endif
