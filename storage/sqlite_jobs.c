/*
 * The SQLite backend's operations that run on their own (accounts and
 * reads), one function each. A read made of several queries runs in one
 * read transaction, so its parts agree (WAL gives it a snapshot without
 * blocking the writer).
 */
#include "sqlite.h"
#include "buf.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int sqlite_user_add(struct backend *b, const char *user, const char *cred_sha1, const char *cred_sha256)
{
    struct sqlite_backend *s = sqlite_from_base(b);
    const char *args[] = { user, cred_sha1, cred_sha256, NULL };
    int rc = sqlite_exec(s, "user_add",
                         "INSERT INTO users (user_id, cred_sha1, cred_sha256) VALUES (?1, ?2, ?3)"
                         " ON CONFLICT (user_id) DO NOTHING",
                         args);
    if (rc < 0)
        return rc;
    return sqlite3_changes(s->db) == 0 ? BACKEND_ERR_CONFLICT : BACKEND_OK;
}

int sqlite_user_del(struct backend *b, const char *user)
{
    /* Every table holding a user_id; users last, so its change count is
     * what sqlite3_changes reports after the loop. */
    static const char *const tables[][2] = {
        { "user_del roster_groups", "DELETE FROM roster_groups WHERE user_id = ?1" },
        { "user_del roster_items", "DELETE FROM roster_items WHERE user_id = ?1" },
        { "user_del roster_pending", "DELETE FROM roster_pending WHERE user_id = ?1" },
        { "user_del last_activity", "DELETE FROM last_activity WHERE user_id = ?1" },
        { "user_del offline_messages", "DELETE FROM offline_messages WHERE user_id = ?1" },
        { "user_del archive", "DELETE FROM archive WHERE user_id = ?1" },
        { "user_del users", "DELETE FROM users WHERE user_id = ?1" },
    };
    struct sqlite_backend *s = sqlite_from_base(b);
    const char *args[] = { user, NULL };
    int rc = sqlite_exec(s, "user_del begin", "BEGIN IMMEDIATE", NULL);
    int found;

    if (rc < 0)
        return rc;
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        if ((rc = sqlite_exec(s, tables[i][0], tables[i][1], args)) < 0) {
            sqlite_rollback(s);
            return rc;
        }
    }
    found = sqlite3_changes(s->db) > 0;
    rc = sqlite_exec(s, "user_del commit", "COMMIT", NULL);
    if (rc < 0) {
        sqlite_rollback(s);
        return rc;
    }
    return found ? BACKEND_OK : BACKEND_ERR_NOT_FOUND;
}

int sqlite_user_list(struct backend *b, struct buf *out)
{
    struct sqlite_backend *s = sqlite_from_base(b);
    sqlite3_stmt *st;
    int rc = sqlite_stmt_args(s, "user_list", "SELECT user_id FROM users ORDER BY user_id", &st, NULL);

    if (rc < 0)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        buf_append_str(out, sqlite_col(st, 0));
        buf_append(out, "\n", 1);
    }
    rc = rc == SQLITE_DONE ? BACKEND_OK : sqlite_fail(s, b->job, "user_list", rc);
    sqlite_stmt_done(st);
    return rc;
}

int sqlite_cred_get(struct backend *b, const char *user, char **sha1, char **sha256)
{
    struct sqlite_backend *s = sqlite_from_base(b);
    const char *args[] = { user, NULL };
    sqlite3_stmt *st;
    int rc = sqlite_stmt_args(s, "cred_get", "SELECT cred_sha1, cred_sha256 FROM users WHERE user_id = ?1", &st, args);

    *sha1 = *sha256 = NULL;
    if (rc < 0)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *sha1 = xstrdup(sqlite_col(st, 0));
        *sha256 = xstrdup(sqlite_col(st, 1));
        rc = BACKEND_OK;
    } else {
        rc = rc == SQLITE_DONE ? BACKEND_ERR_NOT_FOUND : sqlite_fail(s, b->job, "cred_get", rc);
    }
    sqlite_stmt_done(st);
    return rc;
}

/* Row callback of rows(): st is on a row; ctx is the caller's. */
typedef void (*row_fn)(sqlite3_stmt *st, void *ctx);

/* Steps through every row of sql with the values v, calling fn on each. */
static int rows(struct sqlite_backend *s, const char *what, const char *sql, const struct sqlite_val *v, int n,
                row_fn fn, void *ctx)
{
    sqlite3_stmt *st;
    int rc = sqlite_stmt(s, s->base.job, what, sql, &st, v, n);

    if (rc < 0)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(st, ctx);
    rc = rc == SQLITE_DONE ? BACKEND_OK : sqlite_fail(s, s->base.job, what, rc);
    sqlite_stmt_done(st);
    return rc;
}

