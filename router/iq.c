/*
 * Queries the router answers on behalf of the server or of an account
 * (RFC 6120 §10.3, RFC 6121 §8.5.2.1.1). The dispatch is on the header's
 * "ns" (the namespace of the iq's first child, put there by the gateway),
 * so routing the common case needs no XML parsing here either.
 *
 * iq_features[] is the one list of what the server supports; disco#info
 * (XEP-0030) reads it, so the advertised list cannot drift from the code.
 */
#include "iq.h"
#include "buf.h"
#include "archive.h"
#include "carbons.h"
#include "last.h"
#include "roster.h"
#include "envelope.h"
#include "jobs.h"
#include "log.h"
#include "reply.h"
#include "sessions.h"
#include "stanza.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_PING "urn:xmpp:ping"
#define NS_ROSTER "jabber:iq:roster"

const char *const iq_features[] = {
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_PING,            /* XEP-0199: answered by the gateway, and here for the domain and the own account */
    NS_ROSTER,          /* RFC 6121 §2 (roster.c) */
    NS_CARBONS,         /* XEP-0280 (carbons.c) */
    NS_LAST,            /* XEP-0012 (last.c) */
    "msgoffline",       /* XEP-0160 (offline.c) */
    NULL,
};

static void disco_info_server(struct router *r, struct session *from, const struct envelope *env)
{
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "<query xmlns='" NS_DISCO_INFO "'><identity category='server' type='im' name='Parley'/>");
    for (int i = 0; iq_features[i]; i++) {
        buf_append_str(&b, "<feature var='");
        stanza_escape(&b, iq_features[i], strlen(iq_features[i]), 1);
        buf_append_str(&b, "'/>");
    }
    buf_append_str(&b, "</query>");
    reply_iq_result(r, from, env, b.data);
    buf_fini(&b);
}

static void server_iq(struct router *r, struct session *from, const struct envelope *env, const char *ns,
                      int is_get)
{
    if (is_get && str_eq(ns, NS_DISCO_INFO))
        disco_info_server(r, from, env);
    else if (is_get && str_eq(ns, NS_DISCO_ITEMS))
        reply_iq_result(r, from, env, "<query xmlns='" NS_DISCO_ITEMS "'/>");
    else if (is_get && str_eq(ns, NS_PING))
        reply_iq_result(r, from, env, NULL);
    else if (str_eq(ns, NS_LAST))
        last_iq(r, from, env, r->conf->domain);
    else
        reply_error(r, from, env, "service-unavailable", "cancel");
}

static void account_iq(struct router *r, struct session *from, const struct envelope *env, const char *ns,
                       int is_get)
{
    if (str_eq(ns, NS_ROSTER)) {
        roster_iq(r, from, env);
    } else if (str_eq(ns, NS_LAST)) {
        last_iq(r, from, env, NULL);
    } else if (str_eq(ns, NS_CARBONS)) {
        carbons_iq(r, from, env);
    } else if (is_get && str_eq(ns, NS_DISCO_INFO)) {
        reply_iq_result(r, from, env,
                        "<query xmlns='" NS_DISCO_INFO "'><identity category='account' type='registered'/>"
                        "<feature var='" NS_MAM "'/><feature var='" NS_SID "'/></query>");
    } else if (str_eq(ns, NS_MAM)) {
        archive_iq(r, from, env, NULL);
    } else if (is_get && str_eq(ns, NS_PING)) {
        /* A ping to one's own account is how a client learns that the
         * router has handled everything it sent before (one stream is
         * handled in order); answer it as the server's ping is, rather
         * than bouncing it, which costs a parse of the stanza. */
        reply_iq_result(r, from, env, NULL);
    } else {
        reply_error(r, from, env, "service-unavailable", "cancel");
    }
}

void iq_handle(struct router *r, struct session *from, const struct envelope *env, const char *bare)
{
    const char *ns = envelope_get(env, ENV_NS);
    int is_get = str_eq(envelope_get(env, ENV_TYPE), "get");

    if (bare && strcmp(bare, r->conf->domain) == 0)
        server_iq(r, from, env, ns, is_get);
    else if (!bare || strcmp(bare, from->user->user_id) == 0)
        account_iq(r, from, env, ns, is_get);
    else if (str_eq(ns, NS_LAST))
        last_iq(r, from, env, bare);
    else if (str_eq(ns, NS_MAM))
        archive_iq(r, from, env, bare);                                   /* M2: forbidden */
    else
        /* Another account: nothing else is answered on its behalf. */
        reply_error(r, from, env, "service-unavailable", "cancel");
}
