/*
 * Storage jobs: request checks, the call on the backend, and the one place
 * where a backend result becomes a wire error (STYLE.md "Errors").
 *
 * Redelivery: the router re-dispatches a job only when the worker running it
 * went away before answering; it never re-sends a job whose result it has.
 * So a repeated job means the first result was lost, and:
 *   - cred_get, user_list, roster_get are reads: repeating them is harmless;
 *   - user_add answers "conflict" when the user exists, also for a repeat
 *     of an add that did commit: the caller sees "conflict" for an account
 *     that holds exactly the credentials it sent, which it can check with
 *     cred_get;
 *   - user_del answers "not-found" on a repeat of a delete that committed:
 *     either way the account is gone.
 * (pg.c's own retry after a dropped connection is handled there.)
 */
#include "jobs.h"
#include "buf.h"
#include "envelope.h"
#include "jid.h"
#include "log.h"
#include "scram.h"
#include "stanza.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define JOBS_ERR_BAD_REQUEST (-100)   /* beside the BACKEND_ERR_* codes */

int jobs_user_is_valid(const char *user)
{
    struct jid j;
    char *bare;
    int ok;

    if (!user || !*user || strlen(user) > JOBS_USER_MAX)
        return 0;
    if (jid_parse(user, &j) != JID_OK)
        return 0;
    bare = j.local && !j.resource ? jid_bare(&j) : NULL;
    /* Already normalized: a key stored in any other spelling could never
     * be found again by the normalized lookups of the router and gateway. */
    ok = bare && strcmp(bare, user) == 0;
    free(bare);
    jid_fini(&j);
    return ok;
}

static void attr(struct buf *out, const char *name, const char *value)
{
    buf_printf(out, " %s='", name);
    stanza_escape(out, value, strlen(value), 1);
    buf_append(out, "'", 1);
}

void jobs_roster_xml(const struct roster *r, struct buf *out)
{
    buf_append_str(out, "<query xmlns='jabber:iq:roster'");
    if (r->nitems == 0) {
        buf_append_str(out, "/>");
        return;
    }
    buf_append(out, ">", 1);
    for (size_t i = 0; i < r->nitems; i++) {
        const struct roster_item *it = &r->items[i];
        buf_append_str(out, "<item");
        attr(out, "jid", it->jid);
        if (it->name)
            attr(out, "name", it->name);
        attr(out, "subscription", it->subscription);
        if (it->ask)
            attr(out, "ask", it->ask);
        if (it->ngroups == 0) {
            buf_append_str(out, "/>");
            continue;
        }
        buf_append(out, ">", 1);
        for (size_t g = 0; g < it->ngroups; g++) {
            buf_append_str(out, "<group>");
            stanza_escape(out, it->groups[g], strlen(it->groups[g]), 0);
            buf_append_str(out, "</group>");
        }
        buf_append_str(out, "</item>");
    }
    buf_append_str(out, "</query>");
}

/* ---- one function per job kind --------------------------------------- */

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

static int job_roster_get(struct backend *b, const struct envelope *job, struct envelope *res)
{
    struct roster r = { 0 };
    int rc = b->ops->roster_get(b, envelope_get(job, ENV_USER), &r);
    if (rc == BACKEND_OK) {
        struct buf out;
        size_t len;
        char *data;
        buf_init(&out);
        jobs_roster_xml(&r, &out);
        data = buf_steal(&out, &len);
        envelope_take_payload(res, data, len);
    }
    backend_roster_fini(&r);
    return rc;
}

static const struct {
    const char *what;
    int needs_user;
    int (*run)(struct backend *b, const struct envelope *job, struct envelope *res);
} kinds[] = {
    { "cred_get", 1, job_cred_get },
    { "user_add", 1, job_user_add },
    { "user_del", 1, job_user_del },
    { "user_list", 0, job_user_list },
    { "roster_get", 1, job_roster_get },
};

static const char *error_name(int rc)
{
    switch (rc) {
    case BACKEND_OK: return NULL;
    case BACKEND_ERR_NOT_FOUND: return "not-found";
    case BACKEND_ERR_CONFLICT: return "conflict";
    case BACKEND_ERR_UNAVAILABLE: return "unavailable";
    case JOBS_ERR_BAD_REQUEST: return "bad-request";
    }
    return "internal";
}

struct envelope *jobs_run(struct backend *b, const struct envelope *job)
{
    struct envelope *res = envelope_new(OP_JOB_RESULT);
    const char *id = envelope_get(job, ENV_JOB);
    const char *what = envelope_get(job, ENV_WHAT);
    const char *user = envelope_get(job, ENV_USER);
    char safe_what[80], safe_user[200], safe_id[80];
    size_t k, nkinds = sizeof(kinds) / sizeof(kinds[0]);
    int rc = JOBS_ERR_BAD_REQUEST;

    envelope_set(res, ENV_JOB, id);
    if (envelope_has_int(job, ENV_CONN))
        envelope_set_int(res, ENV_CONN, envelope_get_int(job, ENV_CONN, 0));
    envelope_set(res, ENV_USER, user);

    /* Everything below comes from a peer: logged through log_safe. */
    log_safe(id ? id : "-", id ? strlen(id) : 1, safe_id, sizeof(safe_id));
    log_safe(what ? what : "-", what ? strlen(what) : 1, safe_what, sizeof(safe_what));
    log_safe(user ? user : "-", user ? strlen(user) : 1, safe_user, sizeof(safe_user));

    for (k = 0; k < nkinds; k++)
        if (what && strcmp(what, kinds[k].what) == 0)
            break;
    if (!id || !*id) {
        log_info("job=- what=%s: no job id; answering bad-request", safe_what);
    } else if (k == nkinds) {
        log_info("job=%s unknown job kind %s; answering bad-request", safe_id, safe_what);
    } else if (kinds[k].needs_user && !jobs_user_is_valid(user)) {
        log_info("job=%s what=%s user=%s is not a valid UserID; answering bad-request", safe_id, safe_what,
                 safe_user);
    } else {
        b->job = safe_id;
        rc = kinds[k].run(b, job, res);
        b->job = "-";
        if (rc == JOBS_ERR_BAD_REQUEST)
            log_info("job=%s what=%s user=%s: malformed credentials; answering bad-request", safe_id,
                     safe_what, safe_user);
    }
    envelope_set(res, ENV_ERROR, error_name(rc));
    log_debug("job=%s what=%s user=%s -> %s", safe_id, safe_what, safe_user,
              rc == BACKEND_OK ? "ok" : error_name(rc));
    return res;
}