/* A read of several queries: begin/end of its snapshot. */
static int read_begin(struct sqlite_backend *s)
{
    return sqlite_exec(s, "read begin", "BEGIN", NULL);
}

static int read_end(struct sqlite_backend *s, int rc)
{
    if (rc < 0) {
        sqlite_rollback(s);
        return rc;
    }
    return sqlite_exec(s, "read commit", "COMMIT", NULL);
}

static void roster_row(sqlite3_stmt *st, void *ctx)
{
    struct roster *r = ctx;
    const char *jid = sqlite_col(st, 0);
    struct roster_item *it = r->nitems ? &r->items[r->nitems - 1] : NULL;

    if (!it || strcmp(it->jid, jid) != 0)
        it = backend_roster_add(r, jid, sqlite_col(st, 1), sqlite_col(st, 2), sqlite_col(st, 3));
    if (sqlite_col(st, 4))
        backend_roster_add_group(it, sqlite_col(st, 4));
}

static void pending_row(sqlite3_stmt *st, void *ctx)
{
    backend_roster_add_pending(ctx, sqlite_col(st, 0));
}

static void ver_row(sqlite3_stmt *st, void *ctx)
{
    ((struct roster *)ctx)->ver = sqlite3_column_int64(st, 0);
}

int sqlite_roster_get(struct backend *b, const char *user, struct roster *r)
{
    struct sqlite_backend *s = sqlite_from_base(b);
    const struct sqlite_val v[] = { SQ_TEXT(user) };
    int rc = read_begin(s);

    if (rc < 0)
        return rc;
    /* The LEFT JOIN keeps contacts without groups, and ordering by jid
     * keeps each contact's group rows together. */
    rc = rows(s, "roster_get",
              "SELECT i.jid, i.name, i.subscription, i.ask, g.grp"
              " FROM roster_items i LEFT JOIN roster_groups g"
              "   ON g.user_id = i.user_id AND g.jid = i.jid"
              " WHERE i.user_id = ?1 ORDER BY i.jid, g.grp",
              v, 1, roster_row, r);
    if (rc == BACKEND_OK)
        rc = rows(s, "roster_get pending", "SELECT jid FROM roster_pending WHERE user_id = ?1 ORDER BY jid", v, 1,
                  pending_row, r);
    if (rc == BACKEND_OK)
        rc = rows(s, "roster_get ver", "SELECT roster_ver FROM users WHERE user_id = ?1", v, 1, ver_row, r);
    return read_end(s, rc);
}

/* ---- last activity, offline messages ------------------------------------ */

struct last {
    int found;
    int64_t *since;
    char **text;
};

static void last_row(sqlite3_stmt *st, void *ctx)
{
    struct last *l = ctx;
    l->found = 1;
    *l->since = sqlite3_column_int64(st, 0);
    *l->text = xstrdup(sqlite_col(st, 1));
}

int sqlite_last_get(struct backend *b, const char *user, int64_t *since, char **text)
{
    struct sqlite_backend *s = sqlite_from_base(b);
    const struct sqlite_val v[] = { SQ_TEXT(user) };
    struct last l = { 0, since, text };
    int rc;

    *since = 0;
    *text = NULL;
    rc = rows(s, "last_get", "SELECT since, status FROM last_activity WHERE user_id = ?1", v, 1, last_row, &l);
    if (rc == BACKEND_OK && !l.found)
        rc = BACKEND_ERR_NOT_FOUND;
    return rc;
}

static void offline_row(sqlite3_stmt *st, void *ctx)
{
    backend_offline_add(ctx, sqlite_col(st, 0), sqlite3_column_int64(st, 1), sqlite_col(st, 2));
}

int sqlite_offline_get(struct backend *b, const char *user, struct offline_list *l)
{
    const struct sqlite_val v[] = { SQ_TEXT(user) };
    return rows(sqlite_from_base(b), "offline_get",
                "SELECT id, stamp, xml FROM offline_messages WHERE user_id = ?1 ORDER BY stamp, id", v, 1,
                offline_row, l);
}

/* ---- archive ----------------------------------------------------------------- */

struct position {
    int found;
    int64_t stamp;
};

static void position_row(sqlite3_stmt *st, void *ctx)
{
    struct position *p = ctx;
    p->found = 1;
    p->stamp = sqlite3_column_int64(st, 0);
}

/* The stamp of archive entry id into *pos; BACKEND_ERR_NOT_FOUND when the
 * user has no such entry (jobs_archive.c rule P3). */
static int position(struct sqlite_backend *s, const char *user, const char *id, struct sqlite_val *pos)
{
    const struct sqlite_val v[] = { SQ_TEXT(user), SQ_TEXT(id) };
    struct position p = { 0, 0 };
    int rc = rows(s, "archive_query position", "SELECT stamp FROM archive WHERE user_id = ?1 AND id = ?2", v, 2,
                  position_row, &p);
    if (rc == BACKEND_OK && !p.found)
        rc = BACKEND_ERR_NOT_FOUND;
    *pos = SQ_INT(p.stamp);
    return rc;
}

