/*
 * Batched writes on PostgreSQL (backend_ops.write): one transaction, a
 * savepoint per write, prepared statements and libpq's pipeline mode, so a
 * batch of N writes costs one round trip per PIPE_WINDOW writes instead of
 * three per write, and the server neither parses nor plans them.
 *
 * What is sent, per round of at most PIPE_WINDOW writes:
 *   [BEGIN]  (SAVEPOINT w; <the write's statements>; RELEASE w)...  [COMMIT]
 * with a Sync after every PIPE_CHUNK writes and at the end; BEGIN in the
 * first round only, COMMIT after the last write only. Every write is a
 * fixed list of statements whose outcome is read from the first one's
 * result: nothing in a write depends on an earlier result, which is what
 * lets it be pipelined. So the statements that store something check the
 * account in SQL (EXISTS / FROM u), and offline_put counts and inserts in
 * one statement (count, then insert: the quota).
 *
 * The offline_puts and archive_puts of a batch, most of a burst, are not
 * sent one by one but grouped first: one multi-row statement per table
 * (see "grouped writes" below); only when a grouped statement fails do its
 * writes take the path above.
 *
 * When a write's statement fails, the server skips the rest of that Sync
 * segment and refuses the later ones: the transaction is aborted (libpq
 * "Pipeline Mode", error handling). The next round starts with ROLLBACK TO
 * SAVEPOINT w, which undoes that one write and revives the transaction,
 * and sends again the writes after it.
 *
 * Transaction-level failure (the connection lost, BEGIN/SAVEPOINT/COMMIT
 * refused): we close the connection, which rolls everything back whatever
 * state the pipeline was in, and the whole batch runs once more on a new
 * one. Every write is idempotent (backend.h), so running again a batch
 * whose COMMIT did reach the server before the connection dropped changes
 * nothing. If the second run fails too, every write is "unavailable".
 */
#include "pg.h"
#include "buf.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPE_CHUNK 64      /* writes per Sync segment */
#define PIPE_WINDOW 256    /* writes sent before their results are read */

enum role { R_BEGIN, R_LOCK, R_SAVEPOINT, R_STMT, R_RELEASE, R_COMMIT, R_ROLLBACK_TO, R_SYNC };

/* One command sent and not yet read. */
struct cmd {
    enum role role;
    size_t job;            /* index into w, for R_SAVEPOINT .. R_RELEASE */
    int is_key;            /* R_STMT: its result gives the write's outcome */
    ExecStatusType want;   /* R_STMT: the status of success */
};

struct pipeline {
    struct pg_backend *pg;
    struct backend_write *w;
    struct cmd *cmds;
    size_t ncmds, cap;
    int lost;              /* a transaction-level failure happened */
    unsigned char *is_grouped;   /* per write: answered by a grouped statement */
    size_t *todo, ntodo;         /* the other writes, in order */
};

/* A user that stores something must exist (backend.h); u is that check. */
#define WITH_USER "WITH u AS (SELECT 1 FROM users WHERE user_id = $1)"

/* The statements, prepared once per connection (a write then costs the
 * server no parsing or planning). */
enum stmt {
    ST_QUOTA_LOCK, ST_SAVEPOINT, ST_RELEASE, ST_ROSTER_PUT, ST_ROSTER_GROUPS, ST_ROSTER_DEL, ST_PENDING_PUT, ST_PENDING_DEL,
    ST_LAST_SET, ST_OFFLINE_PUT, ST_OFFLINE_DEL, ST_ARCHIVE_PUT, ST_ARCHIVE_MANY, ST_OFFLINE_CHECK, ST_OFFLINE_MANY,
    ST_COUNT
};

