/*
 * Batched writes on SQLite (backend_ops.write): BEGIN IMMEDIATE, then each
 * write, then COMMIT. A write that changes rows in several statements runs
 * between SAVEPOINT w and RELEASE w (ROLLBACK TO w first when one of its
 * statements failed). SQLite has no round trips to save, so the writes
 * simply run one statement after the other; the batch saves commits (each
 * writes every page it dirtied to the WAL, and with synchronous=FULL
 * syncs it) and takes the write lock once.
 *
 * Transaction-level failure (the lock not granted within busy_timeout,
 * SAVEPOINT or COMMIT refused): roll back, run the whole batch once more,
 * and answer every write "unavailable" if that fails too.
 */
#include "sqlite.h"
#include "log.h"

#include <stdlib.h>

/* Runs sql once with the values (rows it returns are ignored). */
static int step(struct sqlite_backend *s, const struct backend_write *w, const char *what, const char *sql,
                const struct sqlite_val *v, int n)
{
    sqlite3_stmt *st;
    int rc = sqlite_stmt(s, w->job, what, sql, &st, v, n);

    if (rc < 0)
        return rc;
    rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? BACKEND_OK : sqlite_fail(s, w->job, what, rc);
    sqlite_stmt_done(st);
    return rc;
}

/* The first row's two integer columns of sql (0, 0 when there is no row). */
static int step_ints(struct sqlite_backend *s, const struct backend_write *w, const char *what, const char *sql,
                     const struct sqlite_val *v, int n, int64_t *a, int64_t *b)
{
    sqlite3_stmt *st;
    int rc = sqlite_stmt(s, w->job, what, sql, &st, v, n);

    *a = *b = 0;
    if (rc < 0)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *a = sqlite3_column_int64(st, 0);
        *b = sqlite3_column_count(st) > 1 ? sqlite3_column_int64(st, 1) : 0;
    }
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? BACKEND_OK : sqlite_fail(s, w->job, what, rc);
    sqlite_stmt_done(st);
    return rc;
}

/* BACKEND_OK when w->user has an account, else NOT_FOUND (or the failure). */
static int user_exists(struct sqlite_backend *s, const struct backend_write *w)
{
    const struct sqlite_val v[] = { SQ_TEXT(w->user) };
    int64_t n, unused;
    int rc = step_ints(s, w, "user check", "SELECT count(*) FROM users WHERE user_id = ?1", v, 1, &n, &unused);
    return rc < 0 ? rc : n > 0 ? BACKEND_OK : BACKEND_ERR_NOT_FOUND;
}

/* Sets the roster version: NOT_FOUND when there is no such account. */
static int set_ver(struct sqlite_backend *s, const struct backend_write *w)
{
    const struct sqlite_val v[] = { SQ_TEXT(w->user), SQ_INT(w->ver) };
    int rc = step(s, w, "roster ver", "UPDATE users SET roster_ver = ?2 WHERE user_id = ?1", v, 2);
    return rc < 0 ? rc : sqlite3_changes(s->db) > 0 ? BACKEND_OK : BACKEND_ERR_NOT_FOUND;
}

static int roster_put(struct sqlite_backend *s, const struct backend_write *w)
{
    const struct roster_item *it = w->item;
    const struct sqlite_val v[] = { SQ_TEXT(w->user), SQ_TEXT(it->jid), SQ_TEXT(it->name),
                                    SQ_TEXT(it->subscription), SQ_TEXT(it->ask) };
    int rc = set_ver(s, w);

    if (rc == BACKEND_OK)
        rc = step(s, w, "roster_put item",
                  "INSERT INTO roster_items (user_id, jid, name, subscription, ask) VALUES (?1, ?2, ?3, ?4, ?5)"
                  " ON CONFLICT (user_id, jid) DO UPDATE SET name = excluded.name,"
                  " subscription = excluded.subscription, ask = excluded.ask",
                  v, 5);
    if (rc == BACKEND_OK)
        rc = step(s, w, "roster_put groups", "DELETE FROM roster_groups WHERE user_id = ?1 AND jid = ?2", v, 2);
    for (size_t g = 0; rc == BACKEND_OK && g < it->ngroups; g++) {
        const struct sqlite_val gv[] = { v[0], v[1], SQ_TEXT(it->groups[g]) };
        rc = step(s, w, "roster_put group", "INSERT INTO roster_groups (user_id, jid, grp) VALUES (?1, ?2, ?3)", gv,
                  3);
    }
    return rc;
}

