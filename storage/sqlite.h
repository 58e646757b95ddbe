/*
 * The SQLite backend's private parts, shared by sqlite.c (open, helpers,
 * migrations), sqlite_jobs.c (one operation per job) and sqlite_batch.c
 * (batched writes). Nothing outside these three includes it.
 */
#ifndef PARLEY_STORAGE_SQLITE_H
#define PARLEY_STORAGE_SQLITE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define SQLITE_BUSY_MS 5000

/* A statement prepared once per connection and kept (sqlite_stmt). */
struct sqlite_cached {
    const char *sql;          /* the string literal it was prepared from: the key */
    sqlite3_stmt *st;         /* owned; finalized by close */
};

struct sqlite_backend {
    struct backend base;
    sqlite3 *db;
    struct sqlite_cached *stmts;   /* every statement this connection ran, kept prepared */
    size_t nstmts, stmts_cap;
};

static inline struct sqlite_backend *sqlite_from_base(struct backend *b)
{
    return (struct sqlite_backend *)b;
}

/* A statement parameter: text (NULL binds SQL NULL) or an integer. Numbers
 * are bound as integers, never as text: SQLite orders every text after
 * every integer, so '10' > 9 would hold. */
struct sqlite_val {
    int is_int;
    const char *text;
    int64_t num;
};
#define SQ_TEXT(s) ((struct sqlite_val){ 0, (s), 0 })
#define SQ_INT(i) ((struct sqlite_val){ 1, NULL, (i) })

/* Logs a failed call once, as job, and maps it: lock contention that
 * outlasted busy_timeout is UNAVAILABLE (try again), anything else INTERNAL. */
int sqlite_fail(struct sqlite_backend *s, const char *job, const char *what, int rc);

/*
 * Statements are prepared once per connection and kept: preparing (parse,
 * plan, code generation) cost more than running these small statements.
 * sqlite_stmt sets *st to the connection's statement for sql, with the n
 * values bound in order (failures logged as job); the connection keeps
 * owning it, and the caller hands it back with sqlite_stmt_done (reset,
 * bindings cleared) before sql is used again. A statement not handed back
 * would keep its read snapshot open. sql must be a string literal or
 * otherwise live as long as the connection: the cache is keyed by its
 * address, so each call site's literal is prepared once.
 */
int sqlite_stmt(struct sqlite_backend *s, const char *job, const char *what, const char *sql, sqlite3_stmt **st,
                const struct sqlite_val *v, int n);
/* The same with the NULL-terminated text parameters args (NULL: none). */
int sqlite_stmt_args(struct sqlite_backend *s, const char *what, const char *sql, sqlite3_stmt **st,
                     const char *const *args);
void sqlite_stmt_done(sqlite3_stmt *st);
/* Runs a statement that returns no rows (text parameters), through the cache. */
int sqlite_exec(struct sqlite_backend *s, const char *what, const char *sql, const char *const *args);
/* Rolls back after a failure already logged; best effort. */
void sqlite_rollback(struct sqlite_backend *s);
/* Column i of the current row as text (NULL for SQL NULL). */
const char *sqlite_col(sqlite3_stmt *st, int i);

/* sqlite_jobs.c: the operations of backend_ops, one each. */
int sqlite_user_add(struct backend *b, const char *user, const char *cred_sha1, const char *cred_sha256);
int sqlite_user_del(struct backend *b, const char *user);
int sqlite_user_list(struct backend *b, struct buf *out);
int sqlite_cred_get(struct backend *b, const char *user, char **sha1, char **sha256);
int sqlite_roster_get(struct backend *b, const char *user, struct roster *r);
int sqlite_last_get(struct backend *b, const char *user, int64_t *since, char **text);
int sqlite_offline_get(struct backend *b, const char *user, struct offline_list *l);
int sqlite_archive_query(struct backend *b, const char *user, const struct archive_filter *f,
                         struct archive_page *p);
int sqlite_archive_purge(struct backend *b, int64_t before, int64_t *deleted);

/* sqlite_batch.c */
int sqlite_write(struct backend *b, struct backend_write *w, size_t n);

#endif