static const struct {
    const char *name;
    const char *sql;
} stmts[ST_COUNT] = {
    /* The quota: see quota_lock. Sorted, so every transaction takes its
     * locks in the same order and two batches cannot deadlock. */
    [ST_QUOTA_LOCK] = { "parley_quota_lock",
        "SELECT count(pg_advisory_xact_lock(h)) FROM"
        " (SELECT DISTINCT hashtextextended(u, 1130) AS h FROM unnest($1::text[]) u ORDER BY 1) s" },
    [ST_SAVEPOINT] = { "parley_savepoint", "SAVEPOINT w" },
    [ST_RELEASE] = { "parley_release", "RELEASE SAVEPOINT w" },
    [ST_ROSTER_PUT] = { "parley_roster_put",
        "WITH d AS (DELETE FROM roster_groups WHERE user_id = $1 AND jid = $2),"
        " i AS (INSERT INTO roster_items (user_id, jid, name, subscription, ask)"
        "       SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM users WHERE user_id = $1)"
        "       ON CONFLICT (user_id, jid) DO UPDATE SET name = excluded.name,"
        "       subscription = excluded.subscription, ask = excluded.ask)"
        " UPDATE users SET roster_ver = $6::bigint WHERE user_id = $1" },
    /* A second statement: in the first one's CTEs the delete and this
     * insert would see the same snapshot, and an unchanged group would
     * collide. */
    [ST_ROSTER_GROUPS] = { "parley_roster_groups",
        "INSERT INTO roster_groups (user_id, jid, grp)"
        " SELECT $1, $2, g FROM unnest($3::text[]) g WHERE EXISTS (SELECT 1 FROM users WHERE user_id = $1)" },
    [ST_ROSTER_DEL] = { "parley_roster_del",
        "WITH g AS (DELETE FROM roster_groups WHERE user_id = $1 AND jid = $2),"
        " i AS (DELETE FROM roster_items WHERE user_id = $1 AND jid = $2)"
        " UPDATE users SET roster_ver = $3::bigint WHERE user_id = $1" },
    [ST_PENDING_PUT] = { "parley_pending_put",
        WITH_USER ", i AS (INSERT INTO roster_pending (user_id, jid) SELECT $1, $2 FROM u ON CONFLICT DO NOTHING)"
                  " SELECT count(*) FROM u" },
    [ST_PENDING_DEL] = { "parley_pending_del", "DELETE FROM roster_pending WHERE user_id = $1 AND jid = $2" },
    [ST_LAST_SET] = { "parley_last_set",
        WITH_USER ", i AS (INSERT INTO last_activity (user_id, since, status) SELECT $1, $2::bigint, $3 FROM u"
                  "        ON CONFLICT (user_id) DO UPDATE SET since = excluded.since, status = excluded.status)"
                  " SELECT count(*) FROM u" },
    /* Count, then insert, in one statement of this transaction: the quota.
     * A repeat of a stored id is a success even when the store is full. */
    [ST_OFFLINE_PUT] = { "parley_offline_put",
        "WITH c AS (SELECT (SELECT count(*) FROM users WHERE user_id = $1) AS known, count(*) AS n,"
        "           count(*) FILTER (WHERE id = $2) AS dup FROM offline_messages WHERE user_id = $1),"
        " i AS (INSERT INTO offline_messages (user_id, id, stamp, xml) SELECT $1, $2, $3::bigint, $4"
        "       FROM c WHERE c.known > 0 AND c.dup = 0 AND c.n < $5::bigint ON CONFLICT DO NOTHING)"
        " SELECT known, n, dup FROM c" },
    [ST_OFFLINE_DEL] = { "parley_offline_del",
        "DELETE FROM offline_messages WHERE user_id = $1 AND id = ANY ($2::text[])" },
    [ST_ARCHIVE_PUT] = { "parley_archive_put",
        WITH_USER ", i AS (INSERT INTO archive (user_id, id, peer, stamp, dir, xml)"
                  "        SELECT $1, $2, $3, $4::bigint, $5, $6 FROM u ON CONFLICT DO NOTHING)"
                  " SELECT count(*) FROM u" },
    /* The grouped forms (group_archive, group_offline): one statement for
     * many writes. The accounts are checked set-wise; the answer is the
     * known accounts among the writes' users. */
    [ST_ARCHIVE_MANY] = { "parley_archive_many",
        "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[])"
        "           AS v(user_id, id, peer, stamp, dir, xml)),"
        " k AS (SELECT user_id FROM users WHERE user_id IN (SELECT user_id FROM v)),"
        " i AS (INSERT INTO archive (user_id, id, peer, stamp, dir, xml)"
        "       SELECT v.* FROM v JOIN k USING (user_id) ON CONFLICT DO NOTHING)"
        " SELECT user_id FROM k" },
    /* Known users with their queue length (id NULL), then the (user, id)
     * pairs already stored: all group_offline needs to decide in C. */
    [ST_OFFLINE_CHECK] = { "parley_offline_check",
        "SELECT u.user_id, NULL::text, (SELECT count(*) FROM offline_messages o WHERE o.user_id = u.user_id)"
        " FROM users u WHERE u.user_id = ANY ($1::text[])"
        " UNION ALL"
        " SELECT o.user_id, o.id, 0 FROM unnest($1::text[], $2::text[]) AS v(user_id, id)"
        " JOIN offline_messages o ON o.user_id = v.user_id AND o.id = v.id" },
    [ST_OFFLINE_MANY] = { "parley_offline_many",
        "INSERT INTO offline_messages (user_id, id, stamp, xml)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) ON CONFLICT DO NOTHING" },
};

