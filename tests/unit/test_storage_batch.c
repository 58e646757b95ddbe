/*
 * Unit tests for storage/batch.c against a fake backend that records the
 * order of its calls: runs of batched writes become one write() call,
 * anything else cuts the run and runs in between, results come back in
 * arrival order, bad requests are answered in place, and a failed
 * transaction answers every write of it "unavailable".
 *
 * The storage sources are included rather than linked so that `make unit`
 * builds this file with the common library alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../storage/backend.c"
#include "../../storage/batch.c"
#include "../../storage/jobs.c"
#include "../../storage/jobs_archive.c"
#include "../../storage/jobs_last.c"
#include "../../storage/jobs_offline.c"
#include "../../storage/jobs_roster.c"

struct fake {
    struct backend base;
    int write_rc;          /* what write() returns as the transaction's outcome */
    int per_write_rc;      /* what it sets in every w[i].rc when the transaction commits */
    struct buf trace;      /* "W3 R " : a write call of 3, a read ... */
};

static struct fake *fk(struct backend *b) { return (struct fake *)b; }

static int f_write(struct backend *b, struct backend_write *w, size_t n)
{
    buf_printf(&fk(b)->trace, "W%zu ", n);
    for (size_t i = 0; i < n; i++)
        w[i].rc = fk(b)->write_rc == BACKEND_OK ? fk(b)->per_write_rc : fk(b)->write_rc;
    return fk(b)->write_rc;
}

static int f_offline_get(struct backend *b, const char *user, struct offline_list *l)
{
    (void)user;
    (void)l;
    buf_append_str(&fk(b)->trace, "R ");
    return BACKEND_OK;
}

static int f_user_del(struct backend *b, const char *user)
{
    (void)user;
    buf_append_str(&fk(b)->trace, "D ");
    return BACKEND_OK;
}

static const struct backend_ops fake_ops = {
    .name = "fake", .migration_suffix = "fake", .write = f_write, .offline_get = f_offline_get,
    .user_del = f_user_del,
};

/* The results handed to done, in order. */
struct got {
    struct envelope *res[32];
    size_t n;
};

static void done(void *ctx, struct envelope *res)
{
    struct got *g = ctx;
    assert_true(g->n < 32);
    g->res[g->n++] = res;
}

static struct envelope *job(int seq, const char *what)
{
    struct envelope *e = envelope_new(OP_JOB);
    char id[16];
    snprintf(id, sizeof(id), "j%d", seq);
    envelope_set(e, ENV_WHAT, what);
    envelope_set(e, ENV_JOB, id);
    envelope_set(e, ENV_USER, "alice@example.org");
    if (strcmp(what, "pending_put") == 0)
        envelope_set(e, ENV_JID, "bob@example.org");
    if (strcmp(what, "offline_del") == 0)
        envelope_set_payload(e, "x\n", 2);
    return e;
}

/* Runs the kinds in order on f; checks every result echoes its job; returns
 * the trace. The results stay in g (freed by got_fini). */
static const char *run(struct fake *f, const char *const *kinds, size_t n, struct got *g)
{
    struct envelope *jobs[32] = { NULL };

    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++)
        jobs[i] = job((int)i, kinds[i]);
    batch_run(&f->base, jobs, n, done, g);
    assert_int_equal(g->n, n);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "j%zu", i);
        assert_string_equal(envelope_get(g->res[i], ENV_JOB), id);
        envelope_free(jobs[i]);
    }
    return f->trace.data ? f->trace.data : "";
}

static const char *err(struct got *g, size_t i)
{
    const char *e = envelope_get(g->res[i], ENV_ERROR);
    return e ? e : "ok";
}

static void got_fini(struct got *g)
{
    for (size_t i = 0; i < g->n; i++)
        envelope_free(g->res[i]);
}

