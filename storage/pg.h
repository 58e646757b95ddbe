/*
 * The PostgreSQL backend's private parts, shared by pg.c (connection,
 * retry, migrations), pg_jobs.c (one operation per job) and the batched
 * writes (pg_batch.c, with pg_group.c, pg_pairs.c and pg_array.c behind
 * pg_batch.h). Nothing outside these includes it.
 */
#ifndef PARLEY_STORAGE_PG_H
#define PARLEY_STORAGE_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

struct pg_backend {
    struct backend base;
    const char *conninfo;    /* borrowed from the config */
    PGconn *conn;
    unsigned backoff_ms;     /* 0 while connected */
    double next_try;         /* monotonic seconds; no connect attempt before */
    int is_prepared;         /* pg_batch.c's statements are prepared on conn */
};

static inline struct pg_backend *pg_from_base(struct backend *b)
{
    return (struct pg_backend *)b;
}

/* Makes sure there is a connection, honouring the backoff: 0 or
 * BACKEND_ERR_UNAVAILABLE (logged). */
int pg_ensure(struct pg_backend *pg);

/* Logs a failed statement once, as job, and maps it: UNAVAILABLE when the
 * connection is gone, else INTERNAL. Takes and clears res (NULL ok). */
int pg_fail(struct pg_backend *pg, const char *job, const char *what, PGresult *res);

/* PQexecParams with text parameters; *res is the result when it has the
 * expected status, else the failure is logged and mapped. */
int pg_query(struct pg_backend *pg, const char *what, const char *sql, int n, const char *const *args,
             ExecStatusType want, PGresult **res);
/* pg_query for a statement without rows. */
int pg_command(struct pg_backend *pg, const char *what, const char *sql, int n, const char *const *args);

/* One operation, given its arguments; retry is 1 on the second run after a reconnect. */
typedef int (*pg_op)(struct pg_backend *pg, void *arg, int retry);
/* Runs op on a connection; when the connection is lost during it,
 * reconnects at once and runs it a second time. */
int pg_run(struct pg_backend *pg, pg_op op, void *arg);

/* The value at (row, col), or NULL for SQL NULL. */
const char *pg_value(PGresult *res, int row, int col);
/* The integer at (row, col); 0 for NULL. */
int64_t pg_int(PGresult *res, int row, int col);

/* pg_jobs.c: the operations of backend_ops, one each. */
int pg_user_add(struct backend *b, const char *user, const char *cred_sha1, const char *cred_sha256);
int pg_user_del(struct backend *b, const char *user);
int pg_user_list(struct backend *b, struct buf *out);
int pg_cred_get(struct backend *b, const char *user, char **sha1, char **sha256);
int pg_roster_get(struct backend *b, const char *user, struct roster *r);
int pg_last_get(struct backend *b, const char *user, int64_t *since, char **text);
int pg_offline_get(struct backend *b, const char *user, struct offline_list *l);
int pg_archive_query(struct backend *b, const char *user, const struct archive_filter *f, struct archive_page *p);
int pg_archive_purge(struct backend *b, int64_t before, int64_t *deleted);

/* pg_batch.c */
int pg_write(struct backend *b, struct backend_write *w, size_t n);

#endif