static void push(struct pipeline *p, enum role role, size_t job, int is_key, ExecStatusType want)
{
    if (p->ncmds == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->cmds = xrealloc(p->cmds, p->cap * sizeof(*p->cmds));
    }
    p->cmds[p->ncmds++] = (struct cmd){ role, job, is_key, want };
}

/* Sends sql with n text parameters; a send failure marks the pipe lost. */
static void send_sql(struct pipeline *p, const char *sql, int n, const char *const *args, enum role role, size_t job,
                     int is_key, ExecStatusType want)
{
    if (p->lost)
        return;
    if (!PQsendQueryParams(p->pg->conn, sql, n, NULL, args, NULL, NULL, 0)) {
        p->lost = 1;
        return;
    }
    push(p, role, job, is_key, want);
}

/* Sends prepared statement st with n text parameters. */
static void send_stmt(struct pipeline *p, enum stmt st, int n, const char *const *args, enum role role, size_t job,
                      int is_key, ExecStatusType want)
{
    if (p->lost)
        return;
    if (!PQsendQueryPrepared(p->pg->conn, stmts[st].name, n, args, NULL, NULL, 0)) {
        p->lost = 1;
        return;
    }
    push(p, role, job, is_key, want);
}

/* Prepares every statement of stmts on the current connection, once. */
static int prepare_all(struct pg_backend *pg)
{
    if (pg->is_prepared)
        return BACKEND_OK;
    for (int i = 0; i < ST_COUNT; i++) {
        PGresult *r = PQprepare(pg->conn, stmts[i].name, stmts[i].sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return pg_fail(pg, pg->base.job, stmts[i].name, r);
        PQclear(r);
    }
    pg->is_prepared = 1;
    return BACKEND_OK;
}

/* A PostgreSQL array literal of strings, every element quoted. */
static void array_literal(struct buf *out, const char *const *v, size_t n)
{
    buf_append(out, "{", 1);
    for (size_t i = 0; i < n; i++) {
        const char *c = v[i];
        buf_append_str(out, i ? ",\"" : "\"");
        /* Runs without a quote or backslash in one append: payloads are long. */
        while (*c) {
            size_t run = strcspn(c, "\"\\");
            buf_append(out, c, run);
            c += run;
            if (*c) {
                buf_append(out, "\\", 1);
                buf_append(out, c++, 1);
            }
        }
        buf_append(out, "\"", 1);
    }
    buf_append(out, "}", 1);
}

/* The statements of write k. */
static void send_write(struct pipeline *p, size_t k)
{
    const struct backend_write *w = &p->w[k];
    char n1[24], n2[24];
    struct buf arr;

    switch (w->kind) {
    case BW_ROSTER_PUT: {
        const struct roster_item *it = w->item;
        const char *a[] = { w->user, it->jid, it->name, it->subscription, it->ask, n1 };
        snprintf(n1, sizeof(n1), "%" PRId64, w->ver);
        send_stmt(p, ST_ROSTER_PUT, 6, a, R_STMT, k, 1, PGRES_COMMAND_OK);
        if (it->ngroups > 0) {
            const char *g[] = { w->user, it->jid, NULL };
            buf_init(&arr);
            array_literal(&arr, (const char *const *)it->groups, it->ngroups);
            g[2] = arr.data;
            send_stmt(p, ST_ROSTER_GROUPS, 3, g, R_STMT, k, 0, PGRES_COMMAND_OK);
            buf_fini(&arr);
        }
        break;
    }
    case BW_ROSTER_DEL: {
        const char *a[] = { w->user, w->jid, n1 };
        snprintf(n1, sizeof(n1), "%" PRId64, w->ver);
        send_stmt(p, ST_ROSTER_DEL, 3, a, R_STMT, k, 1, PGRES_COMMAND_OK);
        break;
    }
    case BW_PENDING_PUT:
    case BW_PENDING_DEL: {
        const char *a[] = { w->user, w->jid };
        if (w->kind == BW_PENDING_PUT)
            send_stmt(p, ST_PENDING_PUT, 2, a, R_STMT, k, 1, PGRES_TUPLES_OK);
        else
            send_stmt(p, ST_PENDING_DEL, 2, a, R_STMT, k, 1, PGRES_COMMAND_OK);
        break;
    }
    case BW_LAST_SET: {
        const char *a[] = { w->user, n1, w->text };
        snprintf(n1, sizeof(n1), "%" PRId64, w->since);
        send_stmt(p, ST_LAST_SET, 3, a, R_STMT, k, 1, PGRES_TUPLES_OK);
        break;
    }
    case BW_OFFLINE_PUT: {
        const char *a[] = { w->user, w->id, n1, w->xml, n2 };
        snprintf(n1, sizeof(n1), "%" PRId64, w->stamp);
        snprintf(n2, sizeof(n2), "%" PRId64, w->limit);
        send_stmt(p, ST_OFFLINE_PUT, 5, a, R_STMT, k, 1, PGRES_TUPLES_OK);
        break;
    }
    case BW_OFFLINE_DEL: {
        const char *a[] = { w->user, NULL };
        buf_init(&arr);
        array_literal(&arr, (const char *const *)w->ids, w->nids);
        a[1] = arr.data;
        send_stmt(p, ST_OFFLINE_DEL, 2, a, R_STMT, k, 1, PGRES_COMMAND_OK);
        buf_fini(&arr);
        break;
    }
    case BW_ARCHIVE_PUT: {
        const char *a[] = { w->user, w->id, w->jid, n1, w->text, w->xml };
        snprintf(n1, sizeof(n1), "%" PRId64, w->stamp);
        send_stmt(p, ST_ARCHIVE_PUT, 6, a, R_STMT, k, 1, PGRES_TUPLES_OK);
        break;
    }
    }
}

/* The outcome of write w from its key statement's successful result. */
static int outcome(const struct backend_write *w, PGresult *r)
{
    switch (w->kind) {
    case BW_ROSTER_PUT:
    case BW_ROSTER_DEL:
        return strcmp(PQcmdTuples(r), "0") == 0 ? BACKEND_ERR_NOT_FOUND : BACKEND_OK;
    case BW_PENDING_PUT:
    case BW_LAST_SET:
    case BW_ARCHIVE_PUT:
        return pg_int(r, 0, 0) == 0 ? BACKEND_ERR_NOT_FOUND : BACKEND_OK;
    case BW_OFFLINE_PUT:
        if (pg_int(r, 0, 0) == 0)
            return BACKEND_ERR_NOT_FOUND;
        if (pg_int(r, 0, 2) > 0)
            return BACKEND_OK;   /* a repeat: the first put stored it */
        return pg_int(r, 0, 1) >= w->limit ? BACKEND_ERR_QUOTA : BACKEND_OK;
    case BW_PENDING_DEL:
    case BW_OFFLINE_DEL:
        break;
    }
    return BACKEND_OK;
}

static const char *const kind_names[] = { "roster_put", "roster_del", "pending_put", "pending_del",
                                          "last_set", "offline_put", "offline_del", "archive_put" };

/*
 * Reads the results of every command sent in this round, Syncs included.
 * Returns the index of the write whose statement failed (the next round
 * rolls it back), or n when none did; p->lost on a transaction-level
 * failure. After a failure the server skips the rest of its Sync segment
 * and refuses every later segment (the transaction is aborted): those
 * results are read and ignored.
 */
static size_t read_round(struct pipeline *p, size_t n)
{
    size_t failed = n;

    for (size_t i = 0; i < p->ncmds && !p->lost; i++) {
        const struct cmd *c = &p->cmds[i];
        PGresult *r = PQgetResult(p->pg->conn);
        ExecStatusType st = PQresultStatus(r);

        if (!r) {
            p->lost = 1;
            break;
        }
        if (c->role == R_SYNC) {
            if (st != PGRES_PIPELINE_SYNC)
                p->lost = 1;
            PQclear(r);
            continue;
        }
        PQclear(PQgetResult(p->pg->conn));   /* the NULL that ends each command's results */
        if (failed != n) {
            PQclear(r);
        } else if (c->role == R_STMT && st == c->want) {
            if (c->is_key)
                p->w[c->job].rc = outcome(&p->w[c->job], r);
            PQclear(r);
        } else if (c->role == R_STMT) {
            int rc = pg_fail(p->pg, p->w[c->job].job, kind_names[p->w[c->job].kind], r);
            if (rc == BACKEND_ERR_UNAVAILABLE) {
                p->lost = 1;   /* not this write's fault */
            } else {
                p->w[c->job].rc = rc;
                failed = c->job;
            }
        } else if (c->role == R_LOCK && st == PGRES_TUPLES_OK) {
            PQclear(r);
        } else if (st == PGRES_COMMAND_OK && (c->role != R_COMMIT || strcmp(PQcmdStatus(r), "COMMIT") == 0)) {
            PQclear(r);
        } else {
            /* BEGIN, the lock, SAVEPOINT, RELEASE, ROLLBACK TO or COMMIT refused (a
             * COMMIT of an aborted transaction answers ROLLBACK), or the
             * connection is gone: the transaction is lost. */
            (void)pg_fail(p->pg, p->pg->base.job, "batch transaction", r);
            p->lost = 1;
        }
    }
    p->ncmds = 0;
    return p->lost ? n : failed;
}

static void sync(struct pipeline *p)
{
    if (p->lost)
        return;
    if (!PQpipelineSync(p->pg->conn)) {
        p->lost = 1;
        return;
    }
    push(p, R_SYNC, 0, 0, PGRES_PIPELINE_SYNC);
}

/*
 * The quota of offline_put is "count, then insert", which is exact only if
 * no other transaction inserts for the same user in between. The router
 * sends one user's writes one at a time (envelope.h), but nothing stops two
 * workers from holding writes of one user anyway, so under PostgreSQL's
 * READ COMMITTED the batch first takes a transaction advisory lock per
 * user it stores offline messages for: a second worker waits at its own
 * lock until we commit, and its count (a later statement, a new snapshot)
 * then sees our rows. SQLite needs nothing: BEGIN IMMEDIATE already lets
 * one writer in at a time.
 */
static void quota_lock(struct pipeline *p, size_t n)
{
    struct buf arr;
    const char **users = NULL;
    size_t nusers = 0;
    const char *args[1];

    for (size_t k = 0; k < n; k++)
        if (p->w[k].kind == BW_OFFLINE_PUT) {
            users = xrealloc(users, (nusers + 1) * sizeof(*users));
            users[nusers++] = p->w[k].user;
        }
    if (nusers == 0)
        return;
    buf_init(&arr);
    array_literal(&arr, users, nusers);
    args[0] = arr.data;
    send_stmt(p, ST_QUOTA_LOCK, 1, args, R_LOCK, 0, 0, PGRES_TUPLES_OK);
    buf_fini(&arr);
    free(users);
}

/* ---- grouped writes --------------------------------------------------------
 *
 * Most of a burst is offline_put and archive_put (three writes per offline
 * message). Instead of SAVEPOINT + statement + RELEASE each, all the
 * archive_puts of a batch go in one multi-row statement, and the
 * offline_puts in one check (counts and stored ids) plus one multi-row
 * insert, the quota decided in C in between. Each grouped statement runs
 * under its own savepoint and is waited for; when it fails, it alone is
 * rolled back and its writes run one by one afterwards, as before, so
 * every write's result stays what it would be alone. Nothing else in a
 * batch touches the archive, and user_add/user_del never share a batch
 * (jobs.c), so taking these writes out of order is invisible, except for
 * an offline_del of the same user: those users' offline_puts keep their
 * place. The quota count cannot race: quota_lock holds every such user.
 */

/* A set of (a, b) string pairs (b may be NULL) with a count each; the
 * strings are borrowed. Open addressing, never more than half full. */
struct pairs {
    struct pair {
        const char *a, *b;
        int64_t n;
    } *v;
    size_t cap;
};

static void pairs_init(struct pairs *s, size_t max)
{
    s->cap = 16;
    while (s->cap < 2 * max)
        s->cap *= 2;
    s->v = xcalloc(s->cap, sizeof(*s->v));
}

static size_t pairs_hash(const char *a, const char *b)
{
    size_t h = 1469598103934665603u;
    for (; *a; a++)
        h = (h ^ (unsigned char)*a) * 1099511628211u;
    h = (h ^ 0xff) * 1099511628211u;
    for (; b && *b; b++)
        h = (h ^ (unsigned char)*b) * 1099511628211u;
    return h;
}

/* The entry of (a, b); with add, a new one (n 0) when absent, else NULL. */
static struct pair *pairs_find(struct pairs *s, const char *a, const char *b, int add)
{
    size_t i = pairs_hash(a, b) & (s->cap - 1);

    for (; s->v[i].a; i = (i + 1) & (s->cap - 1))
        if (strcmp(s->v[i].a, a) == 0 && (b ? s->v[i].b && strcmp(s->v[i].b, b) == 0 : !s->v[i].b))
            return &s->v[i];
    if (!add)
        return NULL;
    s->v[i] = (struct pair){ a, b, 0 };
    return &s->v[i];
}

/* Sends cmd (no parameters) as a Sync segment of its own and reads it. */
static void exec_alone(struct pipeline *p, const char *sql)
{
    PGconn *c = p->pg->conn;
    PGresult *r, *s;

    if (!PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(c) || !(r = PQgetResult(c))) {
        p->lost = 1;
        return;
    }
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        (void)pg_fail(p->pg, p->pg->base.job, "batch transaction", r);
        p->lost = 1;
        return;
    }
    PQclear(r);
    PQclear(PQgetResult(c));
    s = PQgetResult(c);
    if (PQresultStatus(s) != PGRES_PIPELINE_SYNC)
        p->lost = 1;
    PQclear(s);
}

