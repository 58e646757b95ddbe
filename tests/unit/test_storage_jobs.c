/*
 * Unit tests for storage/jobs*.c against a fake backend: request checks
 * (bad-request never reaches the database), the backend-code -> wire-error
 * map, what a result echoes, how each job kind reaches the backend and how
 * its answer comes back.
 *
 * The storage sources are included rather than linked so that `make unit`
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
#include "../../storage/jobs_archive.c"
#include "../../storage/jobs_last.c"
#include "../../storage/jobs_offline.c"
#include "../../storage/jobs_roster.c"

/* ---- a fake backend that records its calls --------------------------- */

struct fake {
    struct backend base;
    int rc;                 /* what every operation returns */
    int calls;
    char user[4096];        /* user of the last call */
    char job_seen[64];      /* b->job during the last call */
    struct backend_write w; /* a shallow copy of the last write: its pointers dangle after the call */
    size_t nwrites;         /* writes in the last write call */
    char first_id[64];      /* offline_del: the first id */
    char jid[64], id[64];   /* copies of w.jid, w.id */
    int has_text;           /* w.text was set */
    struct archive_filter filter;
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
    backend_roster_add_pending(r, "eve@example.org");
    r->ver = 12;
    return fk(b)->rc;
}

static int f_write(struct backend *b, struct backend_write *w, size_t n)
{
    record(b, w[0].user);
    fk(b)->w = w[0];
    fk(b)->nwrites = n;
    snprintf(fk(b)->first_id, sizeof(fk(b)->first_id), "%s", w[0].nids ? w[0].ids[0] : "");
    snprintf(fk(b)->jid, sizeof(fk(b)->jid), "%s", w[0].jid ? w[0].jid : "(null)");
    snprintf(fk(b)->id, sizeof(fk(b)->id), "%s", w[0].id ? w[0].id : "(null)");
    fk(b)->has_text = w[0].text != NULL;
    for (size_t i = 0; i < n; i++)
        w[i].rc = fk(b)->rc;
    return fk(b)->rc == BACKEND_ERR_UNAVAILABLE ? BACKEND_ERR_UNAVAILABLE : BACKEND_OK;
}

static int f_last_get(struct backend *b, const char *user, int64_t *since, char **text)
{
    record(b, user);
    *since = 1234;
    *text = fk(b)->rc == BACKEND_OK ? xstrdup("away") : NULL;
    return fk(b)->rc;
}

static int f_offline_get(struct backend *b, const char *user, struct offline_list *l)
{
    record(b, user);
    backend_offline_add(l, "m1", 7, "<message/>");
    backend_offline_add(l, "m2", 8, "<message>never closed");   /* a broken row */
    backend_offline_add(l, "m3", 9, "<message><body>b</body></message>");
    return fk(b)->rc;
}

static int f_archive_query(struct backend *b, const char *user, const struct archive_filter *f,
                           struct archive_page *p)
{
    record(b, user);
    fk(b)->filter = *f;
    fk(b)->filter.with = fk(b)->filter.after = fk(b)->filter.before = NULL;   /* point into a freed tree */
    backend_archive_add(p, "a1", 5, "bob@example.org", "in", "<message/>");
    p->count = 9;
    return fk(b)->rc;
}

static int f_archive_purge(struct backend *b, int64_t before, int64_t *deleted)
{
    record(b, NULL);
    *deleted = before / 10;
    return fk(b)->rc;
}

