/*
 * The SQLite backend: the embedded default, so `make run` needs no database
 * server. Several worker processes share one file: WAL mode lets readers run
 * beside the single writer, busy_timeout makes a writer wait up to 5 s for
 * the lock instead of failing at once, and every multi-statement write starts
 * with BEGIN IMMEDIATE, taking the write lock up front (a deferred
 * transaction that upgrades from read to write can fail with SQLITE_BUSY
 * without waiting, which busy_timeout cannot help). Values are always bound
 * with sqlite3_bind_*, never put into SQL text.
 *
 * This file holds the connection, the helpers the operations share
 * (sqlite.h) and migrations; the operations are in sqlite_jobs.c and
 * sqlite_batch.c.
 */
#include "sqlite.h"

#define SQLITE_WAL_PAGES_STR "10000"
#include "config.h"
#include "log.h"
#include "util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int sqlite_fail(struct sqlite_backend *s, const char *job, const char *what, int rc)
{
    int busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
    if (busy)
        log_warn("job=%s %s: database stayed locked for %d ms: %s", job, what,
                 SQLITE_BUSY_MS, sqlite3_errmsg(s->db));
    else
        log_error("job=%s %s: sqlite error %d (%s): %s", job, what,
                  sqlite3_extended_errcode(s->db), sqlite3_errstr(rc), sqlite3_errmsg(s->db));
    return busy ? BACKEND_ERR_UNAVAILABLE : BACKEND_ERR_INTERNAL;
}

/* The cached statement for sql, prepared now if this is its first use. */
static int cached(struct sqlite_backend *s, const char *job, const char *what, const char *sql, sqlite3_stmt **st)
{
    int rc;

    for (size_t i = 0; i < s->nstmts; i++) {
        if (s->stmts[i].sql == sql) {
            *st = s->stmts[i].st;
            /* Handed back by the previous user, or a caller forgot sqlite_stmt_done. */
            assert(!sqlite3_stmt_busy(*st));
            return BACKEND_OK;
        }
    }
    /* PERSISTENT: these live as long as the connection, so SQLite takes
     * their memory from the heap rather than the lookaside slots it keeps
     * for short-lived allocations. */
    rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return sqlite_fail(s, job, what, rc);
    }
    if (s->nstmts == s->stmts_cap) {
        s->stmts_cap = s->stmts_cap ? 2 * s->stmts_cap : 32;
        s->stmts = xrealloc(s->stmts, s->stmts_cap * sizeof(*s->stmts));
    }
    s->stmts[s->nstmts++] = (struct sqlite_cached){ sql, *st };
    return BACKEND_OK;
}

int sqlite_stmt(struct sqlite_backend *s, const char *job, const char *what, const char *sql, sqlite3_stmt **st,
                const struct sqlite_val *v, int n)
{
    int rc = cached(s, job, what, sql, st);

    if (rc < 0)
        return rc;
    rc = SQLITE_OK;
    for (int i = 0; i < n && rc == SQLITE_OK; i++) {
        if (v[i].is_int)
            rc = sqlite3_bind_int64(*st, i + 1, v[i].num);
        else if (v[i].text)
            rc = sqlite3_bind_text(*st, i + 1, v[i].text, -1, SQLITE_STATIC);
        else
            rc = sqlite3_bind_null(*st, i + 1);
    }
    if (rc != SQLITE_OK) {
        int err = sqlite_fail(s, job, what, rc);
        sqlite_stmt_done(*st);
        *st = NULL;
        return err;
    }
    return BACKEND_OK;
}

int sqlite_stmt_args(struct sqlite_backend *s, const char *what, const char *sql, sqlite3_stmt **st,
                     const char *const *args)
{
    int rc = cached(s, s->base.job, what, sql, st);

    if (rc < 0)
        return rc;
    for (int i = 0; args && args[i]; i++) {
        rc = sqlite3_bind_text(*st, i + 1, args[i], -1, SQLITE_STATIC);
        if (rc != SQLITE_OK) {
            int err = sqlite_fail(s, s->base.job, what, rc);
            sqlite_stmt_done(*st);
            *st = NULL;
            return err;
        }
    }
    return BACKEND_OK;
}

void sqlite_stmt_done(sqlite3_stmt *st)
{
    /* reset returns the last step's error, which the caller has handled. */
    (void)sqlite3_reset(st);
    /* The bound texts are borrowed from a job that is about to be freed. */
    (void)sqlite3_clear_bindings(st);
}

int sqlite_exec(struct sqlite_backend *s, const char *what, const char *sql, const char *const *args)
{
    sqlite3_stmt *st;
    int rc = sqlite_stmt_args(s, what, sql, &st, args);
    if (rc < 0)
        return rc;
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rc = sqlite_fail(s, s->base.job, what, rc);
    } else {
        rc = BACKEND_OK;
    }
    sqlite_stmt_done(st);
    return rc;
}

