/*
 * Resource binding: the gateway validates the request, the router decides
 * (it alone knows which resources are taken), and the answer comes back as
 * OP_BIND_RESULT. While the router decides, the connection holds further
 * stanzas (conn_wait), so a client that pipelines loses nothing.
 *
 * Rules (RFC 6120 §7), cited where applied:
 *   B1  only <iq type='set'> with <bind/> binds; an empty or missing
 *       <resource/> asks the server to pick one (§7.6.2.1)
 *   B2  the resource is resourceprep'd; one that fails is bad-request
 *       (§7.7.2.1); the full JID is at most 3071 bytes (RFC 7622 §3.1)
 *   B3  before binding, anything else is not-authorized (§7.1)
 *   B4  a device-class login binds the resource named after its class,
 *       whatever it asked for (the server may override, §7.7.2.2)
 */
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

int bind_is_session_iq(const struct stanza *s)
{
    return str_eq(s->name, "iq") && str_eq(stanza_attr(s, "type"), "set") &&
           stanza_child(s, "session", NS_SESSION) != NULL;
}

void bind_answer_session(struct conn *c, const struct stanza *s)
{
    struct buf b;
    const char *id = stanza_attr(s, "id");
    buf_init(&b);
    buf_append_str(&b, "<iq type='result' id='");
    if (id)
        stanza_escape(&b, id, strlen(id), 1);
    buf_append_str(&b, "'/>");
    conn_write_stanza(c, b.data, b.len);
    buf_fini(&b);
}

void bind_on_stanza(struct conn *c, struct stanza *s)
{
    struct stanza *bind = str_eq(s->name, "iq") ? stanza_child(s, "bind", NS_BIND) : NULL;
    char *resource = NULL;
    char *full;

    if (bind_is_session_iq(s)) {
        bind_answer_session(c, s);
        goto out;
    }
    if (!bind || !str_eq(stanza_attr(s, "type"), "set") || !stanza_attr(s, "id")) {     /* B3 */
        log_info("conn=%llu sent a stanza before binding; closing: not-authorized", (unsigned long long)c->id);
        conn_close(c, "not-authorized", NULL, "error");
        goto out;
    }
    struct stanza *res = stanza_child(bind, "resource", NS_BIND);
    char *text = res ? stanza_text(res) : xstrdup("");
    if (*text && jid_resourceprep(text, &resource) != JID_OK) {                            /* B2 */
        free(text);
        stream_stanza_error(c, s, "bad-request", "modify");
        goto out;
    }
    free(text);
    if (c->device_class)
        full = xasprintf("%s/%s", c->user_id, c->device_class->name);                      /* B4 */
    else
        full = resource ? xasprintf("%s/%s", c->user_id, resource) : xstrdup(c->user_id);  /* B1 */
    if (strlen(full) > 3071) {
        stream_stanza_error(c, s, "bad-request", "modify");
        free(full);
        goto out;
    }
    free(c->pending_bind);
    c->pending_bind = xstrdup(stanza_attr(s, "id"));
    free(c->pending_full);
    c->pending_full = xstrdup(full);
    c->is_request_sent = c->gw->up.is_connected;
    upstream_request_bind(c->gw, c->id, c->pending_bind, full, c->user_id,
                          c->device_class ? c->device_class->name : NULL);
    conn_wait(c);
    free(full);
out:
    free(resource);
    stanza_free(s);
}

void bind_on_result(struct conn *c, const struct envelope *res)
{
    const char *id = envelope_get(res, ENV_ID);
    const char *error = envelope_get(res, ENV_ERROR);
    const char *full = envelope_get(res, ENV_FULL);
    struct buf b;

    if (!c->pending_bind || !str_eq(id, c->pending_bind) || c->state != CONN_AUTHED)
        return; /* stale answer */
    buf_init(&b);
    buf_append_str(&b, "<iq type='");
    buf_append_str(&b, error ? "error" : "result");
    buf_append_str(&b, "' id='");
    stanza_escape(&b, id, strlen(id), 1);
    buf_append_str(&b, "'>");
    if (error || !full) {
        const char *cond = error ? error : "internal-server-error";
        const char *type = strcmp(cond, "conflict") == 0 ? "cancel" : strcmp(cond, "not-allowed") == 0 ? "cancel" : "wait";
        buf_printf(&b, "<bind xmlns='" NS_BIND "'/><error type='%s'><", type);
        stanza_escape(&b, cond, strlen(cond), 0);
        buf_append_str(&b, " xmlns='" NS_STANZA_ERRORS "'/></error></iq>");
        log_info("conn=%llu user=%s bind refused: %s", (unsigned long long)c->id, c->user_id, cond);
    } else {
        buf_append_str(&b, "<bind xmlns='" NS_BIND "'><jid>");
        stanza_escape(&b, full, strlen(full), 0);
        buf_append_str(&b, "</jid></bind></iq>");
        free(c->full);
        c->full = xstrdup(full);
        c->state = CONN_BOUND;
        c->bound_at = ev_now(c->gw->loop);
        idle_start(c); /* the handshake deadline is met; c->timer now watches for silence */
        log_info("conn=%llu jid=%s bound", (unsigned long long)c->id, c->full);
    }
    free(c->pending_bind);
    c->pending_bind = NULL;
    conn_write(c, b.data, b.len);
    buf_fini(&b);
    conn_resume(c);
}
