/*
 * Batched writes on PostgreSQL (backend_ops.write): one transaction,
 * prepared statements and libpq's pipeline mode, so a batch costs two
 * round trips in the common case, and the server neither parses nor plans.
 *
 * A batch runs in two rounds:
 *   1. BEGIN; the locks; the offline ids already stored      (pg_group.c)
 *   2. the groups; per other write: SAVEPOINT w; <its statement(s)>;
 *      RELEASE w ... COMMIT
 * A group is a multi-row statement answering many writes (pg_group.c:
 * every archive_put, most offline_puts and offline_dels); the rest, rare in
 * a burst, run one by one. In round 2 there is a Sync after every
 * PIPE_CHUNK units, and at most PIPE_WINDOW units are sent before their
 * results are read.
 * Nothing in a unit depends on an earlier result, which is what lets it be
 * pipelined: the statements that store something check the account in SQL
 * (EXISTS / FROM u), and a lone offline_put reads the counter and inserts
 * in one statement (the quota).
 *
 * Locks. The offline quota reads users.offline_count (migration 007), which
 * every offline insert and delete adjusts in its transaction. To make the
 * read exact, round 1 takes FOR NO KEY UPDATE row locks, in user_id order,
 * on every account whose users row the batch will update (offline puts and
 * deletes, roster writes): a second worker holding writes for one of them
 * waits at its own lock until we commit, then reads our counter. The
 * statements after the lock see every commit before it (READ COMMITTED
 * takes a snapshot per statement). Taking them all at once, sorted, means
 * two batches cannot deadlock. SQLite needs nothing: BEGIN IMMEDIATE lets
 * one writer in at a time.
 *
 * When a write's statement fails, the server skips the rest of that Sync
 * segment and refuses the later ones: the transaction is aborted (libpq
 * "Pipeline Mode", error handling). The next round starts with ROLLBACK TO
 * SAVEPOINT w, which undoes that one write and revives the transaction, and
 * sends again the units after it. A group has no savepoint: when it fails,
 * the transaction is rolled back and the batch runs again, on the same
 * connection, with every write on its own, so every write's result stays
 * what it would be alone (failures are rare: a broken row, a trigger).
 *
 * Transaction-level failure (the connection lost, BEGIN/lock/SAVEPOINT/
 * COMMIT refused): we close the connection, which rolls everything back
 * whatever state the pipeline was in, and the whole batch runs once more on
 * a new one. Every write is idempotent (backend.h), so running again a
 * batch whose COMMIT did reach the server before the connection dropped
 * changes nothing. If the second run fails too, every write is
 * "unavailable".
 */
#include "pg_batch.h"
#include "log.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPE_CHUNK 64      /* units per Sync segment */
#define PIPE_WINDOW 256    /* units sent before their results are read */

/* A user that stores something must exist (backend.h); u is that check. */
#define WITH_USER "WITH u AS (SELECT 1 FROM users WHERE user_id = $1)"

/* Prepared once per connection (a write then costs the server no parsing
 * or planning). */
