/*
 * The subscription state machine of RFC 6121 §3 for contacts on this
 * server. Every step needs both rosters (the subscriber's and the
 * contact's), so a step first loads both (roster_with) and then applies its
 * rule; each state change is written through and pushed by roster.c.
 *
 * Names: the subscriber wants to see the contact's presence. subscribe and
 * unsubscribe are sent by the subscriber; subscribed and unsubscribed by
 * the contact.
 *
 * Rules, cited where applied:
 *   P1  subscribe: the subscriber's item gets ask='subscribe' (pending
 *       out); if the contact already lets the subscriber see it ('from'),
 *       the server answers subscribed itself (§3.1.3); otherwise the
 *       request is remembered as pending in for the contact and delivered
 *       to the contact's available resources, and again at each login
 *       until answered (§3.1.3)
 *   P2  subscribed with a request pending: contact's item none->from,
 *       to->both; subscriber's item none->to, from->both, ask cleared; the
 *       subscriber gets the subscribed stanza and then the contact's
 *       current presence (§3.1.5, §3.1.6). Without a pending request it is
 *       ignored (§3.1.5, no pre-approval)
 *   P3  unsubscribe: subscriber's to->none, both->from (and ask cleared);
 *       contact's from->none, both->to; the contact gets the stanza and
 *       the subscriber gets unavailable presence from the contact (§3.3)
 *   P4  unsubscribed: the mirror of P3, sent by the contact (cancel or
 *       deny, §3.2); a pending request is dropped
 *   P5  subscription stanzas are delivered from the sender's bare JID
 *       (§3.1.2)
 *   P6  removing a roster item cancels both directions (§2.5.2)
 */
#include "subscription.h"
#include "buf.h"
#include "envelope.h"
#include "log.h"
#include "presence.h"
#include "reply.h"
#include "roster.h"
#include "sessions.h"
#include "stanza.h"
#include "stanza_parse.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

enum sub_op { OP_SUBSCRIBE, OP_SUBSCRIBED, OP_UNSUBSCRIBE, OP_UNSUBSCRIBED };

struct step {
    enum sub_op op;
    char *subscriber;
    char *contact;
    char *stanza;              /* the stanza to deliver (from = sender's bare JID), or NULL */
    struct roster *sub_ro;     /* loaded in turn */
};

static void step_free(struct step *st)
{
    free(st->subscriber);
    free(st->contact);
    free(st->stanza);
    free(st);
}

/* P5: the stanza as delivered, from the sender's bare JID. */
static char *restamp(const struct envelope *env, const char *from_bare, const char *to)
{
    struct stanza *s = NULL;
    struct buf b;

    if (!env || !env->payload || stanza_parse(env->payload, env->payload_len, &s) < 0)
        return NULL;
    stanza_set_attr(s, "from", from_bare);
    stanza_set_attr(s, "to", to);
    buf_init(&b);
    stanza_serialize(s, "jabber:client", &b);
    stanza_free(s);
    return buf_steal(&b, NULL);
}

static char *plain(const char *type, const char *from, const char *to)
{
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "<presence type='");
    buf_append_str(&b, type);
    buf_append_str(&b, "' from='");
    stanza_escape(&b, from, strlen(from), 1);
    buf_append_str(&b, "' to='");
    stanza_escape(&b, to, strlen(to), 1);
    buf_append_str(&b, "'/>");
    return buf_steal(&b, NULL);
}

/* Delivers xml to every session of user_id (available ones only when
 * only_available). */
static void to_user(struct router *r, const char *user_id, const char *xml, int only_available)
{
    struct user *u = sessions_user(r, user_id);
    if (!u || !xml)
        return;
    for (struct session *s = u->sessions; s; s = s->next)
        if (!only_available || s->available)
            reply_deliver(r, s, xml, strlen(xml));
}

static void set_sub(struct router *r, struct roster *ro, struct roster_item *it, enum roster_sub sub, int ask)
{
    if (it->sub == sub && it->is_ask == ask)
        return;
    it->sub = sub;
    it->is_ask = ask;
    roster_item_changed(r, ro, it);
}

