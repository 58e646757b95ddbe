/*
 * The admin socket: parleyctl's requests (envelope.h "Admin"). Answers are
 * tab-separated rows, the first naming the columns; parleyctl aligns them.
 * Account commands become storage jobs and are answered from the job's
 * callback; the others are answered from the router's own tables at once.
 */
#include "admin.h"
#include "archive.h"
#include "buf.h"
#include "envelope.h"
#include "gateways.h"
#include "jid.h"
#include "jobs.h"
#include "log.h"
#include "scram.h"
#include "sessions.h"
#include "timestamp.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

struct admin_wait {
    char peer[ENVELOPE_PEER_MAX + 1];
    char *id;
    char *cmd;
    char *user;
};

static void answer(struct router *r, const char *peer, const char *id, const char *error, struct buf *rows)
{
    struct envelope *e = envelope_new(OP_ADMIN_RESULT);
    envelope_set(e, ENV_ID, id);
    if (error)
        envelope_set(e, ENV_ERROR, error);
    if (rows && rows->len)
        envelope_set_payload(e, rows->data, rows->len);
    if (envelope_send(r->admin_sock, peer, &e) < 0)
        log_info("admin answer to a departed parleyctl dropped: %s", zmq_strerror(errno));
}

static void fmt_time(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void cmd_status(struct router *r, const char *peer, const char *id)
{
    struct buf b;
    struct strmap_entry *e;
    size_t it;
    double now = ev_now(r->loop);

    buf_init(&b);
    buf_append_str(&b, "role\tname\tpid\tlast_seen_ms\tdetail\n");
    buf_printf(&b,
               "router\trouter\t%d\t0\tsessions=%zu users=%zu routed=%" PRIu64 " jobs_queued=%zu jobs_retried=%" PRIu64
               " uptime=%lds\n",
               (int)getpid(), r->sessions.count, r->users.count, r->routed, jobs_queued(r), jobs_retried(r),
               (long)(time(NULL) - r->started));
    for (e = strmap_first(&r->gateways, &it); e; e = strmap_next(&r->gateways, e, &it)) {
        struct gateway_peer *g = e->value;
        size_t n = 0;
        struct strmap_entry *se;
        size_t sit;
        for (se = strmap_first(&r->sessions, &sit); se; se = strmap_next(&r->sessions, se, &sit))
            if (strcmp(((struct session *)se->value)->gateway, g->name) == 0)
                n++;
        buf_printf(&b, "gateway\t%s\t%lld\t%d\tsessions=%zu\n", g->name, (long long)g->pid,
                   (int)((now - g->last_seen) * 1000), n);
    }
    jobs_status(r, &b);
    answer(r, peer, id, NULL, &b);
    buf_fini(&b);
}

static void session_row(struct buf *b, const struct session *s)
{
    char since[32], prio[16];
    fmt_time(s->since, since, sizeof(since));
    if (s->available)
        snprintf(prio, sizeof(prio), "%d", s->priority);
    else
        snprintf(prio, sizeof(prio), "-");
    buf_printf(b, "%s\t%s\t%s\t%s\t%" PRIu64 "\t%s\t%s\n", s->full, s->user->user_id,
               s->device_class ? s->device_class : "-", s->gateway, s->conn, prio, since);
}

static void cmd_sessions(struct router *r, const char *peer, const char *id, const char *user)
{
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "login_id\tuser_id\tclass\tgateway\tconn\tpriority\tsince\n");
    if (user) {
        char *norm = NULL;
        struct user *u = jid_normalize(user, &norm) == JID_OK ? sessions_user(r, norm) : NULL;
        free(norm);
        for (struct session *s = u ? u->sessions : NULL; s; s = s->next)
            session_row(&b, s);
    } else {
        struct strmap_entry *e;
        size_t it;
        for (e = strmap_first(&r->sessions, &it); e; e = strmap_next(&r->sessions, e, &it))
            session_row(&b, e->value);
    }
    answer(r, peer, id, NULL, &b);
    buf_fini(&b);
}

