/*
 * Unit tests for storage/jobs.c against a fake backend: request checks
 * (bad-request never reaches the database), the backend-code -> wire-error
 * map, what a result echoes, and the roster payload's XML.
 *
 * jobs.c and backend.c are included rather than linked so that `make unit`
 * builds this file with the common library alone (see the Makefile's
 * UNIT_EXTRA_* for the alternative).
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
#include "../../storage/jobs.c"

/* ---- a fake backend that records its calls --------------------------- */

struct fake {
    struct backend base;
    int rc;                 /* what every operation returns */
    int calls;
    char user[4096];        /* user of the last call */
    char job_seen[64];      /* b->job during the last call */
};

static struct fake *fk(struct backend *b) { return (struct fake *)b; }

static void record(struct backend *b, const char *user)
{
    fk(b)->calls++;
    snprintf(fk(b)->user, sizeof(fk(b)->user), "%s", user ? user : "(null)");
    snprintf(fk(b)->job_seen, sizeof(fk(b)->job_seen), "%s", b->job);
}

static int f_user_add(struct backend *b, const char *user, const char *s1, const char *s256)
{
    (void)s1;
    (void)s256;
    record(b, user);
    return fk(b)->rc;
}

static int f_user_del(struct backend *b, const char *user)
{
    record(b, user);
    return fk(b)->rc;
}

static int f_user_list(struct backend *b, struct buf *out)
{
    record(b, NULL);
    buf_append_str(out, "a@x\nb@x\n");
    return fk(b)->rc;
}

static int f_cred_get(struct backend *b, const char *user, char **s1, char **s256)
{
    record(b, user);
    *s1 = *s256 = NULL;
    if (fk(b)->rc == BACKEND_OK) {
        *s1 = xstrdup("sha1-cred");
        *s256 = xstrdup("sha256-cred");
    }
    return fk(b)->rc;
}

static int f_roster_get(struct backend *b, const char *user, struct roster *r)
{
    record(b, user);
    backend_roster_add(r, "bob@example.org", "Bob", "both", NULL);
    return fk(b)->rc;
}

static const struct backend_ops fake_ops = {
    .name = "fake", .migration_suffix = "fake",
    .user_add = f_user_add, .user_del = f_user_del, .user_list = f_user_list,
    .cred_get = f_cred_get, .roster_get = f_roster_get,
};

static struct fake fake_new(int rc)
{
    struct fake f = { .base = { .ops = &fake_ops, .job = "-" }, .rc = rc };
    return f;
}

static struct envelope *job_new(const char *what, const char *user)
{
    struct envelope *e = envelope_new(OP_JOB);
    envelope_set(e, ENV_WHAT, what);
    envelope_set(e, ENV_JOB, "j1");
    envelope_set(e, ENV_USER, user);
    return e;
}

/* Credentials in scram_cred_encode form with keys of hash_len bytes. */
static const char *CRED_SHA1 = "4096$c2FsdHNhbHRzYWx0c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
static const char *CRED_SHA256 = "4096$c2FsdHNhbHRzYWx0c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/* Runs one job on a fake returning rc; returns the result (caller frees). */
static struct envelope *run(struct fake *f, struct envelope *job)
{
    struct envelope *res = jobs_run(&f->base, job);
    envelope_free(job);
    assert_non_null(res);
    assert_int_equal(res->op, OP_JOB_RESULT);
    return res;
}

/* ---- tests ------------------------------------------------------------- */

/* cred_get returns both stored credentials and echoes job, conn and user. */
static void test_cred_get_echoes_and_returns_creds(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *job = job_new("cred_get", "alice@example.org");
    struct envelope *res;

    (void)state;
    envelope_set_int(job, ENV_CONN, 77);
    res = run(&f, job);
    assert_null(envelope_get(res, ENV_ERROR));
    assert_string_equal(envelope_get(res, ENV_JOB), "j1");
    assert_string_equal(envelope_get(res, ENV_USER), "alice@example.org");
    assert_int_equal(envelope_get_int(res, ENV_CONN, -1), 77);
    assert_string_equal(envelope_get(res, ENV_CRED_SHA1), "sha1-cred");
    assert_string_equal(envelope_get(res, ENV_CRED_SHA256), "sha256-cred");
    envelope_free(res);
}

