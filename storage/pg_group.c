/*
 * Grouped writes (pg_batch.h): most of a burst is offline_put and
 * archive_put (three writes per offline message), and a login's drain is
 * offline_dels. Instead of SAVEPOINT + statement + RELEASE each, a batch
 * sends:
 *   - every archive_put in one multi-row statement;
 *   - the offline_puts in one multi-row insert, the quota decided in C
 *     from the counters read under the row locks of round 1 and the ids
 *     already stored (also round 1);
 *   - the offline_dels in one multi-row delete.
 * Each is one unit of pg_batch.c, without a savepoint: a subtransaction
 * per statement costs the server more than the statement saves. When one
 * fails, the transaction is lost and the batch runs again with every write
 * on its own (is_grouped 0), so every write's result stays what it would
 * be alone.
 *
 * Order: nothing else in a batch touches the archive, and user_add/
 * user_del never share a batch (jobs.c), so taking these writes out of
 * order is invisible, except between an offline_put and an offline_del of
 * the same user: for a user with both in the batch, neither is grouped and
 * they keep their place.
 */
#include "pg_batch.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Array literals of the columns col[0..ncol) of n rows into g's
 * parameters, from parameter first on. */
static void group_args(struct pg_group *g, int first, const char **col[], int ncol, size_t n)
{
    for (int j = 0; j < ncol; j++) {
        buf_init(&g->arr[first + j]);
        pg_array_literal(&g->arr[first + j], col[j], n);
        g->args[first + j] = g->arr[first + j].data;
    }
    g->nargs = first + ncol;
    g->is_planned = 1;
}

static const char **column(size_t n)
{
    return xcalloc(n ? n : 1, sizeof(const char *));
}

/* The users of the writes of kind in w[0..n), each once; *m of them. */
static const char **users_of(const struct backend_write *w, size_t n, int (*want)(int kind), size_t *m)
{
    const char **out = column(n);
    struct pg_pairs seen;

    pg_pairs_init(&seen, n);
    *m = 0;
    for (size_t k = 0; k < n; k++)
        if (want(w[k].kind) && !pg_pairs_find(&seen, w[k].user, NULL, 0)) {
            pg_pairs_find(&seen, w[k].user, NULL, 1);
            out[(*m)++] = w[k].user;
        }
    pg_pairs_fini(&seen);
    return out;
}

/* Writes that update the users row: locked in round 1. */
static int updates_user(int kind)
{
    return kind == BW_OFFLINE_PUT || kind == BW_OFFLINE_DEL || kind == BW_ROSTER_PUT || kind == BW_ROSTER_DEL;
}

static int is_offline_put(int kind) { return kind == BW_OFFLINE_PUT; }
static int is_archive_put(int kind) { return kind == BW_ARCHIVE_PUT; }
static int is_offline_del(int kind) { return kind == BW_OFFLINE_DEL; }

/* Whether the batch has a write of the other offline kind for w's user. */
static int has_other(const struct pg_pairs *other, const struct backend_write *w)
{
    return pg_pairs_find((struct pg_pairs *)other, w->user, NULL, 0) != NULL;
}

/* The offline_puts and offline_dels that can be grouped into g: those of
 * users without a write of the other kind in the batch. */
static void pick_offline(struct pg_pipeline *p)
{
    struct pg_group *put = &p->groups[PG_GROUP_OFFLINE_PUT], *del = &p->groups[PG_GROUP_OFFLINE_DEL];
    struct pg_pairs puts, dels;
    size_t nput, ndel;
    const char **up = users_of(p->w, p->n, is_offline_put, &nput);
    const char **ud = users_of(p->w, p->n, is_offline_del, &ndel);

    pg_pairs_init(&puts, nput);
    pg_pairs_init(&dels, ndel);
    for (size_t i = 0; i < nput; i++)
        pg_pairs_find(&puts, up[i], NULL, 1);
    for (size_t i = 0; i < ndel; i++)
        pg_pairs_find(&dels, ud[i], NULL, 1);
    put->ks = xcalloc(p->n ? p->n : 1, sizeof(*put->ks));
    del->ks = xcalloc(p->n ? p->n : 1, sizeof(*del->ks));
    for (size_t k = 0; k < p->n; k++) {
        if (p->w[k].kind == BW_OFFLINE_PUT && !has_other(&dels, &p->w[k]))
            put->ks[put->nks++] = k;
        else if (p->w[k].kind == BW_OFFLINE_DEL && !has_other(&puts, &p->w[k]))
            del->ks[del->nks++] = k;
    }
    pg_pairs_fini(&puts);
    pg_pairs_fini(&dels);
    free(up);
    free(ud);
}

