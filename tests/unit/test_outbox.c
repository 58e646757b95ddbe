/* Batched envelopes over real ZeroMQ sockets (inproc): outbox.h and the
 * multi-envelope reading of envelope_recv. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <zmq.h>

#include "envelope.h"
#include "outbox.h"

struct pair {
    void *ctx, *router, *dealer_a, *dealer_b;
    struct ev_loop *loop;
};

static int setup(void **state)
{
    static struct pair p;
    int zero = 0;
    p.ctx = zmq_ctx_new();
    p.router = zmq_socket(p.ctx, ZMQ_ROUTER);
    zmq_setsockopt(p.router, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_bind(p.router, "inproc://outbox-test"), 0);
    p.dealer_a = zmq_socket(p.ctx, ZMQ_DEALER);
    p.dealer_b = zmq_socket(p.ctx, ZMQ_DEALER);
    zmq_setsockopt(p.dealer_a, ZMQ_ROUTING_ID, "a", 1);
    zmq_setsockopt(p.dealer_b, ZMQ_ROUTING_ID, "b", 1);
    zmq_setsockopt(p.dealer_a, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(p.dealer_b, ZMQ_LINGER, &zero, sizeof(zero));
    assert_int_equal(zmq_connect(p.dealer_a, "inproc://outbox-test"), 0);
    assert_int_equal(zmq_connect(p.dealer_b, "inproc://outbox-test"), 0);
    p.loop = ev_loop_new(EVFLAG_AUTO);
    *state = &p;
    return 0;
}

static int teardown(void **state)
{
    struct pair *p = *state;
    zmq_close(p->dealer_a);
    zmq_close(p->dealer_b);
    zmq_close(p->router);
    zmq_ctx_term(p->ctx);
    ev_loop_destroy(p->loop);
    return 0;
}

static struct envelope *deliver(int conn, const char *payload)
{
    struct envelope *e = envelope_new(OP_DELIVER);
    envelope_set_int(e, ENV_CONN, conn);
    if (payload)
        envelope_set_payload(e, payload, strlen(payload));
    return e;
}

/* Counts the ZeroMQ messages queued on sock (each may hold many envelopes)
 * without consuming envelopes: reads raw frames. */
static int count_messages(void *sock, int *frames)
{
    int msgs = 0;
    *frames = 0;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return msgs;
        }
        (*frames)++;
        if (!zmq_msg_more(&m))
            msgs++;
        zmq_msg_close(&m);
    }
}

/* Envelopes put in one turn reach the peer in one message, in order, each
 * with its own payload or none. */
static void test_batch_in_order(void **state)
{
    struct pair *p = *state;
    struct outbox *o = outbox_new(p->loop, p->router, "test");
    struct envelope_reader rd;
    struct envelope *e;
    const char *payloads[] = { "<message id='1'/>", NULL, "<message id='3'/>", "" };

    for (int i = 0; i < 4; i++) {
        e = deliver(i, payloads[i]);
        outbox_put(o, "a", &e);
        assert_null(e);
    }
    assert_int_equal(outbox_pending(o), 4);
    assert_int_equal(outbox_flush(o), 0);
    assert_int_equal(outbox_pending(o), 0);

    envelope_reader_init(&rd, p->dealer_a, 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(envelope_recv(&rd, &e), ENVELOPE_OK);
        assert_int_equal(e->op, OP_DELIVER);
        assert_true(envelope_get_int(e, ENV_CONN, -1) == i);
        if (payloads[i]) {
            assert_non_null(e->payload);
            assert_string_equal(e->payload, payloads[i]);
        } else {
            assert_null(e->payload);
        }
        /* Only the last envelope ends the message. */
        assert_int_equal(rd.in_message, i < 3);
        envelope_free(e);
    }
    assert_int_equal(envelope_recv(&rd, &e), ENVELOPE_AGAIN);
    outbox_free(o);
}

/* One ROUTER outbox keeps each peer's envelopes apart: one message per peer,
 * and the reader on the other side names the sender. */
