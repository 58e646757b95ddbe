/*
 * Storage jobs: the table of job kinds, the checks every job shares, the
 * account jobs, and the one place where a backend result becomes a wire
 * error (STYLE.md "Errors"). The other kinds live in jobs_roster.c,
 * jobs_offline.c, jobs_last.c and jobs_archive.c.
 *
 * Redelivery: the router re-dispatches a job only when the worker running it
 * went away before answering; it never re-sends a job whose result it has.
 * So a repeated job means the first result was lost, and:
 *   - the reads (cred_get, user_list, roster_get, last_get, offline_get,
 *     archive_query) are harmless to repeat;
 *   - user_add answers "conflict" when the user exists, also for a repeat
 *     of an add that did commit: the caller sees "conflict" for an account
 *     that holds exactly the credentials it sent, which it can check with
 *     cred_get;
 *   - user_del answers "not-found" on a repeat of a delete that committed:
 *     either way the account is gone;
 *   - the batched writes are idempotent: puts replace or are no-ops on a
 *     known id, deletes of what is gone succeed (backend.h);
 *   - archive_purge reports fewer deletions the second time.
 * (pg.c's own retry after a dropped connection is handled there.)
 */
#include "jobs.h"
#include "jobs_kinds.h"
#include "buf.h"
#include "envelope.h"
#include "jid.h"
#include "log.h"
#include "scram.h"
#include "stanza.h"
#include "stanza_parse.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *jobs_error_string(int code)
{
    switch (code) {
    case JOBS_OK: return "ok";
    case JOBS_ERR_BAD_REQUEST: return "a field is missing or malformed";
    case JOBS_ERR_XML: return "payload is not one well-formed element";
    case JOBS_ERR_ELEMENT: return "payload is not the expected element";
    case JOBS_ERR_JID: return "jid is not a normalized bare JID";
    case JOBS_ERR_SUBSCRIPTION: return "subscription is not none, to, from or both";
    case JOBS_ERR_ASK: return "ask is not subscribe";
    case JOBS_ERR_NAME: return "name is too long";
    case JOBS_ERR_GROUP: return "a group is empty, too long or repeated";
    case JOBS_ERR_GROUPS: return "too many groups";
    case JOBS_ERR_NUMBER: return "a number is missing or out of range";
    case JOBS_ERR_ID: return "an id is empty, too long or holds control characters";
    }
    return "unknown error";
}

/* ---- checks shared by the kinds ---------------------------------------- */

/* 1 when s is a normalized JID without resource; needs_local as said. */
static int is_bare(const char *s, int needs_local)
{
    struct jid j;
    char *bare;
    int ok;

    if (!s || !*s || strlen(s) > JOBS_USER_MAX)
        return 0;
    if (jid_parse(s, &j) != JID_OK)
        return 0;
    bare = (j.local || !needs_local) && !j.resource ? jid_bare(&j) : NULL;
    /* Already normalized: a key stored in any other spelling could never
     * be found again by the normalized lookups of the router and gateway. */
    ok = bare && strcmp(bare, s) == 0;
    free(bare);
    jid_fini(&j);
    return ok;
}

int jobs_user_is_valid(const char *user)
{
    return is_bare(user, 1);
}

int jobs_jid_is_bare(const char *jid)
{
    return is_bare(jid, 0);
}

int jobs_id_is_valid(const char *id)
{
    size_t n = id ? strlen(id) : 0;

    if (n == 0 || n > JOBS_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20)
            return 0;
    return 1;
}