static int roster_del(struct sqlite_backend *s, const struct backend_write *w)
{
    const struct sqlite_val v[] = { SQ_TEXT(w->user), SQ_TEXT(w->jid) };
    int rc = set_ver(s, w);

    if (rc == BACKEND_OK)
        rc = step(s, w, "roster_del groups", "DELETE FROM roster_groups WHERE user_id = ?1 AND jid = ?2", v, 2);
    if (rc == BACKEND_OK)
        rc = step(s, w, "roster_del item", "DELETE FROM roster_items WHERE user_id = ?1 AND jid = ?2", v, 2);
    return rc;
}

static int offline_put(struct sqlite_backend *s, const struct backend_write *w)
{
    const struct sqlite_val v[] = { SQ_TEXT(w->user), SQ_TEXT(w->id), SQ_INT(w->stamp), SQ_TEXT(w->xml) };
    int64_t n, dup;
    int rc = user_exists(s, w);

    /* Count, then insert, in this transaction: the quota. A repeat of a
     * stored id is a success even when the store is full now. */
    if (rc == BACKEND_OK)
        rc = step_ints(s, w, "offline_put count",
                       "SELECT count(*), coalesce(sum(id = ?2), 0) FROM offline_messages WHERE user_id = ?1", v, 2, &n,
                       &dup);
    if (rc != BACKEND_OK || dup > 0)
        return rc;
    if (n >= w->limit)
        return BACKEND_ERR_QUOTA;
    return step(s, w, "offline_put",
                "INSERT INTO offline_messages (user_id, id, stamp, xml) VALUES (?1, ?2, ?3, ?4)", v, 4);
}

/* One write's statements; its outcome. */
static int run_write(struct sqlite_backend *s, const struct backend_write *w)
{
    const struct sqlite_val uj[] = { SQ_TEXT(w->user), SQ_TEXT(w->jid) };
    int rc;

    switch (w->kind) {
    case BW_ROSTER_PUT:
        return roster_put(s, w);
    case BW_ROSTER_DEL:
        return roster_del(s, w);
    case BW_PENDING_PUT:
        if ((rc = user_exists(s, w)) < 0)
            return rc;
        return step(s, w, "pending_put",
                    "INSERT INTO roster_pending (user_id, jid) VALUES (?1, ?2) ON CONFLICT DO NOTHING", uj, 2);
    case BW_PENDING_DEL:
        return step(s, w, "pending_del", "DELETE FROM roster_pending WHERE user_id = ?1 AND jid = ?2", uj, 2);
    case BW_LAST_SET: {
        const struct sqlite_val v[] = { SQ_TEXT(w->user), SQ_INT(w->since), SQ_TEXT(w->text) };
        if ((rc = user_exists(s, w)) < 0)
            return rc;
        return step(s, w, "last_set",
                    "INSERT INTO last_activity (user_id, since, status) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT (user_id) DO UPDATE SET since = excluded.since, status = excluded.status",
                    v, 3);
    }
    case BW_OFFLINE_PUT:
        return offline_put(s, w);
    case BW_OFFLINE_DEL:
        rc = BACKEND_OK;
        for (size_t i = 0; rc == BACKEND_OK && i < w->nids; i++) {
            const struct sqlite_val v[] = { SQ_TEXT(w->user), SQ_TEXT(w->ids[i]) };
            rc = step(s, w, "offline_del", "DELETE FROM offline_messages WHERE user_id = ?1 AND id = ?2", v, 2);
        }
        return rc;
    case BW_ARCHIVE_PUT: {
        const struct sqlite_val v[] = { SQ_TEXT(w->user), SQ_TEXT(w->id), SQ_TEXT(w->jid),
                                        SQ_INT(w->stamp), SQ_TEXT(w->text), SQ_TEXT(w->xml) };
        /* The account check folded into the insert: one statement for the
         * usual case. No row inserted means no account or a repeat of a
         * stored id (a success); only then is it worth asking which. */
        rc = step(s, w, "archive_put",
                  "INSERT INTO archive (user_id, id, peer, stamp, dir, xml)"
                  " SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM users WHERE user_id = ?1)"
                  " ON CONFLICT DO NOTHING",
                  v, 6);
        if (rc < 0 || sqlite3_changes(s->db) > 0)
            return rc;
        return user_exists(s, w);
    }
    }
    return BACKEND_ERR_INTERNAL;
}

