/*
 * Offline messages, XEP-0160 and RFC 6121 §8.5.2.2.
 *
 * Rules, cited where applied:
 *   O1  stored: chat and normal messages with a body to an account with no
 *       available resource; headline, error and groupchat are not, and
 *       neither are bodiless notifications (chat states): those are
 *       dropped quietly. The sender gets no answer on success
 *   O2  over offline.quota the sender gets resource-constraint; an unknown
 *       account service-unavailable; a storage that cannot take it (queue
 *       full, database down past the retries) resource-constraint: never
 *       silence
 *   O3  on initial presence with non-negative priority the stored messages
 *       go to that session in order, each with <delay from=domain
 *       stamp=received/> (XEP-0203)
 *   O4  a stored message is deleted only when the gateway reports it
 *       acknowledged (XEP-0198 <a/>, or written when stream management is
 *       off); a connection lost first leaves it stored for the next login.
 *       One session never gets the same stored message twice. The deletes
 *       of one loop turn go together (offline_acks.c)
 *   O5  a message a stream-managed session never acknowledged before it
 *       ended for good comes back from the gateway and is stored for the
 *       session's user (XEP-0198 §5: treat it as undelivered)
 */
#include "offline.h"
#include "offline_acks.h"
#include "archive.h"
#include "buf.h"
#include "envelope.h"
#include "jobs.h"
#include "log.h"
#include "payload.h"
#include "reply.h"
#include "sessions.h"
#include "stanza.h"
#include "stanza_parse.h"
#include "timestamp.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define ACK_PREFIX "off:"

struct store_wait {
    struct envelope *req;      /* the sender's stanza, for an error */
    struct session_ref who;
};

static void on_stored(struct router *r, const struct envelope *res, void *ctx)
{
    struct store_wait *w = ctx;
    const char *err = envelope_get(res, ENV_ERROR);
    struct session *s;

    if (err && (s = session_ref_get(r, &w->who))) {
        if (strcmp(err, "not-found") == 0) {
            reply_error(r, s, w->req, "service-unavailable", "cancel");       /* O2 */
        } else {
            log_info("user=%s offline message refused: %s", envelope_get(res, ENV_USER), err);
            reply_error(r, s, w->req, "resource-constraint", "wait");         /* O2 */
        }
    } else if (err) {
        log_info("user=%s offline message refused (%s); sender gone", envelope_get(res, ENV_USER), err);
    }
    envelope_free(w->req);
    session_ref_fini(&w->who);
    free(w);
}

void offline_store(struct router *r, struct session *from, const struct envelope *env, const char *user_id,
                   const char *id, int64_t stamp, const char *xml, size_t len)
{
    const char *type = envelope_get(env, ENV_TYPE);
    int is_chat_or_normal = !type || !*type || str_eq(type, "chat") || str_eq(type, "normal");

    if (!is_chat_or_normal || !(envelope_get_int(env, ENV_FLAGS, 0) & STANZA_FLAG_BODY))
        return;                                                                 /* O1 */
    struct store_wait *w = xcalloc(1, sizeof(*w));
    w->req = envelope_copy(env);
    session_ref_set(&w->who, from);

    struct envelope *job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, "offline_put");
    envelope_set(job, ENV_JOB, "offline");
    envelope_set(job, ENV_USER, user_id);
    envelope_set(job, ENV_ID, id);
    envelope_set_int(job, ENV_STAMP, stamp);
    envelope_set_int(job, ENV_LIMIT, r->conf->offline.quota);
    envelope_set_payload(job, xml, len);
    offline_acks_flush_user(r, user_id); /* A2: deletes first, for the quota */
    jobs_submit(r, &job, on_stored, w);
}

/* ---- delivery (O3, O4) ------------------------------------------------------ */

struct fetch_wait {
    struct session_ref who;
};

static void deliver_one(struct router *r, struct session *s, const struct stanza *msg)
{
    const char *id = stanza_attr(msg, "id");
    const char *stamp_s = stanza_attr(msg, "stamp");
    struct stanza *m = stanza_first_element(msg);
    char stamp[TIMESTAMP_MAX];
    struct buf orig, out, delay;

    if (!id || !stamp_s || !m)
        return;
    if (!s->offline_sent) {
        s->offline_sent = xcalloc(1, sizeof(*s->offline_sent));
        strmap_init(s->offline_sent);
    }
    if (strmap_get(s->offline_sent, id))
        return;                                                                 /* O4 */
    strmap_put(s->offline_sent, id, (void *)1);

    timestamp_format(strtoll(stamp_s, NULL, 10), stamp);
    buf_init(&orig);
    buf_init(&out);
    buf_init(&delay);
    stanza_serialize(m, "jabber:client", &orig);
    buf_append_str(&delay, "<delay xmlns='urn:xmpp:delay' from='");
    stanza_escape(&delay, r->conf->domain, strlen(r->conf->domain), 1);
    buf_printf(&delay, "' stamp='%s'/>", stamp);
    if (payload_add_child(orig.data, orig.len, delay.data, &out) == 0) {
        struct envelope *e = envelope_new(OP_DELIVER);
        char *ack = xasprintf(ACK_PREFIX "%s", id);
        envelope_set_int(e, ENV_CONN, (int64_t)s->conn);
        envelope_set(e, ENV_ACK, ack);
        size_t len = out.len;
        envelope_take_payload(e, buf_steal(&out, NULL), len);
        router_send_gateway(r, s->gateway, &e);
        free(ack);
    }
    buf_fini(&orig);
    buf_fini(&out);
    buf_fini(&delay);
}