/* Without a conn in the request, the result carries none. */
static void test_conn_absent_is_not_echoed(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *res = run(&f, job_new("user_del", "alice@example.org"));

    (void)state;
    assert_false(envelope_has_int(res, ENV_CONN));
    envelope_free(res);
}

/* Each backend code becomes its envelope.h error string. */
static void test_backend_codes_map_to_wire_errors(void **state)
{
    static const struct { int rc; const char *error; } map[] = {
        { BACKEND_ERR_NOT_FOUND, "not-found" },
        { BACKEND_ERR_CONFLICT, "conflict" },
        { BACKEND_ERR_INTERNAL, "internal" },
        { BACKEND_ERR_UNAVAILABLE, "unavailable" },
        { -42, "internal" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        struct fake f = fake_new(map[i].rc);
        struct envelope *res = run(&f, job_new("user_del", "alice@example.org"));
        assert_string_equal(envelope_get(res, ENV_ERROR), map[i].error);
        envelope_free(res);
    }
}

/* A valid user_add reaches the backend with the user as given. */
static void test_user_add_valid_reaches_backend(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *job = job_new("user_add", "alice@example.org");
    struct envelope *res;

    (void)state;
    envelope_set(job, ENV_CRED_SHA1, CRED_SHA1);
    envelope_set(job, ENV_CRED_SHA256, CRED_SHA256);
    res = run(&f, job);
    assert_null(envelope_get(res, ENV_ERROR));
    assert_int_equal(f.calls, 1);
    assert_string_equal(f.user, "alice@example.org");
    envelope_free(res);
}

/* user_add with credentials that do not decode is bad-request and never
 * reaches the backend: garbage, swapped hashes, a missing field. */
static void test_user_add_bad_creds_is_bad_request(void **state)
{
    const char *cases[][2] = {
        { "garbage", CRED_SHA256 },
        { CRED_SHA256, CRED_SHA1 },
        { CRED_SHA1, NULL },
        { NULL, CRED_SHA256 },
        { "0$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAAAAAAA=", CRED_SHA256 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fake f = fake_new(BACKEND_OK);
        struct envelope *job = job_new("user_add", "alice@example.org");
        struct envelope *res;
        envelope_set(job, ENV_CRED_SHA1, cases[i][0]);
        envelope_set(job, ENV_CRED_SHA256, cases[i][1]);
        res = run(&f, job);
        assert_string_equal(envelope_get(res, ENV_ERROR), "bad-request");
        assert_int_equal(f.calls, 0);
        envelope_free(res);
    }
}

/* Users that cannot be a stored UserID are bad-request before the backend. */
static void test_invalid_user_is_bad_request(void **state)
{
    char *long_user = xmalloc(JOBS_USER_MAX + 2);
    const char *cases[] = { NULL, "", "example.org", "alice@example.org/phone", "Alice@example.org",
                            "alice@EXAMPLE.org", "@example.org", "alice@", "a b@example.org", long_user };

    (void)state;
    memset(long_user, 'a', JOBS_USER_MAX + 1);
    memcpy(long_user + 10, "@", 1);
    long_user[JOBS_USER_MAX + 1] = '\0';
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fake f = fake_new(BACKEND_OK);
        struct envelope *res = run(&f, job_new("cred_get", cases[i]));
        assert_string_equal(envelope_get(res, ENV_ERROR), "bad-request");
        assert_int_equal(f.calls, 0);
        envelope_free(res);
    }
    free(long_user);
}

/* jobs_user_is_valid accepts normalized bare JIDs, including non-ASCII ones. */
static void test_valid_users_accepted(void **state)
{
    (void)state;
    assert_true(jobs_user_is_valid("alice@example.org"));
    assert_true(jobs_user_is_valid("j\xc3\xbcrgen@example.org"));   /* jürgen */
    assert_false(jobs_user_is_valid("J\xc3\x9cRGEN@example.org"));  /* JÜRGEN: not normalized */
}

/* An unknown job kind is bad-request and touches nothing. */
static void test_unknown_kind_is_bad_request(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *res = run(&f, job_new("drop_tables", "alice@example.org"));

    (void)state;
    assert_string_equal(envelope_get(res, ENV_ERROR), "bad-request");
    assert_string_equal(envelope_get(res, ENV_USER), "alice@example.org");
    assert_int_equal(f.calls, 0);
    envelope_free(res);
}

/* A job without an id is bad-request and touches nothing. */
static void test_missing_job_id_is_bad_request(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *job = job_new("user_list", NULL);
    struct envelope *res;

    (void)state;
    envelope_set(job, ENV_JOB, NULL);
    res = run(&f, job);
    assert_string_equal(envelope_get(res, ENV_ERROR), "bad-request");
    assert_int_equal(f.calls, 0);
    envelope_free(res);
}

/* user_list needs no user and returns the backend's lines as the payload. */
static void test_user_list_payload(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *res = run(&f, job_new("user_list", NULL));

    (void)state;
    assert_null(envelope_get(res, ENV_ERROR));
    assert_string_equal(res->payload, "a@x\nb@x\n");
    assert_int_equal(res->payload_len, 8);
    envelope_free(res);
}

/* The backend sees the job id in b->job during the call, "-" after it. */
static void test_job_id_is_log_context(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *res = run(&f, job_new("user_del", "alice@example.org"));

    (void)state;
    assert_string_equal(f.job_seen, "j1");
    assert_string_equal(f.base.job, "-");
    envelope_free(res);
}

/* roster_get turns the backend's rows into the query payload. */
static void test_roster_get_payload(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *res = run(&f, job_new("roster_get", "alice@example.org"));

    (void)state;
    assert_null(envelope_get(res, ENV_ERROR));
    assert_string_equal(res->payload,
                        "<query xmlns='jabber:iq:roster'><item jid='bob@example.org' name='Bob' subscription='both'/></query>");
    envelope_free(res);
}

/* An empty roster is the empty query element. */
static void test_roster_xml_empty(void **state)
{
    struct roster r = { 0 };
    struct buf out;

    (void)state;
    buf_init(&out);
    jobs_roster_xml(&r, &out);
    assert_string_equal(out.data, "<query xmlns='jabber:iq:roster'/>");
    buf_fini(&out);
}

/* Attributes and group names are escaped; name and ask only when set. */
static void test_roster_xml_escapes(void **state)
{
    struct roster r = { 0 };
    struct roster_item *it;
    struct buf out;

    (void)state;
    buf_init(&out);
    backend_roster_add(&r, "a'b@example.org", NULL, "none", "subscribe");
    it = backend_roster_add(&r, "c@example.org", "C <\"&\">", "to", NULL);
    backend_roster_add_group(it, "R&D <lab>");
    backend_roster_add_group(it, "x'y");
    jobs_roster_xml(&r, &out);
    assert_string_equal(out.data,
                        "<query xmlns='jabber:iq:roster'>"
                        "<item jid='a&apos;b@example.org' subscription='none' ask='subscribe'/>"
                        "<item jid='c@example.org' name='C &lt;&quot;&amp;&quot;&gt;' subscription='to'>"
                        "<group>R&amp;D &lt;lab&gt;</group><group>x'y</group></item>"
                        "</query>");
    buf_fini(&out);
    backend_roster_fini(&r);
    assert_int_equal(r.nitems, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cred_get_echoes_and_returns_creds),
        cmocka_unit_test(test_conn_absent_is_not_echoed),
        cmocka_unit_test(test_backend_codes_map_to_wire_errors),
        cmocka_unit_test(test_user_add_valid_reaches_backend),
        cmocka_unit_test(test_user_add_bad_creds_is_bad_request),
        cmocka_unit_test(test_invalid_user_is_bad_request),
        cmocka_unit_test(test_valid_users_accepted),
        cmocka_unit_test(test_unknown_kind_is_bad_request),
        cmocka_unit_test(test_missing_job_id_is_bad_request),
        cmocka_unit_test(test_user_list_payload),
        cmocka_unit_test(test_job_id_is_log_context),
        cmocka_unit_test(test_roster_get_payload),
        cmocka_unit_test(test_roster_xml_empty),
        cmocka_unit_test(test_roster_xml_escapes),
    };
    log_init("test", LOGL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