static const struct backend_ops fake_ops = {
    .name = "fake", .migration_suffix = "fake",
    .user_add = f_user_add, .user_del = f_user_del, .user_list = f_user_list,
    .cred_get = f_cred_get, .roster_get = f_roster_get, .write = f_write, .last_get = f_last_get,
    .offline_get = f_offline_get, .archive_query = f_archive_query, .archive_purge = f_archive_purge,
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

static void payload(struct envelope *e, const char *text)
{
    envelope_set_payload(e, text, strlen(text));
}

/* Credentials in scram_cred_encode form with keys of hash_len bytes. */
static const char *CRED_SHA1 = "4096$c2FsdHNhbHRzYWx0c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
static const char *CRED_SHA256 = "4096$c2FsdHNhbHRzYWx0c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/* Runs one job on a fake; returns the result (caller frees). */
static struct envelope *run(struct fake *f, struct envelope *job)
{
    struct envelope *res = jobs_run(&f->base, job);
    envelope_free(job);
    assert_non_null(res);
    assert_int_equal(res->op, OP_JOB_RESULT);
    return res;
}

/* The result's error, or "ok"; frees res. */
static const char *outcome_of(struct envelope *res)
{
    static char err[64];
    snprintf(err, sizeof(err), "%s", envelope_get(res, ENV_ERROR) ? envelope_get(res, ENV_ERROR) : "ok");
    envelope_free(res);
    return err;
}

/* ---- account jobs (unchanged behaviour) ---------------------------------- */

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
        { BACKEND_ERR_QUOTA, "resource-constraint" },
        { -42, "internal" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        struct fake f = fake_new(map[i].rc);
        assert_string_equal(outcome_of(run(&f, job_new("user_del", "alice@example.org"))), map[i].error);
    }
}

/* A valid user_add reaches the backend with the user as given. */
static void test_user_add_valid_reaches_backend(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *job = job_new("user_add", "alice@example.org");

    (void)state;
    envelope_set(job, ENV_CRED_SHA1, CRED_SHA1);
    envelope_set(job, ENV_CRED_SHA256, CRED_SHA256);
    assert_string_equal(outcome_of(run(&f, job)), "ok");
    assert_int_equal(f.calls, 1);
    assert_string_equal(f.user, "alice@example.org");
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
        envelope_set(job, ENV_CRED_SHA1, cases[i][0]);
        envelope_set(job, ENV_CRED_SHA256, cases[i][1]);
        assert_string_equal(outcome_of(run(&f, job)), "bad-request");
        assert_int_equal(f.calls, 0);
    }
}

/* Users that cannot be a stored UserID are bad-request before the backend,
 * for reads and batched writes alike. */
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
        struct envelope *job = job_new("pending_put", cases[i]);
        envelope_set(job, ENV_JID, "bob@example.org");
        assert_string_equal(outcome_of(run(&f, job_new("cred_get", cases[i]))), "bad-request");
        assert_string_equal(outcome_of(run(&f, job)), "bad-request");
        assert_int_equal(f.calls, 0);
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

    (void)state;
    envelope_set(job, ENV_JOB, NULL);
    assert_string_equal(outcome_of(run(&f, job)), "bad-request");
    assert_int_equal(f.calls, 0);
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

    (void)state;
    envelope_free(run(&f, job_new("user_del", "alice@example.org")));
    assert_string_equal(f.job_seen, "j1");
    assert_string_equal(f.base.job, "-");
}

/* ---- roster ------------------------------------------------------------------ */

/* roster_get turns the backend's rows into the query payload with ver and pending. */
static void test_roster_get_payload(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *res = run(&f, job_new("roster_get", "alice@example.org"));

    (void)state;
    assert_null(envelope_get(res, ENV_ERROR));
    assert_string_equal(res->payload,
                        "<query xmlns='jabber:iq:roster' ver='12'>"
                        "<item jid='bob@example.org' name='Bob' subscription='both'/>"
                        "<pending xmlns='urn:parley:internal' jid='eve@example.org'/></query>");
    envelope_free(res);
}

/* roster_put reaches the backend as one BW_ROSTER_PUT with the parsed item and ver. */
static void test_roster_put_reaches_write(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *job = job_new("roster_put", "alice@example.org");

    (void)state;
    envelope_set(job, ENV_VER, "42");
    payload(job, "<item xmlns='jabber:iq:roster' jid='bob@example.org' subscription='to'>"
                 "<group>Z</group><group>A</group></item>");
    assert_string_equal(outcome_of(run(&f, job)), "ok");
    assert_int_equal(f.calls, 1);
    assert_int_equal(f.nwrites, 1);
    assert_int_equal(f.w.kind, BW_ROSTER_PUT);
    assert_int_equal(f.w.ver, 42);
    assert_string_equal(f.w.job, "j1");
    assert_string_equal(f.user, "alice@example.org");
}

