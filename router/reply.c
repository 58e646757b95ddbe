/*
 * Stanza errors and iq results written by the router; see reply.h.
 */
#include "reply.h"
#include "buf.h"
#include "envelope.h"
#include "log.h"
#include "sessions.h"
#include "stanza.h"
#include "stanza_parse.h"
#include "util.h"

#include <string.h>

#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"

void reply_deliver(struct router *r, const struct session *s, const char *xml, size_t len)
{
    struct envelope *e = envelope_new(OP_DELIVER);
    envelope_set_int(e, ENV_CONN, (int64_t)s->conn);
    envelope_set_payload(e, xml, len);
    router_send_gateway(r, s->gateway, &e);
}

/* The address a reply comes from: what the sender addressed, or the
 * sender's own account when it addressed nothing (RFC 6120 §10.3.3). */
static const char *reply_from(const struct session *sender, const struct envelope *env)
{
    const char *to = envelope_get(env, ENV_TO);
    return (to && *to) ? to : sender->user->user_id;
}

void reply_error(struct router *r, const struct session *sender, const struct envelope *env,
                 const char *condition, const char *etype)
{
    struct stanza *s = NULL;
    struct buf out;

    if (str_eq(envelope_get(env, ENV_TYPE), "error"))
        return;
    if (!env->payload || stanza_parse(env->payload, env->payload_len, &s) < 0) {
        log_warn("jid=%s cannot parse stanza to bounce %s", sender->full, condition);
        return;
    }
    stanza_set_attr(s, "from", reply_from(sender, env));
    stanza_set_attr(s, "to", sender->full);
    stanza_set_attr(s, "type", "error");
    struct stanza *err = stanza_add_element(s, "error", "jabber:client");
    stanza_set_attr(err, "type", etype);
    stanza_add_element(err, condition, NS_STANZAS);

    buf_init(&out);
    stanza_serialize(s, "jabber:client", &out);
    reply_deliver(r, sender, out.data, out.len);
    buf_fini(&out);
    stanza_free(s);
    log_debug("jid=%s %s bounced: %s", sender->full, envelope_get(env, ENV_KIND), condition);
}

void reply_iq_result(struct router *r, const struct session *sender, const struct envelope *env,
                     const char *inner)
{
    const char *id = envelope_get(env, ENV_ID);
    const char *from = reply_from(sender, env);
    struct buf out;

    buf_init(&out);
    buf_append_str(&out, "<iq type='result' id='");
    stanza_escape(&out, id ? id : "", id ? strlen(id) : 0, 1);
    buf_append_str(&out, "' from='");
    stanza_escape(&out, from, strlen(from), 1);
    buf_append_str(&out, "' to='");
    stanza_escape(&out, sender->full, strlen(sender->full), 1);
    if (inner) {
        buf_append_str(&out, "'>");
        buf_append_str(&out, inner);
        buf_append_str(&out, "</iq>");
    } else {
        buf_append_str(&out, "'/>");
    }
    reply_deliver(r, sender, out.data, out.len);
    buf_fini(&out);
}
