/*
 * The PostgreSQL backend's operations that run on their own (accounts and
 * reads): one function each, run through pg_run so that a connection lost
 * mid-operation is retried once on a new one. Every value goes through
 * PQexecParams. Ids compare in byte order: the archive and offline id
 * columns are COLLATE "C" (migrations 005, 006), as SQLite compares them.
 */
#include "pg.h"
#include "buf.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct user_args {
    const char *user, *sha1, *sha256;
    char **out_sha1, **out_sha256;
    struct buf *list;
    struct roster *roster;
};

static int op_cred_get(struct pg_backend *pg, void *arg, int retry)
{
    struct user_args *a = arg;
    const char *args[] = { a->user };
    PGresult *res;
    int rc;

    (void)retry;
    rc = pg_query(pg, "cred_get", "SELECT cred_sha1, cred_sha256 FROM users WHERE user_id = $1", 1, args,
                  PGRES_TUPLES_OK, &res);
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0) {
        rc = BACKEND_ERR_NOT_FOUND;
    } else {
        *a->out_sha1 = xstrdup(PQgetvalue(res, 0, 0));
        *a->out_sha256 = xstrdup(PQgetvalue(res, 0, 1));
    }
    PQclear(res);
    return rc;
}

static int op_user_add(struct pg_backend *pg, void *arg, int retry)
{
    struct user_args *a = arg;
    const char *args[] = { a->user, a->sha1, a->sha256 };
    PGresult *res;
    int rc = pg_query(pg, "user_add",
                      "INSERT INTO users (user_id, cred_sha1, cred_sha256) VALUES ($1, $2, $3)"
                      " ON CONFLICT (user_id) DO NOTHING",
                      3, args, PGRES_COMMAND_OK, &res);
    if (rc < 0)
        return rc;
    rc = strcmp(PQcmdTuples(res), "0") == 0 ? BACKEND_ERR_CONFLICT : BACKEND_OK;
    PQclear(res);
    if (rc == BACKEND_ERR_CONFLICT && retry) {
        /* The first attempt may have committed before the connection
         * dropped. Salts are random, so a row holding exactly these
         * credentials is that insert, not somebody else's account. */
        char *s1 = NULL, *s256 = NULL;
        struct user_args get = { .user = a->user, .out_sha1 = &s1, .out_sha256 = &s256 };
        if (op_cred_get(pg, &get, 0) == BACKEND_OK && strcmp(s1, a->sha1) == 0 && strcmp(s256, a->sha256) == 0)
            rc = BACKEND_OK;
        free(s1);
        free(s256);
    }
    return rc;
}

static int op_user_del(struct pg_backend *pg, void *arg, int retry)
{
    struct user_args *a = arg;
    const char *args[] = { a->user };
    PGresult *res;
    int rc;

    /* The row lock first, in a statement of its own: a batch storing
     * offline messages for the user holds it (pg_batch.c "Locks"), so we
     * wait for it to commit, and the deletes, a later snapshot, then see
     * its rows; none is left behind to outlive the account and its
     * offline_count. A retry after a lost connection may find the row
     * already gone and say not-found; the account is gone either way. */
    (void)retry;
    if ((rc = pg_command(pg, "user_del begin", "BEGIN", 0, NULL)) < 0)
        return rc;
    rc = pg_query(pg, "user_del lock", "SELECT 1 FROM users WHERE user_id = $1 FOR UPDATE", 1, args,
                  PGRES_TUPLES_OK, &res);
    if (rc < 0)
        goto out;
    PQclear(res);
    rc = pg_query(pg, "user_del",
                  "WITH g AS (DELETE FROM roster_groups WHERE user_id = $1),"
                  " i AS (DELETE FROM roster_items WHERE user_id = $1),"
                  " p AS (DELETE FROM roster_pending WHERE user_id = $1),"
                  " l AS (DELETE FROM last_activity WHERE user_id = $1),"
                  " o AS (DELETE FROM offline_messages WHERE user_id = $1),"
                  " a AS (DELETE FROM archive WHERE user_id = $1)"
                  " DELETE FROM users WHERE user_id = $1",
                  1, args, PGRES_COMMAND_OK, &res);
    if (rc < 0)
        goto out;
    rc = strcmp(PQcmdTuples(res), "0") == 0 ? BACKEND_ERR_NOT_FOUND : BACKEND_OK;
    PQclear(res);
out:
    if (rc < 0 && rc != BACKEND_ERR_NOT_FOUND) {
        /* Best effort: the failure is logged, and a lost connection rolls
         * back by itself. */
        PQclear(PQexec(pg->conn, "ROLLBACK"));
        return rc;
    }
    {
        int crc = pg_command(pg, "user_del commit", "COMMIT", 0, NULL);
        return crc < 0 ? crc : rc;
    }
}