static void on_fetched(struct router *r, const struct envelope *res, void *ctx)
{
    struct fetch_wait *w = ctx;
    struct session *s = session_ref_get(r, &w->who);
    struct stanza *msgs = NULL;

    if (!s)
        goto out; /* gone before its messages came: they stay stored (O4) */
    if (envelope_get(res, ENV_ERROR)) {
        log_warn("jid=%s offline messages not fetched: %s", w->who.full, envelope_get(res, ENV_ERROR));
        goto out;
    }
    /* Most logins have nothing stored: storage's empty list (envelope.h
     * "offline_get") needs no XML parser. */
    if (!res->payload || (res->payload_len == 11 && memcmp(res->payload, "<messages/>", 11) == 0) ||
        stanza_parse(res->payload, res->payload_len, &msgs) < 0)
        goto out;
    size_t n = 0;
    for (struct stanza *k = msgs->first; k; k = k->next) {
        if (k->kind == STANZA_ELEMENT && str_eq(k->name, "msg")) {
            deliver_one(r, s, k);
            n++;
        }
    }
    if (n)
        log_info("jid=%s %zu offline messages delivered", s->full, n);
out:
    stanza_free(msgs);
    session_ref_fini(&w->who);
    free(w);
}

void offline_deliver(struct router *r, struct session *s)
{
    struct fetch_wait *w;
    struct envelope *job;

    if (s->priority < 0)
        return;                                                                 /* O3 */
    w = xcalloc(1, sizeof(*w));
    session_ref_set(&w->who, s);
    job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, "offline_get");
    envelope_set(job, ENV_JOB, "offline-get");
    envelope_set(job, ENV_USER, s->user->user_id);
    offline_acks_flush_user(r, s->user->user_id); /* A2: never fetch what was acknowledged */
    jobs_submit(r, &job, on_fetched, w);
}

void offline_on_acked(struct router *r, const char *gateway, const struct envelope *env)
{
    const char *ack = envelope_get(env, ENV_ACK);
    struct session *s;

    if (!ack || strncmp(ack, ACK_PREFIX, strlen(ACK_PREFIX)) != 0)
        return;
    s = sessions_of_conn(r, gateway, envelope_get(env, ENV_FULL), (uint64_t)envelope_get_int(env, ENV_CONN, 0));
    if (!s)
        return;
    const char *id = ack + strlen(ACK_PREFIX);
    if (s->offline_sent)
        strmap_del(s->offline_sent, id);
    offline_acks_add(r, s->user->user_id, id);                                  /* O4 */
}

static void on_kept(struct router *r, const struct envelope *res, void *ctx)
{
    (void)r;
    (void)ctx;
    if (envelope_get(res, ENV_ERROR))
        log_warn("user=%s unacknowledged message not kept offline: %s", envelope_get(res, ENV_USER),
                 envelope_get(res, ENV_ERROR));
}

void offline_on_undelivered(struct router *r, const char *gateway, const struct envelope *env)
{
    struct session *s = sessions_of_conn(r, gateway, envelope_get(env, ENV_FULL),
                                         (uint64_t)envelope_get_int(env, ENV_CONN, 0));
    char id[ARCHIVE_ID_MAX];

    if (!s || !env->payload)
        return;
    /* O5: a new id and the time it comes back; the quota still applies. */
    int64_t stamp = archive_new_id(r, id);
    struct envelope *job = envelope_new(OP_JOB);
    envelope_set(job, ENV_WHAT, "offline_put");
    envelope_set(job, ENV_JOB, "offline-kept");
    envelope_set(job, ENV_USER, s->user->user_id);
    envelope_set(job, ENV_ID, id);
    envelope_set_int(job, ENV_STAMP, stamp);
    envelope_set_int(job, ENV_LIMIT, r->conf->offline.quota);
    envelope_set_payload(job, env->payload, env->payload_len);
    offline_acks_flush_user(r, s->user->user_id);
    jobs_submit(r, &job, on_kept, NULL);
}
