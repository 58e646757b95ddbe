/*
 * The chat archive (XEP-0313 Message Archive Management, urn:xmpp:mam:2).
 * Messages are archived by the message interceptor in route.c; this file
 * writes them through storage jobs and answers queries.
 *
 * Rules, cited where applied:
 *   M1  every chat message with a body is archived for both parties, with
 *       one server-assigned id that the recipient also sees as
 *       <stanza-id by='recipient'/> (XEP-0359); ids sort in time order
 *   M2  a query is on one's own archive only; to anyone else's: forbidden
 *   M3  filters: with (bare JID), start, end (XEP-0082 times); paging with
 *       RSM max (default 50, at most 250), after, before (XEP-0059; an
 *       empty before is the last page, an unknown id item-not-found); each
 *       result is a <message><result queryid id><forwarded><delay/>
 *       original</forwarded></result></message> and the iq result carries
 *       <fin complete><set><first/><last/><count/></set></fin>
 */
#include "archive.h"
#include "buf.h"
#include "envelope.h"
#include "jid.h"
#include "jobs.h"
#include "log.h"
#include "payload.h"
#include "reply.h"
#include "sessions.h"
#include "stanza.h"
#include "stanza_parse.h"
#include "timestamp.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_RSM "http://jabber.org/protocol/rsm"
#define NS_DATA "jabber:x:data"
#define MAM_MAX_DEFAULT 50
#define MAM_MAX_LIMIT 250

int64_t archive_new_id(struct router *r, char *out)
{
    int64_t now = timestamp_now();
    /* Monotonic even if the clock steps back, so ids and stamps sort the
     * same way as the messages arrived. */
    if (now <= r->last_id_usec)
        now = r->last_id_usec + 1;
    r->last_id_usec = now;
    snprintf(out, ARCHIVE_ID_MAX, "%016" PRIx64, (uint64_t)now);
    return now;
}

static void on_stored(struct router *r, const struct envelope *res, void *ctx)
{
    unsigned long skipped;
    (void)ctx;
    if (str_eq(envelope_get(res, ENV_ERROR), "not-found"))
        log_debug("user=%s has no account; nothing archived", envelope_get(res, ENV_USER));
    else if (envelope_get(res, ENV_ERROR) && log_limit_ok(&r->archive_fail_log, &skipped))
        log_error("user=%s archive write failed: %s (%lu more failed in the last second)", envelope_get(res, ENV_USER),
                  envelope_get(res, ENV_ERROR), skipped);
}

void archive_store(struct router *r, const char *owner, const char *peer, const char *dir, const char *id,
                   int64_t stamp, const char *xml, size_t len)
{
    struct envelope *job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, "archive_put");
    envelope_set(job, ENV_JOB, "archive");
    envelope_set(job, ENV_USER, owner);
    envelope_set(job, ENV_JID, peer);
    envelope_set(job, ENV_ID, id);
    envelope_set(job, ENV_TEXT, dir);
    envelope_set_int(job, ENV_STAMP, stamp);
    envelope_set_payload(job, xml, len);
    jobs_submit(r, &job, on_stored, NULL);
}

/* ---- queries -------------------------------------------------------------- */

struct query_wait {
    struct envelope *req;
    struct session_ref who;
    char *queryid;
};

static void query_wait_free(struct query_wait *w)
{
    envelope_free(w->req);
    session_ref_fini(&w->who);
    free(w->queryid);
    free(w);
}

static void send_result(struct router *r, struct session *s, const char *queryid, const struct stanza *res)
{
    const char *id = stanza_attr(res, "id");
    const char *stamp_s = stanza_attr(res, "stamp");
    struct stanza *msg = stanza_first_element(res);
    char stamp[TIMESTAMP_MAX];
    struct buf b;

    if (!id || !stamp_s || !msg)
        return;
    timestamp_format(strtoll(stamp_s, NULL, 10), stamp);
    buf_init(&b);
    buf_append_str(&b, "<message to='");
    stanza_escape(&b, s->full, strlen(s->full), 1);
    buf_append_str(&b, "' from='");
    stanza_escape(&b, s->user->user_id, strlen(s->user->user_id), 1);
    buf_append_str(&b, "'><result xmlns='" NS_MAM "'");
    if (queryid) {
        buf_append_str(&b, " queryid='");
        stanza_escape(&b, queryid, strlen(queryid), 1);
        buf_append_str(&b, "'");
    }
    buf_append_str(&b, " id='");
    stanza_escape(&b, id, strlen(id), 1);
    buf_printf(&b, "'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='%s'/>", stamp);
    stanza_serialize(msg, NULL, &b); /* NULL: declares xmlns='jabber:client' */
    buf_append_str(&b, "</forwarded></result></message>");
    reply_deliver(r, s, b.data, b.len);
    buf_fini(&b);
}

