/*
 * Stanza routing, RFC 6121 §8. The router routes on the envelope header
 * alone (from, to, kind, type): a plain message is never parsed here, its
 * payload bytes go out as they came in.
 *
 * Rules (cited where applied):
 *   R1  no 'to': the stanza is for the sender's own account (RFC 6120
 *       §10.3); presence without 'to' is a broadcast (RFC 6121 §4.2, §4.4)
 *   R2  a domain other than ours: remote-server-not-found (no s2s yet)
 *   R3  full JID of a connected resource: deliver to it (§8.5.3.1)
 *   R4  message to a bare JID: normal and chat go to every available
 *       resource with non-negative priority, or only to the highest
 *       (routing.bare_jid); headline to all of them (§8.5.2.1.1);
 *       groupchat is service-unavailable; error is dropped
 *   R4a message to a full JID whose resource is gone (§8.5.3.2.1): normal
 *       and chat as to the bare JID; groupchat service-unavailable;
 *       headline and error dropped
 *   R8  chat and normal messages with a body get a server id (stanza-id)
 *       and pass the interceptors (archive) as they come in and once routed
 *   W1  for router.peer_timeout_ms after the router starts, gateways are
 *       still re-announcing their sessions (a router restart): a stanza
 *       for a local user with no session yet is parked and routed when
 *       that time is over, in order and before anything newer, instead of
 *       being stored or bounced too early; its delay stamp is the time it
 *       arrived, and it goes out even if its sender logged out meanwhile
 *   R9  such a message that reached no resource goes to offline storage,
 *       which answers the sender only when it cannot keep it (offline.c);
 *       other messages to an account with no resource are dropped quietly
 *       (§8.5.2.2.1)
 *   R5  iq to a full JID whose resource is gone: service-unavailable
 *       (§8.5.3.2.1); iq to a bare JID is answered by the server on the
 *       account's behalf (§8.5.2.1.1, iq.c)
 *   R6  presence to a user: presence.c (directed presence, probes) and
 *       subscription.c (subscription requests and answers)
 *   R7  an error stanza is never answered with an error (RFC 6120 §8.3.1)
 */
#include "route.h"
#include "archive.h"
#include "buf.h"
#include "carbons.h"
#include "intercept.h"
#include "offline.h"
#include "payload.h"
#include "stanza.h"
#include "timestamp.h"
#include "envelope.h"
#include "iq.h"
#include "log.h"
#include "presence.h"
#include "reply.h"
#include "sessions.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* A normalized address split in place: bare is a heap copy. */
struct addr {
    char *bare;
    const char *resource;      /* NULL for a bare JID */
    int has_local;
    int is_local_domain;
};

static void addr_split(const struct router *r, const char *jid, struct addr *a)
{
    const char *slash = strchr(jid, '/');
    size_t bare_len = slash ? (size_t)(slash - jid) : strlen(jid);
    const char *at = memchr(jid, '@', bare_len);
    const char *domain = at ? at + 1 : jid;
    size_t dlen = bare_len - (size_t)(domain - jid);

    a->bare = xstrndup(jid, bare_len);
    a->resource = slash ? slash + 1 : NULL;
    a->has_local = at != NULL;
    a->is_local_domain = strlen(r->conf->domain) == dlen && memcmp(domain, r->conf->domain, dlen) == 0;
}

static void deliver_env(struct router *r, const struct session *to, const struct envelope *env)
{
    reply_deliver(r, to, env->payload, env->payload_len);
    r->routed++;
}

static void deliver_xml(struct router *r, struct session *to, const char *xml, size_t len, uint64_t mark)
{
    reply_deliver(r, to, xml, len);
    to->mark = mark;
    r->routed++;
}

/* R4: fan out to the user's available, non-negative-priority resources
 * (only the highest of them when configured and all_of_them is false);
 * every session reached is marked with mark. Returns how many. */
static int deliver_bare(struct router *r, struct user *u, const char *xml, size_t len, uint64_t mark,
                        int all_of_them)
{
    int n = 0, best = -1;

    if (!u)
        return 0;
    if (!all_of_them && strcmp(r->conf->routing.bare_jid, "highest_priority") == 0)
        for (struct session *s = u->sessions; s; s = s->next)
            if (s->available && s->priority > best)
                best = s->priority;
    for (struct session *s = u->sessions; s; s = s->next) {
        if (!s->available || s->priority < 0 || s->priority < best)
            continue;
        deliver_xml(r, s, xml, len, mark);
        n++;
    }
    return n;
}

/* R8: messages worth keeping get a server id, seen by the recipient as
 * <stanza-id/> (XEP-0359, M1 in archive.c): chat and normal with a body. */
