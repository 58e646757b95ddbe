/* The router's storage job broker (router/jobs.c) against a worker played
 * by a DEALER socket over inproc ZeroMQ: what is sent in which order (J1,
 * J2, J5), and that every job is answered once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "../../router/jobs.h"
#include "../../router/router.h"
#include "envelope.h"
#include "outbox.h"

#define WORKER "w1"
#define JOBS_PER_WORKER 256   /* router/jobs.c J2 */

struct fixture {
    struct config conf;
    struct router r;
    void *worker;             /* DEALER: plays storage worker WORKER */
    struct envelope_reader rd;
    int answered;             /* results handed to on_done */
    char last_done[32];
};

/* Jobs still pending when the broker is freed have their context freed
 * with them (jobs.c), so the jobs here carry none and find the fixture
 * here. */
static struct fixture *fx;

static void on_done(struct router *r, const struct envelope *res, void *ctx)
{
    struct fixture *f = fx;
    (void)r;
    (void)ctx;
    f->answered++;
    snprintf(f->last_done, sizeof(f->last_done), "%s", envelope_get(res, ENV_JOB));
}

static int setup(void **state)
{
    static struct fixture f;
    int zero = 0;

    memset(&f, 0, sizeof(f));
    f.conf.router.job_queue_max = 100000;
    f.conf.router.job_timeout_ms = 30000;
    f.conf.router.peer_timeout_ms = 5000;
    f.r.conf = &f.conf;
    f.r.loop = ev_loop_new(EVFLAG_AUTO);
    f.r.zctx = zmq_ctx_new();
    f.r.st_sock = zmq_socket(f.r.zctx, ZMQ_ROUTER);
    zmq_setsockopt(f.r.st_sock, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_bind(f.r.st_sock, "inproc://jobs-test"), 0);
    f.worker = zmq_socket(f.r.zctx, ZMQ_DEALER);
    zmq_setsockopt(f.worker, ZMQ_ROUTING_ID, WORKER, strlen(WORKER));
    zmq_setsockopt(f.worker, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_connect(f.worker, "inproc://jobs-test"), 0);
    envelope_reader_init(&f.rd, f.worker, 0);
    f.r.st_out = outbox_new(f.r.loop, f.r.st_sock, "storage workers");
    f.r.jobs = jobs_new(&f.r);

    struct envelope *hello = envelope_new(OP_HELLO);
    envelope_set_int(hello, ENV_PID, 4242);
    jobs_on_worker_message(&f.r, WORKER, hello);
    envelope_free(hello);
    fx = &f;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    jobs_free(f->r.jobs);
    outbox_free(f->r.st_out);
    zmq_close(f->worker);
    zmq_close(f->r.st_sock);
    zmq_ctx_term(f->r.zctx);
    ev_loop_destroy(f->r.loop);
    return 0;
}

static void submit(struct fixture *f, const char *what, const char *user, const char *id)
{
    struct envelope *job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, what);
    envelope_set(job, ENV_JOB, id);
    envelope_set(job, ENV_USER, user);
    jobs_submit(&f->r, &job, on_done, NULL);
}

/* The jobs the worker received since the last call (hello answers
 * skipped), at most max: their "what" and router ids, in order. */
static size_t received(struct fixture *f, char what[][16], char rid[][24], size_t max)
{
    size_t n = 0;
    struct envelope *e;

    outbox_flush(f->r.st_out);
    while (envelope_recv(&f->rd, &e) == 0) {
        if (e->op == OP_JOB) {
            assert_true(n < max);
            snprintf(what[n], 16, "%s", envelope_get(e, ENV_WHAT));
            snprintf(rid[n], 24, "%s", envelope_get(e, ENV_JOB));
            n++;
        }
        envelope_free(e);
    }
    return n;
}

/* The worker answers router id rid. */
static void answer(struct fixture *f, const char *rid)
{
    struct envelope *res = envelope_new(OP_JOB_RESULT);
    envelope_set(res, ENV_JOB, rid);
    jobs_on_worker_message(&f->r, WORKER, res);
    envelope_free(res);
}

static char what[1024][16], rid[1024][24];

/* J2: at most JOBS_PER_WORKER in flight, the rest queued; J5: a read of a
 * user with nothing pending overtakes the queued writes of another user;
 * J1: a read of a user whose writes are queued waits behind them. */
static void test_read_overtakes_other_users_writes(void **state)
{
    struct fixture *f = *state;
    static char first[JOBS_PER_WORKER][24];
    char id[32];
    size_t writes = 0, n;
    int fetched = 0;

    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof(id), "put%d", i);
        submit(f, "offline_put", "alice@x", id);
    }
    submit(f, "cred_get", "bob@x", "login-bob");
    submit(f, "offline_get", "alice@x", "fetch-alice");
    assert_int_equal(received(f, what, rid, 1024), JOBS_PER_WORKER);
    for (int i = 0; i < JOBS_PER_WORKER; i++) {
        assert_string_equal(what[i], "offline_put");
        memcpy(first[i], rid[i], sizeof(first[i]));
    }
    assert_int_equal(jobs_queued(&f->r), 300 - JOBS_PER_WORKER + 2);

    /* One answer frees one slot: bob's login goes before alice's writes. */
    answer(f, first[0]);
    assert_int_equal(f->answered, 1);
    assert_string_equal(f->last_done, "put0");
    assert_int_equal(received(f, what, rid, 1024), 1);
    assert_string_equal(what[0], "cred_get");
    answer(f, rid[0]);
    assert_string_equal(f->last_done, "login-bob");

    /* Then alice's remaining writes, in order, and only then her read. */
    for (int i = 1; i < JOBS_PER_WORKER; i++)
        answer(f, first[i]);
    while ((n = received(f, what, rid, 1024)) > 0) {
        for (size_t i = 0; i < n; i++) {
            if (strcmp(what[i], "offline_get") == 0) {
                assert_int_equal(writes, 300 - JOBS_PER_WORKER);
                fetched = 1;
            } else {
                assert_false(fetched);
                assert_string_equal(what[i], "offline_put");
                writes++;
            }
            answer(f, rid[i]);
        }
    }
    assert_true(fetched);
    assert_int_equal(f->answered, 302);
    assert_string_equal(f->last_done, "fetch-alice");
    assert_int_equal(jobs_queued(&f->r), 0);
}

/* J5 is for reads only: a write of a user with nothing pending queues
 * behind the others. */
static void test_write_does_not_overtake(void **state)
{
    struct fixture *f = *state;
    char id[32];

    for (int i = 0; i < JOBS_PER_WORKER + 1; i++) {
        snprintf(id, sizeof(id), "put%d", i);
        submit(f, "offline_put", "alice@x", id);
    }
    submit(f, "last_set", "bob@x", "bob-last");
    assert_int_equal(received(f, what, rid, 1024), JOBS_PER_WORKER);
    answer(f, rid[0]);
    assert_int_equal(received(f, what, rid, 1024), 1);
    assert_string_equal(what[0], "offline_put");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_overtakes_other_users_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_does_not_overtake, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