/*
 * Runs prepared statement st (n text parameters) under savepoint w and
 * waits for it. Returns its result when it has status want (the caller
 * clears it); else NULL, with p->lost set on a transaction-level failure,
 * or, when the statement alone failed (logged as what), after rolling it
 * back so that the transaction goes on.
 */
static PGresult *group_exec(struct pipeline *p, enum stmt st, int n, const char *const *args, ExecStatusType want,
                            const char *what)
{
    PGconn *c = p->pg->conn;
    PGresult *r[3] = { NULL, NULL, NULL }, *s;
    int failed = 0;

    if (p->lost)
        return NULL;
    if (!PQsendQueryPrepared(c, stmts[ST_SAVEPOINT].name, 0, NULL, NULL, NULL, 0)
        || !PQsendQueryPrepared(c, stmts[st].name, n, args, NULL, NULL, 0)
        || !PQsendQueryPrepared(c, stmts[ST_RELEASE].name, 0, NULL, NULL, NULL, 0) || !PQpipelineSync(c)) {
        p->lost = 1;
        return NULL;
    }
    for (int i = 0; i < 3; i++) {
        if (!(r[i] = PQgetResult(c))) {
            p->lost = 1;
            break;
        }
        PQclear(PQgetResult(c));   /* the NULL that ends each command's results */
    }
    if (!p->lost) {
        s = PQgetResult(c);
        if (PQresultStatus(s) != PGRES_PIPELINE_SYNC)
            p->lost = 1;
        PQclear(s);
    }
    if (!p->lost && PQresultStatus(r[0]) != PGRES_COMMAND_OK) {
        (void)pg_fail(p->pg, p->pg->base.job, "batch transaction", r[0]);
        r[0] = NULL;
        p->lost = 1;
    } else if (!p->lost && PQresultStatus(r[1]) != want) {
        failed = 1;
        if (pg_fail(p->pg, p->pg->base.job, what, r[1]) == BACKEND_ERR_UNAVAILABLE)
            p->lost = 1;
        r[1] = NULL;
    } else if (!p->lost && PQresultStatus(r[2]) != PGRES_COMMAND_OK) {
        (void)pg_fail(p->pg, p->pg->base.job, "batch transaction", r[2]);
        r[2] = NULL;
        p->lost = 1;
    }
    PQclear(r[0]);
    PQclear(r[2]);
    if (p->lost || failed) {
        PQclear(r[1]);
        if (failed && !p->lost) {
            log_info("job=%s %s failed; running those writes one by one", p->pg->base.job, what);
            exec_alone(p, "ROLLBACK TO SAVEPOINT w");
            exec_alone(p, "RELEASE SAVEPOINT w");
        }
        return NULL;
    }
    return r[1];
}