/* A roster_put the parser refuses, or without ver, never reaches the backend. */
static void test_roster_put_bad_item_is_bad_request(void **state)
{
    const char *cases[][2] = {
        { "1", "<item xmlns='jabber:iq:roster' jid='bob@example.org/res'/>" },
        { "1", "<item xmlns='jabber:iq:roster' jid='bob@example.org' subscription='remove'/>" },
        { NULL, "<item xmlns='jabber:iq:roster' jid='bob@example.org'/>" },
        { "one", "<item xmlns='jabber:iq:roster' jid='bob@example.org'/>" },
        { "1", NULL },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fake f = fake_new(BACKEND_OK);
        struct envelope *job = job_new("roster_put", "alice@example.org");
        envelope_set(job, ENV_VER, cases[i][0]);
        if (cases[i][1])
            payload(job, cases[i][1]);
        assert_string_equal(outcome_of(run(&f, job)), "bad-request");
        assert_int_equal(f.calls, 0);
    }
}

/* roster_del and pending_* take a bare jid; anything else is bad-request. */
static void test_roster_del_and_pending_need_bare_jid(void **state)
{
    const char *kinds[] = { "roster_del", "pending_put", "pending_del" };
    (void)state;
    for (size_t k = 0; k < 3; k++) {
        struct fake f = fake_new(BACKEND_OK);
        struct envelope *good = job_new(kinds[k], "alice@example.org");
        struct envelope *bad = job_new(kinds[k], "alice@example.org");
        envelope_set(good, ENV_JID, "example.net");
        envelope_set(good, ENV_VER, "3");
        envelope_set(bad, ENV_JID, "bob@example.org/x");
        envelope_set(bad, ENV_VER, "3");
        assert_string_equal(outcome_of(run(&f, bad)), "bad-request");
        assert_int_equal(f.calls, 0);
        assert_string_equal(outcome_of(run(&f, good)), "ok");
        assert_string_equal(f.jid, "example.net");
    }
}

/* ---- offline, last activity ------------------------------------------------ */

/* offline_put carries id, stamp, limit and the message to the write. */
static void test_offline_put_fields(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *job = job_new("offline_put", "alice@example.org");

    (void)state;
    envelope_set(job, ENV_ID, "m-1");
    envelope_set_int(job, ENV_STAMP, 1700000000123456);
    envelope_set_int(job, ENV_LIMIT, 100);
    payload(job, "<message><body>x</body></message>");
    assert_string_equal(outcome_of(run(&f, job)), "ok");
    assert_int_equal(f.w.kind, BW_OFFLINE_PUT);
    assert_string_equal(f.id, "m-1");
    assert_int_equal(f.w.stamp, 1700000000123456);
    assert_int_equal(f.w.limit, 100);
}

/* The quota answer of the backend is resource-constraint on the wire. */
static void test_offline_put_quota_is_resource_constraint(void **state)
{
    struct fake f = fake_new(BACKEND_ERR_QUOTA);
    struct envelope *job = job_new("offline_put", "alice@example.org");

    (void)state;
    envelope_set(job, ENV_ID, "m-1");
    envelope_set_int(job, ENV_STAMP, 1);
    envelope_set_int(job, ENV_LIMIT, 1);
    payload(job, "<message/>");
    assert_string_equal(outcome_of(run(&f, job)), "resource-constraint");
}

/* offline_put without stamp or limit, or with an empty message or one with
 * a NUL inside (stored as a C string), is bad-request. The message is not
 * parsed: offline_get leaves a broken one out when it reads it. */