static void on_results(struct router *r, const struct envelope *res, void *ctx)
{
    struct query_wait *w = ctx;
    struct session *s = session_ref_get(r, &w->who);
    struct stanza *results = NULL;
    const char *first = NULL, *last = NULL;
    struct buf b;

    if (!s)
        goto out;
    if (str_eq(envelope_get(res, ENV_ERROR), "not-found")) {
        /* An RSM after/before id that is not in the archive (XEP-0313 §5.3). */
        reply_error(r, s, w->req, "item-not-found", "cancel");
        goto out;
    }
    if (envelope_get(res, ENV_ERROR) || !res->payload ||
        stanza_parse(res->payload, res->payload_len, &results) < 0) {
        log_warn("jid=%s archive query failed: %s", w->who.full,
                 envelope_get(res, ENV_ERROR) ? envelope_get(res, ENV_ERROR) : "bad answer");
        reply_error(r, s, w->req, "internal-server-error", "wait");
        goto out;
    }
    for (struct stanza *k = results->first; k; k = k->next) {
        if (k->kind != STANZA_ELEMENT || !str_eq(k->name, "r"))
            continue;
        send_result(r, s, w->queryid, k);
        if (!first)
            first = stanza_attr(k, "id");
        last = stanza_attr(k, "id");
    }
    buf_init(&b);
    buf_printf(&b, "<fin xmlns='" NS_MAM "' complete='%s'><set xmlns='" NS_RSM "'>",
               str_eq(stanza_attr(results, "complete"), "1") ? "true" : "false");
    if (first) {
        buf_append_str(&b, "<first>");
        stanza_escape(&b, first, strlen(first), 0);
        buf_append_str(&b, "</first><last>");
        stanza_escape(&b, last, strlen(last), 0);
        buf_append_str(&b, "</last>");
    }
    const char *count = stanza_attr(results, "count");
    buf_printf(&b, "<count>%lld</count></set></fin>", count ? strtoll(count, NULL, 10) : 0LL);
    reply_iq_result(r, s, w->req, b.data);
    buf_fini(&b);
out:
    stanza_free(results);
    query_wait_free(w);
}

/* Reads the data form and RSM set into the storage query (M3). Returns
 * NULL on success or the error condition. */
static const char *build_query(const struct stanza *query, struct buf *q)
{
    const struct stanza *x = stanza_child(query, "x", NS_DATA);
    const struct stanza *set = stanza_child(query, "set", NS_RSM);
    long max = MAM_MAX_DEFAULT;

    buf_append_str(q, "<q");
    for (const struct stanza *f = x ? x->first : NULL; f; f = f->next) {
        if (f->kind != STANZA_ELEMENT || !str_eq(f->name, "field"))
            continue;
        const char *var = stanza_attr(f, "var");
        struct stanza *v = stanza_child(f, "value", NS_DATA);
        char *value = v ? stanza_text(v) : NULL;
        const char *err = NULL;
        if (!value || str_eq(var, "FORM_TYPE")) {
            free(value);
            continue;
        }
        if (str_eq(var, "with")) {
            struct jid j;
            if (jid_parse(value, &j) != JID_OK) {
                err = "bad-request";
            } else {
                char *bare = jid_bare(&j);
                buf_append_str(q, " with='");
                stanza_escape(q, bare, strlen(bare), 1);
                buf_append_str(q, "'");
                free(bare);
                jid_fini(&j);
            }
        } else if (str_eq(var, "start") || str_eq(var, "end")) {
            int64_t us;
            if (timestamp_parse(value, &us) != TIMESTAMP_OK)
                err = "bad-request";
            else
                buf_printf(q, " %s='%" PRId64 "'", var, us);
        } else {
            err = "feature-not-implemented"; /* XEP-0313 §5.1.1: unknown field */
        }
        free(value);
        if (err)
            return err;
    }
    if (set) {
        struct stanza *m = stanza_child(set, "max", NS_RSM);
        struct stanza *after = stanza_child(set, "after", NS_RSM);
        struct stanza *before = stanza_child(set, "before", NS_RSM);
        if (m) {
            char *t = stanza_text(m);
            char *end;
            max = strtol(t, &end, 10);
            int bad = end == t || *end || max < 0;
            free(t);
            if (bad)
                return "bad-request";
        }
        if (after) {
            char *t = stanza_text(after);
            buf_append_str(q, " after='");
            stanza_escape(q, t, strlen(t), 1);
            buf_append_str(q, "'");
            free(t);
        }
        if (before) {
            /* An empty <before/> asks for the last page (storage reads
             * before='' the same way). */
            char *t = stanza_text(before);
            buf_append_str(q, " before='");
            stanza_escape(q, t, strlen(t), 1);
            buf_append_str(q, "'");
            free(t);
        }
    }
    if (max > MAM_MAX_LIMIT)
        max = MAM_MAX_LIMIT;
    buf_printf(q, " max='%ld'/>", max);
    return NULL;
}