/* Array literals of the strings v[0..n) into out[0..n). */
static void literals(struct buf *out, const char **v[], size_t nv, size_t n)
{
    for (size_t j = 0; j < nv; j++) {
        buf_init(&out[j]);
        array_literal(&out[j], v[j], n);
    }
}

static void literals_fini(struct buf *out, size_t nv)
{
    for (size_t j = 0; j < nv; j++)
        buf_fini(&out[j]);
}

/* Every archive_put of the batch in one statement. */
static void group_archive(struct pipeline *p, size_t n)
{
    size_t m = 0, *ks = xcalloc(n, sizeof(*ks));
    const char **col[6];
    char (*stamps)[24] = xcalloc(n, sizeof(*stamps));
    struct buf arr[6];
    const char *args[6];
    PGresult *r;

    for (size_t k = 0; k < n; k++)
        if (p->w[k].kind == BW_ARCHIVE_PUT)
            ks[m++] = k;
    if (m == 0 || p->lost)
        goto out;
    for (int j = 0; j < 6; j++)
        col[j] = xcalloc(m, sizeof(**col));
    for (size_t i = 0; i < m; i++) {
        const struct backend_write *w = &p->w[ks[i]];
        snprintf(stamps[i], sizeof(stamps[i]), "%" PRId64, w->stamp);
        col[0][i] = w->user, col[1][i] = w->id, col[2][i] = w->jid;
        col[3][i] = stamps[i], col[4][i] = w->text, col[5][i] = w->xml;
    }
    literals(arr, col, 6, m);
    for (int j = 0; j < 6; j++)
        args[j] = arr[j].data;
    r = group_exec(p, ST_ARCHIVE_MANY, 6, args, PGRES_TUPLES_OK, "grouped archive_puts");
    literals_fini(arr, 6);
    for (int j = 0; j < 6; j++)
        free(col[j]);
    if (r) {
        struct pairs known;
        pairs_init(&known, (size_t)PQntuples(r));
        for (int i = 0; i < PQntuples(r); i++)
            pairs_find(&known, PQgetvalue(r, i, 0), NULL, 1);
        for (size_t i = 0; i < m; i++) {
            struct backend_write *w = &p->w[ks[i]];
            w->rc = pairs_find(&known, w->user, NULL, 0) ? BACKEND_OK : BACKEND_ERR_NOT_FOUND;
            p->is_grouped[ks[i]] = 1;
        }
        free(known.v);
        PQclear(r);
    }
out:
    free(stamps);
    free(ks);
}