static int wants_id(const struct envelope *env)
{
    const char *type = envelope_get(env, ENV_TYPE);
    int64_t flags = envelope_get_int(env, ENV_FLAGS, 0);
    return (flags & STANZA_FLAG_BODY) && !(flags & STANZA_FLAG_CARBON) &&
           (!type || !*type || str_eq(type, "chat") || str_eq(type, "normal"));
}

static void route_message(struct router *r, struct session *from, const struct envelope *env, struct addr *to)
{
    const char *type = envelope_get(env, ENV_TYPE);
    int is_error = str_eq(type, "error");
    int is_groupchat = str_eq(type, "groupchat");
    int is_headline = str_eq(type, "headline");
    uint64_t mark = ++r->fanout_seq;
    struct intercept_msg m = { .from = from, .env = env, .to_user = to->bare, .xml = env->payload,
                               .len = env->payload_len };
    char id[ARCHIVE_ID_MAX];
    struct buf with_id;
    struct user *u;
    int n = 0;

    if (!to->has_local) {
        /* Messages to the server itself: nothing here consumes them. */
        if (!is_error)
            reply_error(r, from, env, "service-unavailable", "cancel");
        return;
    }
    buf_init(&with_id);
    m.stamp = timestamp_now();
    if (wants_id(env)) {                                                     /* R8 */
        struct buf child;
        m.stamp = archive_new_id(r, id);
        if (envelope_has_int(env, ENV_STAMP))
            m.stamp = envelope_get_int(env, ENV_STAMP, m.stamp); /* parked (W1): when it came */
        buf_init(&child);
        buf_append_str(&child, "<stanza-id xmlns='" NS_SID "' by='");
        stanza_escape(&child, to->bare, strlen(to->bare), 1);
        buf_printf(&child, "' id='%s'/>", id);
        if (payload_add_child(env->payload, env->payload_len, child.data, &with_id) == 0) {
            m.id = id;
            m.xml = with_id.data;
            m.len = with_id.len;
        }
        buf_fini(&child);
    }
    intercept_message(r, &m, 1, 0);

    u = sessions_user(r, to->bare);
    if (to->resource) {
        struct session *dest = sessions_find(r, envelope_get(env, ENV_TO));
        if (dest) {
            deliver_xml(r, dest, m.xml, m.len, mark);                        /* R3 */
            n = 1;
        } else if (is_groupchat) {
            reply_error(r, from, env, "service-unavailable", "cancel");     /* R4a */
            goto out;
        } else if (is_headline || is_error) {
            goto out;                                                        /* R4a */
        } else {
            n = deliver_bare(r, u, m.xml, m.len, mark, 0);                   /* R4a */
        }
    } else if (is_groupchat) {
        reply_error(r, from, env, "service-unavailable", "cancel");         /* R4 */
        goto out;
    } else if (is_error) {
        goto out;                                                            /* R4, R7 */
    } else {
        n = deliver_bare(r, u, m.xml, m.len, mark, is_headline);             /* R4 */
    }
    m.delivered = n;
    if (n == 0 && m.id) {
        offline_store(r, from, env, to->bare, m.id, m.stamp, m.xml, m.len);  /* R9 */
        m.is_stored = 1;
    }
    if (carbons_is_eligible(env)) {
        struct envelope shown = *env;
        shown.payload = (char *)m.xml;
        shown.payload_len = m.len;
        carbons_sent(r, from, env);
        if (n)
            carbons_received(r, u, &shown, mark);
    }
    intercept_message(r, &m, 0, 1);
out:
    buf_fini(&with_id);
}

static void route_presence(struct router *r, struct session *from, const struct envelope *env, struct addr *to)
{
    if (!to) {                                                /* R1 */
        presence_on_broadcast(r, from, env);
        return;
    }
    if (!to->has_local)
        return; /* presence to the server itself: nothing to do */
    presence_on_directed(r, from, env, envelope_get(env, ENV_TO), to->bare, to->resource != NULL); /* R6 */
}

static void route_iq(struct router *r, struct session *from, const struct envelope *env, struct addr *to)
{
    const char *type = envelope_get(env, ENV_TYPE);
    int is_request = str_eq(type, "get") || str_eq(type, "set");

    if (!to || !to->resource) {                               /* R1, R5 */
        if (is_request)
            iq_handle(r, from, env, to ? to->bare : NULL);
        return;
    }
    struct session *dest = sessions_find(r, envelope_get(env, ENV_TO));
    if (dest) {
        deliver_env(r, dest, env);                           /* R3 */
        return;
    }
    if (is_request)
        reply_error(r, from, env, "service-unavailable", "cancel"); /* R5 */
}

