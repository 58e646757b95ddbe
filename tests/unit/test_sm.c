/*
 * Unit tests for gateway/sm_queue.c: the XEP-0198 counters and the queue of
 * unacknowledged stanzas (rules Q1-Q3 in sm_queue.h), including the wrap of
 * h at 2^32, and the strict parsing of 'h' attributes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sm_queue.h"
#include "util.h"

static void push_str(struct sm_queue *q, const char *s)
{
    sm_queue_push(q, xstrdup(s), strlen(s));
}

/* Pops the oldest item and checks it is exactly want. */
static void assert_pop(struct sm_queue *q, const char *want)
{
    size_t len = 0;
    char *got = sm_queue_pop(q, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    free(got);
}

/* push: counts each stanza sent and keeps its bytes. */
static void test_push_counts(void **state)
{
    struct sm_queue q;
    (void)state;
    sm_queue_init(&q);
    push_str(&q, "<message/>");
    push_str(&q, "<iq/>");
    assert_int_equal(q.sent, 2);
    assert_int_equal(q.acked, 0);
    assert_int_equal(q.len, 2);
    assert_int_equal(q.bytes, strlen("<message/>") + strlen("<iq/>"));
    sm_queue_fini(&q);
}

/* ack: drops exactly the h - acked oldest stanzas and keeps the rest in order (Q2). */
static void test_ack_trims_oldest(void **state)
{
    struct sm_queue q;
    (void)state;
    sm_queue_init(&q);
    push_str(&q, "<a1/>");
    push_str(&q, "<a2/>");
    push_str(&q, "<a3/>");
    assert_int_equal(sm_queue_ack(&q, 2), SM_QUEUE_OK);
    assert_int_equal(q.acked, 2);
    assert_int_equal(q.len, 1);
    assert_int_equal(q.bytes, strlen("<a3/>"));
    assert_pop(&q, "<a3/>");
    assert_null(sm_queue_pop(&q, &(size_t){ 0 }));
    sm_queue_fini(&q);
}

/* ack: a repeat of the last h changes nothing. */
static void test_ack_repeat_is_noop(void **state)
{
    struct sm_queue q;
    (void)state;
    sm_queue_init(&q);
    push_str(&q, "<a1/>");
    push_str(&q, "<a2/>");
    assert_int_equal(sm_queue_ack(&q, 1), SM_QUEUE_OK);
    assert_int_equal(sm_queue_ack(&q, 1), SM_QUEUE_OK);
    assert_int_equal(q.len, 1);
    assert_int_equal(sm_queue_ack(&q, 0 + 2), SM_QUEUE_OK);
    assert_int_equal(q.len, 0);
    assert_int_equal(q.bytes, 0);
    sm_queue_fini(&q);
}

/* ack: an h above the number sent is refused and the queue is unchanged (Q3). */
static void test_ack_too_high(void **state)
{
    struct sm_queue q;
    (void)state;
    sm_queue_init(&q);
    push_str(&q, "<a1/>");
    push_str(&q, "<a2/>");
    assert_int_equal(sm_queue_ack(&q, 3), SM_QUEUE_ERR_RANGE);
    assert_int_equal(q.len, 2);
    assert_int_equal(q.acked, 0);
    assert_pop(&q, "<a1/>");
    sm_queue_fini(&q);
}

/* ack: an h lower than one already acknowledged is refused (Q3). */
static void test_ack_going_back(void **state)
{
    struct sm_queue q;
    (void)state;
    sm_queue_init(&q);
    push_str(&q, "<a1/>");
    push_str(&q, "<a2/>");
    push_str(&q, "<a3/>");
    assert_int_equal(sm_queue_ack(&q, 2), SM_QUEUE_OK);
    assert_int_equal(sm_queue_ack(&q, 1), SM_QUEUE_ERR_RANGE);
    assert_int_equal(q.acked, 2);
    assert_int_equal(q.len, 1);
    sm_queue_fini(&q);
}

/* ack: with nothing sent, any h but 0 is refused. */
static void test_ack_empty(void **state)
{
    struct sm_queue q;
    (void)state;
    sm_queue_init(&q);
    assert_int_equal(sm_queue_ack(&q, 0), SM_QUEUE_OK);
    assert_int_equal(sm_queue_ack(&q, 1), SM_QUEUE_ERR_RANGE);
    assert_int_equal(sm_queue_ack(&q, UINT32_MAX), SM_QUEUE_ERR_RANGE);
    sm_queue_fini(&q);
}

/* Q1: the count wraps from 2^32 - 1 to 0, and acks across the wrap trim correctly. */
static void test_wrap_at_2_32(void **state)
{
    struct sm_queue q;
    (void)state;
    sm_queue_init(&q);
    q.sent = q.acked = UINT32_MAX - 1;
    push_str(&q, "<w1/>");   /* number 2^32 - 1 */
    push_str(&q, "<w2/>");   /* number 0 */
    push_str(&q, "<w3/>");   /* number 1 */
    assert_int_equal(q.sent, 1);
    assert_int_equal(sm_queue_ack(&q, 2), SM_QUEUE_ERR_RANGE);
    assert_int_equal(sm_queue_ack(&q, UINT32_MAX), SM_QUEUE_OK);
    assert_int_equal(q.len, 2);
    assert_int_equal(sm_queue_ack(&q, 0), SM_QUEUE_OK);
    assert_int_equal(q.len, 1);
    assert_pop(&q, "<w3/>");
    sm_queue_fini(&q);
}

/* pop: hands out the oldest first and leaves the counters alone. */
static void test_pop_in_order(void **state)
{
    struct sm_queue q;
    (void)state;
    sm_queue_init(&q);
    push_str(&q, "<p1/>");
    push_str(&q, "<p2/>");
    assert_pop(&q, "<p1/>");
    assert_pop(&q, "<p2/>");
    assert_null(sm_queue_pop(&q, &(size_t){ 0 }));
    assert_int_equal(q.sent, 2);
    assert_int_equal(q.acked, 0);
    assert_int_equal(q.len, 0);
    assert_int_equal(q.bytes, 0);
    push_str(&q, "<p3/>");   /* the queue is usable after being emptied */
    assert_pop(&q, "<p3/>");
    sm_queue_fini(&q);
}

/* parse_h: plain decimals from 0 to 2^32 - 1. */
static void test_parse_h_valid(void **state)
{
    uint32_t h = 7;
    (void)state;
    assert_int_equal(sm_queue_parse_h("0", &h), SM_QUEUE_OK);
    assert_int_equal(h, 0);
    assert_int_equal(sm_queue_parse_h("42", &h), SM_QUEUE_OK);
    assert_int_equal(h, 42);
    assert_int_equal(sm_queue_parse_h("4294967295", &h), SM_QUEUE_OK);
    assert_int_equal(h, UINT32_MAX);
    assert_int_equal(sm_queue_parse_h("0000000001", &h), SM_QUEUE_OK);
    assert_int_equal(h, 1);
}

/* parse_h: anything else is a syntax error and leaves *out alone. */
static void test_parse_h_invalid(void **state)
{
    static const char *bad[] = { "", "4294967296", "99999999999", "-1", "+1", " 1", "1 ", "0x10", "1.0", "abc" };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t h = 7;
        assert_int_equal(sm_queue_parse_h(bad[i], &h), SM_QUEUE_ERR_SYNTAX);
        assert_int_equal(h, 7);
    }
    assert_int_equal(sm_queue_parse_h(NULL, &(uint32_t){ 0 }), SM_QUEUE_ERR_SYNTAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_counts),
        cmocka_unit_test(test_ack_trims_oldest),
        cmocka_unit_test(test_ack_repeat_is_noop),
        cmocka_unit_test(test_ack_too_high),
        cmocka_unit_test(test_ack_going_back),
        cmocka_unit_test(test_ack_empty),
        cmocka_unit_test(test_wrap_at_2_32),
        cmocka_unit_test(test_pop_in_order),
        cmocka_unit_test(test_parse_h_valid),
        cmocka_unit_test(test_parse_h_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