/* Whether the batch deletes offline messages of user. */
static int has_offline_del(const struct pipeline *p, size_t n, const char *user)
{
    for (size_t k = 0; k < n; k++)
        if (p->w[k].kind == BW_OFFLINE_DEL && strcmp(p->w[k].user, user) == 0)
            return 1;
    return 0;
}

/* The offline_puts of the batch: one check, the quota in C, one insert. */
static void group_offline(struct pipeline *p, size_t n)
{
    size_t m = 0, na = 0, *ks = xcalloc(n, sizeof(*ks)), *acc = xcalloc(n, sizeof(*acc));
    const char **col[4];
    char (*stamps)[24] = xcalloc(n, sizeof(*stamps));
    struct buf arr[4];
    const char *args[4];
    struct pairs users = { 0 }, ids = { 0 };
    PGresult *r = NULL, *ins;

    for (size_t k = 0; k < n; k++)
        if (p->w[k].kind == BW_OFFLINE_PUT && !has_offline_del(p, n, p->w[k].user))
            ks[m++] = k;
    if (m == 0 || p->lost)
        goto out;
    for (int j = 0; j < 4; j++)
        col[j] = xcalloc(m, sizeof(**col));
    for (size_t i = 0; i < m; i++)
        col[0][i] = p->w[ks[i]].user, col[1][i] = p->w[ks[i]].id;
    literals(arr, col, 2, m);
    args[0] = arr[0].data, args[1] = arr[1].data;
    r = group_exec(p, ST_OFFLINE_CHECK, 2, args, PGRES_TUPLES_OK, "grouped offline_put check");
    literals_fini(arr, 2);
    if (!r)
        goto cols;

    /* Decide in order, as one by one would: unknown account, a repeat
     * (stored, or accepted earlier in this batch), the quota. */
    pairs_init(&users, (size_t)PQntuples(r));
    pairs_init(&ids, (size_t)PQntuples(r) + m);
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetisnull(r, i, 1))
            pairs_find(&users, PQgetvalue(r, i, 0), NULL, 1)->n = pg_int(r, i, 2);
        else
            pairs_find(&ids, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), 1);
    }
    for (size_t i = 0; i < m; i++) {
        struct backend_write *w = &p->w[ks[i]];
        struct pair *u = pairs_find(&users, w->user, NULL, 0);
        if (!u) {
            w->rc = BACKEND_ERR_NOT_FOUND;
        } else if (pairs_find(&ids, w->user, w->id, 0)) {
            w->rc = BACKEND_OK;   /* a repeat: the first put stored it */
        } else if (u->n >= w->limit) {
            w->rc = BACKEND_ERR_QUOTA;
        } else {
            w->rc = BACKEND_OK;
            u->n++;
            pairs_find(&ids, w->user, w->id, 1);
            acc[na++] = ks[i];
        }
    }
    if (na > 0) {
        for (size_t i = 0; i < na; i++) {
            const struct backend_write *w = &p->w[acc[i]];
            snprintf(stamps[i], sizeof(stamps[i]), "%" PRId64, w->stamp);
            col[0][i] = w->user, col[1][i] = w->id, col[2][i] = stamps[i], col[3][i] = w->xml;
        }
        literals(arr, col, 4, na);
        for (int j = 0; j < 4; j++)
            args[j] = arr[j].data;
        ins = group_exec(p, ST_OFFLINE_MANY, 4, args, PGRES_COMMAND_OK, "grouped offline_puts");
        literals_fini(arr, 4);
        if (!ins) {
            /* Rolled back: they run one by one, in their place. */
            for (size_t i = 0; i < m; i++)
                p->w[ks[i]].rc = BACKEND_OK;
            goto cols;
        }
        PQclear(ins);
    }
    for (size_t i = 0; i < m; i++)
        p->is_grouped[ks[i]] = 1;