/* Routes env from session `from` (which may be a stand-in, see unpark). */
static void route_from(struct router *r, const char *gateway, struct session *from, const struct envelope *env)
{
    uint64_t conn = (uint64_t)envelope_get_int(env, ENV_CONN, 0);
    const char *kind = envelope_get(env, ENV_KIND);
    const char *to_jid = envelope_get(env, ENV_TO);
    struct addr to = { 0 };
    int has_to = to_jid && *to_jid;

    if (!kind || !env->payload) {
        log_warn("gateway=%s conn=%llu stanza envelope without kind or payload; dropped", gateway,
                 (unsigned long long)conn);
        return;
    }
    if (has_to) {
        addr_split(r, to_jid, &to);
        if (to.is_local_domain && to.has_local && ev_now(r->loop) < r->warm_until &&
            !sessions_user(r, to.bare)) {                                    /* W1 */
            struct parked *p = xcalloc(1, sizeof(*p));
            p->gateway = xstrdup(gateway);
            p->env = envelope_copy(env);
            /* The time it arrived, for the delay stamp if it is stored. */
            if (!envelope_has_int(p->env, ENV_STAMP))
                envelope_set_int(p->env, ENV_STAMP, timestamp_now());
            if (r->parked_tail)
                r->parked_tail->next = p;
            else
                r->parked = p;
            r->parked_tail = p;
            goto out;
        }
        if (!to.is_local_domain) {                            /* R2 */
            if (!str_eq(envelope_get(env, ENV_TYPE), "error") && strcmp(kind, "presence") != 0)
                reply_error(r, from, env, "remote-server-not-found", "cancel");
            goto out;
        }
    }
    if (strcmp(kind, "message") == 0) {
        if (!has_to) {                                        /* R1 */
            to.bare = xstrdup(from->user->user_id);
            to.has_local = 1;
            to.is_local_domain = 1;
        }
        route_message(r, from, env, &to);
    } else if (strcmp(kind, "presence") == 0) {
        route_presence(r, from, env, has_to ? &to : NULL);
    } else if (strcmp(kind, "iq") == 0) {
        route_iq(r, from, env, has_to ? &to : NULL);
    } else {
        log_warn("gateway=%s conn=%llu unknown stanza kind; dropped", gateway, (unsigned long long)conn);
    }
out:
    free(to.bare);
}

void route_stanza(struct router *r, const char *gateway, const struct envelope *env)
{
    uint64_t conn = (uint64_t)envelope_get_int(env, ENV_CONN, 0);
    struct session *from = sessions_of_conn(r, gateway, envelope_get(env, ENV_FROM), conn);

    if (r->parked && ev_now(r->loop) >= r->warm_until)
        route_unpark(r, 0); /* W1: what waited goes first, in order */
    if (!from) {
        /* The session ended (or was replaced) while this was in flight. */
        log_debug("gateway=%s conn=%llu stanza from unbound session dropped", gateway,
                  (unsigned long long)conn);
        return;
    }
    route_from(r, gateway, from, env);
}

/* W1: a parked message whose sender logged out meanwhile still goes out,
 * from a stand-in session with no resources (errors to it go nowhere). */
static void route_parked(struct router *r, struct parked *p)
{
    const char *full = envelope_get(p->env, ENV_FROM);
    uint64_t conn = (uint64_t)envelope_get_int(p->env, ENV_CONN, 0);
    struct session *from = sessions_of_conn(r, p->gateway, full, conn);
    const char *slash = full ? strchr(full, '/') : NULL;

    if (from) {
        route_from(r, p->gateway, from, p->env);
        return;
    }
    if (!slash || !str_eq(envelope_get(p->env, ENV_KIND), "message"))
        return;
    struct user u = { .user_id = xstrndup(full, (size_t)(slash - full)) };
    struct session s = { .full = (char *)full, .resource = (char *)slash + 1, .user = &u,
                         .gateway = p->gateway, .conn = conn };
    route_from(r, p->gateway, &s, p->env);
    free(u.user_id);
}

void route_unpark(struct router *r, int all)
{
    struct parked *list = r->parked;

    if (!all && ev_now(r->loop) < r->warm_until)
        return;
    /* Taken off first: routing them must not see them parked still. */
    r->parked = r->parked_tail = NULL;
    while (list) {
        struct parked *p = list;
        list = p->next;
        if (!all)
            route_parked(r, p);
        free(p->gateway);
        envelope_free(p->env);
        free(p);
    }
}
