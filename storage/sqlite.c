/*
 * The SQLite backend: the embedded default, so `make run` needs no database
 * server. Several worker processes share one file: WAL mode lets readers run
 * beside the single writer, busy_timeout makes a writer wait up to 5 s for
 * the lock instead of failing at once, and every multi-statement write starts
 * with BEGIN IMMEDIATE, taking the write lock up front (a deferred
 * transaction that upgrades from read to write can fail with SQLITE_BUSY
 * without waiting, which busy_timeout cannot help). Values are always bound
 * with sqlite3_bind_*, never put into SQL text.
 */
#include "backend.h"
#include "buf.h"
#include "config.h"
#include "log.h"
#include "util.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SQLITE_BUSY_MS 5000

struct sqlite_backend {
    struct backend base;
    sqlite3 *db;
};

static struct sqlite_backend *from_base(struct backend *b)
{
    return (struct sqlite_backend *)b;
}

/* Logs a failed call once and maps it: lock contention that outlasted
 * busy_timeout is "unavailable" (try again), anything else "internal". */
static int fail(struct sqlite_backend *s, const char *what, int rc)
{
    int busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
    if (busy)
        log_warn("job=%s %s: database stayed locked for %d ms: %s", s->base.job, what,
                 SQLITE_BUSY_MS, sqlite3_errmsg(s->db));
    else
        log_error("job=%s %s: sqlite error %d (%s): %s", s->base.job, what,
                  sqlite3_extended_errcode(s->db), sqlite3_errstr(rc), sqlite3_errmsg(s->db));
    return busy ? BACKEND_ERR_UNAVAILABLE : BACKEND_ERR_INTERNAL;
}

/* Prepares sql and binds the NULL-terminated text parameters in order. */
static int prepare(struct sqlite_backend *s, const char *what, const char *sql, sqlite3_stmt **st,
                   const char *const *args)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK)
        return fail(s, what, rc);
    for (int i = 0; args && args[i]; i++) {
        rc = sqlite3_bind_text(*st, i + 1, args[i], -1, SQLITE_STATIC);
        if (rc != SQLITE_OK) {
            int err = fail(s, what, rc);
            sqlite3_finalize(*st);
            *st = NULL;
            return err;
        }
    }
    return BACKEND_OK;
}