cols:
    for (int j = 0; j < 4; j++)
        free(col[j]);
out:
    free(users.v);
    free(ids.v);
    PQclear(r);
    free(stamps);
    free(acc);
    free(ks);
}

/*
 * One run of the whole batch; BACKEND_OK when it committed. A round sends
 * up to PIPE_WINDOW writes (a Sync after every PIPE_CHUNK) before reading
 * anything: the server works on the first chunk while we send the next.
 * The results of a round are a few hundred bytes per write, so they fit in
 * the socket buffers and a blocking send never waits for us to read.
 */
static int attempt(struct pipeline *p, size_t n)
{
    size_t pos = 0, failed = n;

    for (size_t k = 0; k < n; k++) {
        p->w[k].rc = BACKEND_OK;
        p->is_grouped[k] = 0;
    }
    if (PQenterPipelineMode(p->pg->conn) != 1)
        p->lost = 1;
    send_sql(p, "BEGIN", 0, NULL, R_BEGIN, 0, 0, PGRES_COMMAND_OK);
    quota_lock(p, n);
    /* BEGIN and the locks first: the grouped statements wait for their results. */
    sync(p);
    (void)read_round(p, n);
    group_archive(p, n);
    group_offline(p, n);
    p->ntodo = 0;
    for (size_t k = 0; k < n; k++)
        if (!p->is_grouped[k])
            p->todo[p->ntodo++] = k;
    while (!p->lost) {
        size_t end = pos + PIPE_WINDOW < p->ntodo ? pos + PIPE_WINDOW : p->ntodo;
        if (failed != n) {
            /* Undo the failed write alone; the server skipped the rest. */
            send_sql(p, "ROLLBACK TO SAVEPOINT w", 0, NULL, R_ROLLBACK_TO, failed, 0, PGRES_COMMAND_OK);
            send_stmt(p, ST_RELEASE, 0, NULL, R_RELEASE, failed, 0, PGRES_COMMAND_OK);
        }
        for (size_t i = pos; i < end; i++) {
            size_t k = p->todo[i];
            send_stmt(p, ST_SAVEPOINT, 0, NULL, R_SAVEPOINT, k, 0, PGRES_COMMAND_OK);
            send_write(p, k);
            send_stmt(p, ST_RELEASE, 0, NULL, R_RELEASE, k, 0, PGRES_COMMAND_OK);
            if ((i - pos + 1) % PIPE_CHUNK == 0 && i + 1 < end)
                sync(p);
        }
        /* COMMIT never starts a Sync segment: after a failure in an earlier
         * segment, the command before it is refused and COMMIT skipped,
         * instead of rolling back the aborted transaction. */
        if (end == p->ntodo)
            send_sql(p, "COMMIT", 0, NULL, R_COMMIT, 0, 0, PGRES_COMMAND_OK);
        sync(p);
        failed = read_round(p, n);
        if (p->lost || (failed == n && end == p->ntodo))
            break;
        if (failed == n) {
            pos = end;
        } else {
            /* todo is in order: failed is at or after pos. */
            while (p->todo[pos] != failed)
                pos++;
            pos++;
        }
    }
    if (p->lost) {
        /* Whatever state the pipeline is in, closing the connection rolls
         * the transaction back; the retry opens a new one. */
        p->ncmds = 0;
        PQfinish(p->pg->conn);
        p->pg->conn = NULL;
        return BACKEND_ERR_UNAVAILABLE;
    }
    if (PQexitPipelineMode(p->pg->conn) != 1) {
        /* Committed, but the connection is in a state no other operation
         * can use: start the next one on a fresh connection. */
        log_warn("job=%s cannot leave pipeline mode: %s; reconnecting", p->pg->base.job,
                 PQerrorMessage(p->pg->conn));
        PQfinish(p->pg->conn);
        p->pg->conn = NULL;
        p->pg->next_try = 0;
    }
    return BACKEND_OK;
}

