/*
 * The PostgreSQL backend (libpq), for production. Every statement that
 * carries a value goes through PQexecParams; the only PQexec is for the
 * migration files themselves, which are trusted text that may hold several
 * statements (PQexecParams accepts one).
 *
 * Connection loss: a statement that fails with the connection gone
 * (PQstatus CONNECTION_BAD, or SQLSTATE class 08 or 57P: the server is
 * ending the session) triggers one immediate reconnect, and the whole
 * operation is retried once (user_add's retry treats "exists with exactly
 * these credentials" as its own earlier insert, see pg_user_add). While the
 * database stays down, jobs are answered "unavailable" at once and a new
 * connection is attempted only when the backoff has passed: 100 ms, doubling
 * per failed attempt up to 5 s, so a dead server costs neither the worker's
 * heartbeats nor a connect storm. libpq's connect_timeout (5 s unless the
 * conninfo says otherwise) bounds each attempt. Batched writes retry their
 * whole transaction instead (pg_batch.c).
 *
 * This file holds the connection, the helpers the operations share (pg.h)
 * and migrations; the operations are in pg_jobs.c and pg_batch.c.
 */
#include "pg.h"
#include "config.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_BACKOFF_MIN_MS 100u
#define PG_BACKOFF_MAX_MS 5000u
/* Key of the session-level advisory lock that serializes migrations
 * across workers: "parley" in ASCII. */
#define PG_MIGRATE_LOCK "123563833845113"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* libpq's message without its trailing newline, for one log line. */
static const char *one_line(const char *msg, char *out, size_t outsz)
{
    size_t n = msg ? strcspn(msg, "\n") : 0;
    if (n >= outsz)
        n = outsz - 1;
    memcpy(out, msg ? msg : "", n);
    out[n] = '\0';
    return out;
}

static void on_notice(void *arg, const char *msg)
{
    char line[512];
    (void)arg;
    log_debug("postgresql notice: %s", one_line(msg, line, sizeof(line)));
}

static PGconn *connect_db(const char *conninfo)
{
    /* Our defaults come before dbname: an expanded conninfo overrides them. */
    static const char *const keys[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *vals[] = { "5", "parley-storage", conninfo, NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c && PQstatus(c) == CONNECTION_OK)
        PQsetNoticeProcessor(c, on_notice, NULL);
    return c;
}

int pg_ensure(struct pg_backend *pg)
{
    char line[512];
    double now;

    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK)
        return BACKEND_OK;
    now = now_s();
    if (now < pg->next_try) {
        /* Each connection attempt logs a warning; the jobs in between only debug. */
        log_debug("job=%s PostgreSQL unavailable; next connection attempt in %.0f ms", pg->base.job,
                 (pg->next_try - now) * 1000);
        return BACKEND_ERR_UNAVAILABLE;
    }
    PQfinish(pg->conn);
    pg->conn = connect_db(pg->conninfo);
    pg->is_prepared = 0;   /* prepared statements live in the session */
    if (pg->conn && PQstatus(pg->conn) == CONNECTION_OK) {
        log_info("connected to PostgreSQL (server %d)", PQserverVersion(pg->conn));
        pg->backoff_ms = 0;
        pg->next_try = 0;
        return BACKEND_OK;
    }
    pg->backoff_ms = pg->backoff_ms ? pg->backoff_ms * 2 : PG_BACKOFF_MIN_MS;
    if (pg->backoff_ms > PG_BACKOFF_MAX_MS)
        pg->backoff_ms = PG_BACKOFF_MAX_MS;
    pg->next_try = now + pg->backoff_ms / 1000.0;
    log_warn("job=%s cannot connect to PostgreSQL: %s; next attempt in %u ms", pg->base.job,
             one_line(pg->conn ? PQerrorMessage(pg->conn) : "out of memory", line, sizeof(line)),
             pg->backoff_ms);
    return BACKEND_ERR_UNAVAILABLE;
}

int pg_fail(struct pg_backend *pg, const char *job, const char *what, PGresult *res)
{
    char line[512];
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    int rc = BACKEND_ERR_INTERNAL;

    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        log_warn("job=%s %s: connection to PostgreSQL lost: %s", job, what,
                 one_line(PQerrorMessage(pg->conn), line, sizeof(line)));
        rc = BACKEND_ERR_UNAVAILABLE;
    } else if (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)) {
        /* Connection exception, or the server ending this session (admin
         * shutdown, crash, terminate): libpq may not have noticed yet. */
        log_warn("job=%s %s: PostgreSQL is ending the connection: SQLSTATE %s: %s", job, what, state,
                 one_line(msg ? msg : PQerrorMessage(pg->conn), line, sizeof(line)));
        rc = BACKEND_ERR_UNAVAILABLE;
    } else {
        log_error("job=%s %s: SQLSTATE %s: %s", job, what, state ? state : "?",
                  one_line(msg ? msg : PQerrorMessage(pg->conn), line, sizeof(line)));
    }
    PQclear(res);
    return rc;
}

int pg_query(struct pg_backend *pg, const char *what, const char *sql, int n, const char *const *args,
             ExecStatusType want, PGresult **res)
{
    PGresult *r = PQexecParams(pg->conn, sql, n, NULL, args, NULL, NULL, 0);
    *res = NULL;
    if (PQresultStatus(r) != want)
        return pg_fail(pg, pg->base.job, what, r);
    *res = r;
    return BACKEND_OK;
}

int pg_command(struct pg_backend *pg, const char *what, const char *sql, int n, const char *const *args)
{
    PGresult *res;
    int rc = pg_query(pg, what, sql, n, args, PGRES_COMMAND_OK, &res);
    PQclear(res);
    return rc;
}

