/*
 * Unit tests for the decisions of the PostgreSQL batch that are taken in C,
 * without a database: array literals (storage/pg_array.c), the pair set
 * (pg_pairs.c), and pg_group.c's plan: which writes are grouped, the
 * offline quota decided from the counters read under the row locks (in
 * order, repeats free even when full, accepted ones counted), the
 * statements' parameters, and a batch run ungrouped.
 *
 * The sources are included rather than linked so that `make unit` builds
 * this file with the common library alone; the pipeline (pg_batch.c) is
 * replaced by stubs that record what would be sent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../storage/pg_array.c"
#include "../../storage/pg_group.c"
#include "../../storage/pg_pairs.c"

/* ---- stubs of pg_batch.c / pg.c ----------------------------------------- */

#define MAX_SENT 8

static struct sent {
    enum pg_stmt st;
    int n;
    char *args[7];
} sent[MAX_SENT];
static int nsent;

void pg_pipe_send(struct pg_pipeline *p, enum pg_stmt st, int n, const char *const *args, enum pg_role role,
                  size_t unit, int is_key, ExecStatusType want)
{
    (void)p, (void)role, (void)unit, (void)is_key, (void)want;
    assert_true(nsent < MAX_SENT);
    sent[nsent].st = st;
    sent[nsent].n = n;
    for (int i = 0; i < n; i++)
        sent[nsent].args[i] = xstrdup(args[i]);
    nsent++;
}

void pg_pipe_unit(struct pg_pipeline *p, int group, size_t k)
{
    p->units = xrealloc(p->units, (p->nunits + 1) * sizeof(*p->units));
    p->units[p->nunits++] = (struct pg_unit){ group, k };
}

int64_t pg_int(PGresult *res, int row, int col)
{
    (void)res, (void)row, (void)col;
    return 0;
}

static int setup(void **state)
{
    (void)state;
    nsent = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < nsent; i++)
        for (int j = 0; j < sent[i].n; j++)
            free(sent[i].args[j]);
    nsent = 0;
    return 0;
}

static struct backend_write put(const char *user, const char *id, int64_t limit)
{
    return (struct backend_write){ .kind = BW_OFFLINE_PUT, .user = user, .id = id, .xml = "<message/>",
                                   .stamp = 7, .limit = limit, .rc = 99 };
}

static struct backend_write del(const char *user, char **ids, size_t n)
{
    return (struct backend_write){ .kind = BW_OFFLINE_DEL, .user = user, .ids = ids, .nids = n, .rc = 99 };
}

/* The pipeline after round 1, as if the lock had answered users[] with
 * their counts and the dups check the pairs stored[]. */
static void round1(struct pg_pipeline *p, const char *const *users, const int64_t *counts, size_t nusers,
                   const char *const *stored, size_t nstored)
{
    pg_group_first(p);
    pg_pairs_init(&p->locked, nusers);
    for (size_t i = 0; i < nusers; i++)
        pg_pairs_find(&p->locked, users[i], NULL, 1)->n = counts[i];
    pg_pairs_init(&p->dups, nstored + p->n);
    for (size_t i = 0; i < nstored; i += 2)
        pg_pairs_find(&p->dups, stored[i], stored[i + 1], 1);
}

static const struct sent *find_sent(enum pg_stmt st)
{
    for (int i = 0; i < nsent; i++)
        if (sent[i].st == st)
            return &sent[i];
    return NULL;
}

static void pipeline_free(struct pg_pipeline *p)
{
    pg_group_fini(p);
    free(p->units);
}

/* Every element is quoted; only '"' and '\' are escaped. */
static void test_array_literal_escapes(void **state)
{
    const char *v[] = { "a\"b\\c", "{x,y}", "NULL", "", " sp " };
    struct buf b;

    (void)state;
    buf_init(&b);
    pg_array_literal(&b, v, 5);
    assert_string_equal(b.data, "{\"a\\\"b\\\\c\",\"{x,y}\",\"NULL\",\"\",\" sp \"}");
    buf_fini(&b);
    buf_init(&b);
    pg_array_literal(&b, v, 0);
    assert_string_equal(b.data, "{}");
    buf_fini(&b);
}