static void on_job(struct router *r, const struct envelope *res, void *ctx)
{
    struct admin_wait *w = ctx;
    const char *err = envelope_get(res, ENV_ERROR);
    struct buf b;

    buf_init(&b);
    if (err) {
        char *msg;
        if (strcmp(err, "conflict") == 0)
            msg = xasprintf("%s already exists", w->user);
        else if (strcmp(err, "not-found") == 0)
            msg = xasprintf("%s does not exist", w->user);
        else if (strcmp(err, "unavailable") == 0)
            msg = xstrdup("no storage worker answered (are the parley-storage processes running?)");
        else
            msg = xasprintf("storage error: %s", err);
        answer(r, w->peer, w->id, msg, NULL);
        free(msg);
    } else if (strcmp(w->cmd, "user_list") == 0) {
        buf_append_str(&b, "user_id\n");
        if (res->payload)
            buf_append(&b, res->payload, res->payload_len);
        answer(r, w->peer, w->id, NULL, &b);
    } else {
        buf_printf(&b, "result\n%s %s\n", strcmp(w->cmd, "user_add") == 0 ? "added" : "deleted", w->user);
        if (strcmp(w->cmd, "user_del") == 0) {
            /* A deleted account must not stay logged in. */
            struct user *u = sessions_user(r, w->user);
            for (struct session *s = u ? u->sessions : NULL; s; s = s->next)
                sessions_kick(r, s, "not-authorized", "account deleted");
        }
        answer(r, w->peer, w->id, NULL, &b);
    }
    buf_fini(&b);
    free(w->id);
    free(w->cmd);
    free(w->user);
    free(w);
}

/* Normalizes an account JID of this domain; NULL with *why set otherwise. */
static char *account_jid(struct router *r, const char *in, const char **why)
{
    struct jid j;
    char *bare = NULL;

    if (!in || jid_parse(in, &j) != JID_OK) {
        *why = "not a valid JID";
        return NULL;
    }
    if (!j.local || j.resource)
        *why = "an account is a bare JID: user@domain";
    else if (strcmp(j.domain, r->conf->domain) != 0)
        *why = "this server only hosts its configured domain";
    else
        bare = jid_bare(&j);
    jid_fini(&j);
    return bare;
}

static void cmd_user(struct router *r, const char *peer, const struct envelope *env, const char *cmd)
{
    const char *id = envelope_get(env, ENV_ID);
    const char *why = NULL;
    char *user = NULL;
    struct envelope *job;

    if (strcmp(cmd, "user_list") != 0) {
        user = account_jid(r, envelope_get(env, ENV_USER), &why);
        if (!user) {
            answer(r, peer, id, why, NULL);
            return;
        }
    }
    job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, cmd);
    envelope_set(job, ENV_JOB, "admin");
    if (user)
        envelope_set(job, ENV_USER, user);
    if (strcmp(cmd, "user_add") == 0) {
        struct scram_cred c;
        const char *s1 = envelope_get(env, ENV_CRED_SHA1);
        const char *s256 = envelope_get(env, ENV_CRED_SHA256);
        if (!s1 || !s256 || scram_cred_decode(SCRAM_SHA1, s1, &c) < 0 ||
            scram_cred_decode(SCRAM_SHA256, s256, &c) < 0) {
            answer(r, peer, id, "user add needs valid SCRAM credentials", NULL);
            envelope_free(job);
            free(user);
            return;
        }
        envelope_set(job, ENV_CRED_SHA1, s1);
        envelope_set(job, ENV_CRED_SHA256, s256);
    }
    struct admin_wait *w = xcalloc(1, sizeof(*w));
    snprintf(w->peer, sizeof(w->peer), "%s", peer);
    w->id = xstrdup(id);
    w->cmd = xstrdup(cmd);
    w->user = user;
    log_info("admin %s %s", cmd, user ? user : "");
    jobs_submit(r, &job, on_job, w);
}