int pg_run(struct pg_backend *pg, pg_op op, void *arg)
{
    int rc = pg_ensure(pg);
    if (rc < 0)
        return rc;
    rc = op(pg, arg, 0);
    if (rc == BACKEND_ERR_UNAVAILABLE) {
        /* Only a lost (or ending) connection gives UNAVAILABLE here. */
        PQfinish(pg->conn);
        pg->conn = NULL;
        pg->next_try = 0;   /* the first attempt after a loss is immediate */
        if (pg_ensure(pg) == BACKEND_OK) {
            log_info("job=%s retrying once on the new connection", pg->base.job);
            rc = op(pg, arg, 1);
        }
    }
    return rc;
}

static struct backend *pg_open(const struct config *conf)
{
    struct pg_backend *pg = xcalloc(1, sizeof(*pg));
    char line[512];

    pg->base.ops = &backend_pg;
    pg->base.job = "-";
    pg->conninfo = conf->storage.pg_conninfo;
    pg->conn = connect_db(pg->conninfo);
    if (!pg->conn || PQstatus(pg->conn) != CONNECTION_OK) {
        /* At start-up there is nothing to serve yet: exit and let the
         * supervisor restart us, rather than run without a schema. */
        log_error("cannot connect to PostgreSQL: %s",
                  one_line(pg->conn ? PQerrorMessage(pg->conn) : "out of memory", line, sizeof(line)));
        PQfinish(pg->conn);
        free(pg);
        return NULL;
    }
    log_info("connected to PostgreSQL (server %d)", PQserverVersion(pg->conn));
    return &pg->base;
}

static void pg_close(struct backend *b)
{
    struct pg_backend *pg;
    if (!b)
        return;
    pg = pg_from_base(b);
    PQfinish(pg->conn);
    free(pg);
}

static int apply_one(struct pg_backend *pg, const struct migration *m, int *applied_now)
{
    char version[16];
    const char *args[] = { version, m->file };
    PGresult *res;
    int rc;

    *applied_now = 0;
    snprintf(version, sizeof(version), "%u", m->version);
    if ((rc = pg_command(pg, "migration begin", "BEGIN", 0, NULL)) < 0)
        return rc;
    rc = pg_query(pg, "schema_migrations lookup", "SELECT 1 FROM schema_migrations WHERE version = $1::integer", 1,
               args, PGRES_TUPLES_OK, &res);
    if (rc < 0)
        goto out;
    if (PQntuples(res) > 0) {
        PQclear(res);
        goto out;
    }
    PQclear(res);
    res = PQexec(pg->conn, m->sql);   /* trusted file, several statements: see the top */
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        char what[300];
        snprintf(what, sizeof(what), "migration %u (%s)", m->version, m->file);
        rc = pg_fail(pg, pg->base.job, what, res);
        goto out;
    }
    PQclear(res);
    rc = pg_command(pg, "schema_migrations insert",
                 "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2)", 2, args);
    if (rc < 0)
        goto out;
    *applied_now = 1;
out:
    if (rc < 0) {
        /* Best effort: the failure is logged, and a lost connection rolls
         * back by itself. */
        PQclear(PQexec(pg->conn, "ROLLBACK"));
        *applied_now = 0;
        return rc;
    }
    return pg_command(pg, "migration commit", "COMMIT", 0, NULL);
}

static int pg_migrate(struct backend *b, const struct migration *m, size_t n)
{
    struct pg_backend *pg = pg_from_base(b);
    const char *lock[] = { PG_MIGRATE_LOCK };
    PGresult *res;
    size_t count = 0;
    int rc;

    /* Session-level lock: a second worker waits here until the first has
     * applied everything, then finds nothing left to do. It also covers
     * the CREATE TABLE IF NOT EXISTS, which is not safe run concurrently. */
    rc = pg_query(pg, "migration lock", "SELECT pg_advisory_lock($1::bigint)", 1, lock, PGRES_TUPLES_OK, &res);
    if (rc < 0)
        return rc;
    PQclear(res);
    rc = pg_command(pg, "schema_migrations create",
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 " version integer PRIMARY KEY,"
                 " name text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 0, NULL);
    for (size_t i = 0; rc == BACKEND_OK && i < n; i++) {
        int now = 0;
        rc = apply_one(pg, &m[i], &now);
        if (now) {
            log_info("migration %u (%s) applied", m[i].version, m[i].file);
            count++;
        }
    }
    /* Fresh statistics for the planner: a new schema (or a backfill such
     * as 007's) leaves tables whose row estimates are those of empty ones,
     * and until autovacuum gets to them the batch statements' "user_id =
     * ANY (...)" would scan users sequentially. */
    if (rc == BACKEND_OK && count > 0)
        rc = pg_command(pg, "analyze", "ANALYZE", 0, NULL);
    if (pg_query(pg, "migration unlock", "SELECT pg_advisory_unlock($1::bigint)", 1, lock, PGRES_TUPLES_OK, &res) == 0)
        PQclear(res);
    if (rc == BACKEND_OK)
        log_info("schema at version %u (%zu migration%s applied now)", n ? m[n - 1].version : 0, count,
                 count == 1 ? "" : "s");
    return rc;
}

const char *pg_value(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

int64_t pg_int(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

const struct backend_ops backend_pg = {
    .name = "postgresql",
    .migration_suffix = "pg",
    .open = pg_open,
    .close = pg_close,
    .migrate = pg_migrate,
    .user_add = pg_user_add,
    .user_del = pg_user_del,
    .user_list = pg_user_list,
    .cred_get = pg_cred_get,
    .roster_get = pg_roster_get,
    .write = pg_write,
    .last_get = pg_last_get,
    .offline_get = pg_offline_get,
    .archive_query = pg_archive_query,
    .archive_purge = pg_archive_purge,
};
