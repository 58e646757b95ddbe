/*
 * The PostgreSQL backend (libpq), for production. Every statement that
 * carries a value goes through PQexecParams; the only PQexec is for the
 * migration files themselves, which are trusted text that may hold several
 * statements (PQexecParams accepts one).
 *
 * Connection loss: a statement that fails with the connection gone
 * (PQstatus CONNECTION_BAD) triggers one immediate reconnect, and the whole
 * operation is retried once (user_add's retry treats "exists with exactly
 * these credentials" as its own earlier insert, see pg_user_add). While the
 * database stays down, jobs are answered "unavailable" at once and a new
 * connection is attempted only when the backoff has passed: 100 ms, doubling
 * per failed attempt up to 5 s, so a dead server costs neither the worker's
 * heartbeats nor a connect storm. libpq's connect_timeout (5 s unless the
 * conninfo says otherwise) bounds each attempt.
 */
#include "backend.h"
#include "buf.h"
#include "config.h"
#include "log.h"
#include "util.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_BACKOFF_MIN_MS 100u
#define PG_BACKOFF_MAX_MS 5000u
/* Key of the session-level advisory lock that serializes migrations
 * across workers: "parley" in ASCII. */
#define PG_MIGRATE_LOCK "123563833845113"

struct pg_backend {
    struct backend base;
    const char *conninfo;    /* borrowed from the config */
    PGconn *conn;
    unsigned backoff_ms;     /* 0 while connected */
    double next_try;         /* monotonic seconds; no connect attempt before */
};

static struct pg_backend *from_base(struct backend *b)
{
    return (struct pg_backend *)b;
}

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

/* Makes sure there is a connection, honouring the backoff. */
static int ensure(struct pg_backend *pg)
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

/* Logs a failed statement once and maps it. Takes and clears res. */
static int fail(struct pg_backend *pg, const char *what, PGresult *res)
{
    char line[512];
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    int rc = BACKEND_ERR_INTERNAL;

    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        log_warn("job=%s %s: connection to PostgreSQL lost: %s", pg->base.job, what,
                 one_line(PQerrorMessage(pg->conn), line, sizeof(line)));
        rc = BACKEND_ERR_UNAVAILABLE;
    } else {
        log_error("job=%s %s: SQLSTATE %s: %s", pg->base.job, what, state ? state : "?",
                  one_line(msg ? msg : PQerrorMessage(pg->conn), line, sizeof(line)));
    }
    PQclear(res);
    return rc;
}

/* PQexecParams with text parameters; *res is the result when it has the
 * expected status, else the failure is logged and mapped. */
static int query(struct pg_backend *pg, const char *what, const char *sql, int n, const char *const *args,
                 ExecStatusType want, PGresult **res)
{
    PGresult *r = PQexecParams(pg->conn, sql, n, NULL, args, NULL, NULL, 0);
    *res = NULL;
    if (PQresultStatus(r) != want)
        return fail(pg, what, r);
    *res = r;
    return BACKEND_OK;
}

static int command(struct pg_backend *pg, const char *what, const char *sql, int n, const char *const *args)
{
    PGresult *res;
    int rc = query(pg, what, sql, n, args, PGRES_COMMAND_OK, &res);
    PQclear(res);
    return rc;
}

/* One operation, given its arguments; retry is 1 on the second run after a reconnect. */
typedef int (*pg_op)(struct pg_backend *pg, void *arg, int retry);