static int op_user_list(struct pg_backend *pg, void *arg, int retry)
{
    struct user_args *a = arg;
    PGresult *res;
    int rc;

    (void)retry;   /* nothing is appended before the query succeeds */
    /* COLLATE "C": byte order, the same as SQLite's, whatever the
     * database's locale. */
    rc = pg_query(pg, "user_list", "SELECT user_id FROM users ORDER BY user_id COLLATE \"C\"", 0, NULL,
                  PGRES_TUPLES_OK, &res);
    if (rc < 0)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        buf_append_str(a->list, PQgetvalue(res, i, 0));
        buf_append(a->list, "\n", 1);
    }
    PQclear(res);
    return BACKEND_OK;
}

static int op_roster_get(struct pg_backend *pg, void *arg, int retry)
{
    struct user_args *a = arg;
    struct roster *r = a->roster;
    const char *args[] = { a->user };
    PGresult *items, *pending;
    int rc;

    /* A retry starts over: what the lost attempt added is dropped. */
    if (retry)
        backend_roster_fini(r);
    /* The LEFT JOIN keeps contacts without groups, and ordering by jid
     * keeps each contact's group rows together. The version and the
     * pending requests come with the first row of the second query. */
    rc = pg_query(pg, "roster_get",
                  "SELECT i.jid, i.name, i.subscription, i.ask, g.grp"
                  " FROM roster_items i LEFT JOIN roster_groups g"
                  "   ON g.user_id = i.user_id AND g.jid = i.jid"
                  " WHERE i.user_id = $1 ORDER BY i.jid COLLATE \"C\", g.grp COLLATE \"C\"",
                  1, args, PGRES_TUPLES_OK, &items);
    if (rc < 0)
        return rc;
    rc = pg_query(pg, "roster_get pending",
                  "SELECT (SELECT roster_ver FROM users WHERE user_id = $1), p.jid"
                  " FROM (SELECT 1) one LEFT JOIN roster_pending p ON p.user_id = $1"
                  " ORDER BY p.jid COLLATE \"C\"",
                  1, args, PGRES_TUPLES_OK, &pending);
    if (rc < 0) {
        PQclear(items);
        return rc;
    }
    for (int i = 0; i < PQntuples(items); i++) {
        struct roster_item *it = r->nitems ? &r->items[r->nitems - 1] : NULL;
        if (!it || strcmp(it->jid, PQgetvalue(items, i, 0)) != 0)
            it = backend_roster_add(r, PQgetvalue(items, i, 0), pg_value(items, i, 1), pg_value(items, i, 2),
                                    pg_value(items, i, 3));
        if (pg_value(items, i, 4))
            backend_roster_add_group(it, pg_value(items, i, 4));
    }
    for (int i = 0; i < PQntuples(pending); i++) {
        r->ver = pg_int(pending, i, 0);
        if (pg_value(pending, i, 1))
            backend_roster_add_pending(r, pg_value(pending, i, 1));
    }
    PQclear(items);
    PQclear(pending);
    return BACKEND_OK;
}

int pg_user_add(struct backend *b, const char *user, const char *cred_sha1, const char *cred_sha256)
{
    struct user_args a = { .user = user, .sha1 = cred_sha1, .sha256 = cred_sha256 };
    return pg_run(pg_from_base(b), op_user_add, &a);
}

