/*
 * Message Carbons (XEP-0280): every device of a user sees the whole
 * conversation. The decision uses the header alone (kind, type, flags set
 * by the gateway); the copy wraps the original payload bytes, so nothing
 * is parsed on this path either.
 *
 * Rules, cited where applied:
 *   C1  copied: type chat, and type normal with a body (§6.1 of v0.13+);
 *       never error, groupchat or headline
 *   C2  not copied: <private xmlns='urn:xmpp:carbons:2'/> or
 *       <no-copy xmlns='urn:xmpp:hints'/> (§6.2, XEP-0334), and never a
 *       message that already is a carbon
 *   C3  sent: to the sender's other enabled resources, wrapped in <sent/>
 *   C4  received: to the recipient's enabled resources that did not get
 *       the original, wrapped in <received/> (§7)
 *   C5  the wrapper is from the user's bare JID to the receiving full JID
 */
#include "carbons.h"
#include "buf.h"
#include "envelope.h"
#include "log.h"
#include "payload.h"
#include "reply.h"
#include "sessions.h"
#include "stanza.h"
#include "stanza_parse.h"
#include "util.h"

#include <string.h>

int carbons_is_eligible(const struct envelope *env)
{
    const char *type = envelope_get(env, ENV_TYPE);
    int64_t flags = envelope_get_int(env, ENV_FLAGS, 0);

    if (flags & (STANZA_FLAG_NO_COPY | STANZA_FLAG_CARBON))                 /* C2 */
        return 0;
    if (str_eq(type, "chat"))                                               /* C1 */
        return 1;
    return (!type || !*type || str_eq(type, "normal")) && (flags & STANZA_FLAG_BODY);
}

static void send_wrapped(struct router *r, const struct session *to, const char *user_id, const char *what,
                         const struct envelope *env)
{
    const char *type = envelope_get(env, ENV_TYPE);
    struct buf b;

    buf_init(&b);
    buf_append_str(&b, "<message from='");
    stanza_escape(&b, user_id, strlen(user_id), 1);
    buf_append_str(&b, "' to='");
    stanza_escape(&b, to->full, strlen(to->full), 1);
    buf_append_str(&b, "' type='");
    stanza_escape(&b, type && *type ? type : "normal", strlen(type && *type ? type : "normal"), 1);
    buf_printf(&b, "'><%s xmlns='" NS_CARBONS "'><forwarded xmlns='urn:xmpp:forward:0'>", what);
    /* Inside <forwarded/> the original must declare its namespace. */
    if (payload_with_client_ns(env->payload, env->payload_len, &b) < 0) {
        buf_fini(&b);
        return;
    }
    buf_printf(&b, "</forwarded></%s></message>", what);
    reply_deliver(r, to, b.data, b.len);
    buf_fini(&b);
}

void carbons_sent(struct router *r, const struct session *from, const struct envelope *env)
{
    for (const struct session *s = from->user->sessions; s; s = s->next)   /* C3 */
        if (s != from && s->is_carbons)
            send_wrapped(r, s, from->user->user_id, "sent", env);           /* C5 */
}

void carbons_received(struct router *r, const struct user *u, const struct envelope *env, uint64_t mark)
{
    for (const struct session *s = u->sessions; s; s = s->next)            /* C4 */
        if (s->is_carbons && s->mark != mark)
            send_wrapped(r, s, u->user_id, "received", env);
}

void carbons_iq(struct router *r, struct session *from, const struct envelope *env)
{
    struct stanza *iq = NULL;
    struct stanza *child;

    if (!str_eq(envelope_get(env, ENV_TYPE), "set") || !env->payload ||
        stanza_parse(env->payload, env->payload_len, &iq) < 0) {
        reply_error(r, from, env, "bad-request", "modify");
        goto out;
    }
    child = stanza_first_element(iq);
    if (child && str_eq(child->ns, NS_CARBONS) && str_eq(child->name, "enable")) {
        from->is_carbons = 1;
    } else if (child && str_eq(child->ns, NS_CARBONS) && str_eq(child->name, "disable")) {
        from->is_carbons = 0;
    } else {
        reply_error(r, from, env, "bad-request", "modify");
        goto out;
    }
    log_debug("jid=%s carbons %s", from->full, from->is_carbons ? "enabled" : "disabled");
    reply_iq_result(r, from, env, NULL);
out:
    stanza_free(iq);
}