/* 1 when w may change rows in more than one statement, so that a failure
 * midway must undo its first statements: those writes run under a
 * savepoint. Every other kind changes rows in one statement at most (after
 * reads), and SQLite undoes a failed statement by itself, leaving the
 * transaction as it was; so the hot kinds (archive_put, offline_put) skip
 * the two extra statements per write. */
static int needs_savepoint(const struct backend_write *w)
{
    return w->kind == BW_ROSTER_PUT || w->kind == BW_ROSTER_DEL || (w->kind == BW_OFFLINE_DEL && w->nids > 1);
}

/* One run of the whole batch; BACKEND_OK when it committed. */
static int attempt(struct sqlite_backend *s, struct backend_write *w, size_t n)
{
    int rc = sqlite_exec(s, "batch begin", "BEGIN IMMEDIATE", NULL);

    if (rc < 0)
        return rc;
    for (size_t k = 0; k < n; k++) {
        int sp = needs_savepoint(&w[k]);
        if (sp && (rc = sqlite_exec(s, "batch savepoint", "SAVEPOINT w", NULL)) < 0)
            goto fail;
        w[k].rc = run_write(s, &w[k]);
        /* Some errors (I/O, disk full, out of memory) make SQLite roll back
         * the whole transaction: the writes before this one are gone too. */
        if (w[k].rc != BACKEND_OK && sqlite3_get_autocommit(s->db)) {
            rc = BACKEND_ERR_UNAVAILABLE;
            goto fail;
        }
        /* A write that failed (or found no account midway) is undone alone. */
        if (sp && w[k].rc != BACKEND_OK && (rc = sqlite_exec(s, "batch rollback to", "ROLLBACK TO w", NULL)) < 0)
            goto fail;
        if (sp && (rc = sqlite_exec(s, "batch release", "RELEASE w", NULL)) < 0)
            goto fail;
        /* Busy inside the transaction: the lock was lost, not one write's fault. */
        if (w[k].rc == BACKEND_ERR_UNAVAILABLE) {
            rc = BACKEND_ERR_UNAVAILABLE;
            goto fail;
        }
    }
    if ((rc = sqlite_exec(s, "batch commit", "COMMIT", NULL)) == BACKEND_OK)
        return BACKEND_OK;
fail:
    sqlite_rollback(s);
    return rc;
}

int sqlite_write(struct backend *b, struct backend_write *w, size_t n)
{
    struct sqlite_backend *s = sqlite_from_base(b);
    int rc = attempt(s, w, n);

    if (rc != BACKEND_OK) {
        log_info("job=%s batch of %zu writes: transaction failed; retrying once", b->job, n);
        rc = attempt(s, w, n);
    }
    if (rc != BACKEND_OK)
        for (size_t k = 0; k < n; k++)
            w[k].rc = BACKEND_ERR_UNAVAILABLE;
    return rc == BACKEND_OK ? BACKEND_OK : BACKEND_ERR_UNAVAILABLE;
}
