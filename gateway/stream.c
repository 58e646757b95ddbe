/*
 * Stream state machine; see stream.h.
 *
 * Rules (RFC 6120), cited where applied:
 *   T1  the stream header must be <stream:stream> in the streams namespace
 *       with default namespace jabber:client (§4.8.1, §4.8.5), else
 *       invalid-namespace; version 1.0 or higher (§4.7.5) else
 *       unsupported-version; 'to' our domain (§4.7.2) else host-unknown
 *   T2  features: STARTTLS until TLS (required unless plaintext is allowed
 *       on loopback), then SASL mechanisms, then bind (§5, §6, §7)
 *   T3  nothing but stream negotiation before authentication
 *       (§4.9.3.12 not-authorized); PLAIN only over TLS
 *   T4  a top-level element we do not know is unsupported-stanza-type
 *   T5  a stream error is preceded by our header if none was sent (§4.9.1.1)
 *   T6  stream management (XEP-0198, sm.c) is offered with bind, after
 *       authentication; its elements are accepted from then on, and every
 *       stanza of a bound stream is counted before it is handled
 */
#include "stream.h"
#include "auth.h"
#include "bind.h"
#include "conn.h"
#include "forward.h"
#include "idle.h"
#include "log.h"
#include "sm.h"
#include "stanza.h"
#include "util.h"
#include "xml.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

static void on_open(void *ud, struct stanza *hdr);
static void on_stanza(void *ud, struct stanza *s);
static void on_close(void *ud);

static void new_stream_id(struct conn *c)
{
    unsigned char r[8];
    static const char hex[] = "0123456789abcdef";
    if (RAND_bytes(r, sizeof(r)) != 1)
        memset(r, 0, sizeof(r)); /* the id is not a secret, only a label */
    for (size_t i = 0; i < sizeof(r); i++) {
        c->stream_id[2 * i] = hex[r[i] >> 4];
        c->stream_id[2 * i + 1] = hex[r[i] & 15];
    }
    c->stream_id[16] = '\0';
}

void stream_init(struct conn *c)
{
    const struct config_gateway *g = &c->gw->conf->gateway;
    const struct xml_limits lim = { .max_stanza_bytes = (size_t)g->max_stanza_bytes,
                                    .max_depth = (unsigned)g->max_depth };
    static const struct xml_callbacks cb = { on_open, on_stanza, on_close };
    c->xml = xml_new(&lim, &cb, c);
    new_stream_id(c);
}

void stream_fini(struct conn *c)
{
    auth_fini(c);
}

int stream_has_tls(const struct conn *c)
{
    return c->ssl != NULL;
}

int stream_may_auth(const struct conn *c)
{
    return stream_has_tls(c) || (c->gw->conf->gateway.allow_plain_loopback && c->is_loopback);
}

static void write_header(struct conn *c, const char *to_client)
{
    struct buf b;
    buf_init(&b);
    buf_append_str(&b, "<?xml version='1.0'?><stream:stream xmlns='" NS_CLIENT "' xmlns:stream='" NS_STREAMS
                       "' version='1.0' xml:lang='en' id='");
    buf_append_str(&b, c->stream_id);
    buf_append_str(&b, "' from='");
    stanza_escape(&b, c->gw->conf->domain, strlen(c->gw->conf->domain), 1);
    if (to_client) {
        buf_append_str(&b, "' to='");
        stanza_escape(&b, to_client, strlen(to_client), 1);
    }
    buf_append_str(&b, "'>");
    conn_write(c, b.data, b.len);
    buf_fini(&b);
    c->is_header_sent = 1;
}

/* T2 */
static void write_features(struct conn *c)
{
    struct buf b;
    int can_starttls = !stream_has_tls(c) && c->gw->conf->gateway.starttls_port;

    buf_init(&b);
    buf_append_str(&b, "<stream:features>");
    if (c->state == CONN_AUTHED) {
        buf_append_str(&b, "<bind xmlns='" NS_BIND "'/><session xmlns='" NS_SESSION "'><optional/></session>"
                           "<sm xmlns='" NS_SM "'/>");                                          /* T6 */
    } else {
        if (can_starttls) {
            buf_append_str(&b, "<starttls xmlns='" NS_TLS "'>");
            if (!stream_may_auth(c))
                buf_append_str(&b, "<required/>");
            buf_append_str(&b, "</starttls>");
        }
        if (stream_may_auth(c)) {
            buf_append_str(&b, "<mechanisms xmlns='" NS_SASL "'><mechanism>SCRAM-SHA-256</mechanism>"
                               "<mechanism>SCRAM-SHA-1</mechanism>");
            if (stream_has_tls(c))
                buf_append_str(&b, "<mechanism>PLAIN</mechanism>");
            buf_append_str(&b, "</mechanisms>");
        }
    }
    buf_append_str(&b, "</stream:features>");
    conn_write(c, b.data, b.len);
    buf_fini(&b);
}