const struct pg_stmt_def pg_stmts[ST_COUNT] = {
    [ST_BEGIN] = { "parley_begin", "BEGIN" },
    /* Every statement of a batch finds its rows by key, and a sequential
     * scan is never the right plan for it at scale. But the planner's
     * estimates come from the last ANALYZE, and a generic plan made while
     * the offline queue was nearly empty (a fresh install, a benchmark)
     * scans offline_messages for every batch ever after: O(queue) per
     * batch. So the batch's own transaction rules them out. */
    [ST_NO_SEQSCAN] = { "parley_no_seqscan", "SET LOCAL enable_seqscan = off" },
    [ST_COMMIT] = { "parley_commit", "COMMIT" },
    /* Round 1 (see Locks above): sorted, so every transaction takes its
     * locks in the same order. The same lock strength as the UPDATEs that
     * follow, which does not block the key-share locks of foreign keys. */
    [ST_LOCK] = { "parley_lock",
        "SELECT user_id, offline_count FROM users WHERE user_id = ANY ($1::text[])"
        " ORDER BY user_id FOR NO KEY UPDATE" },
    /* The (user, id) pairs of the grouped offline_puts already stored.
     * The two "= ANY" make it one index scan of the primary key whatever
     * the plan (a join with the unnest may be planned as a hash join over
     * the whole table); the pairs filter drops the cross matches. */
    [ST_DUPS] = { "parley_dups",
        "SELECT user_id, id FROM offline_messages WHERE user_id = ANY ($1::text[]) AND id = ANY ($2::text[])"
        " AND (user_id, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))" },
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
    /* Read the counter, insert, count the insert, in one statement, under
     * the row lock of round 1: the quota. A repeat of a stored id is a
     * success even when the store is full. Answers (known, n, dup). */
    [ST_OFFLINE_PUT] = { "parley_offline_put",
        "WITH c AS (SELECT offline_count AS n,"
        "           EXISTS (SELECT 1 FROM offline_messages WHERE user_id = $1 AND id = $2) AS dup"
        "           FROM users WHERE user_id = $1),"
        " i AS (INSERT INTO offline_messages (user_id, id, stamp, xml) SELECT $1, $2, $3::bigint, $4"
        "       FROM c WHERE NOT c.dup AND c.n < $5::bigint ON CONFLICT DO NOTHING RETURNING 1),"
        " k AS (UPDATE users SET offline_count = offline_count + 1"
        "       WHERE user_id = $1 AND EXISTS (SELECT 1 FROM i))"
        " SELECT count(*), coalesce(max(n), 0), count(*) FILTER (WHERE dup) FROM c" },
    /* The counter goes down by what was deleted: a concurrent delete of the
     * same ids deletes (and counts) each row once. */
    [ST_OFFLINE_DEL] = { "parley_offline_del",
        "WITH d AS (DELETE FROM offline_messages WHERE user_id = $1 AND id = ANY ($2::text[]) RETURNING 1)"
        " UPDATE users SET offline_count = offline_count - c.n FROM (SELECT count(*) AS n FROM d) c"
        " WHERE user_id = $1 AND c.n > 0" },
    [ST_ARCHIVE_PUT] = { "parley_archive_put",
        WITH_USER ", i AS (INSERT INTO archive (user_id, id, peer, stamp, dir, xml)"
                  "        SELECT $1, $2, $3, $4::bigint, $5, $6 FROM u ON CONFLICT DO NOTHING)"
                  " SELECT count(*) FROM u" },
    /* The grouped forms (pg_group.c). The archive: accounts checked
     * set-wise ($7, each once); the answer is the known ones. */
    [ST_ARCHIVE_MANY] = { "parley_archive_many",
        "WITH k AS (SELECT user_id FROM users WHERE user_id = ANY ($7::text[])),"
        " i AS (INSERT INTO archive (user_id, id, peer, stamp, dir, xml)"
        "       SELECT v.* FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[])"
        "       AS v(user_id, id, peer, stamp, dir, xml) WHERE v.user_id IN (SELECT user_id FROM k)"
        "       ON CONFLICT DO NOTHING)"
        " SELECT user_id FROM k" },
    /* The offline_puts the quota accepted (decided in C under the locks);
     * the counters go up by what was inserted. */
    [ST_OFFLINE_MANY] = { "parley_offline_many",
        "WITH i AS (INSERT INTO offline_messages (user_id, id, stamp, xml)"
        "           SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])"
        "           ON CONFLICT DO NOTHING RETURNING user_id),"
        " c AS (SELECT user_id, count(*) AS n FROM i GROUP BY user_id)"
        " UPDATE users u SET offline_count = u.offline_count + c.n FROM c WHERE u.user_id = c.user_id" },
    /* The (user, id) pairs of the grouped offline_dels, joined: one
     * primary-key probe per pair (enable_seqscan is off in a batch, so
     * the join is a nested loop over the pairs). Not "= ANY" twice as in
     * ST_DUPS: an index scan with two arrays probes every user with every
     * id, and a login's drain deletes a hundred ids per user: 250 users x
     * 25,000 ids held a worker for seconds. */
    [ST_OFFLINE_DEL_MANY] = { "parley_offline_del_many",
        "WITH d AS (DELETE FROM offline_messages o USING unnest($1::text[], $2::text[]) AS v(user_id, id)"
        "           WHERE o.user_id = v.user_id AND o.id = v.id RETURNING o.user_id),"
        " c AS (SELECT user_id, count(*) AS n FROM d GROUP BY user_id)"
        " UPDATE users u SET offline_count = u.offline_count - c.n FROM c WHERE u.user_id = c.user_id" },
};

