/*
 * Stanzas from a bound client: stamped, normalized, answered here when the
 * gateway can (XEP-0199 ping to the server, the legacy session iq), and
 * otherwise sent to the router with the routing header, so the router
 * routes without parsing XML (DESIGN.md).
 *
 * Rules, cited where applied:
 *   F1  'from' is always the session's full JID, whatever the client wrote
 *       (RFC 6120 §8.1.2.1)
 *   F2  'to' is normalized (RFC 7622); one that does not parse is answered
 *       with jid-malformed (RFC 6120 §8.3.3.8) and goes no further
 *   F3  a ping to the server or with no 'to' is answered by the gateway
 *       (XEP-0199 §4.2): it costs the router nothing
 *   F4  presence priority is an integer in [-128, 127] (RFC 6121 §4.7.2.3);
 *       anything else counts as 0
 *   F5  a client may not forge the ids this server assigns: <stanza-id/>
 *       elements claiming to be by one of our JIDs are removed (XEP-0359
 *       §3.3)
 *   F5  the answer to the gateway's own idle ping (idle.c) ends here
 */
#include "forward.h"
#include "bind.h"
#include "conn.h"
#include "envelope.h"
#include "idle.h"
#include "jid.h"
#include "log.h"
#include "stanza.h"
#include "stream.h"
#include "upstream.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int is_server_ping(const struct conn *c, const struct stanza *s, const char *to)
{
    return str_eq(s->name, "iq") && str_eq(stanza_attr(s, "type"), "get") &&
           (!to || strcmp(to, c->gw->conf->domain) == 0) && stanza_child(s, "ping", NS_PING) != NULL;
}

static void answer_ping(struct conn *c, const struct stanza *s)
{
    struct buf b;
    const char *id = stanza_attr(s, "id");
    buf_init(&b);
    buf_append_str(&b, "<iq type='result' from='");
    stanza_escape(&b, c->gw->conf->domain, strlen(c->gw->conf->domain), 1);
    buf_append_str(&b, "' to='");
    stanza_escape(&b, c->full, strlen(c->full), 1);
    buf_append_str(&b, "' id='");
    if (id)
        stanza_escape(&b, id, strlen(id), 1);
    buf_append_str(&b, "'/>");
    conn_write_stanza(c, b.data, b.len);
    buf_fini(&b);
}

/* The header flags the router's carbons rules read (envelope.h). */
static int message_flags(const struct stanza *s)
{
    int flags = 0;
    for (const struct stanza *k = s->first; k; k = k->next) {
        if (k->kind != STANZA_ELEMENT)
            continue;
        if (str_eq(k->name, "body") && str_eq(k->ns, NS_CLIENT))
            flags |= STANZA_FLAG_BODY;
        else if ((str_eq(k->name, "private") && str_eq(k->ns, "urn:xmpp:carbons:2")) ||
                 (str_eq(k->name, "no-copy") && str_eq(k->ns, "urn:xmpp:hints")))
            flags |= STANZA_FLAG_NO_COPY;
        else if ((str_eq(k->name, "sent") || str_eq(k->name, "received")) && str_eq(k->ns, "urn:xmpp:carbons:2"))
            flags |= STANZA_FLAG_CARBON;
    }
    return flags;
}

/* Whether jid (bare or domain) belongs to our domain. */
static int is_ours(const struct conn *c, const char *jid)
{
    const char *domain = c->gw->conf->domain;
    const char *at = jid ? strchr(jid, '@') : NULL;
    const char *d = at ? at + 1 : jid;
    return d && strcasecmp(d, domain) == 0;
}

static void strip_our_stanza_ids(struct conn *c, struct stanza *s)
{
    struct stanza *k = s->first;
    while (k) {
        struct stanza *next = k->next;
        if (k->kind == STANZA_ELEMENT && str_eq(k->name, "stanza-id") && str_eq(k->ns, "urn:xmpp:sid:0") &&
            is_ours(c, stanza_attr(k, "by"))) {
            stanza_detach(k);
            stanza_free(k);
        }
        k = next;
    }
}

static int presence_priority(const struct stanza *s)
{
    struct stanza *p = stanza_child(s, "priority", NS_CLIENT);
    char *text, *end;
    long v;

    if (!p)
        return 0;
    text = stanza_text(p);
    v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || v < -128 || v > 127)
        v = 0;                                                              /* F4 */
    free(text);
    return (int)v;
}

/* Keeps what a re-announce after a router restart needs. */
static void remember_presence(struct conn *c, const char *type, int prio, const struct buf *xml)
{
    free(c->presence);
    c->presence = NULL;
    if (!type) {
        c->is_available = 1;
        c->priority = prio;
        c->presence = xstrndup(xml->data, xml->len);
    } else if (strcmp(type, "unavailable") == 0) {
        c->is_available = 0;
        c->priority = 0;
    }
}

void forward_stanza(struct conn *c, struct stanza *s)
{
    const char *to = stanza_attr(s, "to");
    const char *type = stanza_attr(s, "type");
    char *to_norm = NULL;
    struct envelope *e;
    struct buf xml;

    if (to) {
        if (jid_normalize(to, &to_norm) != JID_OK) {                        /* F2 */
            stream_stanza_error(c, s, "jid-malformed", "modify");
            goto out;
        }
        if (strcmp(to, to_norm) != 0)
            stanza_set_attr(s, "to", to_norm);
    }
    if (idle_is_pong(c, s))                                                 /* F5 */
        goto out;
    if (is_server_ping(c, s, to_norm)) {                                    /* F3 */
        answer_ping(c, s);
        goto out;
    }
    if (bind_is_session_iq(s)) {
        bind_answer_session(c, s);
        goto out;
    }
    stanza_set_attr(s, "from", c->full);                                    /* F1 */
    if (str_eq(s->name, "message"))
        strip_our_stanza_ids(c, s);                                         /* F5 */

    e = envelope_new(OP_STANZA);
    envelope_set_int(e, ENV_CONN, (int64_t)c->id);
    envelope_set(e, ENV_FROM, c->full);
    envelope_set(e, ENV_TO, to_norm ? to_norm : "");
    envelope_set(e, ENV_KIND, s->name);
    envelope_set(e, ENV_TYPE, type ? type : "");
    if (stanza_attr(s, "id"))
        envelope_set(e, ENV_ID, stanza_attr(s, "id"));
    if (str_eq(s->name, "iq")) {
        struct stanza *q = stanza_first_element(s);
        envelope_set(e, ENV_NS, q ? q->ns : "");
    } else if (str_eq(s->name, "message")) {
        envelope_set_int(e, ENV_FLAGS, message_flags(s));
    }
    buf_init(&xml);
    stanza_serialize(s, NS_CLIENT, &xml);
    if (str_eq(s->name, "presence")) {
        int prio = presence_priority(s);
        envelope_set_int(e, ENV_PRIO, prio);
        if (!to_norm)
            remember_presence(c, type, prio, &xml);
    }
    size_t len = xml.len;
    envelope_take_payload(e, buf_steal(&xml, NULL), len);
    upstream_send(c->gw, &e);
out:
    free(to_norm);
    stanza_free(s);
}