/* A pair is found by both strings; (a, NULL) and (a, "") differ; many
 * entries fit. */
static void test_pairs(void **state)
{
    struct pg_pairs s;
    char keys[200][16];

    (void)state;
    pg_pairs_init(&s, 200);
    assert_null(pg_pairs_find(&s, "a", NULL, 0));
    pg_pairs_find(&s, "a", NULL, 1)->n = 5;
    pg_pairs_find(&s, "a", "", 1)->n = 6;
    pg_pairs_find(&s, "a", "x", 1)->n = 7;
    assert_int_equal(pg_pairs_find(&s, "a", NULL, 0)->n, 5);
    assert_int_equal(pg_pairs_find(&s, "a", "", 0)->n, 6);
    assert_int_equal(pg_pairs_find(&s, "a", "x", 0)->n, 7);
    assert_null(pg_pairs_find(&s, "ax", NULL, 0));
    for (int i = 0; i < 197; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        pg_pairs_find(&s, keys[i], NULL, 1)->n = i;
    }
    for (int i = 0; i < 197; i++)
        assert_int_equal(pg_pairs_find(&s, keys[i], NULL, 0)->n, i);
    pg_pairs_fini(&s);
}

/* The quota in order: unknown account not-found; a stored id, or one
 * accepted earlier in the batch, is a success even when full; the accepted
 * ones count; only the accepted ones are inserted. */
static void test_offline_quota_in_order(void **state)
{
    struct backend_write w[] = {
        put("bert", "o1", 3), put("nobody", "x", 3), put("bert", "o0", 3), put("bert", "o2", 3),
        put("bert", "o3", 3), put("bert", "o1", 3), put("bert", "o0", 3),
    };
    const char *users[] = { "bert" };
    const int64_t counts[] = { 1 };
    const char *stored[] = { "bert", "o0" };
    struct pg_pipeline p = { .w = w, .n = 7, .is_grouped = 1 };
    const struct sent *s;

    (void)state;
    round1(&p, users, counts, 1, stored, 2);
    pg_group_plan(&p);
    assert_int_equal(w[0].rc, BACKEND_OK);
    assert_int_equal(w[1].rc, BACKEND_ERR_NOT_FOUND);
    assert_int_equal(w[2].rc, BACKEND_OK);
    assert_int_equal(w[3].rc, BACKEND_OK);
    assert_int_equal(w[4].rc, BACKEND_ERR_QUOTA);
    assert_int_equal(w[5].rc, BACKEND_OK);
    assert_int_equal(w[6].rc, BACKEND_OK);
    /* One unit: the grouped insert of o1 and o2. */
    assert_int_equal(p.nunits, 1);
    assert_int_equal(p.units[0].group, PG_GROUP_OFFLINE_PUT);
    pg_group_send(&p, PG_GROUP_OFFLINE_PUT, 0);
    s = find_sent(ST_OFFLINE_MANY);
    assert_non_null(s);
    assert_int_equal(s->n, 4);
    assert_string_equal(s->args[0], "{\"bert\",\"bert\"}");
    assert_string_equal(s->args[1], "{\"o1\",\"o2\"}");
    assert_string_equal(s->args[2], "{\"7\",\"7\"}");
    pipeline_free(&p);
}

/* Round 1 locks every account whose users row the batch updates, each
 * once, and checks the ids of the grouped offline_puts. */
static void test_first_round(void **state)
{
    char *ids[] = { "d1" };
    struct backend_write w[] = {
        put("bert", "o1", 9), put("bert", "o2", 9),
        { .kind = BW_ARCHIVE_PUT, .user = "arch", .id = "a", .jid = "j", .text = "in", .xml = "<m/>" },
        { .kind = BW_LAST_SET, .user = "last" },
        { .kind = BW_ROSTER_DEL, .user = "rost", .jid = "j" },
        del("dora", ids, 1),
    };
    struct pg_pipeline p = { .w = w, .n = 6, .is_grouped = 1 };
    const struct sent *s;

    (void)state;
    pg_group_first(&p);
    s = find_sent(ST_LOCK);
    assert_non_null(s);
    assert_string_equal(s->args[0], "{\"bert\",\"rost\",\"dora\"}");
    s = find_sent(ST_DUPS);
    assert_non_null(s);
    assert_string_equal(s->args[0], "{\"bert\",\"bert\"}");
    assert_string_equal(s->args[1], "{\"o1\",\"o2\"}");
    pipeline_free(&p);
}

