/* The wire format between processes: golden JSON, decode rules, versions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "buf.h"
#include "envelope.h"

/* Encoding writes v, op, then the set string and integer fields in table order. */
static void test_encode_golden(void **state)
{
    (void)state;
    struct envelope *e = envelope_new(OP_STANZA);
    struct buf b;
    envelope_set(e, ENV_FROM, "alice@example.org/phone");
    envelope_set(e, ENV_TO, "bob@example.org");
    envelope_set(e, ENV_KIND, "message");
    envelope_set(e, ENV_TYPE, "chat");
    envelope_set_int(e, ENV_CONN, 42);
    envelope_set_int(e, ENV_FLAGS, STANZA_FLAG_BODY);
    buf_init(&b);
    envelope_encode(e, &b);
    assert_string_equal(b.data, "{\"v\":2,\"op\":\"stanza\",\"from\":\"alice@example.org/phone\","
                                "\"to\":\"bob@example.org\",\"kind\":\"message\",\"type\":\"chat\","
                                "\"conn\":42,\"flags\":1}");
    buf_fini(&b);
    envelope_free(e);
}

/* Strings with quotes, backslashes and non-ASCII survive a round trip. */
static void test_round_trip_escaping(void **state)
{
    (void)state;
    struct envelope *e = envelope_new(OP_ADMIN), *d = NULL;
    struct buf b;
    envelope_set(e, ENV_TEXT, "say \"hi\" \\ n\xc3\xa4\n\t");
    envelope_set_int(e, ENV_SINCE, -5);
    envelope_set_int(e, ENV_STAMP, 1700000000123456LL);
    buf_init(&b);
    envelope_encode(e, &b);
    assert_int_equal(envelope_decode(b.data, b.len, &d), ENVELOPE_OK);
    assert_int_equal(d->op, OP_ADMIN);
    assert_string_equal(envelope_get(d, ENV_TEXT), "say \"hi\" \\ n\xc3\xa4\n\t");
    assert_true(envelope_get_int(d, ENV_SINCE, 0) == -5);
    assert_true(envelope_get_int(d, ENV_STAMP, 0) == 1700000000123456LL);
    assert_false(envelope_has_int(d, ENV_CONN));
    assert_null(envelope_get(d, ENV_FROM));
    buf_fini(&b);
    envelope_free(e);
    envelope_free(d);
}

/* Unknown keys are optional fields of a newer minor revision: ignored. */
static void test_unknown_keys_ignored(void **state)
{
    (void)state;
    struct envelope *d = NULL;
    const char *j = "{\"v\":2,\"op\":\"heartbeat\",\"future\":\"x\",\"n\":3,\"b\":true,\"z\":null}";
    assert_int_equal(envelope_decode(j, strlen(j), &d), ENVELOPE_OK);
    assert_int_equal(d->op, OP_HEARTBEAT);
    envelope_free(d);
}

/* Another version, no version, unknown op, nesting, bad JSON, wrong types are refused. */
static void test_refusals(void **state)
{
    (void)state;
    struct envelope *d = NULL;
    const char *cases[][2] = {
        { "{\"v\":1,\"op\":\"hello\"}", "version" },
        { "{\"v\":3,\"op\":\"hello\"}", "version" },
        { "{\"op\":\"hello\"}", "version" },
        { "{\"v\":2,\"op\":\"teleport\"}", "op" },
        { "{\"v\":2}", "op" },
        { "{\"v\":2,\"op\":\"hello\",\"from\":{\"x\":1}}", "json" },
        { "{\"v\":2,\"op\":\"hello\",\"from\":[1]}", "json" },
        { "{\"v\":2,\"op\":\"hello\",\"from\":5}", "json" },
        { "{\"v\":2,\"op\":\"hello\",\"conn\":\"5\"}", "json" },
        { "{\"v\":2,\"op\":", "json" },
        { "[]", "json" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = envelope_decode(cases[i][0], strlen(cases[i][0]), &d);
        int want = strcmp(cases[i][1], "version") == 0 ? ENVELOPE_ERR_VERSION
                   : strcmp(cases[i][1], "op") == 0    ? ENVELOPE_ERR_OP
                                                       : ENVELOPE_ERR_JSON;
        assert_int_equal(rc, want);
        assert_null(d);
    }
}

/* A header announces its payload frame with "p":1, after the fields. */
static void test_payload_flag(void **state)
{
    (void)state;
    struct envelope *e = envelope_new(OP_DELIVER), *d = NULL;
    struct buf b;
    int has_payload = -1;
    envelope_set_int(e, ENV_CONN, 3);
    envelope_set_payload(e, "<message/>", 10);
    buf_init(&b);
    envelope_encode(e, &b);
    assert_string_equal(b.data, "{\"v\":2,\"op\":\"deliver\",\"conn\":3,\"p\":1}");
    assert_int_equal(envelope_decode_framed(b.data, b.len, &d, &has_payload), ENVELOPE_OK);
    assert_int_equal(has_payload, 1);
    assert_null(d->payload); /* the payload is the next frame's, not the header's */
    envelope_free(d);
    d = NULL;
    const char *hb = "{\"v\":2,\"op\":\"heartbeat\"}";
    assert_int_equal(envelope_decode_framed(hb, strlen(hb), &d, &has_payload), ENVELOPE_OK);
    assert_int_equal(has_payload, 0);
    buf_fini(&b);
    envelope_free(e);
    envelope_free(d);
}

/* A copy is deep: changing the copy leaves the original alone. */
static void test_copy(void **state)
{
    (void)state;
    struct envelope *e = envelope_new(OP_DELIVER), *c;
    envelope_set(e, ENV_ACK, "off:1");
    envelope_set_int(e, ENV_CONN, 7);
    envelope_set_payload(e, "<message/>", 10);
    c = envelope_copy(e);
    envelope_set(c, ENV_ACK, "other");
    assert_string_equal(envelope_get(e, ENV_ACK), "off:1");
    assert_true(envelope_get_int(c, ENV_CONN, 0) == 7);
    assert_int_equal(c->payload_len, 10);
    assert_string_equal(c->payload, "<message/>");
    envelope_free(e);
    envelope_free(c);
}

/* Every op has a name that decodes back to it. */
static void test_op_names_round_trip(void **state)
{
    (void)state;
    for (int op = OP_NONE + 1; op < OP_COUNT; op++) {
        struct envelope *e = envelope_new((enum envelope_op)op), *d = NULL;
        struct buf b;
        buf_init(&b);
        envelope_encode(e, &b);
        assert_int_equal(envelope_decode(b.data, b.len, &d), ENVELOPE_OK);
        assert_int_equal(d->op, op);
        buf_fini(&b);
        envelope_free(e);
        envelope_free(d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_golden),
        cmocka_unit_test(test_round_trip_escaping),
        cmocka_unit_test(test_unknown_keys_ignored),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_payload_flag),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_op_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