static int run(struct pg_backend *pg, pg_op op, void *arg)
{
    int rc = ensure(pg);
    if (rc < 0)
        return rc;
    rc = op(pg, arg, 0);
    if (rc == BACKEND_ERR_UNAVAILABLE && PQstatus(pg->conn) == CONNECTION_BAD) {
        pg->next_try = 0;   /* the first attempt after a loss is immediate */
        if (ensure(pg) == BACKEND_OK) {
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
    pg = from_base(b);
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
    if ((rc = command(pg, "migration begin", "BEGIN", 0, NULL)) < 0)
        return rc;
    rc = query(pg, "schema_migrations lookup", "SELECT 1 FROM schema_migrations WHERE version = $1::integer", 1,
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
        rc = fail(pg, what, res);
        goto out;
    }
    PQclear(res);
    rc = command(pg, "schema_migrations insert",
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
    return command(pg, "migration commit", "COMMIT", 0, NULL);
}

static int pg_migrate(struct backend *b, const struct migration *m, size_t n)
{
    struct pg_backend *pg = from_base(b);
    const char *lock[] = { PG_MIGRATE_LOCK };
    PGresult *res;
    size_t count = 0;
    int rc;

    /* Session-level lock: a second worker waits here until the first has
     * applied everything, then finds nothing left to do. It also covers
     * the CREATE TABLE IF NOT EXISTS, which is not safe run concurrently. */
    if ((rc = query(pg, "migration lock", "SELECT pg_advisory_lock($1::bigint)", 1, lock, PGRES_TUPLES_OK, &res)) < 0)
        return rc;
    PQclear(res);
    rc = command(pg, "schema_migrations create",
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
    if (query(pg, "migration unlock", "SELECT pg_advisory_unlock($1::bigint)", 1, lock, PGRES_TUPLES_OK, &res) == 0)
        PQclear(res);
    if (rc == BACKEND_OK)
        log_info("schema at version %u (%zu migration%s applied now)", n ? m[n - 1].version : 0, count,
                 count == 1 ? "" : "s");
    return rc;
}

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
    rc = query(pg, "cred_get", "SELECT cred_sha1, cred_sha256 FROM users WHERE user_id = $1", 1, args,
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
    int rc = query(pg, "user_add",
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

    /* One statement, so one implicit transaction: the data-modifying CTEs
     * run whether or not the user row exists. A retry after a lost
     * connection may find the row already gone and say not-found; the
     * account is gone either way. */
    (void)retry;
    rc = query(pg, "user_del",
               "WITH g AS (DELETE FROM roster_groups WHERE user_id = $1),"
               " i AS (DELETE FROM roster_items WHERE user_id = $1)"
               " DELETE FROM users WHERE user_id = $1",
               1, args, PGRES_COMMAND_OK, &res);
    if (rc < 0)
        return rc;
    rc = strcmp(PQcmdTuples(res), "0") == 0 ? BACKEND_ERR_NOT_FOUND : BACKEND_OK;
    PQclear(res);
    return rc;
}

static int op_user_list(struct pg_backend *pg, void *arg, int retry)
{
    struct user_args *a = arg;
    PGresult *res;
    int rc;

    (void)retry;   /* nothing is appended before the query succeeds */
    /* COLLATE "C": byte order, the same as SQLite's, whatever the
     * database's locale. */
    rc = query(pg, "user_list", "SELECT user_id FROM users ORDER BY user_id COLLATE \"C\"", 0, NULL,
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

static const char *value(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

static int op_roster_get(struct pg_backend *pg, void *arg, int retry)
{
    struct user_args *a = arg;
    const char *args[] = { a->user };
    PGresult *res;
    int rc;

    (void)retry;   /* nothing is added to the roster before the query succeeds */
    /* One query: the LEFT JOIN keeps contacts without groups, and ordering
     * by jid keeps each contact's group rows together. */
    rc = query(pg, "roster_get",
               "SELECT i.jid, i.name, i.subscription, i.ask, g.grp"
               " FROM roster_items i LEFT JOIN roster_groups g"
               "   ON g.user_id = i.user_id AND g.jid = i.jid"
               " WHERE i.user_id = $1 ORDER BY i.jid COLLATE \"C\", g.grp COLLATE \"C\"",
               1, args, PGRES_TUPLES_OK, &res);
    if (rc < 0)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        struct roster *r = a->roster;
        struct roster_item *it = r->nitems ? &r->items[r->nitems - 1] : NULL;
        if (!it || strcmp(it->jid, PQgetvalue(res, i, 0)) != 0)
            it = backend_roster_add(r, PQgetvalue(res, i, 0), value(res, i, 1), value(res, i, 2), value(res, i, 3));
        if (value(res, i, 4))
            backend_roster_add_group(it, value(res, i, 4));
    }
    PQclear(res);
    return BACKEND_OK;
}

static int pg_user_add(struct backend *b, const char *user, const char *cred_sha1, const char *cred_sha256)
{
    struct user_args a = { .user = user, .sha1 = cred_sha1, .sha256 = cred_sha256 };
    return run(from_base(b), op_user_add, &a);
}

static int pg_user_del(struct backend *b, const char *user)
{
    struct user_args a = { .user = user };
    return run(from_base(b), op_user_del, &a);
}

static int pg_user_list(struct backend *b, struct buf *out)
{
    struct user_args a = { .list = out };
    return run(from_base(b), op_user_list, &a);
}

static int pg_cred_get(struct backend *b, const char *user, char **sha1, char **sha256)
{
    struct user_args a = { .user = user, .out_sha1 = sha1, .out_sha256 = sha256 };
    *sha1 = *sha256 = NULL;
    return run(from_base(b), op_cred_get, &a);
}

static int pg_roster_get(struct backend *b, const char *user, struct roster *r)
{
    struct user_args a = { .user = user, .roster = r };
    return run(from_base(b), op_roster_get, &a);
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
};