static void push(struct pg_pipeline *p, enum pg_role role, size_t unit, int is_key, ExecStatusType want)
{
    if (p->ncmds == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->cmds = xrealloc(p->cmds, p->cap * sizeof(*p->cmds));
    }
    p->cmds[p->ncmds++] = (struct pg_cmd){ role, unit, is_key, want };
}

/* Sends sql without parameters; a send failure marks the pipe lost. */
static void send_sql(struct pg_pipeline *p, const char *sql, enum pg_role role, size_t unit)
{
    if (p->lost)
        return;
    if (!PQsendQueryParams(p->pg->conn, sql, 0, NULL, NULL, NULL, NULL, 0)) {
        p->lost = 1;
        return;
    }
    push(p, role, unit, 0, PGRES_COMMAND_OK);
}

void pg_pipe_send(struct pg_pipeline *p, enum pg_stmt st, int n, const char *const *args, enum pg_role role,
                  size_t unit, int is_key, ExecStatusType want)
{
    if (p->lost)
        return;
    if (!PQsendQueryPrepared(p->pg->conn, pg_stmts[st].name, n, args, NULL, NULL, 0)) {
        p->lost = 1;
        return;
    }
    push(p, role, unit, is_key, want);
}

void pg_pipe_unit(struct pg_pipeline *p, int group, size_t k)
{
    if (p->nunits == p->capunits) {
        p->capunits = p->capunits ? p->capunits * 2 : 64;
        p->units = xrealloc(p->units, p->capunits * sizeof(*p->units));
    }
    p->units[p->nunits++] = (struct pg_unit){ group, k };
}