static struct fake fake_new(void)
{
    struct fake f = { .base = { .ops = &fake_ops, .job = "-" }, .write_rc = BACKEND_OK, .per_write_rc = BACKEND_OK };
    buf_init(&f.trace);
    return f;
}

/* Consecutive writes of different kinds go to the backend as one call. */
static void test_writes_share_one_transaction(void **state)
{
    const char *kinds[] = { "pending_put", "offline_del", "pending_put", "offline_del" };
    struct fake f = fake_new();
    struct got g = { .n = 0 };
    (void)state;
    assert_string_equal(run(&f, kinds, 4, &g), "W4 ");
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(err(&g, i), "ok");
    got_fini(&g);
    buf_fini(&f.trace);
}

/* A read or an account job cuts the run: writes before it, it, writes after. */
static void test_reads_cut_the_run(void **state)
{
    const char *kinds[] = { "pending_put", "pending_put", "offline_get", "offline_del", "user_del", "pending_put" };
    struct fake f = fake_new();
    struct got g = { .n = 0 };
    (void)state;
    assert_string_equal(run(&f, kinds, 6, &g), "W2 R W1 D W1 ");
    got_fini(&g);
    buf_fini(&f.trace);
}

/* A bad request inside a run is answered in its place and does not cut it. */
static void test_bad_request_answered_in_place(void **state)
{
    const char *kinds[] = { "pending_put", "last_set", "offline_del" };   /* last_set without since */
    struct fake f = fake_new();
    struct got g = { .n = 0 };
    (void)state;
    assert_string_equal(run(&f, kinds, 3, &g), "W2 ");
    assert_string_equal(err(&g, 0), "ok");
    assert_string_equal(err(&g, 1), "bad-request");
    assert_string_equal(err(&g, 2), "ok");
    got_fini(&g);
    buf_fini(&f.trace);
}

/* A run of bad requests only never reaches the backend. */
static void test_only_bad_requests_no_transaction(void **state)
{
    const char *kinds[] = { "last_set", "roster_put" };
    struct fake f = fake_new();
    struct got g = { .n = 0 };
    (void)state;
    assert_string_equal(run(&f, kinds, 2, &g), "");
    assert_string_equal(err(&g, 0), "bad-request");
    assert_string_equal(err(&g, 1), "bad-request");
    got_fini(&g);
    buf_fini(&f.trace);
}

/* Each write's own outcome becomes its result. */
static void test_per_write_outcome(void **state)
{
    const char *kinds[] = { "pending_put", "pending_put" };
    struct fake f = fake_new();
    struct got g = { .n = 0 };
    (void)state;
    f.per_write_rc = BACKEND_ERR_NOT_FOUND;
    run(&f, kinds, 2, &g);
    assert_string_equal(err(&g, 0), "not-found");
    assert_string_equal(err(&g, 1), "not-found");
    got_fini(&g);
    buf_fini(&f.trace);
}

/* A transaction that failed answers all its writes unavailable, and the
 * jobs after it still run. */
static void test_failed_transaction_is_unavailable(void **state)
{
    const char *kinds[] = { "pending_put", "offline_del", "offline_get" };
    struct fake f = fake_new();
    struct got g = { .n = 0 };
    (void)state;
    f.write_rc = BACKEND_ERR_UNAVAILABLE;
    assert_string_equal(run(&f, kinds, 3, &g), "W2 R ");
    assert_string_equal(err(&g, 0), "unavailable");
    assert_string_equal(err(&g, 1), "unavailable");
    assert_string_equal(err(&g, 2), "ok");
    got_fini(&g);
    buf_fini(&f.trace);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writes_share_one_transaction),
        cmocka_unit_test(test_reads_cut_the_run),
        cmocka_unit_test(test_bad_request_answered_in_place),
        cmocka_unit_test(test_only_bad_requests_no_transaction),
        cmocka_unit_test(test_per_write_outcome),
        cmocka_unit_test(test_failed_transaction_is_unavailable),
    };
    log_init("test", LOGL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