static void count_row(sqlite3_stmt *st, void *ctx)
{
    *(int64_t *)ctx = sqlite3_column_int64(st, 0);
}

struct page {
    struct archive_page *p;
    long max;
    long seen;
};

static void page_row(sqlite3_stmt *st, void *ctx)
{
    struct page *pg = ctx;
    if (pg->seen++ < pg->max)
        backend_archive_add(pg->p, sqlite_col(st, 0), sqlite3_column_int64(st, 1), sqlite_col(st, 2),
                            sqlite_col(st, 3), sqlite_col(st, 4));
}

/*
 * The filter of every archive query: ?1 user, ?2 with (NULL: any peer), ?3
 * and ?4 the stamp window, inclusive. The window is always bound (the
 * widest one when the query has none) rather than written "?3 IS NULL OR
 * ...": a term inside an OR cannot bound an index range, and this way
 * archive_time (user_id, stamp, id, peer; migration 008) is searched from
 * the window's start, with peer tested inside the index.
 */
#define ARCHIVE_WHERE                                                          \
    " WHERE user_id = ?1 AND stamp >= ?3 AND stamp <= ?4 AND (?2 IS NULL OR peer = ?2)"
/* Paging: ?5/?6 the (stamp, id) after which, ?7/?8 before which (bounds no
 * entry can reach when the query has none); ?9 the limit. */
#define ARCHIVE_PAGE                                                           \
    "SELECT id, stamp, peer, dir, xml FROM archive" ARCHIVE_WHERE               \
    " AND (stamp, id) > (?5, ?6) AND (stamp, id) < (?7, ?8)"

int sqlite_archive_query(struct backend *b, const char *user, const struct archive_filter *f,
                         struct archive_page *p)
{
    struct sqlite_backend *s = sqlite_from_base(b);
    /* Stored stamps are >= 0 (jobs_archive.c) and ids non-empty, so
     * (-1, '') is before every entry and (INT64_MAX, '') after every one. */
    struct sqlite_val v[9] = { SQ_TEXT(user), SQ_TEXT(f->with), SQ_INT(f->has_start ? f->start : INT64_MIN),
                               SQ_INT(f->has_end ? f->end : INT64_MAX), SQ_INT(-1), SQ_TEXT(""),
                               SQ_INT(INT64_MAX), SQ_TEXT(""), SQ_INT(f->max + 1) };
    struct page pg = { p, f->max, 0 };
    int backward = f->before != NULL;
    int rc = read_begin(s);

    if (rc < 0)
        return rc;
    if (f->after && (rc = position(s, user, f->after, &v[4])) == BACKEND_OK)
        v[5] = SQ_TEXT(f->after);
    if (rc == BACKEND_OK && f->before && *f->before && (rc = position(s, user, f->before, &v[6])) == BACKEND_OK)
        v[7] = SQ_TEXT(f->before);
    if (rc == BACKEND_OK)
        rc = rows(s, "archive_query count", "SELECT count(*) FROM archive" ARCHIVE_WHERE, v, 4, count_row,
                  &p->count);
    /* The page's stamp window narrowed to the after/before positions, so
     * the index search starts at the position instead of the window's
     * start; the (stamp, id) terms then drop the entries of equal stamp
     * on the wrong side. */
    if (v[4].num > v[2].num)
        v[2] = v[4];
    if (v[6].num < v[3].num)
        v[3] = v[6];
    /* One more than max tells whether the page reaches the end (rule P4). */
    if (rc == BACKEND_OK)
        rc = rows(s, "archive_query page",
                  backward ? ARCHIVE_PAGE " ORDER BY stamp DESC, id DESC LIMIT ?9"
                           : ARCHIVE_PAGE " ORDER BY stamp, id LIMIT ?9",
                  v, 9, page_row, &pg);
    if (rc == BACKEND_OK) {
        p->is_complete = pg.seen <= f->max;
        if (backward)
            backend_archive_reverse(p);
    }
    return read_end(s, rc);
}

int sqlite_archive_purge(struct backend *b, int64_t before, int64_t *deleted)
{
    struct sqlite_backend *s = sqlite_from_base(b);
    const struct sqlite_val v[] = { SQ_INT(before) };
    sqlite3_stmt *st;
    int rc = sqlite_stmt(s, b->job, "archive_purge", "DELETE FROM archive WHERE stamp < ?1", &st, v, 1);

    *deleted = 0;
    if (rc < 0)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        *deleted = sqlite3_changes64(s->db);
        rc = BACKEND_OK;
    } else {
        rc = sqlite_fail(s, b->job, "archive_purge", rc);
    }
    sqlite_stmt_done(st);
    return rc;
}