static void test_peers_apart(void **state)
{
    struct pair *p = *state;
    struct outbox *o = outbox_new(p->loop, p->router, "test");
    struct outbox *oa = outbox_new(p->loop, p->dealer_a, "test-a");
    struct envelope_reader rd;
    struct envelope *e;
    int frames;

    e = deliver(1, "<a1/>");
    outbox_put(o, "a", &e);
    e = deliver(2, "<b1/>");
    outbox_put(o, "b", &e);
    e = deliver(3, "<a2/>");
    outbox_put(o, "a", &e);
    outbox_flush(o);
    assert_int_equal(count_messages(p->dealer_a, &frames), 1);
    assert_int_equal(frames, 4);
    assert_int_equal(count_messages(p->dealer_b, &frames), 1);
    assert_int_equal(frames, 2);

    /* The other way: a DEALER's batch arrives with its identity. */
    e = deliver(7, NULL);
    outbox_put(oa, NULL, &e);
    e = deliver(8, "<x/>");
    outbox_put(oa, NULL, &e);
    outbox_flush(oa);
    envelope_reader_init(&rd, p->router, 1);
    assert_int_equal(envelope_recv(&rd, &e), ENVELOPE_OK);
    assert_string_equal(rd.peer, "a");
    assert_true(envelope_get_int(e, ENV_CONN, -1) == 7);
    envelope_free(e);
    assert_int_equal(envelope_recv(&rd, &e), ENVELOPE_OK);
    assert_string_equal(rd.peer, "a");
    assert_string_equal(e->payload, "<x/>");
    envelope_free(e);
    assert_int_equal(envelope_recv(&rd, &e), ENVELOPE_AGAIN);
    outbox_free(o);
    outbox_free(oa);
}

/* A full batch leaves at once, before the flush; the rest waits for it. */
static void test_full_batch_leaves_early(void **state)
{
    struct pair *p = *state;
    struct outbox *o = outbox_new(p->loop, p->router, "test");
    struct envelope *e;
    int frames;

    for (int i = 0; i < 300; i++) {
        e = deliver(i, NULL);
        outbox_put(o, "b", &e);
    }
    assert_int_equal(count_messages(p->dealer_b, &frames), 1);
    assert_int_equal(frames, 256);
    assert_int_equal(outbox_pending(o), 44);
    outbox_flush(o);
    assert_int_equal(count_messages(p->dealer_b, &frames), 1);
    assert_int_equal(frames, 44);
    outbox_free(o);
}

/* A copy goes out and the original stays the caller's, unchanged. */
static void test_put_copy_keeps_original(void **state)
{
    struct pair *p = *state;
    struct outbox *o = outbox_new(p->loop, p->router, "test");
    struct envelope_reader rd;
    struct envelope *kept = deliver(5, "<kept/>"), *e;

    outbox_put_copy(o, "a", kept);
    outbox_flush(o);
    assert_string_equal(kept->payload, "<kept/>");
    assert_true(envelope_get_int(kept, ENV_CONN, -1) == 5);
    envelope_reader_init(&rd, p->dealer_a, 0);
    assert_int_equal(envelope_recv(&rd, &e), ENVELOPE_OK);
    assert_string_equal(e->payload, "<kept/>");
    assert_true(envelope_get_int(e, ENV_CONN, -1) == 5);
    envelope_free(e);
    envelope_free(kept);
    outbox_free(o);
}

/* A send to an unknown peer on a ROUTER_MANDATORY socket drops that batch
 * (counted) and leaves the other peers' batches alone. */
static void test_unroutable_peer_dropped(void **state)
{
    struct pair *p = *state;
    struct outbox *o;
    struct envelope *e;
    int one = 1, frames;

    zmq_setsockopt(p->router, ZMQ_ROUTER_MANDATORY, &one, sizeof(one));
    o = outbox_new(p->loop, p->router, "test");
    e = deliver(1, "<gone/>");
    outbox_put(o, "nobody", &e);
    e = deliver(2, "<here/>");
    outbox_put(o, "a", &e);
    assert_int_equal(outbox_flush(o), 1);
    assert_int_equal(count_messages(p->dealer_a, &frames), 1);
    assert_int_equal(frames, 2);
    outbox_free(o);
}

/* A header that does not decode spoils only its own message: the reader
 * skips the rest of it and reads the next message normally. */
static void test_bad_envelope_skips_message(void **state)
{
    struct pair *p = *state;
    struct envelope_reader rd;
    struct envelope *e;
    const char *good = "{\"v\":2,\"op\":\"heartbeat\"}";

    zmq_send(p->dealer_a, "{\"v\":2,\"op\":\"teleport\"}", 23, ZMQ_SNDMORE);
    zmq_send(p->dealer_a, good, strlen(good), 0);
    zmq_send(p->dealer_a, good, strlen(good), 0);
    envelope_reader_init(&rd, p->router, 1);
    assert_int_equal(envelope_recv(&rd, &e), ENVELOPE_ERR_OP);
    assert_null(e);
    assert_int_equal(rd.in_message, 0);
    assert_int_equal(envelope_recv(&rd, &e), ENVELOPE_OK);
    assert_int_equal(e->op, OP_HEARTBEAT);
    envelope_free(e);
    assert_int_equal(envelope_recv(&rd, &e), ENVELOPE_AGAIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_batch_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peers_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_batch_leaves_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_copy_keeps_original, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unroutable_peer_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_envelope_skips_message, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