static void apply(struct router *r, struct step *st, struct roster *sub_ro, struct roster *con_ro)
{
    struct roster_item *si = roster_item(sub_ro, st->contact);   /* subscriber's item for the contact */
    struct roster_item *ci = roster_item(con_ro, st->subscriber); /* contact's item for the subscriber */

    switch (st->op) {
    case OP_SUBSCRIBE:                                                      /* P1 */
        si = roster_item_get_or_add(sub_ro, st->contact);
        if (!roster_sub_has_to(si->sub))
            set_sub(r, sub_ro, si, si->sub, 1);
        if (ci && roster_sub_has_from(ci->sub)) {
            char *ok = plain("subscribed", st->contact, st->subscriber);
            to_user(r, st->subscriber, ok, 0);
            free(ok);
            set_sub(r, sub_ro, si, si->sub == SUB_FROM ? SUB_BOTH : si->sub == SUB_NONE ? SUB_TO : si->sub, 0);
            presence_send_current(r, st->contact, st->subscriber);
            break;
        }
        roster_pending_set(r, con_ro, st->subscriber, 1);
        to_user(r, st->contact, st->stanza, 1);
        break;
    case OP_SUBSCRIBED:                                                     /* P2 */
        if (!strmap_get(&con_ro->pending_in, st->subscriber)) {
            log_debug("user=%s subscribed %s without a request; ignored", st->contact, st->subscriber);
            break;
        }
        roster_pending_set(r, con_ro, st->subscriber, 0);
        ci = roster_item_get_or_add(con_ro, st->subscriber);
        set_sub(r, con_ro, ci, ci->sub == SUB_TO ? SUB_BOTH : ci->sub == SUB_NONE ? SUB_FROM : ci->sub, ci->is_ask);
        if (si && (si->is_ask || !roster_sub_has_to(si->sub))) {
            set_sub(r, sub_ro, si, si->sub == SUB_FROM ? SUB_BOTH : si->sub == SUB_NONE ? SUB_TO : si->sub, 0);
            to_user(r, st->subscriber, st->stanza, 0);
            presence_send_current(r, st->contact, st->subscriber);
        }
        break;
    case OP_UNSUBSCRIBE:                                                    /* P3 */
        if (si && (roster_sub_has_to(si->sub) || si->is_ask))
            set_sub(r, sub_ro, si, si->sub == SUB_BOTH ? SUB_FROM : si->sub == SUB_TO ? SUB_NONE : si->sub, 0);
        roster_pending_set(r, con_ro, st->subscriber, 0);
        if (ci && roster_sub_has_from(ci->sub)) {
            set_sub(r, con_ro, ci, ci->sub == SUB_BOTH ? SUB_TO : SUB_NONE, ci->is_ask);
            to_user(r, st->contact, st->stanza, 1);
            presence_send_unavailable(r, st->contact, st->subscriber);
        }
        break;
    case OP_UNSUBSCRIBED:                                                   /* P4 */
        roster_pending_set(r, con_ro, st->subscriber, 0);
        if (ci && roster_sub_has_from(ci->sub))
            set_sub(r, con_ro, ci, ci->sub == SUB_BOTH ? SUB_TO : SUB_NONE, ci->is_ask);
        if (si && (roster_sub_has_to(si->sub) || si->is_ask)) {
            set_sub(r, sub_ro, si, si->sub == SUB_BOTH ? SUB_FROM : si->sub == SUB_TO ? SUB_NONE : si->sub, 0);
            to_user(r, st->subscriber, st->stanza, 0);
            presence_send_unavailable(r, st->contact, st->subscriber);
        }
        break;
    }
}

static void on_contact_roster(struct router *r, struct roster *ro, void *ctx)
{
    struct step *st = ctx;
    /* The subscriber's roster may have been evicted meanwhile only if it had
     * no work; look it up again rather than trusting the pointer. */
    struct roster *sub_ro = roster_cached(r, st->subscriber);

    if (ro && sub_ro)
        apply(r, st, sub_ro, ro);
    else
        log_warn("subscription %s -> %s: roster unavailable; step dropped", st->subscriber, st->contact);
    step_free(st);
}

static void on_subscriber_roster(struct router *r, struct roster *ro, void *ctx)
{
    struct step *st = ctx;
    if (!ro) {
        log_warn("subscription %s -> %s: roster unavailable; step dropped", st->subscriber, st->contact);
        step_free(st);
        return;
    }
    roster_with(r, st->contact, on_contact_roster, st);
}

static void run(struct router *r, enum sub_op op, const char *subscriber, const char *contact, char *stanza)
{
    struct step *st = xcalloc(1, sizeof(*st));
    st->op = op;
    st->subscriber = xstrdup(subscriber);
    st->contact = xstrdup(contact);
    st->stanza = stanza;
    roster_with(r, subscriber, on_subscriber_roster, st);
}

void subscription_on_presence(struct router *r, struct session *from, const struct envelope *env, const char *to)
{
    const char *type = envelope_get(env, ENV_TYPE);
    const char *me = from->user->user_id;

    if (strcmp(to, me) == 0)
        return; /* subscribing to oneself: the server always shares presence with oneself */
    char *stanza = restamp(env, me, to);
    if (str_eq(type, "subscribe"))
        run(r, OP_SUBSCRIBE, me, to, stanza);
    else if (str_eq(type, "unsubscribe"))
        run(r, OP_UNSUBSCRIBE, me, to, stanza);
    else if (str_eq(type, "subscribed"))
        run(r, OP_SUBSCRIBED, to, me, stanza);
    else if (str_eq(type, "unsubscribed"))
        run(r, OP_UNSUBSCRIBED, to, me, stanza);
    else
        free(stanza);
}

void subscription_on_remove(struct router *r, struct roster *ro, const char *jid)
{
    struct roster_item *it = roster_item(ro, jid);
    const char *me = ro->user_id;
    int had_to = it && (roster_sub_has_to(it->sub) || it->is_ask);
    int had_from = (it && roster_sub_has_from(it->sub)) || strmap_get(&ro->pending_in, jid);
    char *contact = xstrdup(jid);

    /* The item goes first, so the user sees one push, 'remove' (§2.5.2);
     * the steps then find no item of ours and change only the contact's. */
    roster_pending_set(r, ro, contact, 0);
    roster_item_remove(r, ro, contact);
    if (had_to)                                                             /* P6 */
        run(r, OP_UNSUBSCRIBE, me, contact, plain("unsubscribe", me, contact));
    if (had_from)
        run(r, OP_UNSUBSCRIBED, contact, me, plain("unsubscribed", me, contact));
    free(contact);
}

void subscription_redeliver(struct router *r, struct roster *ro, struct session *s)
{
    struct strmap_entry *e;
    size_t it;
    for (e = strmap_first(&ro->pending_in, &it); e; e = strmap_next(&ro->pending_in, e, &it)) {
        char *xml = plain("subscribe", e->key, ro->user_id);
        reply_deliver(r, s, xml, strlen(xml));
        free(xml);
    }
}