void pg_group_first(struct pg_pipeline *p)
{
    struct pg_group *put = &p->groups[PG_GROUP_OFFLINE_PUT];
    size_t m;
    const char **users = users_of(p->w, p->n, updates_user, &m);
    struct buf arr[2];
    const char *args[2];

    if (m > 0) {
        buf_init(&arr[0]);
        pg_array_literal(&arr[0], users, m);
        args[0] = arr[0].data;
        pg_pipe_send(p, ST_LOCK, 1, args, R_LOCK, 0, 0, PGRES_TUPLES_OK);
        buf_fini(&arr[0]);
    }
    free(users);
    if (!p->is_grouped)
        return;
    pick_offline(p);
    if (put->nks > 0) {
        const char **col[2] = { column(put->nks), column(put->nks) };
        for (size_t i = 0; i < put->nks; i++)
            col[0][i] = p->w[put->ks[i]].user, col[1][i] = p->w[put->ks[i]].id;
        for (int j = 0; j < 2; j++) {
            buf_init(&arr[j]);
            pg_array_literal(&arr[j], col[j], put->nks);
            args[j] = arr[j].data;
        }
        pg_pipe_send(p, ST_DUPS, 2, args, R_DUPS, 0, 0, PGRES_TUPLES_OK);
        for (int j = 0; j < 2; j++) {
            buf_fini(&arr[j]);
            free(col[j]);
        }
    }
}

int pg_group_first_result(struct pg_pipeline *p, enum pg_role role, PGresult *r)
{
    int n = PQntuples(r);

    if (PQnfields(r) != 2) {
        PQclear(r);
        return -1;
    }
    if (role == R_LOCK) {
        PQclear(p->locked_res);
        pg_pairs_fini(&p->locked);
        p->locked_res = r;
        pg_pairs_init(&p->locked, (size_t)n);
        for (int i = 0; i < n; i++)
            pg_pairs_find(&p->locked, PQgetvalue(r, i, 0), NULL, 1)->n = pg_int(r, i, 1);
    } else {
        PQclear(p->dups_res);
        pg_pairs_fini(&p->dups);
        p->dups_res = r;
        /* Room for the ids the plan accepts too. */
        pg_pairs_init(&p->dups, (size_t)n + p->groups[PG_GROUP_OFFLINE_PUT].nks);
        for (int i = 0; i < n; i++)
            pg_pairs_find(&p->dups, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), 1);
    }
    return 0;
}

static void plan_archive(struct pg_pipeline *p)
{
    struct pg_group *g = &p->groups[PG_GROUP_ARCHIVE];
    const char **col[6];
    char(*stamps)[24];
    const char **users;
    size_t nusers;

    g->ks = xcalloc(p->n ? p->n : 1, sizeof(*g->ks));
    for (size_t k = 0; k < p->n; k++)
        if (p->w[k].kind == BW_ARCHIVE_PUT)
            g->ks[g->nks++] = k;
    if (g->nks == 0)
        return;
    stamps = xcalloc(g->nks, sizeof(*stamps));
    for (int j = 0; j < 6; j++)
        col[j] = column(g->nks);
    for (size_t i = 0; i < g->nks; i++) {
        const struct backend_write *w = &p->w[g->ks[i]];
        snprintf(stamps[i], sizeof(stamps[i]), "%" PRId64, w->stamp);
        col[0][i] = w->user, col[1][i] = w->id, col[2][i] = w->jid;
        col[3][i] = stamps[i], col[4][i] = w->text, col[5][i] = w->xml;
    }
    group_args(g, 0, col, 6, g->nks);
    for (int j = 0; j < 6; j++)
        free(col[j]);
    free(stamps);
    users = users_of(p->w, p->n, is_archive_put, &nusers);
    group_args(g, 6, &users, 1, nusers);
    free(users);
}

/* Decides the grouped offline_puts in order, as one by one would: unknown
 * account, a repeat (stored, or accepted earlier in this batch), the
 * quota; the accepted ones are the group's statement. */