/* Prepares every statement of pg_stmts on the current connection, once. */
static int prepare_all(struct pg_backend *pg)
{
    if (pg->is_prepared)
        return BACKEND_OK;
    for (int i = 0; i < ST_COUNT; i++) {
        PGresult *r = PQprepare(pg->conn, pg_stmts[i].name, pg_stmts[i].sql, 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return pg_fail(pg, pg->base.job, pg_stmts[i].name, r);
        PQclear(r);
    }
    pg->is_prepared = 1;
    return BACKEND_OK;
}

/* The statements of write k, alone, as unit u. */
static void send_write(struct pg_pipeline *p, size_t k, size_t u)
{
    const struct backend_write *w = &p->w[k];
    char n1[24], n2[24];
    struct buf arr;

    switch (w->kind) {
    case BW_ROSTER_PUT: {
        const struct roster_item *it = w->item;
        const char *a[] = { w->user, it->jid, it->name, it->subscription, it->ask, n1 };
        snprintf(n1, sizeof(n1), "%" PRId64, w->ver);
        pg_pipe_send(p, ST_ROSTER_PUT, 6, a, R_STMT, u, 1, PGRES_COMMAND_OK);
        if (it->ngroups > 0) {
            const char *g[] = { w->user, it->jid, NULL };
            buf_init(&arr);
            pg_array_literal(&arr, (const char *const *)it->groups, it->ngroups);
            g[2] = arr.data;
            pg_pipe_send(p, ST_ROSTER_GROUPS, 3, g, R_STMT, u, 0, PGRES_COMMAND_OK);
            buf_fini(&arr);
        }
        break;
    }
    case BW_ROSTER_DEL: {
        const char *a[] = { w->user, w->jid, n1 };
        snprintf(n1, sizeof(n1), "%" PRId64, w->ver);
        pg_pipe_send(p, ST_ROSTER_DEL, 3, a, R_STMT, u, 1, PGRES_COMMAND_OK);
        break;
    }
    case BW_PENDING_PUT:
    case BW_PENDING_DEL: {
        const char *a[] = { w->user, w->jid };
        if (w->kind == BW_PENDING_PUT)
            pg_pipe_send(p, ST_PENDING_PUT, 2, a, R_STMT, u, 1, PGRES_TUPLES_OK);
        else
            pg_pipe_send(p, ST_PENDING_DEL, 2, a, R_STMT, u, 1, PGRES_COMMAND_OK);
        break;
    }
    case BW_LAST_SET: {
        const char *a[] = { w->user, n1, w->text };
        snprintf(n1, sizeof(n1), "%" PRId64, w->since);
        pg_pipe_send(p, ST_LAST_SET, 3, a, R_STMT, u, 1, PGRES_TUPLES_OK);
        break;
    }
    case BW_OFFLINE_PUT: {
        const char *a[] = { w->user, w->id, n1, w->xml, n2 };
        snprintf(n1, sizeof(n1), "%" PRId64, w->stamp);
        snprintf(n2, sizeof(n2), "%" PRId64, w->limit);
        pg_pipe_send(p, ST_OFFLINE_PUT, 5, a, R_STMT, u, 1, PGRES_TUPLES_OK);
        break;
    }
    case BW_OFFLINE_DEL: {
        const char *a[] = { w->user, NULL };
        buf_init(&arr);
        pg_array_literal(&arr, (const char *const *)w->ids, w->nids);
        a[1] = arr.data;
        pg_pipe_send(p, ST_OFFLINE_DEL, 2, a, R_STMT, u, 1, PGRES_COMMAND_OK);
        buf_fini(&arr);
        break;
    }
    case BW_ARCHIVE_PUT: {
        const char *a[] = { w->user, w->id, w->jid, n1, w->text, w->xml };
        snprintf(n1, sizeof(n1), "%" PRId64, w->stamp);
        pg_pipe_send(p, ST_ARCHIVE_PUT, 6, a, R_STMT, u, 1, PGRES_TUPLES_OK);
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
static const char *const group_names[] = { "grouped archive_puts", "grouped offline_puts",
                                           "grouped offline_dels" };

/* A statement of unit u failed with r (taken); 1 when only the unit is to
 * blame, 0 when the transaction is lost. */
static int unit_failed(struct pg_pipeline *p, size_t u, PGresult *r)
{
    const struct pg_unit *un = &p->units[u];
    int rc;

    if (un->group >= 0) {
        rc = pg_fail(p->pg, p->pg->base.job, group_names[un->group], r);
        if (rc == BACKEND_ERR_UNAVAILABLE)
            return 0;
        log_info("job=%s %s failed; running the batch again, one write at a time", p->pg->base.job,
                 group_names[un->group]);
        return 1;
    }
    rc = pg_fail(p->pg, p->w[un->k].job, kind_names[p->w[un->k].kind], r);
    if (rc == BACKEND_ERR_UNAVAILABLE)
        return 0;   /* not this write's fault */
    p->w[un->k].rc = rc;
    return 1;
}

/*
 * Reads the results of every command sent in this round, Syncs included.
 * Returns the index of the unit whose statement failed (the next round
 * rolls it back), or SIZE_MAX when none did; p->lost on a transaction-level
 * failure. After a failure the server skips the rest of its Sync segment
 * and refuses every later segment (the transaction is aborted): those
 * results are read and ignored.
 */
static size_t read_round(struct pg_pipeline *p)
{
    size_t failed = SIZE_MAX;

    for (size_t i = 0; i < p->ncmds && !p->lost; i++) {
        const struct pg_cmd *c = &p->cmds[i];
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
        if (failed != SIZE_MAX) {
            PQclear(r);
        } else if (c->role == R_STMT && st == c->want) {
            const struct pg_unit *un = &p->units[c->unit];
            if (c->is_key && un->group >= 0)
                pg_group_outcome(p, un->group, r);
            else if (c->is_key)
                p->w[un->k].rc = outcome(&p->w[un->k], r);
            PQclear(r);
        } else if (c->role == R_STMT) {
            if (unit_failed(p, c->unit, r))
                failed = c->unit;
            else
                p->lost = 1;
        } else if ((c->role == R_LOCK || c->role == R_DUPS) && st == PGRES_TUPLES_OK) {
            if (pg_group_first_result(p, c->role, r) < 0) {
                log_error("job=%s batch transaction: unexpected result", p->pg->base.job);
                p->lost = 1;
            }
        } else if (st == PGRES_COMMAND_OK && (c->role != R_COMMIT || strcmp(PQcmdStatus(r), "COMMIT") == 0)) {
            PQclear(r);
        } else {
            /* BEGIN, a lock, SAVEPOINT, RELEASE, ROLLBACK TO or COMMIT
             * refused (a COMMIT of an aborted transaction answers ROLLBACK),
             * or the connection is gone: the transaction is lost. */
            (void)pg_fail(p->pg, p->pg->base.job, "batch transaction", r);
            p->lost = 1;
        }
    }
    p->ncmds = 0;
    return p->lost ? SIZE_MAX : failed;
}

static void sync(struct pg_pipeline *p)
{
    if (p->lost)
        return;
    if (!PQpipelineSync(p->pg->conn)) {
        p->lost = 1;
        return;
    }
    push(p, R_SYNC, 0, 0, PGRES_PIPELINE_SYNC);
}

/* The statements of unit u: a group's alone, a write's under savepoint w. */
static void send_unit(struct pg_pipeline *p, size_t u)
{
    if (p->units[u].group >= 0) {
        pg_group_send(p, p->units[u].group, u);
        return;
    }
    pg_pipe_send(p, ST_SAVEPOINT, 0, NULL, R_SAVEPOINT, u, 0, PGRES_COMMAND_OK);
    send_write(p, p->units[u].k, u);
    pg_pipe_send(p, ST_RELEASE, 0, NULL, R_RELEASE, u, 0, PGRES_COMMAND_OK);
}

/* attempt: a group failed and was rolled back; run again ungrouped. */
#define ATTEMPT_UNGROUP 1

/*
 * One run of the whole batch; BACKEND_OK when it committed, or
 * ATTEMPT_UNGROUP. A round sends up to PIPE_WINDOW units (a Sync after
 * every PIPE_CHUNK) before reading anything: the server works on the first
 * chunk while we send the next. The results of a round are a few hundred
 * bytes per unit, so they fit in the socket buffers and a blocking send
 * never waits for us to read.
 */
static int attempt(struct pg_pipeline *p)
{
    size_t pos = 0, failed = SIZE_MAX;

    for (size_t k = 0; k < p->n; k++)
        p->w[k].rc = BACKEND_OK;
    p->nunits = 0;
    if (PQenterPipelineMode(p->pg->conn) != 1)
        p->lost = 1;
    pg_pipe_send(p, ST_BEGIN, 0, NULL, R_BEGIN, 0, 0, PGRES_COMMAND_OK);
    pg_pipe_send(p, ST_NO_SEQSCAN, 0, NULL, R_BEGIN, 0, 0, PGRES_COMMAND_OK);
    pg_group_first(p);
    sync(p);
    (void)read_round(p);
    if (!p->lost)
        pg_group_plan(p);
    while (!p->lost) {
        size_t end = pos + PIPE_WINDOW < p->nunits ? pos + PIPE_WINDOW : p->nunits;
        if (failed != SIZE_MAX) {
            /* Undo the failed unit alone; the server skipped the rest. */
            send_sql(p, "ROLLBACK TO SAVEPOINT w", R_ROLLBACK_TO, failed);
            pg_pipe_send(p, ST_RELEASE, 0, NULL, R_RELEASE, failed, 0, PGRES_COMMAND_OK);
        }
        for (size_t u = pos; u < end; u++) {
            send_unit(p, u);
            if ((u - pos + 1) % PIPE_CHUNK == 0 && u + 1 < end)
                sync(p);
        }
        /* COMMIT never starts a Sync segment: after a failure in an earlier
         * segment, the command before it is refused and COMMIT skipped,
         * instead of rolling back the aborted transaction. */
        if (end == p->nunits)
            pg_pipe_send(p, ST_COMMIT, 0, NULL, R_COMMIT, 0, 0, PGRES_COMMAND_OK);
        sync(p);
        failed = read_round(p);
        if (p->lost || (failed == SIZE_MAX && end == p->nunits))
            break;
        if (failed != SIZE_MAX && p->units[failed].group >= 0) {
            /* No savepoint to return to: roll back and start over. */
            send_sql(p, "ROLLBACK", R_BEGIN, 0);
            sync(p);
            (void)read_round(p);
            if (p->lost)
                break;
            p->is_grouped = 0;
            return ATTEMPT_UNGROUP;
        }
        pos = failed == SIZE_MAX ? end : failed + 1;
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
    struct pg_pipeline p = { .pg = pg, .w = w, .n = n };
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
        p.is_grouped = 1;
        do {
            pg_group_fini(&p);   /* what the last run planned */
            rc = attempt(&p);
        } while (rc == ATTEMPT_UNGROUP);
    }
    pg_group_fini(&p);
    free(p.cmds);
    free(p.units);
    if (rc != BACKEND_OK)
        for (size_t k = 0; k < n; k++)
            w[k].rc = BACKEND_ERR_UNAVAILABLE;
    return rc;
}