int pg_user_del(struct backend *b, const char *user)
{
    struct user_args a = { .user = user };
    return pg_run(pg_from_base(b), op_user_del, &a);
}

int pg_user_list(struct backend *b, struct buf *out)
{
    struct user_args a = { .list = out };
    return pg_run(pg_from_base(b), op_user_list, &a);
}

int pg_cred_get(struct backend *b, const char *user, char **sha1, char **sha256)
{
    struct user_args a = { .user = user, .out_sha1 = sha1, .out_sha256 = sha256 };
    *sha1 = *sha256 = NULL;
    return pg_run(pg_from_base(b), op_cred_get, &a);
}

int pg_roster_get(struct backend *b, const char *user, struct roster *r)
{
    struct user_args a = { .user = user, .roster = r };
    return pg_run(pg_from_base(b), op_roster_get, &a);
}

/* ---- last activity, offline messages ------------------------------------ */

struct read_args {
    const char *user;
    int64_t *since;
    char **text;
    struct offline_list *offline;
    const struct archive_filter *filter;
    struct archive_page *page;
    int64_t before, *deleted;
};

static int op_last_get(struct pg_backend *pg, void *arg, int retry)
{
    struct read_args *a = arg;
    const char *args[] = { a->user };
    PGresult *res;
    int rc;

    (void)retry;
    rc = pg_query(pg, "last_get", "SELECT since, status FROM last_activity WHERE user_id = $1", 1, args,
                  PGRES_TUPLES_OK, &res);
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0) {
        rc = BACKEND_ERR_NOT_FOUND;
    } else {
        *a->since = pg_int(res, 0, 0);
        *a->text = xstrdup(pg_value(res, 0, 1));
    }
    PQclear(res);
    return rc;
}

static int op_offline_get(struct pg_backend *pg, void *arg, int retry)
{
    struct read_args *a = arg;
    const char *args[] = { a->user };
    PGresult *res;
    int rc;

    (void)retry;   /* nothing is added before the query succeeds */
    rc = pg_query(pg, "offline_get",
                  "SELECT id, stamp, xml FROM offline_messages WHERE user_id = $1 ORDER BY stamp, id", 1, args,
                  PGRES_TUPLES_OK, &res);
    if (rc < 0)
        return rc;
    for (int i = 0; i < PQntuples(res); i++)
        backend_offline_add(a->offline, PQgetvalue(res, i, 0), pg_int(res, i, 1), PQgetvalue(res, i, 2));
    PQclear(res);
    return BACKEND_OK;
}

int pg_last_get(struct backend *b, const char *user, int64_t *since, char **text)
{
    struct read_args a = { .user = user, .since = since, .text = text };
    *since = 0;
    *text = NULL;
    return pg_run(pg_from_base(b), op_last_get, &a);
}

int pg_offline_get(struct backend *b, const char *user, struct offline_list *l)
{
    struct read_args a = { .user = user, .offline = l };
    return pg_run(pg_from_base(b), op_offline_get, &a);
}

/* ---- archive --------------------------------------------------------------- */

/* The stamp of archive entry id of user into out (decimal text);
 * BACKEND_ERR_NOT_FOUND when there is none (jobs_archive.c rule P3). */