void archive_iq(struct router *r, struct session *from, const struct envelope *env, const char *bare)
{
    struct stanza *iq = NULL, *query;
    struct buf q;
    const char *err;

    if (bare && strcmp(bare, from->user->user_id) != 0) {
        reply_error(r, from, env, "forbidden", "auth");                    /* M2 */
        return;
    }
    if (!str_eq(envelope_get(env, ENV_TYPE), "set")) {
        /* A form request (get) is answered with the fields we support. */
        reply_iq_result(r, from, env,
                        "<query xmlns='" NS_MAM "'><x xmlns='" NS_DATA "' type='form'>"
                        "<field var='FORM_TYPE' type='hidden'><value>" NS_MAM "</value></field>"
                        "<field var='with' type='jid-single'/><field var='start' type='text-single'/>"
                        "<field var='end' type='text-single'/></x></query>");
        return;
    }
    if (!env->payload || stanza_parse(env->payload, env->payload_len, &iq) < 0 ||
        !(query = stanza_child(iq, "query", NS_MAM))) {
        reply_error(r, from, env, "bad-request", "modify");
        stanza_free(iq);
        return;
    }
    buf_init(&q);
    if ((err = build_query(query, &q))) {
        reply_error(r, from, env, err, strcmp(err, "bad-request") == 0 ? "modify" : "cancel");
        buf_fini(&q);
        stanza_free(iq);
        return;
    }
    struct query_wait *w = xcalloc(1, sizeof(*w));
    w->req = envelope_copy(env);
    session_ref_set(&w->who, from);
    w->queryid = xstrdup(stanza_attr(query, "queryid"));
    stanza_free(iq);

    struct envelope *job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, "archive_query");
    envelope_set(job, ENV_JOB, "mam");
    envelope_set(job, ENV_USER, from->user->user_id);
    size_t len = q.len;
    envelope_take_payload(job, buf_steal(&q, NULL), len);
    jobs_submit(r, &job, on_results, w);
}

void archive_purge(struct router *r, int64_t stamp, void (*cb)(struct router *, const struct envelope *, void *),
                   void *ctx)
{
    struct envelope *job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, "archive_purge");
    envelope_set(job, ENV_JOB, "purge");
    envelope_set_int(job, ENV_STAMP, stamp);
    jobs_submit(r, &job, cb, ctx);
}

static void on_retention(struct router *r, const struct envelope *res, void *ctx)
{
    (void)r;
    (void)ctx;
    if (envelope_get(res, ENV_ERROR))
        log_warn("archive retention purge failed: %s", envelope_get(res, ENV_ERROR));
    else
        log_info("archive retention purge removed %s entries",
                 envelope_get(res, ENV_TEXT) ? envelope_get(res, ENV_TEXT) : "0");
}

void archive_tick(struct router *r)
{
    int days = r->conf->archive.retention_days;
    double now = ev_now(r->loop);

    if (days <= 0 || now - r->last_retention < 3600)
        return;
    r->last_retention = now;
    archive_purge(r, timestamp_now() - (int64_t)days * 86400 * 1000000, on_retention, NULL);
}