static void cmd_kick(struct router *r, const char *peer, const struct envelope *env)
{
    const char *id = envelope_get(env, ENV_ID);
    char *full = NULL, *user = NULL;
    const char *reason = envelope_get(env, ENV_TEXT);
    char *text = xasprintf("kicked by the administrator%s%s", reason ? ": " : "", reason ? reason : "");
    struct buf b;
    int n = 0;

    /* Normalized as everywhere else: ALICE@Example.org names alice. */
    if (envelope_get(env, ENV_FULL))
        (void)jid_normalize(envelope_get(env, ENV_FULL), &full);  /* invalid: no such session */
    if (envelope_get(env, ENV_USER))
        (void)jid_normalize(envelope_get(env, ENV_USER), &user);
    buf_init(&b);
    buf_append_str(&b, "kicked\n");
    if (full) {
        struct session *s = sessions_find(r, full);
        if (s) {
            sessions_kick(r, s, "policy-violation", text);
            buf_printf(&b, "%s\n", s->full);
            n++;
        }
    } else if (user) {
        struct user *u = sessions_user(r, user);
        for (struct session *s = u ? u->sessions : NULL; s; s = s->next, n++) {
            sessions_kick(r, s, "policy-violation", text);
            buf_printf(&b, "%s\n", s->full);
        }
    }
    if (n == 0)
        answer(r, peer, id, "no such session", NULL);
    else
        answer(r, peer, id, NULL, &b);
    log_info("admin kick %s: %d session(s)", full ? full : user ? user : "?", n);
    free(text);
    free(full);
    free(user);
    buf_fini(&b);
}

static void on_purged(struct router *r, const struct envelope *res, void *ctx)
{
    struct admin_wait *w = ctx;
    const char *err = envelope_get(res, ENV_ERROR);
    struct buf b;

    buf_init(&b);
    if (err) {
        char *msg = xasprintf("archive purge failed: %s", err);
        answer(r, w->peer, w->id, msg, NULL);
        free(msg);
    } else {
        buf_printf(&b, "purged\n%s\n", envelope_get(res, ENV_TEXT) ? envelope_get(res, ENV_TEXT) : "0");
        answer(r, w->peer, w->id, NULL, &b);
    }
    buf_fini(&b);
    free(w->id);
    free(w->cmd);
    free(w->user);
    free(w);
}

static void cmd_archive_purge(struct router *r, const char *peer, const struct envelope *env)
{
    const char *id = envelope_get(env, ENV_ID);
    int64_t before;

    if (timestamp_parse(envelope_get(env, ENV_TEXT), &before) != TIMESTAMP_OK) {
        answer(r, peer, id, "--before wants a date such as 2026-01-31 or 2026-01-31T12:00:00Z", NULL);
        return;
    }
    struct admin_wait *w = xcalloc(1, sizeof(*w));
    snprintf(w->peer, sizeof(w->peer), "%s", peer);
    w->id = xstrdup(id);
    w->cmd = xstrdup("archive_purge");
    log_info("admin archive purge before %s", envelope_get(env, ENV_TEXT));
    archive_purge(r, before, on_purged, w);
}

void admin_on_message(struct router *r, const char *peer, const struct envelope *env)
{
    const char *cmd = envelope_get(env, ENV_CMD);
    const char *id = envelope_get(env, ENV_ID);

    if (env->op != OP_ADMIN || !cmd) {
        answer(r, peer, id, "not an admin request", NULL);
        return;
    }
    if (strcmp(cmd, "status") == 0)
        cmd_status(r, peer, id);
    else if (strcmp(cmd, "sessions") == 0)
        cmd_sessions(r, peer, id, envelope_get(env, ENV_USER));
    else if (strcmp(cmd, "user_add") == 0 || strcmp(cmd, "user_del") == 0 || strcmp(cmd, "user_list") == 0)
        cmd_user(r, peer, env, cmd);
    else if (strcmp(cmd, "kick") == 0)
        cmd_kick(r, peer, env);
    else if (strcmp(cmd, "archive_purge") == 0)
        cmd_archive_purge(r, peer, env);
    else
        answer(r, peer, id, "unknown command", NULL);
}