void sqlite_rollback(struct sqlite_backend *s)
{
    /* Best effort after a failure already logged; a failed ROLLBACK means
     * SQLite rolled back by itself. */
    (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

const char *sqlite_col(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static void sqlite_close(struct backend *b);

static struct backend *sqlite_open(const struct config *conf)
{
    struct sqlite_backend *s = xcalloc(1, sizeof(*s));
    const char *path = conf->storage.sqlite_path;
    int rc;

    s->base.ops = &backend_sqlite;
    s->base.job = "-";
    /* Only the main thread of a worker touches SQLite (the ZeroMQ I/O
     * thread never does), so its mutexes and its allocation statistics
     * (one more mutex per malloc) are pure cost. Must come before the
     * library initializes; a second open in the same process gets
     * SQLITE_MISUSE here and keeps the same settings. */
    (void)sqlite3_config(SQLITE_CONFIG_SINGLETHREAD);
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
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
                const char *mode = sqlite_col(st, 0);
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
    /* synchronous=NORMAL in WAL mode: a commit is in the WAL file (the OS
     * page cache) before the job is answered, and the WAL is fsynced at
     * checkpoints only. That survives any process crash; a power loss can
     * roll back the last transactions, never corrupt the file. FULL adds
     * an fsync per commit (parley.conf.example "sqlite_synchronous"). */
    if (sqlite_exec(s, "synchronous",
                    strcmp(conf->storage.sqlite_synchronous, "full") == 0 ? "PRAGMA synchronous=FULL"
                                                                          : "PRAGMA synchronous=NORMAL",
                    NULL) < 0)
        goto fail;
    /* Checkpoint every SQLITE_WAL_PAGES pages instead of SQLite's 1000: the
     * archive appends, so the same few tail pages are rewritten commit after
     * commit; a checkpoint copies each distinct page once, and its fsync was
     * a third of a worker's time at 1000. The WAL then peaks near 40 MB. */
    if (sqlite_exec(s, "wal_autocheckpoint", "PRAGMA wal_autocheckpoint=" SQLITE_WAL_PAGES_STR, NULL) < 0)
        goto fail;
    log_info("sqlite database %s open (WAL, synchronous %s, busy_timeout %d ms)", path,
             conf->storage.sqlite_synchronous, SQLITE_BUSY_MS);
    return &s->base;
fail:
    sqlite_close(&s->base);
    return NULL;
}

static void sqlite_close(struct backend *b)
{
    struct sqlite_backend *s;
    if (!b)
        return;
    s = sqlite_from_base(b);
    for (size_t i = 0; i < s->nstmts; i++)
        sqlite3_finalize(s->stmts[i].st);
    free(s->stmts);
    /* Every statement is finalized now, so close does not defer. */
    if (sqlite3_close(s->db) != SQLITE_OK)
        log_error("sqlite close: %s", sqlite3_errmsg(s->db));
    free(s);
}

static int is_applied(struct sqlite_backend *s, const struct migration *m, int *applied)
{
    const struct sqlite_val v[] = { SQ_INT(m->version) };
    sqlite3_stmt *st;
    int rc = sqlite_stmt(s, s->base.job, "schema_migrations lookup", "SELECT 1 FROM schema_migrations WHERE version = ?1",
                         &st, v, 1);

    if (rc < 0)
        return rc;
    rc = sqlite3_step(st);
    *applied = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        rc = BACKEND_OK;
    else
        rc = sqlite_fail(s, s->base.job, "schema_migrations lookup", rc);
    sqlite_stmt_done(st);
    return rc;
}

static int record(struct sqlite_backend *s, const struct migration *m)
{
    const struct sqlite_val v[] = { SQ_INT(m->version), SQ_TEXT(m->file) };
    sqlite3_stmt *st;
    int rc = sqlite_stmt(s, s->base.job, "schema_migrations insert",
                         "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)", &st, v, 2);

    if (rc < 0)
        return rc;
    rc = sqlite3_step(st);
    rc = rc == SQLITE_DONE ? BACKEND_OK : sqlite_fail(s, s->base.job, "schema_migrations insert", rc);
    sqlite_stmt_done(st);
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
    rc = sqlite_exec(s, "migration begin", "BEGIN IMMEDIATE", NULL);
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
        sqlite_rollback(s);
        return rc;
    }
    return sqlite_exec(s, "migration commit", "COMMIT", NULL);
}

static int sqlite_migrate(struct backend *b, const struct migration *m, size_t n)
{
    struct sqlite_backend *s = sqlite_from_base(b);
    size_t count = 0;
    int rc = sqlite_exec(s, "schema_migrations create",
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
    .write = sqlite_write,
    .last_get = sqlite_last_get,
    .offline_get = sqlite_offline_get,
    .archive_query = sqlite_archive_query,
    .archive_purge = sqlite_archive_purge,
};