static void test_offline_put_missing_fields(void **state)
{
    static const struct {
        int has_stamp, has_limit;
        const char *xml;
        size_t len;
        const char *outcome;
    } cases[] = {
        { 0, 1, "<message/>", 10, "bad-request" },
        { 1, 0, "<message/>", 10, "bad-request" },
        { 1, 1, "", 0, "bad-request" },
        { 1, 1, "<message/>\0x", 12, "bad-request" },
        { 1, 1, "<message>unclosed", 17, "ok" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fake f = fake_new(BACKEND_OK);
        struct envelope *job = job_new("offline_put", "alice@example.org");
        envelope_set(job, ENV_ID, "m-1");
        if (cases[i].has_stamp)
            envelope_set_int(job, ENV_STAMP, 1);
        if (cases[i].has_limit)
            envelope_set_int(job, ENV_LIMIT, 1);
        envelope_set_payload(job, cases[i].xml, cases[i].len);
        assert_string_equal(outcome_of(run(&f, job)), cases[i].outcome);
        assert_int_equal(f.calls, strcmp(cases[i].outcome, "ok") == 0);
    }
}

/* offline_del hands the ids of its payload to the write. */
static void test_offline_del_ids(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *job = job_new("offline_del", "alice@example.org");

    (void)state;
    payload(job, "first\nsecond\n");
    assert_string_equal(outcome_of(run(&f, job)), "ok");
    assert_int_equal(f.w.kind, BW_OFFLINE_DEL);
    assert_int_equal(f.w.nids, 2);
    assert_string_equal(f.first_id, "first");
}

/* offline_get returns the <messages/> payload, in order, without the
 * stored message that is not well-formed (m2). */
static void test_offline_get_payload(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *res = run(&f, job_new("offline_get", "alice@example.org"));

    (void)state;
    assert_string_equal(res->payload, "<messages><msg id='m1' stamp='7'><message/></msg>"
                                      "<msg id='m3' stamp='9'><message><body>b</body></message></msg></messages>");
    envelope_free(res);
}

/* last_get answers since and text; last_set needs since. */
static void test_last_get_and_set(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *res = run(&f, job_new("last_get", "alice@example.org"));
    struct envelope *set = job_new("last_set", "alice@example.org");

    (void)state;
    assert_int_equal(envelope_get_int(res, ENV_SINCE, -1), 1234);
    assert_string_equal(envelope_get(res, ENV_TEXT), "away");
    envelope_free(res);
    assert_string_equal(outcome_of(run(&f, set)), "bad-request");
    set = job_new("last_set", "alice@example.org");
    envelope_set_int(set, ENV_SINCE, 99);
    assert_string_equal(outcome_of(run(&f, set)), "ok");
    assert_int_equal(f.w.kind, BW_LAST_SET);
    assert_int_equal(f.w.since, 99);
    assert_false(f.has_text);
}

/* ---- archive ------------------------------------------------------------------ */

/* archive_put needs an id, a bare jid, in|out and a stamp. */
static void test_archive_put_checks(void **state)
{
    const char *dirs[] = { "in", "out", "both" };
    (void)state;
    for (int i = 0; i < 3; i++) {
        struct fake f = fake_new(BACKEND_OK);
        struct envelope *job = job_new("archive_put", "alice@example.org");
        envelope_set(job, ENV_ID, "a1");
        envelope_set(job, ENV_JID, "bob@example.org");
        envelope_set(job, ENV_TEXT, dirs[i]);
        envelope_set_int(job, ENV_STAMP, 5);
        payload(job, "<message/>");
        assert_string_equal(outcome_of(run(&f, job)), i < 2 ? "ok" : "bad-request");
        if (i < 2)
            assert_int_equal(f.w.kind, BW_ARCHIVE_PUT);
    }
}

/* archive_put stores the message unparsed, but not an empty one or one
 * with a NUL inside (it is stored as a C string). */
static void test_archive_put_payload(void **state)
{
    static const struct {
        const char *xml;
        size_t len;
        const char *outcome;
    } cases[] = {
        { "<message/>", 10, "ok" },
        { "<message>unclosed", 17, "ok" },   /* not parsed: archive_query leaves it out */
        { "", 0, "bad-request" },
        { "<message/>\0x", 12, "bad-request" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fake f = fake_new(BACKEND_OK);
        struct envelope *job = job_new("archive_put", "alice@example.org");
        envelope_set(job, ENV_ID, "a1");
        envelope_set(job, ENV_JID, "bob@example.org");
        envelope_set(job, ENV_TEXT, "in");
        envelope_set_int(job, ENV_STAMP, 5);
        envelope_set_payload(job, cases[i].xml, cases[i].len);
        assert_string_equal(outcome_of(run(&f, job)), cases[i].outcome);
    }
}

/* archive_query passes the parsed filter and serializes the page. */
static void test_archive_query_round_trip(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *job = job_new("archive_query", "alice@example.org");
    struct envelope *res;

    (void)state;
    payload(job, "<q start='10' max='5' before=''/>");
    res = run(&f, job);
    assert_null(envelope_get(res, ENV_ERROR));
    assert_true(f.filter.has_start);
    assert_int_equal(f.filter.start, 10);
    assert_int_equal(f.filter.max, 5);
    assert_string_equal(res->payload, "<results complete='0' count='9'>"
                                      "<r id='a1' stamp='5' jid='bob@example.org' dir='in'><message/></r></results>");
    envelope_free(res);
}

/* archive_purge needs a stamp and answers the count as text. */
static void test_archive_purge_text(void **state)
{
    struct fake f = fake_new(BACKEND_OK);
    struct envelope *job = job_new("archive_purge", NULL);
    struct envelope *res;

    (void)state;
    assert_string_equal(outcome_of(run(&f, job_new("archive_purge", NULL))), "bad-request");
    envelope_set_int(job, ENV_STAMP, 1230);
    res = run(&f, job);
    assert_null(envelope_get(res, ENV_ERROR));
    assert_string_equal(envelope_get(res, ENV_TEXT), "123");
    envelope_free(res);
}

/* ---- the batching split ---------------------------------------------------- */

/* Exactly the eight per-user writes are batched. */
static void test_is_batched(void **state)
{
    const char *yes[] = { "roster_put", "roster_del", "pending_put", "pending_del", "last_set", "offline_put",
                          "offline_del", "archive_put" };
    const char *no[] = { "cred_get", "user_add", "user_del", "user_list", "roster_get", "last_get", "offline_get",
                         "archive_query", "archive_purge", "nonsense" };
    (void)state;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        struct envelope *e = job_new(yes[i], "a@example.org");
        assert_true(jobs_is_batched(e));
        envelope_free(e);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        struct envelope *e = job_new(no[i], "a@example.org");
        assert_false(jobs_is_batched(e));
        envelope_free(e);
    }
}

/* jobs_prepare answers a bad request at once and leaves nothing in w;
 * jobs_finish turns w.rc into the result and frees what w owned. */
static void test_prepare_and_finish(void **state)
{
    struct envelope *bad = job_new("offline_del", "alice@example.org");
    struct envelope *good = job_new("offline_del", "alice@example.org");
    struct envelope *res;
    struct backend_write w;

    (void)state;
    payload(bad, "a\x01" "b");
    res = jobs_prepare(bad, &w);
    assert_non_null(res);
    assert_string_equal(outcome_of(res), "bad-request");
    assert_null(w.ids);
    payload(good, "x\ny");
    assert_null(jobs_prepare(good, &w));
    assert_int_equal(w.nids, 2);
    w.rc = BACKEND_ERR_NOT_FOUND;
    assert_string_equal(outcome_of(jobs_finish(good, &w)), "not-found");
    assert_null(w.ids);
    envelope_free(bad);
    envelope_free(good);
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
        cmocka_unit_test(test_roster_put_reaches_write),
        cmocka_unit_test(test_roster_put_bad_item_is_bad_request),
        cmocka_unit_test(test_roster_del_and_pending_need_bare_jid),
        cmocka_unit_test(test_offline_put_fields),
        cmocka_unit_test(test_offline_put_quota_is_resource_constraint),
        cmocka_unit_test(test_offline_put_missing_fields),
        cmocka_unit_test(test_offline_del_ids),
        cmocka_unit_test(test_offline_get_payload),
        cmocka_unit_test(test_last_get_and_set),
        cmocka_unit_test(test_archive_put_checks),
        cmocka_unit_test(test_archive_put_payload),
        cmocka_unit_test(test_archive_query_round_trip),
        cmocka_unit_test(test_archive_purge_text),
        cmocka_unit_test(test_is_batched),
        cmocka_unit_test(test_prepare_and_finish),
    };
    log_init("test", LOGL_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
