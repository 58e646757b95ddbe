/*
 * Bench set-up straight into the store; see db.h. SQL is parameterised
 * (STYLE.md "Errors"); account names are built from the validated prefix.
 */
#include "db.h"
#include "buf.h"
#include "util.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct db {
    sqlite3 *lite;
    PGconn *pg;
};

static void set_err(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

struct db *db_open(const char *spec, char *err, size_t errsz)
{
    struct db *d = xcalloc(1, sizeof(*d));
    if (strncmp(spec, "sqlite:", 7) == 0) {
        /* No CREATE: the storage worker makes the file and its schema; a
         * missing file means Parley has not run there yet. */
        if (sqlite3_open_v2(spec + 7, &d->lite, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
            set_err(err, errsz, "%s: %s", spec + 7, d->lite ? sqlite3_errmsg(d->lite) : "cannot open");
            db_close(d);
            return NULL;
        }
        sqlite3_busy_timeout(d->lite, 30000);   /* the storage workers write meanwhile */
        return d;
    }
    if (strncmp(spec, "pg:", 3) == 0) {
        d->pg = PQconnectdb(spec + 3);
        if (PQstatus(d->pg) != CONNECTION_OK) {
            set_err(err, errsz, "%s: %s", spec + 3, PQerrorMessage(d->pg));
            db_close(d);
            return NULL;
        }
        return d;
    }
    set_err(err, errsz, "%s: expected sqlite:PATH or pg:CONNINFO", spec);
    free(d);
    return NULL;
}

void db_close(struct db *d)
{
    if (!d)
        return;
    if (d->lite)
        sqlite3_close(d->lite);
    if (d->pg)
        PQfinish(d->pg);
    free(d);
}

static int lite_exec(struct db *d, const char *sql, char *err, size_t errsz)
{
    char *msg = NULL;
    if (sqlite3_exec(d->lite, sql, NULL, NULL, &msg) != SQLITE_OK) {
        set_err(err, errsz, "%s: %s", sql, msg ? msg : "failed");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int lite_create(struct db *d, const char *prefix, long first, long count, const char *domain,
                       const char *c1, const char *c256, char *err, size_t errsz)
{
    static const char upsert[] =
        "INSERT INTO users (user_id, cred_sha1, cred_sha256) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (user_id) DO UPDATE SET cred_sha1 = excluded.cred_sha1, cred_sha256 = excluded.cred_sha256";
    static const char *const clear[] = {
        "DELETE FROM offline_messages WHERE user_id GLOB ?1",
        "DELETE FROM archive WHERE user_id GLOB ?1",
    };
    sqlite3_stmt *st = NULL;
    char *pattern = xasprintf("%s*@%s", prefix, domain);
    int rc = -1;

    if (lite_exec(d, "BEGIN IMMEDIATE", err, errsz) < 0)
        goto out;
    if (sqlite3_prepare_v2(d->lite, upsert, -1, &st, NULL) != SQLITE_OK)
        goto sql_fail;
    sqlite3_bind_text(st, 2, c1, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, c256, -1, SQLITE_STATIC);
    for (long i = first; i < first + count; i++) {
        char user[400];
        snprintf(user, sizeof(user), "%s%ld@%s", prefix, i, domain);
        sqlite3_bind_text(st, 1, user, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto sql_fail;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    st = NULL;
    for (size_t k = 0; k < sizeof(clear) / sizeof(clear[0]); k++) {
        if (sqlite3_prepare_v2(d->lite, clear[k], -1, &st, NULL) != SQLITE_OK)
            goto sql_fail;
        sqlite3_bind_text(st, 1, pattern, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto sql_fail;
        sqlite3_finalize(st);
        st = NULL;
    }
    if (lite_exec(d, "COMMIT", err, errsz) < 0)
        goto out;
    rc = 0;
    goto out;
sql_fail:
    set_err(err, errsz, "sqlite: %s", sqlite3_errmsg(d->lite));
    (void)lite_exec(d, "ROLLBACK", err + strlen(err), errsz - strlen(err)); /* the error above is the one to report */
out:
    sqlite3_finalize(st);
    free(pattern);
    return rc;
}

static int pg_ok(PGresult *res, ExecStatusType want, const char *what, char *err, size_t errsz)
{
    int ok = PQresultStatus(res) == want;
    if (!ok)
        set_err(err, errsz, "%s: %s", what, PQresultErrorMessage(res));
    PQclear(res);
    return ok ? 0 : -1;
}

static int pg_create(struct db *d, const char *prefix, long first, long count, const char *domain,
                     const char *c1, const char *c256, char *err, size_t errsz)
{
    static const char upsert[] =
        "INSERT INTO users (user_id, cred_sha1, cred_sha256) "
        "SELECT $1 || g || '@' || $2, $3, $4 FROM generate_series($5::bigint, $6::bigint) AS g "
        "ON CONFLICT (user_id) DO UPDATE SET cred_sha1 = excluded.cred_sha1, cred_sha256 = excluded.cred_sha256, "
        /* Their offline messages are deleted below: the queue length
         * (migration 007) goes with them. */
        "offline_count = 0";
    char lo[32], hi[32];
    snprintf(lo, sizeof(lo), "%ld", first);
    snprintf(hi, sizeof(hi), "%ld", first + count - 1);
    /* LIKE pattern: the prefix may hold '_', a LIKE wildcard; escape it. */
    struct buf p;
    buf_init(&p);
    for (const char *s = prefix; *s; s++) {
        if (*s == '_' || *s == '%' || *s == '\\')
            buf_append(&p, "\\", 1);
        buf_append(&p, s, 1);
    }
    buf_printf(&p, "%%@%s", domain);
    const char *up[] = { prefix, domain, c1, c256, lo, hi };
    const char *pat[] = { p.data };
    int rc = -1;

    if (pg_ok(PQexec(d->pg, "BEGIN"), PGRES_COMMAND_OK, "BEGIN", err, errsz) < 0)
        goto out;
    if (pg_ok(PQexecParams(d->pg, upsert, 6, NULL, up, NULL, NULL, 0), PGRES_COMMAND_OK, "insert users", err,
              errsz) < 0 ||
        pg_ok(PQexecParams(d->pg, "DELETE FROM offline_messages WHERE user_id LIKE $1", 1, NULL, pat, NULL, NULL,
                           0),
              PGRES_COMMAND_OK, "clear offline", err, errsz) < 0 ||
        pg_ok(PQexecParams(d->pg, "DELETE FROM archive WHERE user_id LIKE $1", 1, NULL, pat, NULL, NULL, 0),
              PGRES_COMMAND_OK, "clear archive", err, errsz) < 0) {
        PQclear(PQexec(d->pg, "ROLLBACK"));
        goto out;
    }
    if (pg_ok(PQexec(d->pg, "COMMIT"), PGRES_COMMAND_OK, "COMMIT", err, errsz) < 0)
        goto out;
    /* A bulk load leaves the planner with the estimates of a near-empty
     * users table, and the server's batches would scan it sequentially
     * until autovacuum (a minute away) analyzes it: do it now, as an
     * operator would after an import. */
    if (pg_ok(PQexec(d->pg, "ANALYZE users, offline_messages, archive"), PGRES_COMMAND_OK, "ANALYZE", err, errsz) < 0)
        goto out;
    rc = 0;
out:
    buf_fini(&p);
    return rc;
}

int db_create_accounts(struct db *d, const char *prefix, long first, long count, const char *domain,
                       const char *cred_sha1, const char *cred_sha256, char *err, size_t errsz)
{
    if (d->lite)
        return lite_create(d, prefix, first, count, domain, cred_sha1, cred_sha256, err, errsz);
    return pg_create(d, prefix, first, count, domain, cred_sha1, cred_sha256, err, errsz);
}

static long long count_rows(struct db *d, const char *sql, char *err, size_t errsz)
{
    long long n = -1;
    if (d->lite) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(d->lite, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        else
            set_err(err, errsz, "sqlite: %s", sqlite3_errmsg(d->lite));
        sqlite3_finalize(st);
        return n;
    }
    PGresult *res = PQexec(d->pg, sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    else
        set_err(err, errsz, "%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    return n;
}

long long db_count_offline(struct db *d, char *err, size_t errsz)
{
    return count_rows(d, "SELECT count(*) FROM offline_messages", err, errsz);
}

long long db_count_archive(struct db *d, char *err, size_t errsz)
{
    return count_rows(d, "SELECT count(*) FROM archive", err, errsz);
}