int jobs_number_parse(const char *s, int64_t *out)
{
    int64_t v = 0;
    size_t i;

    /* 18 digits cannot overflow int64, and bound every value we store
     * (microsecond stamps reach 17 digits in the year 5138). */
    if (!s || !*s)
        return JOBS_ERR_NUMBER;
    for (i = 0; s[i]; i++) {
        if (i == 18 || s[i] < '0' || s[i] > '9')
            return JOBS_ERR_NUMBER;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return JOBS_OK;
}

void jobs_attr(struct buf *out, const char *name, const char *value)
{
    buf_printf(out, " %s='", name);
    stanza_escape(out, value, strlen(value), 1);
    buf_append(out, "'", 1);
}

int jobs_xml_is_element(const char *xml)
{
    struct stanza *s;

    if (stanza_parse(xml, strlen(xml), &s) < 0)
        return 0;
    stanza_free(s);
    return 1;
}

/* ---- account jobs -------------------------------------------------------- */

static int job_cred_get(struct backend *b, const struct envelope *job, struct envelope *res)
{
    char *sha1, *sha256;
    int rc = b->ops->cred_get(b, envelope_get(job, ENV_USER), &sha1, &sha256);
    if (rc == BACKEND_OK) {
        envelope_set(res, ENV_CRED_SHA1, sha1);
        envelope_set(res, ENV_CRED_SHA256, sha256);
    }
    free(sha1);
    free(sha256);
    return rc;
}

/* The stored keys must be usable by the gateway later: refuse anything
 * scram_cred_decode would refuse now, as a bad request. */
static int cred_ok(enum scram_hash h, const char *s)
{
    struct scram_cred c;
    int ok = s && scram_cred_decode(h, s, &c) == 0;
    explicit_bzero(&c, sizeof(c));
    return ok;
}

static int job_user_add(struct backend *b, const struct envelope *job, struct envelope *res)
{
    const char *sha1 = envelope_get(job, ENV_CRED_SHA1);
    const char *sha256 = envelope_get(job, ENV_CRED_SHA256);

    (void)res;
    if (!cred_ok(SCRAM_SHA1, sha1) || !cred_ok(SCRAM_SHA256, sha256))
        return JOBS_ERR_BAD_REQUEST;
    return b->ops->user_add(b, envelope_get(job, ENV_USER), sha1, sha256);
}

static int job_user_del(struct backend *b, const struct envelope *job, struct envelope *res)
{
    (void)res;
    return b->ops->user_del(b, envelope_get(job, ENV_USER));
}

static int job_user_list(struct backend *b, const struct envelope *job, struct envelope *res)
{
    struct buf out;
    size_t len;
    int rc;

    (void)job;
    buf_init(&out);
    rc = b->ops->user_list(b, &out);
    if (rc == BACKEND_OK) {
        char *data = buf_steal(&out, &len);
        envelope_take_payload(res, data, len);
    }
    buf_fini(&out);
    return rc;
}

/* ---- the table ------------------------------------------------------------ */

static const struct kind {
    const char *what;
    int needs_user;
    jobs_run_fn run;            /* set for kinds that run on their own */
    jobs_prepare_fn prepare;    /* set for batched kinds */
} kinds[] = {
    { "cred_get", 1, job_cred_get, NULL },
    { "user_add", 1, job_user_add, NULL },
    { "user_del", 1, job_user_del, NULL },
    { "user_list", 0, job_user_list, NULL },
    { "roster_get", 1, jobs_roster_get, NULL },
    { "roster_put", 1, NULL, jobs_roster_put },
    { "roster_del", 1, NULL, jobs_roster_del },
    { "pending_put", 1, NULL, jobs_roster_pending_put },
    { "pending_del", 1, NULL, jobs_roster_pending_del },
    { "last_set", 1, NULL, jobs_last_set },
    { "last_get", 1, jobs_last_get, NULL },
    { "offline_put", 1, NULL, jobs_offline_put },
    { "offline_get", 1, jobs_offline_get, NULL },
    { "offline_del", 1, NULL, jobs_offline_del },
    { "archive_put", 1, NULL, jobs_archive_put },
    { "archive_query", 1, jobs_archive_query, NULL },
    { "archive_purge", 0, jobs_archive_purge, NULL },
};

static const struct kind *kind_of(const struct envelope *job)
{
    const char *what = envelope_get(job, ENV_WHAT);

    for (size_t k = 0; what && k < sizeof(kinds) / sizeof(kinds[0]); k++)
        if (strcmp(what, kinds[k].what) == 0)
            return &kinds[k];
    return NULL;
}

static const char *error_name(int rc)
{
    switch (rc) {
    case BACKEND_OK: return NULL;
    case BACKEND_ERR_NOT_FOUND: return "not-found";
    case BACKEND_ERR_CONFLICT: return "conflict";
    case BACKEND_ERR_UNAVAILABLE: return "unavailable";
    case BACKEND_ERR_QUOTA: return "resource-constraint";
    }
    if (rc <= JOBS_ERR_BAD_REQUEST && rc >= JOBS_ERR_ID)
        return "bad-request";
    return "internal";
}

/* A job's peer-supplied strings made printable, for every log line about it. */
struct names {
    char id[80], what[80], user[200];
};

static void names_of(const struct envelope *job, struct names *n)
{
    const char *id = envelope_get(job, ENV_JOB);
    const char *what = envelope_get(job, ENV_WHAT);
    const char *user = envelope_get(job, ENV_USER);

    log_safe(id ? id : "-", id ? strlen(id) : 1, n->id, sizeof(n->id));
    log_safe(what ? what : "-", what ? strlen(what) : 1, n->what, sizeof(n->what));
    log_safe(user ? user : "-", user ? strlen(user) : 1, n->user, sizeof(n->user));
}

/* The result header every answer carries: job, conn when present, user. */
static struct envelope *result_new(const struct envelope *job)
{
    struct envelope *res = envelope_new(OP_JOB_RESULT);

    envelope_set(res, ENV_JOB, envelope_get(job, ENV_JOB));
    if (envelope_has_int(job, ENV_CONN))
        envelope_set_int(res, ENV_CONN, envelope_get_int(job, ENV_CONN, 0));
    envelope_set(res, ENV_USER, envelope_get(job, ENV_USER));
    return res;
}

/* Sets the error, logs the outcome, returns res. */
static struct envelope *result_end(struct envelope *res, const struct names *n, int rc)
{
    if (rc <= JOBS_ERR_BAD_REQUEST && rc >= JOBS_ERR_ID)
        log_info("job=%s what=%s user=%s: %s; answering bad-request", n->id, n->what, n->user,
                 jobs_error_string(rc));
    envelope_set(res, ENV_ERROR, error_name(rc));
    log_debug("job=%s what=%s user=%s -> %s", n->id, n->what, n->user, rc == BACKEND_OK ? "ok" : error_name(rc));
    return res;
}

/* The checks before any kind runs: JOBS_OK, or why not (logged). */
static int check(const struct envelope *job, const struct kind *k, const struct names *n)
{
    const char *id = envelope_get(job, ENV_JOB);

    if (!id || !*id) {
        log_info("job=- what=%s: no job id; answering bad-request", n->what);
        return JOBS_ERR_BAD_REQUEST;
    }
    if (!k) {
        log_info("job=%s unknown job kind %s; answering bad-request", n->id, n->what);
        return JOBS_ERR_BAD_REQUEST;
    }
    if (k->needs_user && !jobs_user_is_valid(envelope_get(job, ENV_USER))) {
        log_info("job=%s what=%s user=%s is not a valid UserID; answering bad-request", n->id, n->what,
                 n->user);
        return JOBS_ERR_BAD_REQUEST;
    }
    return JOBS_OK;
}

int jobs_is_batched(const struct envelope *job)
{
    const struct kind *k = kind_of(job);
    return k && k->prepare;
}

struct envelope *jobs_prepare(const struct envelope *job, struct backend_write *w)
{
    const struct kind *k = kind_of(job);
    struct names n;
    int rc;

    memset(w, 0, sizeof(*w));
    names_of(job, &n);
    rc = check(job, k, &n);
    if (rc == JOBS_OK && !k->prepare)
        rc = JOBS_ERR_BAD_REQUEST;   /* our bug: the caller asked jobs_is_batched first */
    if (rc != JOBS_OK)
        return result_end(result_new(job), &n, rc);
    snprintf(w->job, sizeof(w->job), "%s", n.id);
    w->user = envelope_get(job, ENV_USER);
    rc = k->prepare(job, w);
    if (rc != JOBS_OK) {
        backend_write_fini(w);
        return result_end(result_new(job), &n, rc);
    }
    return NULL;
}

struct envelope *jobs_finish(const struct envelope *job, struct backend_write *w)
{
    struct names n;
    int rc = w->rc;

    names_of(job, &n);
    backend_write_fini(w);
    return result_end(result_new(job), &n, rc);
}

struct envelope *jobs_run(struct backend *b, const struct envelope *job)
{
    const struct kind *k = kind_of(job);
    struct envelope *res;
    struct names n;
    int rc;

    if (k && k->prepare) {
        struct backend_write w;
        res = jobs_prepare(job, &w);
        if (res)
            return res;
        b->job = w.job;
        (void)b->ops->write(b, &w, 1);   /* the outcome is in w.rc either way */
        b->job = "-";
        return jobs_finish(job, &w);
    }
    names_of(job, &n);
    res = result_new(job);
    rc = check(job, k, &n);
    if (rc == JOBS_OK) {
        b->job = n.id;
        rc = k->run(b, job, res);
        b->job = "-";
    }
    return result_end(res, &n, rc);
}