int pg_write(struct backend *b, struct backend_write *w, size_t n)
{
    struct pg_backend *pg = pg_from_base(b);
    struct pipeline p = { .pg = pg, .w = w };
    int rc = BACKEND_ERR_UNAVAILABLE;

    p.is_grouped = xcalloc(n ? n : 1, sizeof(*p.is_grouped));
    p.todo = xcalloc(n ? n : 1, sizeof(*p.todo));

    for (int run = 0; run < 2 && rc != BACKEND_OK; run++) {
        if (run == 1) {
            log_info("job=%s batch of %zu writes: transaction failed; retrying once on a new connection",
                     b->job, n);
            pg->next_try = 0;   /* the first attempt after a loss is immediate */
        }
        if (pg_ensure(pg) < 0)
            break;
        if (prepare_all(pg) < 0) {
            /* Logged; most likely the connection died while idle. */
            PQfinish(pg->conn);
            pg->conn = NULL;
            continue;
        }
        p.lost = 0;
        rc = attempt(&p, n);
    }
    free(p.cmds);
    free(p.is_grouped);
    free(p.todo);
    if (rc != BACKEND_OK)
        for (size_t k = 0; k < n; k++)
            w[k].rc = BACKEND_ERR_UNAVAILABLE;
    return rc;
}