static void on_open(void *ud, struct stanza *hdr)
{
    struct conn *c = ud;
    const char *to = stanza_attr(hdr, "to");
    const char *version = stanza_attr(hdr, "version");
    const char *from = stanza_attr(hdr, "from");

    if (c->state == CONN_CLOSING)
        goto out;
    write_header(c, from && strlen(from) < 3072 ? from : NULL);
    if (!str_eq(hdr->name, "stream") || !str_eq(hdr->ns, NS_STREAMS) ||
        !str_eq(stanza_attr(hdr, "xmlns"), NS_CLIENT)) {                       /* T1 */
        log_info("conn=%llu bad stream namespace; closing: invalid-namespace", (unsigned long long)c->id);
        conn_close(c, "invalid-namespace", NULL, "error");
        goto out;
    }
    if (!version || strtol(version, NULL, 10) < 1) {                        /* T1 */
        log_info("conn=%llu stream version %s; closing: unsupported-version", (unsigned long long)c->id,
                 version ? "too old" : "missing");
        conn_close(c, "unsupported-version", NULL, "error");
        goto out;
    }
    if (to && strcasecmp(to, c->gw->conf->domain) != 0) {                     /* T1 */
        char safe[80];
        log_info("conn=%llu stream to unknown host %s; closing: host-unknown", (unsigned long long)c->id,
                 log_safe(to, strlen(to), safe, sizeof(safe)));
        conn_close(c, "host-unknown", NULL, "error");
        goto out;
    }
    write_features(c);
out:
    stanza_free(hdr);
}

static void on_close(void *ud)
{
    struct conn *c = ud;
    log_info("conn=%llu jid=%s closed the stream", (unsigned long long)c->id, c->full ? c->full : "-");
    conn_close(c, NULL, NULL, "closed");
}

static void on_stanza(void *ud, struct stanza *s)
{
    stream_on_stanza(ud, s);
}

void stream_on_xml_error(struct conn *c, int rc)
{
    const char *cond = "not-well-formed";
    if (rc == XML_ERR_RESTRICTED)
        cond = "restricted-xml";
    else if (rc == XML_ERR_TOO_BIG || rc == XML_ERR_TOO_DEEP)
        cond = "policy-violation";
    log_info("conn=%llu jid=%s client sent bad XML (%s); closing: %s", (unsigned long long)c->id,
             c->full ? c->full : "-", xml_error_string(rc), cond);
    conn_close(c, cond, rc == XML_ERR_TOO_BIG ? "stanza too large" : rc == XML_ERR_TOO_DEEP ? "nesting too deep" : NULL,
               "error");
}

static void starttls(struct conn *c, struct stanza *s)
{
    stanza_free(s);
    if (stream_has_tls(c) || !c->gw->conf->gateway.starttls_port || c->state != CONN_CONNECTED) {
        conn_close(c, "policy-violation", "unexpected starttls", "error");
        return;
    }
    /* The parser stops after </starttls>; what follows is TLS. */
    xml_restart(c->xml);
    c->is_tls_restart = 1;
    c->is_header_sent = 0;
    new_stream_id(c);
    conn_write_str(c, "<proceed xmlns='" NS_TLS "'/>");
    conn_start_tls(c);
}

static void hold(struct conn *c, struct stanza *s)
{
    /* A client may pipeline a little while we wait for the router; a
     * client that floods meanwhile is cut off. */
    if (c->nheld >= 64) {
        stanza_free(s);
        conn_close(c, "policy-violation", "too many stanzas while waiting", "error");
        return;
    }
    struct held *h = xcalloc(1, sizeof(*h));
    h->s = s;
    if (c->held_tail)
        c->held_tail->next = h;
    else
        c->held = h;
    c->held_tail = h;
    c->nheld++;
}