/* Runs a statement that returns no rows. */
static int exec(struct sqlite_backend *s, const char *what, const char *sql, const char *const *args)
{
    sqlite3_stmt *st;
    int rc = prepare(s, what, sql, &st, args);
    if (rc < 0)
        return rc;
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = fail(s, what, rc);
    } else {
        rc = BACKEND_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

static void rollback(struct sqlite_backend *s)
{
    /* Best effort after a failure already logged; a failed ROLLBACK means
     * SQLite rolled back by itself. */
    (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static const char *col(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static struct backend *sqlite_open(const struct config *conf)
{
    struct sqlite_backend *s = xcalloc(1, sizeof(*s));
    const char *path = conf->storage.sqlite_path;
    int rc;

    s->base.ops = &backend_sqlite;
    s->base.job = "-";
    rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        log_error("sqlite open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, SQLITE_BUSY_MS);
    /* Switching a new file to WAL needs a moment of exclusive access, and
     * the busy handler is not consulted for it: several workers starting
     * together retry for a while. Once set, WAL is persistent and this is a
     * no-op read. */
    for (int attempt = 0;; attempt++) {
        sqlite3_stmt *st;
        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                const char *mode = col(st, 0);
                if (!mode || strcmp(mode, "wal") != 0)
                    log_warn("sqlite %s: journal_mode is %s, not wal; workers will block each other",
                             path, mode ? mode : "?");
                rc = SQLITE_OK;
            }
            sqlite3_finalize(st);
        }
        if (rc == SQLITE_OK)
            break;
        if ((rc & 0xff) != SQLITE_BUSY || attempt == 100) {
            log_error("sqlite %s: cannot enable WAL: %s", path, sqlite3_errmsg(s->db));
            goto fail;
        }
        nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
    }
    log_info("sqlite database %s open (WAL, busy_timeout %d ms)", path, SQLITE_BUSY_MS);
    return &s->base;
fail:
    sqlite3_close(s->db);
    free(s);
    return NULL;
}

static void sqlite_close(struct backend *b)
{
    struct sqlite_backend *s;
    if (!b)
        return;
    s = from_base(b);
    /* sqlite3_close_v2 would defer on unfinalized statements; we never keep any. */
    if (sqlite3_close(s->db) != SQLITE_OK)
        log_error("sqlite close: %s", sqlite3_errmsg(s->db));
    free(s);
}

static int is_applied(struct sqlite_backend *s, const struct migration *m, int *applied)
{
    sqlite3_stmt *st;
    int rc = prepare(s, "schema_migrations lookup", "SELECT 1 FROM schema_migrations WHERE version = ?1", &st, NULL);

    if (rc < 0)
        return rc;
    rc = sqlite3_bind_int64(st, 1, m->version);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    *applied = rc == SQLITE_ROW;
    rc = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? BACKEND_OK : fail(s, "schema_migrations lookup", rc);
    sqlite3_finalize(st);
    return rc;
}

static int record(struct sqlite_backend *s, const struct migration *m)
{
    sqlite3_stmt *st;
    int rc = prepare(s, "schema_migrations insert", "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
                     &st, NULL);

    if (rc < 0)
        return rc;
    rc = sqlite3_bind_int64(st, 1, m->version);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, m->file, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE ? BACKEND_OK : fail(s, "schema_migrations insert", rc);
    sqlite3_finalize(st);
    return rc;
}

static int apply_one(struct sqlite_backend *s, const struct migration *m, int *applied_now)
{
    char *err = NULL;
    int applied = 0;
    int rc;

    *applied_now = 0;
    /* IMMEDIATE: take the write lock before looking, so a second worker
     * waits here and then sees the version as applied. */
    rc = exec(s, "migration begin", "BEGIN IMMEDIATE", NULL);
    if (rc < 0)
        return rc;
    rc = is_applied(s, m, &applied);
    if (rc < 0 || applied)
        goto out;
    if (sqlite3_exec(s->db, m->sql, NULL, NULL, &err) != SQLITE_OK) {
        log_error("migration %u (%s) failed: %s", m->version, m->file, err ? err : sqlite3_errmsg(s->db));
        sqlite3_free(err);
        rc = BACKEND_ERR_INTERNAL;
        goto out;
    }
    if ((rc = record(s, m)) < 0)
        goto out;
    *applied_now = 1;
out:
    if (rc < 0) {
        rollback(s);
        return rc;
    }
    return exec(s, "migration commit", "COMMIT", NULL);
}

static int sqlite_migrate(struct backend *b, const struct migration *m, size_t n)
{
    struct sqlite_backend *s = from_base(b);
    size_t count = 0;
    int rc = exec(s, "schema_migrations create",
                  "CREATE TABLE IF NOT EXISTS schema_migrations ("
                  " version INTEGER PRIMARY KEY,"
                  " name TEXT NOT NULL,"
                  " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')))",
                  NULL);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        int now = 0;
        rc = apply_one(s, &m[i], &now);
        if (rc < 0)
            return rc;
        if (now) {
            log_info("migration %u (%s) applied", m[i].version, m[i].file);
            count++;
        }
    }
    log_info("schema at version %u (%zu migration%s applied now)", n ? m[n - 1].version : 0, count,
             count == 1 ? "" : "s");
    return BACKEND_OK;
}

static int sqlite_user_add(struct backend *b, const char *user, const char *cred_sha1, const char *cred_sha256)
{
    struct sqlite_backend *s = from_base(b);
    const char *args[] = { user, cred_sha1, cred_sha256, NULL };
    int rc = exec(s, "user_add",
                  "INSERT INTO users (user_id, cred_sha1, cred_sha256) VALUES (?1, ?2, ?3)"
                  " ON CONFLICT (user_id) DO NOTHING",
                  args);
    if (rc < 0)
        return rc;
    return sqlite3_changes(s->db) == 0 ? BACKEND_ERR_CONFLICT : BACKEND_OK;
}

static int sqlite_user_del(struct backend *b, const char *user)
{
    struct sqlite_backend *s = from_base(b);
    const char *args[] = { user, NULL };
    int rc = exec(s, "user_del begin", "BEGIN IMMEDIATE", NULL);
    int found;

    if (rc < 0)
        return rc;
    if ((rc = exec(s, "user_del groups", "DELETE FROM roster_groups WHERE user_id = ?1", args)) < 0 ||
        (rc = exec(s, "user_del items", "DELETE FROM roster_items WHERE user_id = ?1", args)) < 0 ||
        (rc = exec(s, "user_del user", "DELETE FROM users WHERE user_id = ?1", args)) < 0) {
        rollback(s);
        return rc;
    }
    found = sqlite3_changes(s->db) > 0;
    rc = exec(s, "user_del commit", "COMMIT", NULL);
    if (rc < 0) {
        rollback(s);
        return rc;
    }
    return found ? BACKEND_OK : BACKEND_ERR_NOT_FOUND;
}

static int sqlite_user_list(struct backend *b, struct buf *out)
{
    struct sqlite_backend *s = from_base(b);
    sqlite3_stmt *st;
    int rc = prepare(s, "user_list", "SELECT user_id FROM users ORDER BY user_id", &st, NULL);

    if (rc < 0)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        buf_append_str(out, col(st, 0));
        buf_append(out, "\n", 1);
    }
    rc = rc == SQLITE_DONE ? BACKEND_OK : fail(s, "user_list", rc);
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_cred_get(struct backend *b, const char *user, char **sha1, char **sha256)
{
    struct sqlite_backend *s = from_base(b);
    const char *args[] = { user, NULL };
    sqlite3_stmt *st;
    int rc = prepare(s, "cred_get", "SELECT cred_sha1, cred_sha256 FROM users WHERE user_id = ?1", &st, args);

    *sha1 = *sha256 = NULL;
    if (rc < 0)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *sha1 = xstrdup(col(st, 0));
        *sha256 = xstrdup(col(st, 1));
        rc = BACKEND_OK;
    } else {
        rc = rc == SQLITE_DONE ? BACKEND_ERR_NOT_FOUND : fail(s, "cred_get", rc);
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_roster_get(struct backend *b, const char *user, struct roster *r)
{
    struct sqlite_backend *s = from_base(b);
    const char *args[] = { user, NULL };
    sqlite3_stmt *st;
    /* One query: the LEFT JOIN keeps contacts without groups, and ordering
     * by jid keeps each contact's group rows together. */
    int rc = prepare(s, "roster_get",
                     "SELECT i.jid, i.name, i.subscription, i.ask, g.grp"
                     " FROM roster_items i LEFT JOIN roster_groups g"
                     "   ON g.user_id = i.user_id AND g.jid = i.jid"
                     " WHERE i.user_id = ?1 ORDER BY i.jid, g.grp",
                     &st, args);

    if (rc < 0)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *jid = col(st, 0);
        struct roster_item *it = r->nitems ? &r->items[r->nitems - 1] : NULL;
        if (!it || strcmp(it->jid, jid) != 0)
            it = backend_roster_add(r, jid, col(st, 1), col(st, 2), col(st, 3));
        if (col(st, 4))
            backend_roster_add_group(it, col(st, 4));
    }
    rc = rc == SQLITE_DONE ? BACKEND_OK : fail(s, "roster_get", rc);
    sqlite3_finalize(st);
    return rc;
}

const struct backend_ops backend_sqlite = {
    .name = "sqlite",
    .migration_suffix = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .migrate = sqlite_migrate,
    .user_add = sqlite_user_add,
    .user_del = sqlite_user_del,
    .user_list = sqlite_user_list,
    .cred_get = sqlite_cred_get,
    .roster_get = sqlite_roster_get,
};