/* A user with both offline_puts and offline_dels in the batch is grouped
 * in neither: those writes keep their order, after the groups. */
static void test_put_and_del_of_one_user_stay_in_order(void **state)
{
    char *c0[] = { "c0" }, *e1[] = { "e1", "e2" };
    struct backend_write w[] = {
        put("carl", "c1", 9), del("carl", c0, 1), put("dave", "d1", 9), del("erin", e1, 2),
        { .kind = BW_ARCHIVE_PUT, .user = "dave", .id = "a", .jid = "j", .text = "in", .xml = "<m/>" },
    };
    const char *users[] = { "carl", "dave", "erin" };
    const int64_t counts[] = { 0, 0, 2 };
    struct pg_pipeline p = { .w = w, .n = 5, .is_grouped = 1 };
    const struct sent *s;

    (void)state;
    round1(&p, users, counts, 3, NULL, 0);
    pg_group_plan(&p);
    assert_int_equal(p.nunits, 5);
    assert_int_equal(p.units[0].group, PG_GROUP_ARCHIVE);
    assert_int_equal(p.units[1].group, PG_GROUP_OFFLINE_PUT);
    assert_int_equal(p.units[2].group, PG_GROUP_OFFLINE_DEL);
    assert_true(p.units[3].group < 0 && p.units[3].k == 0);
    assert_true(p.units[4].group < 0 && p.units[4].k == 1);
    pg_group_send(&p, PG_GROUP_OFFLINE_DEL, 2);
    s = find_sent(ST_OFFLINE_DEL_MANY);
    assert_non_null(s);
    assert_string_equal(s->args[0], "{\"erin\",\"erin\"}");
    assert_string_equal(s->args[1], "{\"e1\",\"e2\"}");
    pg_group_send(&p, PG_GROUP_ARCHIVE, 0);
    s = find_sent(ST_ARCHIVE_MANY);
    assert_non_null(s);
    assert_int_equal(s->n, 7);
    assert_string_equal(s->args[6], "{\"dave\"}");
    pipeline_free(&p);
}

/* Ungrouped (the run after a group failed), every write is a unit of
 * its own, in order, answered by its own statement; only the locks are
 * sent in round 1. */
static void test_ungrouped_runs_every_write_alone(void **state)
{
    struct backend_write w[] = { put("bert", "o1", 1), put("bert", "o2", 1), put("nobody", "x", 1) };
    struct pg_pipeline p = { .w = w, .n = 3, .is_grouped = 0 };

    (void)state;
    pg_group_first(&p);
    assert_non_null(find_sent(ST_LOCK));
    assert_null(find_sent(ST_DUPS));
    pg_group_plan(&p);
    assert_int_equal(p.nunits, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_true(p.units[i].group < 0 && p.units[i].k == i);
        assert_int_equal(w[i].rc, 99);
    }
    pipeline_free(&p);
}

/* A batch whose offline_puts are all refused sends no insert. */
static void test_nothing_accepted_no_insert(void **state)
{
    struct backend_write w[] = { put("bert", "o1", 2), put("nobody", "x", 2) };
    const char *users[] = { "bert" };
    const int64_t counts[] = { 2 };
    struct pg_pipeline p = { .w = w, .n = 2, .is_grouped = 1 };

    (void)state;
    round1(&p, users, counts, 1, NULL, 0);
    pg_group_plan(&p);
    assert_int_equal(w[0].rc, BACKEND_ERR_QUOTA);
    assert_int_equal(w[1].rc, BACKEND_ERR_NOT_FOUND);
    assert_int_equal(p.nunits, 0);
    pipeline_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_array_literal_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pairs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_quota_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_round, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_and_del_of_one_user_stay_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ungrouped_runs_every_write_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_accepted_no_insert, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