void stream_on_stanza(struct conn *c, struct stanza *s)
{
    int is_client_stanza;

    if (c->state == CONN_CLOSING) {
        stanza_free(s);
        return;
    }
    if (c->is_waiting) {
        hold(c, s);
        return;
    }
    is_client_stanza = str_eq(s->ns, NS_CLIENT) &&
                       (str_eq(s->name, "message") || str_eq(s->name, "presence") || str_eq(s->name, "iq"));
    if (str_eq(s->ns, NS_TLS) && str_eq(s->name, "starttls")) {
        starttls(c, s);
    } else if (str_eq(s->ns, NS_SASL) && c->state < CONN_AUTHED) {
        auth_on_element(c, s);
    } else if (str_eq(s->ns, NS_SM) && (c->state == CONN_AUTHED || c->state == CONN_BOUND)) {
        sm_on_element(c, s);                                                /* T6 */
    } else if (is_client_stanza && c->state == CONN_BOUND) {
        sm_on_stanza_in(c);                                                 /* T6 */
        forward_stanza(c, s);
    } else if (is_client_stanza && c->state == CONN_AUTHED) {
        bind_on_stanza(c, s);
    } else if (is_client_stanza) {                                          /* T3 */
        log_info("conn=%llu sent a stanza before authenticating; closing: not-authorized",
                 (unsigned long long)c->id);
        stanza_free(s);
        conn_close(c, "not-authorized", NULL, "error");
    } else {                                                                /* T4 */
        char safe[64];
        log_info("conn=%llu sent unsupported element %s; closing: unsupported-stanza-type",
                 (unsigned long long)c->id, log_safe(s->name, strlen(s->name), safe, sizeof(safe)));
        stanza_free(s);
        conn_close(c, "unsupported-stanza-type", NULL, "error");
    }
}

void stream_on_tls_ready(struct conn *c)
{
    c->state = CONN_SECURED;
    log_debug("conn=%llu TLS %s %s", (unsigned long long)c->id, SSL_get_version(c->ssl),
              SSL_get_cipher_name(c->ssl));
}

void stream_on_traffic(struct conn *c)
{
    idle_on_traffic(c);
}

/* c->timer serves one purpose per state (conn.h). */
void stream_on_timer(struct conn *c)
{
    if (c->state == CONN_BOUND) {
        idle_on_timer(c);
    } else if (c->state == CONN_DETACHED) {
        sm_on_resume_timeout(c);
    } else {
        log_info("conn=%llu did not finish logging in within %d ms; closing: connection-timeout",
                 (unsigned long long)c->id, c->gw->conf->gateway.handshake_timeout_ms);
        conn_close(c, "connection-timeout", NULL, "error");
    }
}

void stream_restart(struct conn *c)
{
    xml_restart(c->xml);
    c->is_header_sent = 0;
    new_stream_id(c);
}

void stream_write_close(struct conn *c, const char *condition, const char *text)
{
    struct buf b;

    if (!c->is_header_sent)
        write_header(c, NULL);                                              /* T5 */
    buf_init(&b);
    if (condition) {
        buf_append_str(&b, "<stream:error><");
        buf_append_str(&b, condition);
        buf_append_str(&b, " xmlns='" NS_STREAM_ERRORS "'/>");
        if (text) {
            buf_append_str(&b, "<text xmlns='" NS_STREAM_ERRORS "' xml:lang='en'>");
            stanza_escape(&b, text, strlen(text), 0);
            buf_append_str(&b, "</text>");
        }
        buf_append_str(&b, "</stream:error>");
    }
    buf_append_str(&b, "</stream:stream>");
    conn_write(c, b.data, b.len);
    buf_fini(&b);
}

void stream_stanza_error(struct conn *c, const struct stanza *s, const char *condition, const char *type)
{
    struct stanza *e;
    struct buf b;
    const char *to = stanza_attr(s, "to");

    if (str_eq(stanza_attr(s, "type"), "error"))
        return; /* never answer an error with an error (§8.3.1) */
    e = stanza_new(s->name, NS_CLIENT);
    if (stanza_attr(s, "id"))
        stanza_set_attr(e, "id", stanza_attr(s, "id"));
    stanza_set_attr(e, "type", "error");
    stanza_set_attr(e, "from", to && strlen(to) < 3072 ? to : c->gw->conf->domain);
    if (c->full)
        stanza_set_attr(e, "to", c->full);
    struct stanza *err = stanza_add_element(e, "error", NULL);
    stanza_set_attr(err, "type", type);
    stanza_add_element(err, condition, NS_STANZA_ERRORS);
    buf_init(&b);
    stanza_serialize(e, NS_CLIENT, &b);
    conn_write_stanza(c, b.data, b.len);
    buf_fini(&b);
    stanza_free(e);
}