static int position(struct pg_backend *pg, const char *user, const char *id, char *out, size_t outsz)
{
    const char *args[] = { user, id };
    PGresult *res;
    int rc = pg_query(pg, "archive_query position", "SELECT stamp FROM archive WHERE user_id = $1 AND id = $2", 2,
                      args, PGRES_TUPLES_OK, &res);
    if (rc < 0)
        return rc;
    if (PQntuples(res) == 0)
        rc = BACKEND_ERR_NOT_FOUND;
    else
        snprintf(out, outsz, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

/* The filter of every archive query: $1 user, $2 with, $3 start, $4 end. */
#define ARCHIVE_WHERE                                      \
    " WHERE user_id = $1 AND ($2::text IS NULL OR peer = $2)" \
    " AND ($3::bigint IS NULL OR stamp >= $3) AND ($4::bigint IS NULL OR stamp <= $4)"
/* Paging: $5/$6 the (stamp, id) after which, $7/$8 before which; $9 the limit. */
#define ARCHIVE_PAGE                                                      \
    "SELECT id, stamp, peer, dir, xml FROM archive" ARCHIVE_WHERE          \
    " AND ($5::bigint IS NULL OR (stamp, id) > ($5::bigint, $6::text))"    \
    " AND ($7::bigint IS NULL OR (stamp, id) < ($7::bigint, $8::text))"

static int op_archive_query(struct pg_backend *pg, void *arg, int retry)
{
    struct read_args *a = arg;
    const struct archive_filter *f = a->filter;
    struct archive_page *p = a->page;
    char start[24], end[24], after[24], before[24], limit[24];
    int backward = f->before != NULL;
    const char *args[9] = { a->user, f->with };
    PGresult *res;
    int rc;

    if (retry)
        backend_archive_fini(p);
    if (f->has_start)
        args[2] = (snprintf(start, sizeof(start), "%" PRId64, f->start), start);
    if (f->has_end)
        args[3] = (snprintf(end, sizeof(end), "%" PRId64, f->end), end);
    if (f->after) {
        if ((rc = position(pg, a->user, f->after, after, sizeof(after))) < 0)
            return rc;
        args[4] = after;
        args[5] = f->after;
    }
    if (f->before && *f->before) {
        if ((rc = position(pg, a->user, f->before, before, sizeof(before))) < 0)
            return rc;
        args[6] = before;
        args[7] = f->before;
    }
    rc = pg_query(pg, "archive_query count", "SELECT count(*) FROM archive" ARCHIVE_WHERE, 4, args,
                  PGRES_TUPLES_OK, &res);
    if (rc < 0)
        return rc;
    p->count = pg_int(res, 0, 0);
    PQclear(res);

    /* One more than max tells whether the page reaches the end (rule P4). */
    snprintf(limit, sizeof(limit), "%ld", f->max + 1);
    args[8] = limit;
    rc = pg_query(pg, "archive_query page",
                  backward ? ARCHIVE_PAGE " ORDER BY stamp DESC, id DESC LIMIT $9::bigint"
                           : ARCHIVE_PAGE " ORDER BY stamp, id LIMIT $9::bigint",
                  9, args, PGRES_TUPLES_OK, &res);
    if (rc < 0)
        return rc;
    for (int i = 0; i < PQntuples(res) && (long)i < f->max; i++)
        backend_archive_add(p, PQgetvalue(res, i, 0), pg_int(res, i, 1), PQgetvalue(res, i, 2),
                            PQgetvalue(res, i, 3), PQgetvalue(res, i, 4));
    p->is_complete = PQntuples(res) <= f->max;
    PQclear(res);
    if (backward)
        backend_archive_reverse(p);
    return BACKEND_OK;
}

static int op_archive_purge(struct pg_backend *pg, void *arg, int retry)
{
    struct read_args *a = arg;
    char before[24];
    const char *args[] = { before };
    PGresult *res;
    int rc;

    (void)retry;   /* a second run deletes what the first did not */
    snprintf(before, sizeof(before), "%" PRId64, a->before);
    rc = pg_query(pg, "archive_purge", "DELETE FROM archive WHERE stamp < $1::bigint", 1, args, PGRES_COMMAND_OK,
                  &res);
    if (rc < 0)
        return rc;
    *a->deleted = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return BACKEND_OK;
}

int pg_archive_query(struct backend *b, const char *user, const struct archive_filter *f, struct archive_page *p)
{
    struct read_args a = { .user = user, .filter = f, .page = p };
    return pg_run(pg_from_base(b), op_archive_query, &a);
}

int pg_archive_purge(struct backend *b, int64_t before, int64_t *deleted)
{
    struct read_args a = { .before = before, .deleted = deleted };
    *deleted = 0;
    return pg_run(pg_from_base(b), op_archive_purge, &a);
}
