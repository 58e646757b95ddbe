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
};

/* A user that stores something must exist (backend.h); u is that check. */
#define WITH_USER "WITH u AS (SELECT 1 FROM users WHERE user_id = $1)"

/* The statements, prepared once per connection (a write then costs the
 * server no parsing or planning). */
enum stmt {
    ST_QUOTA_LOCK, ST_SAVEPOINT, ST_RELEASE, ST_ROSTER_PUT, ST_ROSTER_GROUPS, ST_ROSTER_DEL, ST_PENDING_PUT, ST_PENDING_DEL,
    ST_LAST_SET, ST_OFFLINE_PUT, ST_OFFLINE_DEL, ST_ARCHIVE_PUT, ST_COUNT
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
        buf_append_str(out, i ? ",\"" : "\"");
        for (const char *c = v[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                buf_append(out, "\\", 1);
            buf_append(out, c, 1);
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

    for (size_t k = 0; k < n; k++)
        p->w[k].rc = BACKEND_OK;
    if (PQenterPipelineMode(p->pg->conn) != 1)
        p->lost = 1;
    send_sql(p, "BEGIN", 0, NULL, R_BEGIN, 0, 0, PGRES_COMMAND_OK);
    quota_lock(p, n);
    while (!p->lost) {
        size_t end = pos + PIPE_WINDOW < n ? pos + PIPE_WINDOW : n;
        if (failed != n) {
            /* Undo the failed write alone; the server skipped the rest. */
            send_sql(p, "ROLLBACK TO SAVEPOINT w", 0, NULL, R_ROLLBACK_TO, failed, 0, PGRES_COMMAND_OK);
            send_stmt(p, ST_RELEASE, 0, NULL, R_RELEASE, failed, 0, PGRES_COMMAND_OK);
        }
        for (size_t k = pos; k < end; k++) {
            send_stmt(p, ST_SAVEPOINT, 0, NULL, R_SAVEPOINT, k, 0, PGRES_COMMAND_OK);
            send_write(p, k);
            send_stmt(p, ST_RELEASE, 0, NULL, R_RELEASE, k, 0, PGRES_COMMAND_OK);
            if ((k - pos + 1) % PIPE_CHUNK == 0 && k + 1 < end)
                sync(p);
        }
        /* COMMIT never starts a Sync segment: after a failure in an earlier
         * segment, the command before it is refused and COMMIT skipped,
         * instead of rolling back the aborted transaction. */
        if (end == n)
            send_sql(p, "COMMIT", 0, NULL, R_COMMIT, 0, 0, PGRES_COMMAND_OK);
        sync(p);
        failed = read_round(p, n);
        if (p->lost || (failed == n && end == n))
            break;
        pos = failed == n ? end : failed + 1;
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
    if (rc != BACKEND_OK)
        for (size_t k = 0; k < n; k++)
            w[k].rc = BACKEND_ERR_UNAVAILABLE;
    return rc;
}