static void plan_offline_put(struct pg_pipeline *p)
{
    struct pg_group *g = &p->groups[PG_GROUP_OFFLINE_PUT];
    const char **col[4];
    char(*stamps)[24];
    size_t na = 0;

    if (g->nks == 0)
        return;
    if (!p->locked.v)
        pg_pairs_init(&p->locked, 0);
    if (!p->dups.v)
        pg_pairs_init(&p->dups, g->nks);
    stamps = xcalloc(g->nks, sizeof(*stamps));
    for (int j = 0; j < 4; j++)
        col[j] = column(g->nks);
    for (size_t i = 0; i < g->nks; i++) {
        struct backend_write *w = &p->w[g->ks[i]];
        struct pg_pair *u = pg_pairs_find(&p->locked, w->user, NULL, 0);
        if (!u) {
            w->rc = BACKEND_ERR_NOT_FOUND;
        } else if (pg_pairs_find(&p->dups, w->user, w->id, 0)) {
            w->rc = BACKEND_OK;   /* a repeat: the first put stored it */
        } else if (u->n >= w->limit) {
            w->rc = BACKEND_ERR_QUOTA;
        } else {
            w->rc = BACKEND_OK;
            u->n++;
            pg_pairs_find(&p->dups, w->user, w->id, 1);
            snprintf(stamps[na], sizeof(stamps[na]), "%" PRId64, w->stamp);
            col[0][na] = w->user, col[1][na] = w->id, col[2][na] = stamps[na], col[3][na] = w->xml;
            na++;
        }
    }
    if (na > 0)
        group_args(g, 0, col, 4, na);
    for (int j = 0; j < 4; j++)
        free(col[j]);
    free(stamps);
}

static void plan_offline_del(struct pg_pipeline *p)
{
    struct pg_group *g = &p->groups[PG_GROUP_OFFLINE_DEL];
    const char **col[2];
    size_t total = 0, m = 0;

    for (size_t i = 0; i < g->nks; i++)
        total += p->w[g->ks[i]].nids;
    if (total == 0)
        return;
    col[0] = column(total);
    col[1] = column(total);
    for (size_t i = 0; i < g->nks; i++) {
        const struct backend_write *w = &p->w[g->ks[i]];
        for (size_t j = 0; j < w->nids; j++, m++)
            col[0][m] = w->user, col[1][m] = w->ids[j];
    }
    group_args(g, 0, col, 2, total);
    free(col[0]);
    free(col[1]);
}

void pg_group_plan(struct pg_pipeline *p)
{
    unsigned char *grouped = xcalloc(p->n ? p->n : 1, 1);

    if (p->is_grouped) {
        plan_archive(p);
        plan_offline_put(p);
        plan_offline_del(p);
    }
    for (int g = 0; g < PG_NGROUPS; g++) {
        for (size_t i = 0; i < p->groups[g].nks; i++)
            grouped[p->groups[g].ks[i]] = 1;
        if (p->groups[g].is_planned)
            pg_pipe_unit(p, g, 0);
    }
    for (size_t k = 0; k < p->n; k++)
        if (!grouped[k])
            pg_pipe_unit(p, -1, k);
    free(grouped);
}

void pg_group_send(struct pg_pipeline *p, int g, size_t u)
{
    static const enum pg_stmt st[PG_NGROUPS] = { ST_ARCHIVE_MANY, ST_OFFLINE_MANY, ST_OFFLINE_DEL_MANY };
    static const ExecStatusType want[PG_NGROUPS] = { PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_COMMAND_OK };
    const struct pg_group *gr = &p->groups[g];

    pg_pipe_send(p, st[g], gr->nargs, gr->args, R_STMT, u, 1, want[g]);
}

void pg_group_outcome(struct pg_pipeline *p, int g, PGresult *r)
{
    struct pg_group *gr = &p->groups[g];
    struct pg_pairs known;

    if (g != PG_GROUP_ARCHIVE)
        return;   /* offline_puts: decided in the plan; offline_dels: always OK */
    pg_pairs_init(&known, (size_t)PQntuples(r));
    for (int i = 0; i < PQntuples(r); i++)
        pg_pairs_find(&known, PQgetvalue(r, i, 0), NULL, 1);
    for (size_t i = 0; i < gr->nks; i++) {
        struct backend_write *w = &p->w[gr->ks[i]];
        w->rc = pg_pairs_find(&known, w->user, NULL, 0) ? BACKEND_OK : BACKEND_ERR_NOT_FOUND;
    }
    pg_pairs_fini(&known);
}

void pg_group_fini(struct pg_pipeline *p)
{
    for (int g = 0; g < PG_NGROUPS; g++) {
        struct pg_group *gr = &p->groups[g];
        if (gr->is_planned)
            for (int j = 0; j < gr->nargs; j++)
                buf_fini(&gr->arr[j]);
        free(gr->ks);
        memset(gr, 0, sizeof(*gr));
    }
    pg_pairs_fini(&p->locked);
    pg_pairs_fini(&p->dups);
    PQclear(p->locked_res);
    PQclear(p->dups_res);
    p->locked_res = p->dups_res = NULL;
}
